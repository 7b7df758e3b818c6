"""Tests for WorkflowInterpreter: step kinds, retry/timeout/catch/when, limits, hooks, traces."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auto_dev._exceptions import LLMTimeoutError, ValidationError
from auto_dev.llm.types import LLMResponse
from auto_dev.testing import FakeLLM
from auto_dev.workflows import (
    RunLimits,
    StepContext,
    StepKinds,
    StepTrace,
    WorkflowHooks,
    WorkflowInterpreter,
    WorkflowRun,
    derive_seed,
)
from tests.workflows._support import (
    FakeTools,
    example_tools,
    generated_workflow,
    issue_example,
    workflow,
)


def _interpreter(tools: FakeTools | None = None, **kwargs: Any) -> WorkflowInterpreter:
    return WorkflowInterpreter(tools or FakeTools(), **kwargs)


async def _run(doc: dict[str, Any], input: dict[str, Any] | None = None,
               tools: FakeTools | None = None, seed: int = 0, **kwargs: Any) -> WorkflowRun:
    return await _interpreter(tools, **kwargs).run(doc, input or {}, seed=seed)


class TestIssueExample:
    """The issue's example runs end to end with fake tools and FakeLLM."""

    async def test_shipped_order(self) -> None:
        """The shipped branch runs, the map fans out, a non-JSON reply falls back to catch."""
        tools = example_tools()
        llm = FakeLLM(["note one", "note two", "not json"])
        run = await _run(issue_example(), {"order_id": "A1", "items": [{"name": "cup"},
                                                                        {"name": "pot"}]},
                         tools=tools, llm=llm)
        assert run.ok, run.error
        assert run.output == {"reply": "We will get back to you."}
        assert [c.tool for c in tools.calls] == ["get_order", "start_return"]
        route = run.step("route")
        assert route is not None and route.input == {"branch": 0}
        assert route.output == {"returned": "A1"}
        notes = run.step("notes")
        assert notes is not None and notes.output == ["note one", "note two"]
        assert sorted(llm.prompts[:2]) == ["One line about cup.", "One line about pot."]
        reply = run.step("reply")
        assert reply is not None and reply.error and "not JSON" in reply.error
        assert [c.id for c in reply.children] == ["reply.catch"]
        assert run.steps_executed == 8  # order, route, ret, notes, n x2, reply, fallback

    async def test_otherwise_branch(self) -> None:
        """A status other than shipped takes the otherwise branch."""
        tools = example_tools()
        tools.tools["get_order"] = lambda order_id: {"id": order_id, "status": "open"}
        llm = FakeLLM(['```json\n{"reply": "done"}\n```'])
        run = await _run(issue_example(), {"order_id": "B2", "items": []}, tools=tools, llm=llm)
        assert run.ok and run.output == {"reply": "done"}
        assert [c.tool for c in tools.calls] == ["get_order", "cancel_order"]
        assert run.step("route").input == {"branch": "otherwise"}  # type: ignore[union-attr]


class TestInput:
    """A run's input is checked before any step runs."""

    async def test_missing_required_field(self) -> None:
        """A missing required field is named input.<field>."""
        tools = example_tools()
        with pytest.raises(ValidationError) as info:
            await _run(issue_example(), {"items": []}, tools=tools)
        assert info.value.field == "input.order_id"
        assert tools.calls == []

    async def test_properties_schema(self) -> None:
        """input.properties are JSON Schemas the input must meet."""
        doc = workflow({"id": "a", "set": {"n": "${input.n}"}},
                       input={"properties": {"n": {"type": "integer"}}})
        with pytest.raises(ValidationError) as info:
            await _run(doc, {"n": "three"})
        assert info.value.field == "input.n"
        assert (await _run(doc, {"n": 3})).ok

    async def test_input_must_be_an_object(self) -> None:
        """Input that is not a JSON object is refused as input."""
        with pytest.raises(ValidationError) as info:
            await _interpreter().run(workflow({"id": "a", "set": {"x": 1}}), [1, 2])
        assert info.value.field == "input"

    async def test_invalid_document_raises(self) -> None:
        """An invalid document raises ValidationError naming the field, before running."""
        with pytest.raises(ValidationError) as info:
            await _run(workflow({"id": "a", "tool": "missing"}))
        assert info.value.field == "workflow.steps[0].tool"


class TestValues:
    """The ${} rules: a whole-string placeholder keeps its type, others become text."""

    async def test_whole_and_interpolated(self) -> None:
        """"${expr}" is the value itself; inside text, non-strings are compact JSON."""
        doc = workflow({"id": "s", "set": {
            "whole": "${input.order}", "text": "order ${input.order} for ${input.name}",
            "num": "${input.order.n}", "missing": "${input.nothing}",
            "literal": "$${input.name}", "nested": [{"x": "${input.name}"}], "plain": 5}},
            output="vars")
        run = await _run(doc, {"order": {"n": 2, "tags": ["a"]}, "name": "Ann"})
        assert run.ok, run.error
        assert run.output == {
            "whole": {"n": 2, "tags": ["a"]}, "text": 'order {"n":2,"tags":["a"]} for Ann',
            "num": 2, "missing": None, "literal": "${input.name}", "nested": [{"x": "Ann"}],
            "plain": 5}

    async def test_jmespath_raw_string_comparison(self) -> None:
        """Comparisons use JMESPath raw strings, and functions work."""
        doc = workflow({"id": "s", "set": {"big": "${length(input.items) > `2`}",
                                           "is_x": "${input.kind == 'x'}"}}, output="vars")
        run = await _run(doc, {"items": [1, 2, 3], "kind": "x"})
        assert run.output == {"big": True, "is_x": True}

    async def test_expression_failure_is_a_step_error(self) -> None:
        """A type error in an expression fails the step (catchable), not the caller."""
        doc = workflow({"id": "s", "set": {"n": "${length(input.n)}"}})
        run = await _run(doc, {"n": 5})
        assert not run.ok and run.error_step == "s"
        assert "length()" in (run.error or "")


class TestKinds:
    """Each built-in kind does what the spec says."""

    async def test_set_writes_vars_and_outputs_the_dict(self) -> None:
        """set writes vars.key and its output is the dict of values."""
        doc = workflow({"id": "a", "set": {"x": 1}}, {"id": "b", "set": {"y": "${vars.x}"}},
                       output="[vars, steps.b]")
        run = await _run(doc)
        assert run.output == [{"x": 1, "y": 1}, {"y": 1}]

    async def test_fail_ends_the_run_with_its_message(self) -> None:
        """fail stops the run with the interpolated message at its step."""
        doc = workflow({"id": "stop", "fail": "order ${input.id} cannot be refunded"},
                       {"id": "never", "set": {"x": 1}})
        run = await _run(doc, {"id": 7})
        assert not run.ok
        assert run.error == "order 7 cannot be refunded"
        assert run.error_step == "stop"
        assert run.step("never") is None and run.output is None

    async def test_switch_without_match_outputs_null(self) -> None:
        """A switch whose branches all say no and has no otherwise outputs null."""
        doc = workflow({"id": "sw", "switch": [{"when": "input.x", "steps": [
            {"id": "a", "set": {"x": 1}}]}]}, output="steps.sw")
        run = await _run(doc, {"x": False})
        assert run.ok and run.output is None
        assert run.step("sw").input == {"branch": None}  # type: ignore[union-attr]

    async def test_switch_output_is_last_step_run(self) -> None:
        """A switch's output is its chosen branch's last step that ran."""
        doc = workflow({"id": "sw", "switch": [{"when": "`true`", "steps": [
            {"id": "a", "set": {"x": 1}}, {"id": "b", "when": "`false`", "set": {"y": 2}}]}]},
            output="steps.sw")
        assert (await _run(doc)).output == {"x": 1}

    async def test_map_results_in_order_under_concurrency(self) -> None:
        """Items run concurrently (bounded) and results keep the items' order."""
        active, peak = 0, 0

        async def slow(n: int) -> int:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.01 * (5 - n))
            active -= 1
            return n * 10

        doc = workflow({"id": "m", "map": {"over": "input.ns", "as": "n", "max_concurrency": 2,
                                           "steps": [{"id": "t", "tool": "slow",
                                                      "args": {"n": "${n}"}}]}},
                       output="steps.m")
        run = await _run(doc, {"ns": [0, 1, 2, 3, 4]}, tools=FakeTools(slow=slow))
        assert run.output == [0, 10, 20, 30, 40]
        assert peak == 2
        assert [c.id for c in run.step("m").children] == [  # type: ignore[union-attr]
            f"m[{i}]" for i in range(5)]

    async def test_map_item_scope(self) -> None:
        """Body steps see outer steps and the item; their own steps and vars stay inside."""
        doc = workflow(
            {"id": "base", "set": {"k": 10}},
            {"id": "m", "map": {"over": "input.xs", "steps": [
                {"id": "inner", "set": {"v": "${item}", "k": "${steps.base.k}"}}]}},
            output="{m: steps.m, inner: steps.inner, vars: vars}")
        run = await _run(doc, {"xs": [1, 2]})
        assert run.output == {"m": [{"v": 1, "k": 10}, {"v": 2, "k": 10}], "inner": None,
                              "vars": {"k": 10}}

    async def test_map_over_non_list_fails_the_step(self) -> None:
        """map.over must give a list."""
        doc = workflow({"id": "m", "map": {"over": "input.x", "steps": [
            {"id": "a", "set": {"x": 1}}]}})
        run = await _run(doc, {"x": {"not": "a list"}})
        assert not run.ok and run.error_step == "m" and "not a list" in (run.error or "")

    async def test_map_reports_first_failing_item_by_index(self) -> None:
        """When several items fail, the lowest index is reported whatever finished first."""
        async def boom(n: int) -> None:
            await asyncio.sleep(0.02 if n == 1 else 0.0)
            raise RuntimeError(f"item {n}")

        doc = workflow({"id": "m", "map": {"over": "input.ns", "as": "n", "steps": [
            {"id": "t", "tool": "boom", "args": {"n": "${n}"}}]}})
        run = await _run(doc, {"ns": [5, 1, 7]}, tools=FakeTools(boom=boom))
        assert not run.ok and "item 5" in (run.error or "")


class TestLLMSteps:
    """llm steps go through the client: prompts, JSON answers, tokens and cost."""

    async def test_prompt_system_and_purpose(self) -> None:
        """The system and prompt are interpolated and the call is tagged for the ledger."""
        llm = FakeLLM(["hello"])
        doc = workflow({"id": "a", "llm": {"system": "Be ${input.tone}.", "prompt":
                                           "Greet ${input.name}", "model": "small",
                                           "max_tokens": 20}}, output="steps.a")
        run = await _run(doc, {"tone": "kind", "name": "Bo"}, llm=llm, tenant_id="t9")
        assert run.output == "hello"
        call = llm.calls[0]
        assert call.messages == [{"role": "system", "content": "Be kind."},
                                 {"role": "user", "content": "Greet Bo"}]
        assert (call.purpose, call.tenant_id, call.model) == ("workflow_step", "t9", "small")

    @pytest.mark.parametrize(("answer", "parsed"), [
        ('{"a": 1}', {"a": 1}), ('```json\n[1, 2]\n```', [1, 2]),
        ('Here it is:\n```\n{"ok": true}\n```\nThanks', {"ok": True}), ("  3 ", 3)])
    async def test_json_output(self, answer: str, parsed: Any) -> None:
        """output json parses the answer, fenced or not."""
        doc = workflow({"id": "a", "llm": {"prompt": "x", "output": "json"}}, output="steps.a")
        assert (await _run(doc, llm=FakeLLM([answer]))).output == parsed

    @pytest.mark.parametrize("answer", ["not json", "```json\n{oops}\n```", "NaN"])
    async def test_json_parse_failure_is_a_step_error(self, answer: str) -> None:
        """An answer that is not JSON fails the step."""
        doc = workflow({"id": "a", "llm": {"prompt": "x", "output": "json"}})
        run = await _run(doc, llm=FakeLLM([answer]))
        assert not run.ok and run.error_step == "a" and "not JSON" in (run.error or "")

    async def test_tokens_and_cost_are_counted(self) -> None:
        """Each response's tokens and cost land on the step and the run."""
        llm = FakeLLM(["one two", "three"], cost_per_call=0.01)
        doc = workflow({"id": "a", "llm": {"prompt": "p q"}}, {"id": "b", "llm": {"prompt": "r"}})
        run = await _run(doc, llm=llm)
        assert run.ok
        assert run.tokens == (2 + 2) + (1 + 1)
        assert run.cost_usd == pytest.approx(0.02)
        assert run.step("a").cost_usd == pytest.approx(0.01)  # type: ignore[union-attr]

    async def test_no_client_is_a_step_error(self) -> None:
        """Without an LLM client an llm step fails (catchable) instead of crashing."""
        doc = workflow({"id": "a", "llm": {"prompt": "x"},
                        "catch": [{"id": "c", "set": {"fallback": True}}]}, output="steps.a")
        assert (await _run(doc)).output == {"fallback": True}

    async def test_llm_timeout_is_retried_as_timeout(self) -> None:
        """The client's timeout counts as a timeout for retry.on."""
        llm = FakeLLM([LLMTimeoutError("slow"), "fine"])
        doc = workflow({"id": "a", "llm": {"prompt": "x"},
                        "retry": {"max_attempts": 2, "on": ["timeout"]}}, output="steps.a")
        run = await _run(doc, llm=llm)
        assert run.output == "fine" and run.step("a").attempts == 2  # type: ignore[union-attr]


class TestRetry:
    """retry re-runs a failing step, counts attempts, honours on and backoff."""

    async def test_flaky_tool_recovers(self) -> None:
        """A tool failing twice then answering succeeds on attempt 3 with distinct seeds."""
        outcomes: Any = iter([RuntimeError("down"), RuntimeError("down"), "ok"])

        def flaky() -> str:
            outcome = next(outcomes)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

        tools = FakeTools(flaky=flaky)
        doc = workflow({"id": "f", "tool": "flaky", "retry": {"max_attempts": 3}},
                       output="steps.f")
        run = await _run(doc, tools=tools, seed=4)
        assert run.ok and run.output == "ok"
        trace = run.step("f")
        assert trace is not None and trace.attempts == 3 and trace.error is None
        assert [c.seed for c in tools.calls] == [derive_seed(4, "f", (), a) for a in (1, 2, 3)]
        assert len({c.seed for c in tools.calls}) == 3

    async def test_retried_compound_keeps_failed_attempts(self) -> None:
        """A retried switch keeps each failed attempt's nested steps under an attempt node."""
        outcomes: Any = iter([RuntimeError("first"), "fine"])

        def once_broken() -> str:
            outcome = next(outcomes)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

        doc = workflow({"id": "sw", "retry": {"max_attempts": 2}, "switch": [
            {"otherwise": [{"id": "t", "tool": "once_broken"}]}]}, output="steps.sw")
        run = await _run(doc, tools=FakeTools(once_broken=once_broken))
        assert run.ok and run.output == "fine" and run.steps_executed == 3
        trace = run.step("sw")
        assert trace is not None and trace.attempts == 2
        assert [(c.id, c.kind) for c in trace.children] == [("sw.attempt1", "attempt"),
                                                             ("t", "tool")]
        assert "first" in (trace.children[0].error or "")
        assert trace.children[0].children[0].error is not None

    async def test_attempts_exhausted(self) -> None:
        """After max_attempts the step's last error ends the run."""
        tools = FakeTools(down=lambda: 1 / 0)
        run = await _run(workflow({"id": "d", "tool": "down", "retry": {"max_attempts": 2}}),
                         tools=tools)
        assert not run.ok and "ZeroDivisionError" in (run.error or "")
        assert run.step("d").attempts == 2 and len(tools.calls) == 2  # type: ignore[union-attr]

    async def test_on_timeout_only_does_not_retry_errors(self) -> None:
        """retry.on ["timeout"] leaves ordinary errors alone."""
        tools = FakeTools(down=lambda: 1 / 0)
        doc = workflow({"id": "d", "tool": "down",
                        "retry": {"max_attempts": 3, "on": ["timeout"]}})
        await _run(doc, tools=tools)
        assert len(tools.calls) == 1

    async def test_fail_is_never_retried(self) -> None:
        """A fail step is deterministic: retry does not repeat it."""
        run = await _run(workflow({"id": "x", "fail": "no", "retry": {"max_attempts": 5}}))
        assert run.step("x").attempts == 1  # type: ignore[union-attr]

    async def test_backoff_is_exponential(self) -> None:
        """backoff_s doubles between attempts (0.05 then 0.1)."""
        tools = FakeTools(down=lambda: 1 / 0)
        doc = workflow({"id": "d", "tool": "down",
                        "retry": {"max_attempts": 3, "backoff_s": 0.05}})
        started = time.perf_counter()
        await _run(doc, tools=tools)
        assert time.perf_counter() - started >= 0.15

    async def test_backoff_is_capped_by_wall_time(self) -> None:
        """A long backoff cannot outlive the run's wall-time limit."""
        tools = FakeTools(down=lambda: 1 / 0)
        doc = workflow({"id": "d", "tool": "down", "retry": {"max_attempts": 10,
                                                              "backoff_s": 10}})
        started = time.perf_counter()
        run = await _run(doc, tools=tools, limits=RunLimits(wall_time_s=0.3))
        assert time.perf_counter() - started < 2.0
        assert not run.ok and "wall_time_s" in (run.error or "")


class TestTimeout:
    """timeout_s bounds each attempt of a step."""

    async def test_slow_tool_times_out_and_retries(self) -> None:
        """A step past timeout_s fails as a timeout, retried when on includes timeout."""
        delays = iter([1.0, 0.0])

        async def slow() -> str:
            await asyncio.sleep(next(delays))
            return "done"

        doc = workflow({"id": "s", "custom": "slow", "timeout_s": 0.05,
                        "retry": {"max_attempts": 2, "on": ["timeout"]}}, output="steps.s")
        kinds = StepKinds({"slow": lambda args, ctx: slow()})
        run = await _run(doc, kinds=kinds)
        assert run.ok and run.output == "done"
        assert run.step("s").attempts == 2  # type: ignore[union-attr]

    async def test_timeout_error_names_the_limit(self) -> None:
        """An exhausted timeout says so."""
        kinds = StepKinds({"slow": lambda args, ctx: asyncio.sleep(1)})
        run = await _run(workflow({"id": "s", "custom": "slow", "timeout_s": 0.05}), kinds=kinds)
        assert not run.ok and "timed out after 0.05s" in (run.error or "")

    async def test_tool_gets_the_step_timeout(self) -> None:
        """A tool step passes its timeout_s to the invoker (the sandbox's limit)."""
        tools = FakeTools(t=lambda: 1)
        await _run(workflow({"id": "a", "tool": "t", "timeout_s": 3}), tools=tools)
        assert tools.calls[0].timeout_s == 3

    async def test_tool_timeout_error_is_a_timeout(self) -> None:
        """ToolTimeoutError from the invoker is retried as a timeout."""
        def late() -> None:
            raise TimeoutError("too slow")

        tools = FakeTools(late=late)
        doc = workflow({"id": "a", "tool": "late", "retry": {"max_attempts": 2,
                                                             "on": ["timeout"]}})
        run = await _run(doc, tools=tools)
        assert len(tools.calls) == 2 and "timed out" in (run.error or "")


class TestCatchAndWhen:
    """catch recovers a failed step; when skips one."""

    async def test_catch_output_and_error_state(self) -> None:
        """The catch block sees the error; its last output becomes the step's."""
        doc = workflow({"id": "a", "fail": "bad ${input.x}", "catch": [
            {"id": "c", "set": {"why": "${error.message}", "where": "${error.step}"}}]},
            {"id": "after", "set": {"seen": "${steps.a.why}"}}, output="[steps.a, vars]")
        run = await _run(doc, {"x": 1})
        assert run.ok, run.error
        assert run.output == [{"why": "bad 1", "where": "a"},
                              {"why": "bad 1", "where": "a", "seen": "bad 1"}]
        trace = run.step("a")
        assert trace is not None and trace.error == "bad 1"

    async def test_catch_on_compound_step(self) -> None:
        """A failure inside a switch branch is caught by the switch's catch."""
        doc = workflow({"id": "sw", "switch": [{"otherwise": [{"id": "x", "fail": "inner"}]}],
                        "catch": [{"id": "c", "set": {"caught": "${error.step}"}}]},
                       output="steps.sw")
        assert (await _run(doc)).output == {"caught": "x"}

    async def test_failing_catch_fails_the_run(self) -> None:
        """When the catch block fails too, its error ends the run."""
        doc = workflow({"id": "a", "fail": "first", "catch": [{"id": "c", "fail": "second"}]})
        run = await _run(doc)
        assert not run.ok and run.error == "second" and run.error_step == "c"

    async def test_when_false_skips(self) -> None:
        """A skipped step has output null, a trace marked skipped and zero attempts."""
        tools = FakeTools(t=lambda: 1)
        doc = workflow({"id": "a", "tool": "t", "when": "input.go"}, output="steps.a")
        run = await _run(doc, {"go": False}, tools=tools)
        assert run.ok and run.output is None and tools.calls == []
        trace = run.step("a")
        assert trace is not None and trace.skipped and trace.attempts == 0
        assert run.steps_executed == 0

    @pytest.mark.parametrize(("value", "runs"), [
        (0, True), ("", False), ([], False), ({}, False), (None, False), ("no", True)])
    async def test_when_uses_jmespath_truth(self, value: Any, runs: bool) -> None:
        """Empty strings, lists, objects and null are false; numbers are true."""
        doc = workflow({"id": "a", "when": "input.v", "set": {"x": 1}}, output="steps.a")
        assert ((await _run(doc, {"v": value})).output is not None) is runs


class TestLimits:
    """Each bound ends the run with ok=False and an error naming the limit."""

    async def test_max_steps(self) -> None:
        """A map of many items stops at max_steps."""
        doc = workflow({"id": "m", "map": {"over": "input.xs", "steps": [
            {"id": "a", "set": {"x": 1}}]}})
        run = await _run(doc, {"xs": list(range(50))}, limits=RunLimits(max_steps=10))
        assert not run.ok and "max_steps" in (run.error or "")
        assert run.steps_executed == 10

    async def test_max_map_items(self) -> None:
        """A map over more items than allowed is refused before any item runs."""
        doc = workflow({"id": "m", "map": {"over": "input.xs", "steps": [
            {"id": "a", "set": {"x": 1}}]}})
        run = await _run(doc, {"xs": list(range(6))}, limits=RunLimits(max_map_items=5))
        assert not run.ok and "max_map_items" in (run.error or "") and run.error_step == "m"
        assert run.steps_executed == 1

    async def test_limit_is_not_caught_or_retried(self) -> None:
        """catch and retry do not swallow a limit."""
        doc = workflow({"id": "m", "retry": {"max_attempts": 3},
                        "map": {"over": "input.xs", "steps": [{"id": "a", "set": {"x": 1}}]},
                        "catch": [{"id": "c", "set": {"caught": True}}]})
        run = await _run(doc, {"xs": list(range(6))}, limits=RunLimits(max_map_items=5))
        assert not run.ok and "max_map_items" in (run.error or "")
        assert run.step("m").attempts == 1  # type: ignore[union-attr]

    async def test_wall_time(self) -> None:
        """A run longer than wall_time_s is stopped; the step in flight is marked."""
        kinds = StepKinds({"wait": lambda args, ctx: asyncio.sleep(5)})
        started = time.perf_counter()
        run = await _run(workflow({"id": "w", "custom": "wait"}), kinds=kinds,
                         limits=RunLimits(wall_time_s=0.1))
        assert time.perf_counter() - started < 1.0
        assert not run.ok and "wall_time_s" in (run.error or "") and run.error_step == "w"
        assert "wall time" in (run.step("w").error or "")  # type: ignore[union-attr]

    async def test_tokens(self) -> None:
        """Tokens past max_tokens end the run."""
        llm = FakeLLM(default="many words in this answer")
        doc = workflow({"id": "a", "llm": {"prompt": "x"}}, {"id": "b", "llm": {"prompt": "y"}})
        run = await _run(doc, llm=llm, limits=RunLimits(max_tokens=8))
        assert not run.ok and "max_tokens" in (run.error or "") and run.error_step == "b"

    async def test_cost(self) -> None:
        """Cost past max_cost_usd ends the run; the document may only tighten limits."""
        llm = FakeLLM(default="x", cost_per_call=0.4)
        doc = workflow(*({"id": f"s{i}", "llm": {"prompt": "x"}} for i in range(3)),
                       limits={"max_cost_usd": 5.0})
        run = await _run(doc, llm=llm, limits=RunLimits(max_cost_usd=1.0))
        assert not run.ok and "max_cost_usd" in (run.error or "") and run.error_step == "s2"

    async def test_document_tightens(self) -> None:
        """A document's own limits lower the interpreter's."""
        doc = workflow(*({"id": f"s{i}", "set": {"x": i}} for i in range(5)),
                       limits={"max_steps": 3})
        run = await _run(doc)
        assert not run.ok and "max_steps" in (run.error or "") and run.steps_executed == 3

    def test_limits_validated(self) -> None:
        """Nonsense limits are refused naming the field."""
        with pytest.raises(ValidationError) as info:
            RunLimits(max_steps=0)
        assert info.value.field == "limits.max_steps"
        with pytest.raises(ValidationError):
            RunLimits(wall_time_s=float("inf"))


class TestHooks:
    """Hooks run around every step; a raising hook ends the run, never the caller."""

    async def test_order_of_calls(self) -> None:
        """before_step, on_error and after_step see each step, skipped or failed."""
        seen: list[tuple[str, str]] = []

        async def after(ctx: StepContext, trace: StepTrace) -> None:
            seen.append(("after", f"{ctx.step_id}:{trace.skipped}:{trace.error}"))

        hooks = WorkflowHooks(before_step=lambda ctx: seen.append(("before", ctx.step_id)),
                              after_step=after,
                              on_error=lambda ctx, error: seen.append(("error", error)))
        doc = workflow({"id": "a", "set": {"x": 1}}, {"id": "b", "when": "`false`", "fail": "no"},
                       {"id": "c", "fail": "boom", "catch": [{"id": "d", "set": {"y": 1}}]})
        run = await _run(doc, hooks=hooks)
        assert run.ok
        assert seen == [("before", "a"), ("after", "a:False:None"), ("before", "b"),
                        ("after", "b:True:None"), ("before", "c"), ("error", "boom"),
                        ("before", "d"), ("after", "d:False:None"), ("after", "c:False:boom")]

    @pytest.mark.parametrize("which", ["before_step", "after_step", "on_error"])
    async def test_raising_hook_fails_closed(self, which: str) -> None:
        """A hook that raises stops the run with an error naming the hook."""
        def broken(*args: Any) -> None:
            raise RuntimeError("veto")

        tools = FakeTools(t=lambda: 1)
        doc = workflow({"id": "a", "fail": "x", "catch": [{"id": "c", "set": {"y": 1}}]},
                       {"id": "b", "tool": "t"})
        run = await _run(doc, tools=tools, hooks=WorkflowHooks(**{which: broken}))
        assert not run.ok and f"hook {which} failed" in (run.error or "")
        assert "veto" in (run.error or "")
        assert tools.calls == []


class TestCustomKinds:
    """Registered custom kinds run with resolved args and a context; others are refused."""

    async def test_registered_kind(self) -> None:
        """A custom kind gets resolved args and the step's context."""
        kinds = StepKinds()
        contexts: list[StepContext] = []

        @kinds.register("shout")
        async def shout(args: dict[str, Any], ctx: StepContext) -> str:
            contexts.append(ctx)
            return str(args["text"]).upper()

        doc = workflow({"id": "s", "custom": "shout", "args": {"text": "hi ${input.n}"}},
                       output="steps.s")
        run = await _run(doc, {"n": "bo"}, kinds=kinds, seed=3, tenant_id="t1")
        assert run.output == "HI BO"
        ctx = contexts[0]
        assert (ctx.step_id, ctx.kind, ctx.attempt, ctx.tenant_id) == ("s", "shout", 1, "t1")
        assert ctx.seed == derive_seed(3, "s", (), 1)

    async def test_unregistered_kind_is_refused(self) -> None:
        """A generated workflow cannot use a kind nobody registered."""
        with pytest.raises(ValidationError) as info:
            await _run(workflow({"id": "s", "custom": "exec_python", "args": {}}))
        assert info.value.field == "workflow.steps[0].custom"

    async def test_kind_errors_and_non_json(self) -> None:
        """A raising kind or one returning non-JSON fails its step."""
        kinds = StepKinds({"bad": lambda args, ctx: 1 / 0, "obj": lambda args, ctx: object()})
        run = await _run(workflow({"id": "b", "custom": "bad"}), kinds=kinds)
        assert "ZeroDivisionError" in (run.error or "")
        run = await _run(workflow({"id": "o", "custom": "obj"}), kinds=kinds)
        assert "not JSON" in (run.error or "")

    def test_registry_rules(self) -> None:
        """Built-in names, duplicates and non-identifiers cannot be registered."""
        kinds = StepKinds({"ok": lambda args, ctx: 1})
        for name in ("tool", "custom", "not ok", "ok"):
            with pytest.raises(ValidationError):
                kinds.register(name, lambda args, ctx: 1)
        assert kinds.names() == frozenset({"ok"}) and "ok" in kinds


class TestSeedsAndTrace:
    """Seeds are derived deterministically; traces round-trip through JSON."""

    def test_derive_seed_is_stable(self) -> None:
        """The same key gives the same seed; each part of the key matters."""
        base = derive_seed(1, "a", (0, 2), 1)
        assert base == derive_seed(1, "a", (0, 2), 1)
        assert len({base, derive_seed(2, "a", (0, 2), 1), derive_seed(1, "b", (0, 2), 1),
                    derive_seed(1, "a", (0, 3), 1), derive_seed(1, "a", (0, 2), 2),
                    derive_seed(1, "a", (2,), 1)}) == 6
        assert 0 <= base < 2 ** 63

    async def test_same_seed_same_calls(self) -> None:
        """Two runs with one seed make identical calls; another seed changes the seeds."""
        def roll(rng: Any) -> int:
            return int(rng.randint(1, 10**6))

        doc = workflow({"id": "m", "map": {"over": "input.xs", "steps": [
            {"id": "r", "tool": "roll"}]}}, output="steps.m")
        outputs = []
        for seed in (5, 5, 6):
            tools = FakeTools(roll=roll)
            outputs.append((await _run(doc, {"xs": [1, 2, 3]}, tools=tools, seed=seed)).output)
        assert outputs[0] == outputs[1] != outputs[2]
        assert len(set(outputs[0])) == 3  # each item has its own seed

    async def test_to_dict_round_trip(self) -> None:
        """WorkflowRun.from_dict(run.to_dict()) gives the same run."""
        run = await _run(issue_example(), {"order_id": "A", "items": [{"name": "x"}]},
                         tools=example_tools(), llm=FakeLLM(default='{"r": 1}'))
        data = json.loads(json.dumps(run.to_dict()))
        again = WorkflowRun.from_dict(data)
        assert again.to_dict() == run.to_dict()
        assert [t.id for t in again.walk()] == [t.id for t in run.walk()]

    async def test_llm_response_objects_are_accepted(self) -> None:
        """A scripted full LLMResponse is used as is (cost included)."""
        response = LLMResponse(text="hi", model="m", deployment="d", prompt_tokens=3,
                               completion_tokens=4, cost_usd=0.5, latency_s=0.0,
                               cache_hit=False, call_id="c1")
        run = await _run(workflow({"id": "a", "llm": {"prompt": "x"}}),
                         llm=FakeLLM([response]))
        assert run.tokens == 7 and run.cost_usd == 0.5


def _generated_tools() -> FakeTools:
    def flaky(rng: Any, **args: Any) -> dict[str, Any]:
        if rng.random() < 0.5:
            raise ConnectionError("flaky")
        return args

    def boom(**args: Any) -> None:
        raise RuntimeError("boom")

    return FakeTools(echo=lambda **args: args, boom=boom, flaky=flaky)


PROPERTY_LIMITS = RunLimits(max_steps=25, max_map_items=4, wall_time_s=5.0, max_tokens=400)


class TestRunProperties:
    """Runs of generated workflows are bounded, never raise, and repeat under one seed."""

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(doc=generated_workflow(), xs=st.lists(st.integers(0, 9), max_size=5),
           flag=st.booleans(), seed=st.integers(0, 2**32))
    def test_bounded_and_reproducible(self, doc: dict[str, Any], xs: list[int], flag: bool,
                                      seed: int) -> None:
        """steps_executed <= max_steps, within the wall limit, JSON trace, same seed same run."""
        kinds = StepKinds({"upper": lambda args, ctx: str(args.get("text")).upper()})

        async def once() -> WorkflowRun:
            interpreter = WorkflowInterpreter(
                _generated_tools(), llm=FakeLLM(default='{"a": "x"}'), kinds=kinds,
                limits=PROPERTY_LIMITS)
            return await interpreter.run(doc, {"x": "a", "flag": flag, "xs": xs}, seed=seed)

        first, second = asyncio.run(once()), asyncio.run(once())
        for run in (first, second):
            assert run.steps_executed <= PROPERTY_LIMITS.max_steps
            assert run.seconds < PROPERTY_LIMITS.wall_time_s + 1.0
            assert run.tokens <= PROPERTY_LIMITS.max_tokens + 50  # one answer may overshoot
            assert run.ok == (run.error is None)
            json.dumps(run.to_dict(), allow_nan=False)
            executed = [t for t in run.walk()
                        if t.kind not in ("item", "catch", "attempt") and not t.skipped]
            assert len(executed) >= run.steps_executed  # every counted step is traced
        assert (first.ok, first.output, first.error, first.error_step, first.steps_executed) == (
            second.ok, second.output, second.error, second.error_step, second.steps_executed)
