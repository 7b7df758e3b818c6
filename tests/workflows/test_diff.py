"""Tests for the structural diff: steps added, removed, moved and changed, matched by id."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from auto_dev.workflows import find_step
from auto_dev.workflows.diff import ABSENT, FieldChange, structural_diff
from tests.workflows._documents import refund, workflow_documents


def _reordered(value: Any) -> Any:
    """The same JSON with every object's keys in reverse order."""
    if isinstance(value, dict):
        return {k: _reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reordered(v) for v in value]
    return value


class TestEmptyDiff:
    """Documents that mean the same thing have an empty diff."""

    def test_identical_documents(self) -> None:
        """A document against a copy of itself has nothing to report."""
        diff = structural_diff(refund(), refund())
        assert diff.is_empty
        assert diff.render_lines() == []
        assert diff.to_dict() == {"added": [], "removed": [], "moved": [], "changed": [],
                                  "top_level": []}

    def test_key_order_only(self) -> None:
        """Reordering the keys of every object changes nothing."""
        assert structural_diff(refund(), _reordered(refund())).is_empty

    @given(workflow_documents(), st.booleans())
    def test_random_documents(self, doc: dict[str, Any], reorder: bool) -> None:
        """Any document against a (key-reordered) copy of itself gives an empty diff."""
        other = _reordered(doc) if reorder else copy.deepcopy(doc)
        assert structural_diff(doc, other).is_empty


class TestAddedAndRemoved:
    """Steps present on one side only are reported with their kind and place."""

    def test_added_step(self) -> None:
        """A new step is added at its path, with a summary of what it does."""
        new = refund()
        new["steps"].insert(1, {"id": "retry_order", "tool": "get_order", "args": {}})
        diff = structural_diff(refund(), new)
        assert [(a.step_id, a.kind, a.path) for a in diff.added] == [
            ("retry_order", "tool", "steps[1]")]
        assert diff.render_lines() == ["+ added step retry_order (tool get_order) at steps[1]"]
        assert not diff.moved and not diff.changed

    def test_removed_step_and_its_children(self) -> None:
        """Removing a switch removes the steps nested in it too, each reported."""
        new = refund()
        del new["steps"][1]
        diff = structural_diff(refund(), new)
        assert [r.step_id for r in diff.removed] == ["route", "ret", "cancel"]
        assert diff.render_lines()[0] == "- removed step route (switch) from steps[1]"
        assert not diff.moved

    def test_added_catch_is_an_added_step_not_a_change(self) -> None:
        """Wrapping a step in catch reports the catch's step, not a change of the parent."""
        new = refund()
        new["steps"][0]["catch"] = [{"id": "order_fallback", "set": {"order": None}}]
        diff = structural_diff(refund(), new)
        assert [(a.step_id, a.path) for a in diff.added] == [
            ("order_fallback", "steps[0].catch[0]")]
        assert not diff.changed


class TestMoved:
    """Only steps whose block or relative order changed count as moved."""

    def test_insertion_shifts_are_not_moves(self) -> None:
        """Inserting and removing steps before others shifts indexes without moving them."""
        new = refund()
        new["steps"].insert(0, {"id": "first", "fail": "x"})
        del new["steps"][2]  # route
        diff = structural_diff(refund(), new)
        assert diff.moved == ()
        assert {a.step_id for a in diff.added} == {"first"}

    def test_reorder_reports_only_the_moved_step(self) -> None:
        """Moving the last step to the front moves that step, not every other one."""
        new = refund()
        new["steps"].insert(0, new["steps"].pop())
        diff = structural_diff(refund(), new)
        assert [(m.step_id, m.from_path, m.to_path) for m in diff.moved] == [
            ("reply", "steps[3]", "steps[0]")]
        assert diff.render_lines() == ["> moved step reply: steps[3] -> steps[0]"]

    def test_move_into_another_block(self) -> None:
        """A step taken out of a switch branch to the top level has moved."""
        new = refund()
        ret = new["steps"][1]["switch"][0]["steps"].pop()
        new["steps"][1]["switch"][0]["steps"].append({"id": "keep", "fail": "x"})
        new["steps"].append(ret)
        diff = structural_diff(refund(), new)
        assert [(m.step_id, m.from_path, m.to_path) for m in diff.moved] == [
            ("ret", "steps[1].switch[0].steps[0]", "steps[4]")]

    def test_children_of_a_moved_step_stay_put(self) -> None:
        """Moving a switch does not report the steps inside it as moved."""
        new = refund()
        new["steps"].append(new["steps"].pop(1))
        diff = structural_diff(refund(), new)
        moved = {m.step_id for m in diff.moved}
        assert "ret" not in moved and "cancel" not in moved
        assert len(moved) == 1


class TestChanged:
    """Fields of a step that differ are reported with old and new values."""

    def test_condition_change(self) -> None:
        """A branch condition rewritten is a change of the switch step."""
        new = refund()
        new["steps"][1]["switch"][0]["when"] = "steps.order.state == 'shipped'"
        diff = structural_diff(refund(), new)
        [changed] = diff.changed
        assert changed.step_id == "route"
        assert changed.changes == (FieldChange("switch[0].when", "steps.order.status == "
                                               "'shipped'", "steps.order.state == 'shipped'"),)
        assert diff.render_lines() == [
            "~ changed step route: switch[0].when \"steps.order.status == 'shipped'\" -> "
            "\"steps.order.state == 'shipped'\""]

    def test_field_added_removed_and_nested_value(self) -> None:
        """A retry removed, a timeout added and one argument changed are each one change."""
        new = refund()
        del new["steps"][0]["retry"]
        new["steps"][2]["timeout_s"] = 9
        new["steps"][1]["switch"][1]["otherwise"][0]["args"]["order_id"] = "${steps.order.id}"
        diff = structural_diff(refund(), new)
        by_id = {c.step_id: c.changes for c in diff.changed}
        assert by_id["order"][0].field == "retry" and by_id["order"][0].new is ABSENT
        assert by_id["notes"] == (FieldChange("timeout_s", new=9),)
        assert by_id["cancel"] == (FieldChange("args.order_id", "${input.order_id}",
                                               "${steps.order.id}"),)
        lines = diff.render_lines()
        assert "~ changed step notes: timeout_s added 9" in lines
        assert any(line.startswith("~ changed step order: retry removed (was") for line in lines)

    def test_nested_step_change_is_not_a_parent_change(self) -> None:
        """Changing a step inside a map body reports that step only."""
        new = refund()
        new["steps"][2]["map"]["steps"][0]["llm"]["prompt"] = "Two lines."
        diff = structural_diff(refund(), new)
        assert [c.step_id for c in diff.changed] == ["n"]

    def test_one_and_true_differ(self) -> None:
        """JSON values are compared by type too: 1 is not true."""
        old = {"name": "w", "steps": [{"id": "s", "set": {"x": 1}}]}
        new = {"name": "w", "steps": [{"id": "s", "set": {"x": True}}]}
        assert not structural_diff(old, new).is_empty

    def test_swapped_branches(self) -> None:
        """Swapping two branches moves their steps and changes the switch's conditions."""
        old = {"name": "w", "steps": [{"id": "sw", "switch": [
            {"when": "input.a", "steps": [{"id": "a", "fail": "a"}]},
            {"when": "input.b", "steps": [{"id": "b", "fail": "b"}]}]}]}
        new = copy.deepcopy(old)
        new["steps"][0]["switch"].reverse()
        diff = structural_diff(old, new)
        assert {m.step_id for m in diff.moved} == {"a", "b"}
        assert [c.field for c in diff.changed[0].changes] == ["switch[0].when", "switch[1].when"]


class TestTopLevel:
    """Changes outside the steps (output, input, limits, name) are reported too."""

    def test_output_limits_and_input(self) -> None:
        """Each top-level field that differs is one line."""
        new = refund()
        new["output"] = "steps.notes"
        new["limits"] = {"max_steps": 50}
        new["input"]["required"].append("items")
        diff = structural_diff(refund(), new)
        assert [c.field for c in diff.top_level] == ["input.required", "output", "limits"]
        assert diff.render_lines()[1] == '~ changed output "steps.reply" -> "steps.notes"'

    def test_to_dict_is_json(self) -> None:
        """The dict form survives JSON and omits the side a field is absent from."""
        new = refund()
        new["limits"] = {"max_steps": 50}
        del new["steps"][3]
        data = json.loads(json.dumps(structural_diff(refund(), new).to_dict()))
        assert data["top_level"] == [{"field": "limits", "new": {"max_steps": 50}}]
        assert [r["id"] for r in data["removed"]] == ["reply", "fallback"]

    def test_duplicate_ids_stay_distinct(self) -> None:
        """A malformed document with a repeated id still diffs without losing a step."""
        old = {"name": "w", "steps": [{"id": "a", "fail": "x"}, {"id": "a", "fail": "y"}]}
        new = {"name": "w", "steps": [{"id": "a", "fail": "x"}]}
        diff = structural_diff(old, new)
        assert len(diff.removed) == 1
        assert find_step(new, "a") is not None
