"""Tests for the workflow document helpers: walking nested steps, paths and hashing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from auto_dev.workflows import (
    canonical_json,
    find_step,
    format_path,
    step_kind,
    walk_steps,
    workflow_hash,
)

NESTED = {
    "name": "refund",
    "steps": [
        {"id": "order", "tool": "get_order", "args": {"order_id": "${input.order_id}"}},
        {"id": "route", "switch": [
            {"when": "steps.order.status == 'shipped'", "steps": [{"id": "ret", "tool": "ret"}]},
            {"otherwise": [{"id": "cancel", "fail": "no"}]}],
         "catch": [{"id": "fallback", "set": {"reply": "later"}}]},
        {"id": "notes", "map": {"over": "input.items", "as": "item",
                                "steps": [{"id": "n", "custom": "shout", "args": {}}]}},
    ],
}


class TestWalkSteps:
    """walk_steps visits every step once, parents before children, with its depth."""

    def test_document_order_and_depth(self) -> None:
        """Nested switch branches, otherwise, catch and map bodies are all visited."""
        seen = [(loc.step["id"], loc.depth, step_kind(loc.step)) for loc in walk_steps(NESTED)]
        assert seen == [("order", 0, "tool"), ("route", 0, "switch"), ("ret", 1, "tool"),
                        ("cancel", 1, "fail"), ("fallback", 1, "set"), ("notes", 0, "map"),
                        ("n", 1, "shout")]

    def test_paths_name_the_field(self) -> None:
        """A location's path formats as the field an error message names."""
        loc = find_step(NESTED, "cancel")
        assert loc is not None
        assert format_path(loc.path) == "workflow.steps[1].switch[1].otherwise[0]"
        assert find_step(NESTED, "missing") is None

    def test_ignores_malformed_parts(self) -> None:
        """Non-dict steps and non-list blocks are skipped rather than crashing the walk."""
        doc = {"steps": [1, {"id": "a", "switch": "x", "map": [], "catch": {}}, None]}
        assert [loc.step["id"] for loc in walk_steps(doc)] == ["a"]


class TestWorkflowHash:
    """Equal definitions hash equal whatever their key order; prose does not count."""

    @given(st.dictionaries(st.text(max_size=5), st.integers(), max_size=6))
    def test_key_order_does_not_matter(self, args: dict[str, int]) -> None:
        """Reordering keys leaves canonical JSON and the hash unchanged."""
        a = {"name": "w", "steps": [{"id": "s", "set": args}]}
        b = {"steps": [{"set": dict(reversed(list(args.items()))), "id": "s"}], "name": "w"}
        assert canonical_json(a) == canonical_json(b)
        assert workflow_hash(a) == workflow_hash(b)

    def test_description_is_ignored_but_steps_are_not(self) -> None:
        """Changing the description keeps the hash; changing a step changes it."""
        base = {"name": "w", "steps": [{"id": "s", "set": {"x": 1}}]}
        assert workflow_hash(base) == workflow_hash({**base, "description": "prose"})
        assert workflow_hash(base) != workflow_hash(
            {"name": "w", "steps": [{"id": "s", "set": {"x": 2}}]})
