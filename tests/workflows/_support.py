"""Shared by the workflow tests: an in-memory ToolInvoker, the issue's example document and
hypothesis strategies that generate workflow documents (valid and mangled)."""

from __future__ import annotations

import asyncio
import copy
import inspect
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from auto_dev._exceptions import ToolCallError, ToolTimeoutError
from auto_dev.abc import ToolInvoker
from auto_dev.workflows import walk_steps


@dataclass(frozen=True)
class Call:
    """One call the fake received."""

    tool: str
    args: dict[str, Any]
    timeout_s: float | None
    seed: int


class FakeTools(ToolInvoker):
    """Tools as Python callables, run in-process (tests only: never for candidate code).

    A tool function may take a ``rng`` keyword: it gets a ``random.Random(seed)``, as a tool in
    the sandbox gets a seeded ``random``. Raising ``TimeoutError`` becomes ToolTimeoutError,
    any other exception ToolCallError, as the sandbox invoker reports them.
    """

    def __init__(self, **tools: Callable[..., Any]) -> None:
        self.tools = tools
        self.calls: list[Call] = []

    def names(self) -> frozenset[str]:
        return frozenset(self.tools)

    async def invoke(self, tool: str, args: dict[str, Any], *, timeout_s: float | None,
                     seed: int) -> Any:
        self.calls.append(Call(tool, copy.deepcopy(args), timeout_s, seed))
        fn = self.tools[tool]
        kwargs = dict(args)
        if "rng" in inspect.signature(fn).parameters:
            kwargs["rng"] = random.Random(seed)
        try:
            result = fn(**kwargs)
            if inspect.isawaitable(result):
                result = await result
        except TimeoutError as exc:
            raise ToolTimeoutError(tool, f"{tool!r} timed out: {exc}") from exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise ToolCallError(tool, f"{tool!r} failed: {type(exc).__name__}: {exc}") from exc
        return result

    def called(self, tool: str) -> list[Call]:
        return [c for c in self.calls if c.tool == tool]


def issue_example() -> dict[str, Any]:
    """The workflow of issue 8, verbatim."""
    return {
        "name": "refund_request", "description": "...", "input": {"required": ["order_id"]},
        "steps": [
            {"id": "order", "tool": "get_order", "args": {"order_id": "${input.order_id}"},
             "retry": {"max_attempts": 3, "backoff_s": 0.1, "on": ["error", "timeout"]},
             "timeout_s": 5},
            {"id": "route", "switch": [
                {"when": "steps.order.status == 'shipped'",
                 "steps": [{"id": "ret", "tool": "start_return",
                            "args": {"order": "${steps.order}"}}]},
                {"otherwise": [{"id": "cancel", "tool": "cancel_order",
                                "args": {"order_id": "${input.order_id}"}}]}]},
            {"id": "notes", "map": {"over": "input.items", "as": "item", "max_concurrency": 4,
                                    "steps": [{"id": "n", "llm": {
                                        "prompt": "One line about ${item.name}.",
                                        "output": "text"}}]}},
            {"id": "reply", "llm": {"system": "You write short replies.",
                                    "prompt": "Order: ${steps.order}", "output": "json"},
             "catch": [{"id": "fallback", "set": {"reply": "We will get back to you."}}]}],
        "output": "steps.reply",
    }


def example_tools() -> FakeTools:
    return FakeTools(
        get_order=lambda order_id: {"id": order_id, "status": "shipped"},
        start_return=lambda order: {"returned": order["id"]},
        cancel_order=lambda order_id: {"cancelled": order_id},
    )


def workflow(*steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A document named ``t`` with ``steps``."""
    return {"name": "t", "steps": list(steps), **extra}


# -- hypothesis strategies: generated workflow documents -----------------------------------------

EXPRESSIONS = ["input.x", "input.flag", "vars.a", "steps.s0", "length(input.xs) > `1`", "item",
               "input.xs[0]", "`true`", "`false`", "input.x == 'a'", "steps.s1.a", "error.step"]
TEXTS = ["a", "${input.x}", "x ${item} y", "${vars.a}", "$${lit}", "${steps.s0}", "${input.xs}"]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(TEXTS),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["a", "b", "c"]), inner, max_size=3),
    max_leaves=4)
TOOL_NAMES = ("echo", "boom", "flaky")


@st.composite
def generated_step(draw: st.DrawFn, depth: int) -> dict[str, Any]:
    """One step of any kind with optional when/retry/timeout/catch (id assigned later)."""
    kinds = ["set", "fail", "tool", "custom", "llm"] + (["switch", "map"] if depth < 2 else [])
    kind = draw(st.sampled_from(kinds))
    step: dict[str, Any] = {"id": "pending"}
    if kind == "set":
        step["set"] = draw(st.dictionaries(st.sampled_from(["a", "b"]), JSON, min_size=1))
    elif kind == "fail":
        step["fail"] = draw(st.sampled_from(TEXTS))
    elif kind == "tool":
        step["tool"] = draw(st.sampled_from(TOOL_NAMES))
        step["args"] = draw(st.dictionaries(st.sampled_from(["a", "b"]), JSON, max_size=2))
    elif kind == "custom":
        step["custom"] = "upper"
        step["args"] = {"text": draw(st.sampled_from(TEXTS))}
    elif kind == "llm":
        step["llm"] = {"prompt": draw(st.sampled_from(TEXTS)),
                       "output": draw(st.sampled_from(["text", "json"]))}
    elif kind == "switch":
        branches: list[dict[str, Any]] = [
            {"when": draw(st.sampled_from(EXPRESSIONS)), "steps": draw(generated_block(depth + 1))}
            for _ in range(draw(st.integers(1, 2)))]
        if draw(st.booleans()):
            branches.append({"otherwise": draw(generated_block(depth + 1))})
        step["switch"] = branches
    else:
        step["map"] = {"over": draw(st.sampled_from(["input.xs", "input.x", "vars.a"])),
                       "max_concurrency": draw(st.integers(1, 3)),
                       "steps": draw(generated_block(depth + 1))}
    if draw(st.booleans()):
        step["when"] = draw(st.sampled_from(EXPRESSIONS))
    if draw(st.booleans()):
        step["retry"] = {"max_attempts": draw(st.integers(1, 3)),
                         "backoff_s": draw(st.sampled_from([0, 0.001])),
                         "on": draw(st.sampled_from([["error"], ["timeout"],
                                                     ["error", "timeout"]]))}
    if draw(st.booleans()):
        step["timeout_s"] = draw(st.sampled_from([0.5, 1]))
    if depth < 2 and draw(st.integers(0, 3)) == 0:
        step["catch"] = draw(generated_block(depth + 1))
    return step


@st.composite
def generated_block(draw: st.DrawFn, depth: int) -> list[dict[str, Any]]:
    return draw(st.lists(generated_step(depth), min_size=1, max_size=3))


@st.composite
def generated_workflow(draw: st.DrawFn) -> dict[str, Any]:
    """A valid document for the tools echo, boom and flaky and the custom kind upper."""
    doc: dict[str, Any] = {"name": "generated", "steps": draw(generated_block(0))}
    for index, location in enumerate(walk_steps(doc)):
        location.step["id"] = f"s{index}"
    if draw(st.booleans()):
        doc["output"] = draw(st.sampled_from(EXPRESSIONS))
    return doc


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*path, index))
    return found


@st.composite
def mangled_workflow(draw: st.DrawFn) -> Any:
    """A generated document with one to three random edits: replaced, deleted or added parts."""
    doc: Any = draw(generated_workflow())
    wild = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(
        max_size=8), lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(max_size=6), inner, max_size=3), max_leaves=5)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        if not path:
            doc = draw(wild) if draw(st.integers(0, 9)) == 0 else doc
            continue
        parent: Any = doc
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(wild | st.sampled_from(["${", "a ==", "s0", "echo"]))
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(["id", "tool", "catch", "when", "retry", "extra"]))] = \
                draw(wild)
        else:
            parent.append(draw(wild))
    return doc
