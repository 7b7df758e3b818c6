"""The workflow search: repairs, no regressions, dedup, budget, per-task Pareto, objectives."""

from __future__ import annotations

import copy
import json
import random
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from auto_dev._exceptions import ToolCallError, ValidationError
from auto_dev.abc import ToolInvoker
from auto_dev.workflows import workflow_hash
from auto_dev.workflows.interpreter import WorkflowInterpreter
from auto_dev.workflows.operators import WorkflowMutationContext, WorkflowProposal
from auto_dev.workflows.search import (
    DEFAULT_OBJECTIVES,
    NO_EXPECTED,
    TaskResult,
    WorkflowTask,
    evolve_workflow,
    load_tasks_file,
)

ORDERS = {"A1": ("shipped", 2), "A2": ("processing", 1), "A3": ("shipped", 5),
          "A4": ("processing", 3)}
#: More orders for the two-fault workflow, so that some tasks only the retry fixes.
MORE_ORDERS = {**ORDERS, "A5": ("shipped", 1), "A6": ("processing", 2), "A7": ("shipped", 3),
               "A8": ("processing", 4)}


class FakeTools(ToolInvoker):
    """In-memory tools: plain callables, called with the args as keywords and a seeded rng."""

    def __init__(self, tools: dict[str, Callable[..., Any]]) -> None:
        self.tools = tools
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def names(self) -> frozenset[str]:
        return frozenset(self.tools)

    async def invoke(self, tool: str, args: dict[str, Any], *, timeout_s: float | None,
                     seed: int) -> Any:
        self.calls.append((tool, dict(args)))
        try:
            return self.tools[tool](random.Random(seed), **args)
        except Exception as exc:  # a tool that raises is a failed call, as in the sandbox
            raise ToolCallError(tool, f"{tool!r} failed: {exc}") from exc


def get_order(rng: random.Random, order_id: str) -> dict[str, Any]:
    status, items = ORDERS[order_id]
    return {"id": order_id, "status": status, "items": items}


def get_order_v1(rng: random.Random, order_id: str) -> dict[str, Any]:
    status, items = ORDERS[order_id]
    return {"ref": order_id, "state": status, "count": items}


def flaky_order(rng: random.Random, order_id: str) -> dict[str, Any]:
    if rng.random() < 0.4:
        raise TimeoutError("order service did not answer")
    status, items = MORE_ORDERS[order_id]
    return {"id": order_id, "status": status, "items": items}


def summarize(rng: random.Random, order: dict[str, Any]) -> str:
    return f"{order.get('id', '?')}: {order.get('status', 'unknown')}"


def start_return(rng: random.Random, order: dict[str, Any]) -> str:
    return f"return {order['id']}"


def cancel(rng: random.Random, order_id: str) -> str:
    return f"cancel {order_id}"


TOOLS = {"get_order": get_order, "get_order_v1": get_order_v1, "flaky_order": flaky_order,
         "summarize": summarize, "start_return": start_return, "cancel": cancel}


def summary_workflow(tool: str = "get_order_v1") -> dict[str, Any]:
    return {"name": "summary", "input": {"required": ["order_id"]},
            "steps": [{"id": "order", "tool": tool, "args": {"order_id": "${input.order_id}"}},
                      {"id": "line", "tool": "summarize", "args": {"order": "${steps.order}"}}],
            "output": "steps.line"}


def summary_tasks() -> list[WorkflowTask]:
    return [WorkflowTask({"order_id": oid}, f"{oid}: {status}")
            for oid, (status, _) in ORDERS.items()]


def route_workflow() -> dict[str, Any]:
    """Two faults: a flaky tool without retry and a branch on the wrong field."""
    return {"name": "route", "input": {"required": ["order_id"]},
            "steps": [
                {"id": "order", "tool": "flaky_order", "args": {"order_id": "${input.order_id}"}},
                {"id": "route", "switch": [
                    {"when": "steps.order.items == 'shipped'",
                     "steps": [{"id": "ret", "tool": "start_return",
                                "args": {"order": "${steps.order}"}}]},
                    {"otherwise": [{"id": "cnl", "tool": "cancel",
                                    "args": {"order_id": "${input.order_id}"}}]}]}],
            "output": "steps.route"}


def route_tasks() -> list[WorkflowTask]:
    return [WorkflowTask({"order_id": oid},
                         f"return {oid}" if status == "shipped" else f"cancel {oid}")
            for oid, (status, _) in MORE_ORDERS.items()]


def route_tools() -> FakeTools:
    """The two-fault workflow's tools: no reliable way to get an order but retrying."""
    return FakeTools({name: TOOLS[name] for name in ("flaky_order", "start_return", "cancel")})


def interpreter(tools: FakeTools | None = None) -> WorkflowInterpreter:
    return WorkflowInterpreter(tools or FakeTools(TOOLS))


class Scripted:
    """An operator that proposes the given definitions, in order, once each call."""

    name = "scripted"

    def __init__(self, *definitions: dict[str, Any]) -> None:
        self.definitions = definitions
        self.contexts: list[WorkflowMutationContext] = []

    def propose(self, doc: dict[str, Any], context: WorkflowMutationContext
                ) -> list[WorkflowProposal]:
        self.contexts.append(context)
        return [WorkflowProposal(self.name, copy.deepcopy(d), f"scripted #{i}")
                for i, d in enumerate(self.definitions)]


class CountingInterpreter(WorkflowInterpreter):
    """Counts the runs of each definition (by hash)."""

    def __init__(self, tools: FakeTools) -> None:
        super().__init__(tools)
        self.runs: Counter[str] = Counter()

    async def run(self, doc: Any, input: Any, *, seed: int = 0) -> Any:
        self.runs[workflow_hash(doc)] += 1
        return await super().run(doc, input, seed=seed)


class TestRepair:
    """The default offline operators repair small broken workflows, the same way per seed."""

    async def test_wrong_tool_is_switched(self) -> None:
        """A workflow calling the retired tool is repaired by switching to the current one."""
        result = await evolve_workflow(summary_workflow(), summary_tasks(),
                                       interpreter=interpreter(), budget=60, seed=1)
        assert result.original_passed == 0
        assert result.solved and result.improved and result.stop_reason == "solved"
        assert result.best["steps"][0]["tool"] == "get_order"
        assert all(r.passed for r in result.tasks)
        assert 0 < result.evaluations <= 60

    async def test_two_faults_are_fixed_in_two_kept_steps(self) -> None:
        """A flaky tool without retry plus a wrong branch field: two kept edits repair it."""
        result = await evolve_workflow(route_workflow(), route_tasks(),
                                       interpreter=interpreter(route_tools()), budget=200, seed=2)
        assert 0 < result.original_passed < result.total
        assert result.solved and result.stop_reason == "solved", result.lineage
        assert len(result.lineage) >= 2  # a kept stepping stone, then the repair
        assert result.best["steps"][1]["switch"][0]["when"] == "steps.order.status == 'shipped'"

    async def test_same_seed_same_search(self) -> None:
        """Two searches with one seed propose, keep and report the same things."""
        # Latency is wall-clock time: left out so that a loaded machine cannot change a choice.
        steady = DEFAULT_OBJECTIVES[:2]
        first = await evolve_workflow(route_workflow(), route_tasks(),
                                      interpreter=interpreter(route_tools()), budget=200, seed=5,
                                      objectives=steady)
        second = await evolve_workflow(route_workflow(), route_tasks(),
                                       interpreter=interpreter(route_tools()), budget=200, seed=5,
                                       objectives=steady)
        assert first.best == second.best
        assert first.lineage == second.lineage
        assert first.evaluations == second.evaluations
        assert first.counts == second.counts

    async def test_already_passing_spends_nothing(self) -> None:
        """A workflow that solves every task is returned as it is, with no evaluation."""
        result = await evolve_workflow(summary_workflow("get_order"), summary_tasks(),
                                       interpreter=interpreter(), budget=50)
        assert result.stop_reason == "already_passing" and result.evaluations == 0
        assert result.best == summary_workflow("get_order") and not result.improved


class TestSelection:
    """Only variants that break nothing are kept; the front keeps unique solvers."""

    async def test_regressing_variant_is_not_kept(self) -> None:
        """A variant that fixes tasks but breaks one its parent solved is never the best."""
        tools = dict(TOOLS, half=lambda rng, order_id: (
            get_order(rng, order_id) if order_id in ("A1", "A2") else {"id": order_id}))
        doc = summary_workflow("get_order_v1")
        tasks = [*summary_tasks(), WorkflowTask({"order_id": "A9"}, "?: unknown")]
        tools["get_order_v1"] = lambda rng, order_id: (
            {"ref": order_id} if order_id == "A9" else get_order_v1(rng, order_id))
        tools["get_order"] = lambda rng, order_id: get_order(rng, order_id)  # A9: KeyError
        fixes_but_breaks = summary_workflow("get_order")
        result = await evolve_workflow(doc, tasks, interpreter=interpreter(FakeTools(tools)),
                                       operators=[Scripted(fixes_but_breaks)], budget=10)
        assert result.original_passed == 1  # only A9
        assert result.counts.get("regressed") == 1
        assert result.best == doc and not result.improved
        assert all(4 in m.passed for m in result.front)

    async def test_regression_stops_in_the_quick_stage(self) -> None:
        """A variant breaking a solved task is stopped before running every task."""
        tools = FakeTools(TOOLS)
        counting = CountingInterpreter(tools)
        doc = summary_workflow("get_order")
        tasks = [*summary_tasks(), *(WorkflowTask({"order_id": oid}, "never")
                                     for oid in ORDERS)]
        breaks = summary_workflow("get_order_v1")
        result = await evolve_workflow(doc, tasks, interpreter=counting,
                                       operators=[Scripted(breaks)], budget=5)
        assert result.counts.get("regressed") == 1
        assert 0 < counting.runs[workflow_hash(breaks)] < len(tasks)

    async def test_a_neutral_edit_can_lead_to_the_fix(self) -> None:
        """A retry too small to fix anything is kept as a neutral parent; widening it fixes."""
        from auto_dev.workflows.interpreter import derive_seed
        from auto_dev.workflows.operators import AddRetry, WidenRetry

        def slow_start(rng: random.Random, order_id: str) -> dict[str, Any]:
            # Answers from the fourth attempt on: which attempt this is, from its seed.
            task_seed, drawn = list(ORDERS).index(order_id), rng.random()
            attempt = next(a for a in range(1, 11)
                           if random.Random(derive_seed(task_seed, "order", (), a)).random()
                           == drawn)
            if attempt < 4:
                raise TimeoutError(f"attempt {attempt} timed out")
            return get_order(rng, order_id)

        result = await evolve_workflow(
            summary_workflow("slow_start"), summary_tasks()[:2],
            interpreter=interpreter(FakeTools(dict(TOOLS, slow_start=slow_start))),
            operators=[AddRetry(), WidenRetry()], budget=20)
        assert result.solved
        assert [step.split(":")[0] for step in result.lineage] == ["add_retry", "widen_retry"]
        assert result.counts["no_gain"] >= 1

    async def test_each_unique_solver_stays_on_the_front(self) -> None:
        """Two variants solving different tasks are both on the front, however costly."""
        tools = dict(TOOLS, only_a1=lambda rng, order_id: get_order(rng, "A1"),
                     only_a2=lambda rng, order_id: get_order(rng, "A2"))
        tasks = [*summary_tasks()[:2], WorkflowTask({"order_id": "A3"}, "impossible")]
        solves_a1 = summary_workflow("only_a1")
        solves_a2 = summary_workflow("only_a2")
        solves_a2["steps"].insert(0, {"id": "pad", "set": {"x": 1}})  # more steps: costlier
        # Without latency: wall time on a loaded machine could make the do-nothing original
        # "faster" by more than the noise margin, and so not dominated; tasks decide here.
        steady = [o for o in DEFAULT_OBJECTIVES if o.name != "latency_s"]
        result = await evolve_workflow(
            summary_workflow("get_order_v1"), tasks,
            interpreter=interpreter(FakeTools(tools)),
            operators=[Scripted(solves_a1, solves_a2)], budget=10, objectives=steady)
        front = {m.digest: set(m.passed) for m in result.front}
        assert front[workflow_hash(solves_a1)] == {0}
        assert front[workflow_hash(solves_a2)] == {1}
        assert workflow_hash(summary_workflow("get_order_v1")) not in front  # dominated

    @pytest.mark.parametrize("prefer_v2", [False, True])
    async def test_custom_objective_decides_between_equal_solvers(self, prefer_v2: bool
                                                                  ) -> None:
        """A caller's objective is measured on the task results and picks the best of two
        variants that solve the same tasks (without it, the first one found wins)."""
        tools = dict(TOOLS, get_order_v2=lambda rng, order_id: {**get_order(rng, order_id),
                                                                 "source": "v2"})
        tasks = [*summary_tasks(), WorkflowTask({"order_id": "A1"}, "unsolvable")]
        seen: list[Sequence[TaskResult]] = []

        def v1_or_v2(results: Sequence[TaskResult]) -> float:
            seen.append(results)
            v2 = any((trace := r.run.step("order")) is not None
                     and isinstance(trace.output, dict) and trace.output.get("source") == "v2"
                     for r in results)
            return 0.0 if v2 == prefer_v2 else 1.0

        operator = Scripted(summary_workflow("get_order"), summary_workflow("get_order_v2"))
        result = await evolve_workflow(summary_workflow("get_order_v1"), tasks,
                                       interpreter=interpreter(FakeTools(tools)),
                                       operators=[operator], objectives={"tool": v1_or_v2},
                                       budget=10)
        assert result.passed == len(tasks) - 1 and result.evaluations == 2
        assert result.best["steps"][0]["tool"] == ("get_order_v2" if prefer_v2 else "get_order")
        assert set(result.scores) == {"tool"} and result.scores["tool"] == 0.0
        assert len(result.front) == 1  # the other is dominated on the caller's objective
        assert seen and all(isinstance(r, TaskResult) for r in seen[0])


class TestModelOperators:
    """Model operators are asked when given, their answers evaluated like any other edit."""

    async def test_reflective_prompt_rewrite_repairs_a_prompt(self) -> None:
        """A prompt missing an instruction is rewritten from the failing traces; the cost of
        the steps and of the operator's call is reported."""
        from auto_dev.testing import FakeLLM
        from auto_dev.workflows.operators import ReflectivePromptRewrite

        def step_model(messages: list[dict[str, str]]) -> str:
            prompt = messages[-1]["content"]
            topic = prompt.split("about ")[1].split(".")[0]
            return topic.upper() if "capitals" in prompt else topic

        doc = {"name": "shout", "input": {"required": ["topic"]},
               "steps": [{"id": "say", "llm": {"prompt": "Write about ${input.topic}.",
                                               "output": "text"}}],
               "output": "steps.say"}
        tasks = [WorkflowTask({"topic": t}, t.upper()) for t in ("refunds", "delivery")]
        steps_llm = FakeLLM(default=step_model, cost_per_call=0.001)
        operator_llm = FakeLLM(["The prompt never asks for capitals.\n```prompt\n"
                                "Write about ${input.topic}. Use capitals only.\n```"],
                               cost_per_call=0.01)
        rewrite = ReflectivePromptRewrite(operator_llm)
        result = await evolve_workflow(
            doc, tasks, interpreter=WorkflowInterpreter(FakeTools({}), llm=steps_llm),
            operators=[], model_operators=[rewrite], budget=5)
        assert result.solved and result.lineage[0].startswith("reflective_prompt_rewrite")
        assert "capitals" in result.best["steps"][0]["llm"]["prompt"]
        assert len(operator_llm.calls) == 1
        assert "refunds" in operator_llm.prompts[0]  # the failing runs were shown
        assert result.cost_usd == pytest.approx(0.01 + 0.001 * len(steps_llm.calls))


class TestBudgetAndDedup:
    """Evaluations never exceed the budget and no definition is evaluated twice."""

    async def test_duplicates_are_evaluated_once(self) -> None:
        """The same edit proposed again (and the original itself) runs only once."""
        tools = FakeTools(TOOLS)
        counting = CountingInterpreter(tools)
        doc = summary_workflow("get_order_v1")
        useless = summary_workflow("get_order_v1")
        useless["steps"][1]["timeout_s"] = 5
        operator = Scripted(useless, copy.deepcopy(useless), doc)
        result = await evolve_workflow(doc, summary_tasks(), interpreter=counting,
                                       operators=[operator], budget=20)
        assert result.evaluations == 1
        assert result.counts["duplicates"] >= 2
        assert counting.runs[workflow_hash(doc)] == len(summary_tasks())
        assert result.stop_reason == "exhausted"

    async def test_budget_is_respected(self) -> None:
        """With endless useless proposals the search stops after exactly ``budget``."""

        class Endless:
            name = "endless"
            n = 0

            def propose(self, doc: dict[str, Any], context: WorkflowMutationContext
                        ) -> list[WorkflowProposal]:
                out = []
                for _ in range(3):
                    self.n += 1
                    variant = copy.deepcopy(doc)
                    variant["steps"][1]["timeout_s"] = self.n
                    out.append(WorkflowProposal(self.name, variant, f"timeout {self.n}"))
                return out

        result = await evolve_workflow(summary_workflow(), summary_tasks(),
                                       interpreter=interpreter(), operators=[Endless()],
                                       budget=7)
        assert result.evaluations == 7 and result.stop_reason == "budget"

    async def test_operators_see_failures_and_state_paths(self) -> None:
        """The context holds the failing runs (with input and expected) and the paths seen."""
        operator = Scripted()
        await evolve_workflow(summary_workflow(), summary_tasks(), interpreter=interpreter(),
                              operators=[operator], budget=3)
        context = operator.contexts[0]
        assert len(context.failures) == len(ORDERS)
        failure = context.failures[0]
        assert failure["input"] == {"order_id": "A1"} and failure["expected"] == "A1: shipped"
        assert "trace" in failure and failure["ok"] is True
        assert {"input.order_id", "steps.order", "steps.order.state"} <= set(
            context.state_paths)
        assert set(context.tools) == set(TOOLS)


class TestTasks:
    """Tasks load from JSON with errors naming the element and field."""

    def test_load_round_trip(self, tmp_path: Path) -> None:
        """Tasks with and without expected (null is a real expected value) load as given."""
        path = tmp_path / "tasks.json"
        path.write_text(json.dumps([{"input": {"a": 1}, "expected": None},
                                    {"input": {"a": 2}, "name": "smoke"}]))
        first, second = load_tasks_file(path)
        assert first.has_expected and first.expected is None
        assert not second.has_expected and second.expected is NO_EXPECTED
        assert second.name == "smoke" and second.to_dict() == {"input": {"a": 2},
                                                               "name": "smoke"}

    @pytest.mark.parametrize(("data", "field"), [
        ({"input": {}}, "tasks"),
        ([], "tasks"),
        ([{"input": {}}, {"input": [1]}], "tasks[1].input"),
        ([{"expected": 1}], "tasks[0].input"),
        ([{"input": {}, "extra": 1}], "tasks[0].extra"),
        ([{"input": {}, "name": 3}], "tasks[0].name"),
        ([{"input": {}}, 5], "tasks[1]"),
    ])
    def test_bad_tasks_name_the_field(self, tmp_path: Path, data: Any, field: str) -> None:
        """Each malformed task file raises a ValidationError naming where it is wrong."""
        path = tmp_path / "tasks.json"
        path.write_text(json.dumps(data))
        with pytest.raises(ValidationError) as info:
            load_tasks_file(path)
        assert info.value.field == field

    def test_missing_and_unparsable_files(self, tmp_path: Path) -> None:
        """A missing file or broken JSON names ``tasks`` and says what happened."""
        with pytest.raises(ValidationError, match="does not exist"):
            load_tasks_file(tmp_path / "nope.json")
        bad = tmp_path / "bad.json"
        bad.write_text("[{")
        with pytest.raises(ValidationError, match="not valid JSON") as info:
            load_tasks_file(bad)
        assert info.value.field == "tasks"

    async def test_missing_required_input_is_refused_before_running(self) -> None:
        """A task without an input the workflow requires names ``tasks[i].input.<field>``."""
        tools = FakeTools(TOOLS)
        with pytest.raises(ValidationError) as info:
            await evolve_workflow(summary_workflow(), [*summary_tasks(), WorkflowTask({})],
                                  interpreter=interpreter(tools), budget=5)
        assert info.value.field == "tasks[4].input.order_id"
        assert tools.calls == []

    async def test_input_of_the_wrong_type_names_the_task(self) -> None:
        """An input the workflow's ``input.properties`` refuses names ``tasks[i].input...``."""
        doc = summary_workflow()
        doc["input"]["properties"] = {"order_id": {"type": "string"}}
        with pytest.raises(ValidationError) as info:
            await evolve_workflow(doc, [*summary_tasks(), WorkflowTask({"order_id": 7})],
                                  interpreter=interpreter(), budget=5)
        assert info.value.field == "tasks[4].input.order_id"

    async def test_variant_refusing_the_inputs_fails_its_tasks(self) -> None:
        """A variant requiring an input no task has fails those tasks; the search goes on."""
        demanding = summary_workflow("get_order")
        demanding["input"]["required"].append("customer_id")
        result = await evolve_workflow(summary_workflow(), summary_tasks(),
                                       interpreter=interpreter(),
                                       operators=[Scripted(demanding, summary_workflow(
                                           "get_order"))], budget=5)
        assert result.solved and result.best == summary_workflow("get_order")
        assert result.counts["no_gain"] == 1

    async def test_task_without_expected_passes_when_the_run_succeeds(self) -> None:
        """No expected output: an ok run passes, a failed run does not."""
        tasks = [WorkflowTask({"order_id": "A1"}), WorkflowTask({"order_id": "missing"})]
        result = await evolve_workflow(summary_workflow("get_order"), tasks,
                                       interpreter=interpreter(), operators=[Scripted()],
                                       budget=1)
        assert [r.passed for r in result.tasks] == [True, False]

    async def test_invalid_workflow_is_refused(self) -> None:
        """A workflow naming an unknown tool is a ValidationError naming the step."""
        doc = summary_workflow("no_such_tool")
        with pytest.raises(ValidationError) as info:
            await evolve_workflow(doc, summary_tasks(), interpreter=interpreter(), budget=5)
        assert info.value.field.startswith("workflow.steps[0]")
