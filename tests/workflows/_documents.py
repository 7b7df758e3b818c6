"""Workflow documents shared by the diff and operator tests: the issue's example and a
hypothesis strategy for random well-formed documents (unique ids, every kind, nested blocks)."""

from __future__ import annotations

import copy
import itertools
from typing import Any

from hypothesis import strategies as st

from auto_dev.workflows import walk_steps

TOOLS = ("get_order", "get_order_v2", "start_return", "cancel_order")

REFUND: dict[str, Any] = {
    "name": "refund_request",
    "description": "Refund or cancel an order.",
    "input": {"required": ["order_id"]},
    "steps": [
        {"id": "order", "tool": "get_order", "args": {"order_id": "${input.order_id}"},
         "retry": {"max_attempts": 3, "backoff_s": 0.1, "on": ["error"]}, "timeout_s": 5},
        {"id": "route", "switch": [
            {"when": "steps.order.status == 'shipped'",
             "steps": [{"id": "ret", "tool": "start_return", "args": {"order": "${steps.order}"}}]},
            {"otherwise": [{"id": "cancel", "tool": "cancel_order",
                            "args": {"order_id": "${input.order_id}"}}]}]},
        {"id": "notes", "map": {"over": "input.items", "as": "item", "max_concurrency": 4,
                                "steps": [{"id": "n", "llm": {
                                    "prompt": "One line about ${item.name}.",
                                    "output": "text"}}]}},
        {"id": "reply", "llm": {"system": "You write short replies.",
                                "prompt": "Order: ${steps.order}", "output": "json"},
         "catch": [{"id": "fallback", "set": {"reply": "We will get back to you."}}]},
    ],
    "output": "steps.reply",
}

#: A failed run of REFUND: the order was shipped, but the switch tested ``status``.
CANCEL_FAILED: dict[str, Any] = {
    "ok": False, "output": None, "error": "cannot cancel a shipped order", "error_step": "cancel",
    "trace": [
        {"id": "order", "kind": "tool", "input": {"order_id": 7}, "error": None,
         "output": {"id": 7, "status": "open", "state": "shipped"}, "skipped": False,
         "children": []},
        {"id": "route", "kind": "switch", "input": None, "output": None, "skipped": False,
         "error": "cannot cancel a shipped order",
         "children": [{"id": "cancel", "kind": "tool", "input": {"order_id": 7}, "output": None,
                       "error": "cannot cancel a shipped order", "skipped": False,
                       "children": []}]},
    ],
}


def refund() -> dict[str, Any]:
    """A fresh copy of the issue's example (tests may edit it)."""
    return copy.deepcopy(REFUND)


_CONDITIONS = st.sampled_from([
    "steps.s0.status == 'shipped'", "input.n > `3`", "vars.flag", "input.kind != 'a'",
    "length(input.items) >= `1`",
])
_ARG_VALUES = st.one_of(
    st.integers(-5, 50), st.sampled_from(["${input.x}", "${input.n}", "fast", "slow", True]),
)


@st.composite
def workflow_documents(draw: st.DrawFn, max_depth: int = 2) -> dict[str, Any]:
    """A random well-formed workflow: unique ids, every built-in kind, nested blocks."""
    counter = itertools.count()

    def steps(depth: int, size: tuple[int, int]) -> list[dict[str, Any]]:
        return [step(depth) for _ in range(draw(st.integers(*size)))]

    def step(depth: int) -> dict[str, Any]:
        kinds = ["tool", "tool", "llm", "set", "fail"]
        if depth < max_depth:
            kinds += ["switch", "map"]
        kind = draw(st.sampled_from(kinds))
        out: dict[str, Any] = {"id": f"s{next(counter)}"}
        if kind == "tool":
            out["tool"] = draw(st.sampled_from(TOOLS))
            out["args"] = draw(st.dictionaries(st.sampled_from(["x", "n", "mode"]), _ARG_VALUES,
                                               max_size=2))
        elif kind == "llm":
            out["llm"] = {"prompt": "Say ${input.x}", "output": draw(st.sampled_from(
                ["text", "json"]))}
        elif kind == "set":
            out["set"] = {"flag": draw(_ARG_VALUES)}
        elif kind == "fail":
            out["fail"] = "stop"
        elif kind == "switch":
            branches: list[dict[str, Any]] = [
                {"when": draw(_CONDITIONS), "steps": steps(depth + 1, (1, 2))}
                for _ in range(draw(st.integers(1, 2)))]
            if draw(st.booleans()):
                branches.append({"otherwise": steps(depth + 1, (1, 2))})
            out["switch"] = branches
        else:
            out["map"] = {"over": "input.items", "as": "item", "steps": steps(depth + 1, (1, 2))}
        if draw(st.booleans()):
            out["when"] = draw(_CONDITIONS)
        if kind in ("tool", "llm") and draw(st.booleans()):
            out["retry"] = {"max_attempts": draw(st.integers(1, 10)), "backoff_s": 0.1,
                            "on": draw(st.sampled_from([["error"], ["error", "timeout"]]))}
        if draw(st.booleans()):
            out["timeout_s"] = draw(st.sampled_from([1, 2.5, 5]))
        if depth < max_depth and draw(st.booleans()):
            out["catch"] = steps(depth + 1, (1, 2))
        return out

    doc: dict[str, Any] = {"name": "random", "input": {"required": ["x"]},
                           "steps": steps(0, (1, 4))}
    if draw(st.booleans()):
        doc["output"] = "steps.s0"
    return doc


def failures_for(doc: dict[str, Any], picks: list[int]) -> list[dict[str, Any]]:
    """Failed runs whose traces name the steps at the ``picks`` positions of ``doc``."""
    ids = [loc.step["id"] for loc in walk_steps(doc)]
    trace = [{"id": ids[i % len(ids)], "kind": "tool", "input": None,
              "output": {"status": "open", "state": "shipped"}, "error": "boom",
              "skipped": False, "children": []} for i in picks]
    return [{"ok": False, "output": None, "error": "boom", "error_step": None, "trace": trace}]
