"""The search's own operator: re-pointing a map's list and the workflow's output."""

from __future__ import annotations

import random
from typing import Any

from auto_dev.workflows._ops_references import RepointReference
from auto_dev.workflows.operators import WorkflowMutationContext


def cart_workflow() -> dict[str, Any]:
    return {"name": "cart", "input": {"required": ["cart_id"]},
            "steps": [{"id": "cart", "tool": "get_cart", "args": {"id": "${input.cart_id}"}},
                      {"id": "prices", "map": {"over": "input.lines", "as": "item", "steps": [
                          {"id": "price", "tool": "price", "args": {"line": "${item}"}}]}},
                      {"id": "total", "tool": "add", "args": {"xs": "${steps.prices}"}}],
            "output": "steps.prices"}


def failure() -> dict[str, Any]:
    """A failed run whose trace shows the cart's lines (a list) and its id (a string)."""
    return {"ok": False, "output": None, "error": "map over null", "error_step": "prices",
            "input": {"cart_id": "B1"},
            "trace": [{"id": "cart", "kind": "tool", "output": {"id": "B1", "lines": [1, 2]},
                       "error": None, "skipped": False, "children": []},
                      {"id": "prices", "kind": "map", "output": None, "error": "not a list",
                       "skipped": False, "children": []}]}


class TestRepointReference:
    """Proposals re-point a map's ``over`` (lists first) and the ``output`` (later steps first)."""

    def test_map_over_a_list_seen_in_traces_comes_first(self) -> None:
        """The first map proposal iterates over the list the cart step returned."""
        context = WorkflowMutationContext(
            tools=["get_cart", "price", "add"], failures=[failure()], rng=random.Random(0),
            state_paths=["input.cart_id", "steps.cart", "steps.cart.lines", "steps.cart.id"])
        operator = RepointReference()
        operator.max_proposals = 50
        proposals = operator.propose(cart_workflow(), context)
        overs = [p.definition["steps"][1]["map"]["over"] for p in proposals
                 if p.definition["steps"][1]["map"]["over"] != "input.lines"]
        assert overs and overs[0] == "steps.cart.lines"
        assert all(p.operator == "repoint_reference" for p in proposals)

    def test_output_proposals_never_repeat_the_current_one(self) -> None:
        """Outputs proposed are other paths, the last step's output among them."""
        context = WorkflowMutationContext(failures=[failure()], rng=random.Random(1),
                                          state_paths=["steps.cart"])
        operator = RepointReference()
        operator.max_proposals = 50
        doc = cart_workflow()
        outputs = [p.definition["output"] for p in operator.propose(doc, context)
                   if p.definition["steps"] == doc["steps"]]
        assert "steps.total" in outputs and "steps.prices" not in outputs
        assert doc["output"] == "steps.prices"  # the input document is untouched
