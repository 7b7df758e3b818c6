"""Tests for validate_workflow and the shipped JSON Schema: every error names its field."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from importlib import resources
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from auto_dev._exceptions import ValidationError
from auto_dev.workflows import WORKFLOW_SCHEMA, validate_workflow
from tests.workflows._support import (
    generated_workflow,
    issue_example,
    mangled_workflow,
    workflow,
)

TOOLS = {"get_order", "start_return", "cancel_order"}

Mutation = Callable[[dict[str, Any]], object]


def _error(doc: Any, **kwargs: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        validate_workflow(doc, **kwargs)
    return info.value


class TestWorkflowSchema:
    """The schema ships in the package and accepts the issue's example."""

    def test_schema_is_shipped_draft_2020_12(self) -> None:
        """schema.json is package data, a valid draft 2020-12 schema, and WORKFLOW_SCHEMA."""
        text = resources.files("auto_dev.workflows").joinpath("schema.json").read_text()
        shipped = json.loads(text)
        assert shipped == WORKFLOW_SCHEMA
        assert shipped["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator.check_schema(shipped)

    def test_issue_example_is_valid(self) -> None:
        """The example of issue 8 validates with its tools named."""
        doc = issue_example()
        assert validate_workflow(doc, tools=TOOLS) == doc

    def test_returns_a_deep_copy(self) -> None:
        """Changing the returned document leaves the caller's untouched."""
        doc = issue_example()
        checked = validate_workflow(doc)
        checked["steps"][0]["args"]["order_id"] = "changed"
        assert doc["steps"][0]["args"]["order_id"] == "${input.order_id}"

    def test_plain_schema_agrees_on_the_example(self) -> None:
        """Any JSON Schema validator (an editor, a model's structured output) accepts it too."""
        assert list(Draft202012Validator(WORKFLOW_SCHEMA).iter_errors(issue_example())) == []


def _set(path: tuple[Any, ...], value: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        node: Any = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return mutate


def _drop(path: tuple[Any, ...]) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        node: Any = doc
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return mutate


SCHEMA_CASES: list[tuple[str, Mutation, str, str]] = [
    ("retry too many", _set(("steps", 0, "retry", "max_attempts"), 11),
     "workflow.steps[0].retry.max_attempts", "maximum of 10"),
    ("retry on unknown", _set(("steps", 0, "retry", "on"), ["crash"]),
     "workflow.steps[0].retry.on[0]", "'crash'"),
    ("two kinds", _set(("steps", 0, "llm"), {"prompt": "x"}),
     "workflow.steps[0]", "has 2 step kinds (tool, llm)"),
    ("no kind", _drop(("steps", 0, "tool")), "workflow.steps[0]", "has no step kind"),
    ("args on llm", _set(("steps", 3, "args"), {}), "workflow.steps[3].args",
     "only taken by tool and custom steps"),
    ("unknown field", _set(("steps", 0, "retries"), 3), "workflow.steps[0].retries",
     "is not a known field"),
    ("branch without when", _drop(("steps", 1, "switch", 0, "when")),
     "workflow.steps[1].switch[0].when", "is required"),
    ("otherwise with when", _set(("steps", 1, "switch", 1, "when"), "a"),
     "workflow.steps[1].switch[1].when", "is not a known field"),
    ("bad id", _set(("steps", 0, "id"), "1st"), "workflow.steps[0].id",
     "is not an identifier"),
    ("timeout as text", _set(("steps", 0, "timeout_s"), "5"), "workflow.steps[0].timeout_s",
     "is not of type 'number'"),
    ("zero timeout", _set(("steps", 0, "timeout_s"), 0), "workflow.steps[0].timeout_s",
     "less than or equal to the minimum"),
    ("llm output kind", _set(("steps", 3, "llm", "output"), "xml"),
     "workflow.steps[3].llm.output", "'xml'"),
    ("map without over", _drop(("steps", 2, "map", "over")), "workflow.steps[2].map.over",
     "is required"),
    ("no steps", _drop(("steps",)), "workflow.steps", "is required"),
    ("empty steps", _set(("steps",), []), "workflow.steps", "should be non-empty"),
    ("name type", _set(("name",), 3), "workflow.name", "is not of type 'string'"),
    ("limit type", _set(("limits",), {"max_steps": 0}), "workflow.limits.max_steps",
     "minimum of 1"),
    ("set key", _set(("steps", 3), {"id": "s", "set": {"not ok": 1}}),
     "workflow.steps[3].set.not ok", "not an identifier"),
]


class TestSchemaErrors:
    """A structural problem is reported at its place in the document, in plain words."""

    @pytest.mark.parametrize(("name", "mutate", "field", "problem"), SCHEMA_CASES,
                             ids=[case[0] for case in SCHEMA_CASES])
    def test_field_and_problem(self, name: str, mutate: Mutation, field: str,
                               problem: str) -> None:
        """The error's field is the exact path and its problem says what is wrong."""
        doc = issue_example()
        mutate(doc)
        error = _error(doc)
        assert error.field == field
        assert problem in error.problem

    @pytest.mark.parametrize("doc", [None, [], "x", 3])
    def test_not_an_object(self, doc: Any) -> None:
        """A document that is not a JSON object names the workflow itself."""
        assert _error(doc).field == "workflow"

    def test_not_json(self) -> None:
        """NaN and objects JSON cannot hold are refused before anything else."""
        assert _error(workflow({"id": "a", "set": {"x": float("nan")}})).field == "workflow"
        assert _error(workflow({"id": "a", "set": {"x": object()}})).field == "workflow"

    def test_absurd_nesting_is_a_validation_error(self) -> None:
        """A document nested far beyond any limit is refused without a RecursionError."""
        deep: Any = "x"
        for _ in range(5000):
            deep = [deep]
        error = _error(workflow({"id": "a", "set": {"x": deep}}))
        assert error.field == "workflow"

    def test_input_properties_must_be_schemas(self) -> None:
        """input.properties holds JSON Schemas of the input fields."""
        doc = workflow({"id": "a", "set": {"x": 1}},
                       input={"properties": {"n": {"type": "integr"}}})
        error = _error(doc)
        assert error.field == "workflow.input.properties.n"
        assert "not a JSON Schema" in error.problem


class TestIds:
    """Step ids are unique in the whole document, nested blocks included."""

    def test_duplicate_in_nested_block(self) -> None:
        """A branch step reusing a top-level id is named with both places."""
        doc = issue_example()
        doc["steps"][1]["switch"][0]["steps"][0]["id"] = "order"
        error = _error(doc)
        assert error.field == "workflow.steps[1].switch[0].steps[0].id"
        assert "also at workflow.steps[0]" in error.problem

    def test_duplicate_in_catch(self) -> None:
        """A catch step is in the same id space."""
        doc = issue_example()
        doc["steps"][3]["catch"][0]["id"] = "notes"
        assert _error(doc).field == "workflow.steps[3].catch[0].id"


class TestExpressions:
    """Every JMESPath expression and every ${...} in a value must parse."""

    @pytest.mark.parametrize(("mutate", "field"), [
        (_set(("steps", 1, "switch", 0, "when"), "steps.order.status =="),
         "workflow.steps[1].switch[0].when"),
        (_set(("steps", 2, "map", "over"), "input.items["), "workflow.steps[2].map.over"),
        (_set(("output",), "steps.[reply"), "workflow.output"),
        (_set(("steps", 0, "when"), "&&"), "workflow.steps[0].when"),
    ])
    def test_expression_fields(self, mutate: Mutation, field: str) -> None:
        """A bad expression names the field that holds it."""
        doc = issue_example()
        mutate(doc)
        error = _error(doc)
        assert error.field == field
        assert "not a valid JMESPath expression" in error.problem

    @pytest.mark.parametrize(("text", "problem"), [
        ("hello ${input.name", "unterminated ${"),
        ("${}", "empty ${}"),
        ("${input.}", "not a valid JMESPath"),
        ("${'unterminated}", "unterminated ' quote"),
    ])
    def test_bad_templates(self, text: str, problem: str) -> None:
        """A bad ${...} in a nested value is reported at that value's path."""
        doc = workflow({"id": "a", "tool": "t", "args": {"deep": [{"x": text}]}})
        error = _error(doc)
        assert error.field == "workflow.steps[0].args.deep[0].x"
        assert problem in error.problem

    @pytest.mark.parametrize("text", [
        "${ {a: input.x, b: `{}`} }", "cost: $${not an expression}", "${input.name} and ${vars.x}",
        "${steps.order.items[?status == '}'] | length(@)}", "plain text", "$ {x}",
    ])
    def test_good_templates(self, text: str) -> None:
        """Braces inside JMESPath, quoted braces and the $${ escape are all fine."""
        validate_workflow(workflow({"id": "a", "set": {"x": text}}))

    def test_llm_and_fail_texts_are_checked(self) -> None:
        """Prompts, system texts and fail messages are templates too."""
        bad = "${input."
        assert _error(workflow({"id": "a", "llm": {"prompt": bad}})).field == \
            "workflow.steps[0].llm.prompt"
        assert _error(workflow({"id": "a", "llm": {"prompt": "x", "system": bad}})).field == \
            "workflow.steps[0].llm.system"
        assert _error(workflow({"id": "a", "fail": bad})).field == "workflow.steps[0].fail"


class TestBlocks:
    """Rules about nested blocks that a schema cannot state."""

    def test_otherwise_must_be_last(self) -> None:
        """An otherwise branch before another branch is refused."""
        doc = issue_example()
        doc["steps"][1]["switch"].reverse()
        error = _error(doc)
        assert error.field == "workflow.steps[1].switch[0]"
        assert "last branch" in error.problem

    @pytest.mark.parametrize("name", ["input", "steps", "vars", "error"])
    def test_map_as_cannot_hide_state(self, name: str) -> None:
        """A map's item name cannot shadow the run state's own keys."""
        doc = issue_example()
        doc["steps"][2]["map"]["as"] = name
        assert _error(doc).field == "workflow.steps[2].map.as"


class TestNamesAndDepth:
    """Tools and custom kinds must exist when the caller says which do; nesting is bounded."""

    def test_unknown_tool(self) -> None:
        """A tool outside the given set is named with the known ones."""
        doc = issue_example()
        doc["steps"][1]["switch"][1]["otherwise"][0]["tool"] = "refund_everything"
        error = _error(doc, tools=TOOLS)
        assert error.field == "workflow.steps[1].switch[1].otherwise[0].tool"
        assert "unknown tool 'refund_everything'" in error.problem
        assert "get_order" in error.problem

    def test_tools_unchecked_when_not_given(self) -> None:
        """Without a tool set, any tool name passes (the document alone is checked)."""
        doc = issue_example()
        doc["steps"][0]["tool"] = "anything"
        validate_workflow(doc)

    def test_unknown_custom_kind(self) -> None:
        """A custom kind must be registered when kinds are given."""
        doc = workflow({"id": "a", "custom": "shout", "args": {"text": "hi"}})
        validate_workflow(doc, kinds={"shout"})
        error = _error(doc, kinds={"whisper"})
        assert error.field == "workflow.steps[0].custom"
        assert "registered: whisper" in error.problem

    @staticmethod
    def _nested(depth: int) -> dict[str, Any]:
        step: dict[str, Any] = {"id": f"s{depth}", "set": {"x": 1}}
        for level in range(depth - 1, -1, -1):
            step = {"id": f"s{level}", "switch": [{"otherwise": [step]}]}
        return workflow(step)

    def test_depth_limit(self) -> None:
        """A step nested deeper than max_depth is refused at its path."""
        validate_workflow(self._nested(8))
        error = _error(self._nested(9))
        assert "max_depth is 8" in error.problem
        assert error.field.startswith("workflow.steps[0].switch[0].otherwise[0]")

    def test_documents_limit_and_callers_limit(self) -> None:
        """The lower of the document's max_depth and the caller's applies."""
        doc = self._nested(3)
        validate_workflow(doc, max_depth=3)
        assert "max_depth is 2" in _error(doc, max_depth=2).problem
        doc["limits"] = {"max_depth": 2}
        assert "max_depth is 2" in _error(doc, max_depth=5).problem

    def test_error_does_not_change_input(self) -> None:
        """Validation never writes to the caller's document, valid or not."""
        doc = issue_example()
        doc["steps"][0]["retry"]["max_attempts"] = 99
        before = copy.deepcopy(doc)
        _error(doc)
        assert doc == before


class TestValidationProperties:
    """Validation never crashes: any input gives a copy or a ValidationError naming a field."""

    @settings(max_examples=60, deadline=None)
    @given(generated_workflow())
    def test_generated_documents_are_valid(self, doc: dict[str, Any]) -> None:
        """Every generated document validates, and the copy equals it."""
        assert validate_workflow(doc, tools={"echo", "boom", "flaky"}, kinds={"upper"}) == doc

    @settings(max_examples=100, deadline=None)
    @given(mangled_workflow())
    def test_mangled_documents(self, doc: Any) -> None:
        """A mangled document is valid or refused with a workflow field; never another error."""
        before = json.dumps(doc, sort_keys=True, default=repr, allow_nan=True)
        try:
            validate_workflow(doc, tools={"echo", "boom", "flaky"}, kinds={"upper"})
        except ValidationError as exc:
            assert exc.field.startswith("workflow"), exc.field
            assert exc.problem
        assert json.dumps(doc, sort_keys=True, default=repr, allow_nan=True) == before

    @settings(max_examples=100, deadline=None)
    @given(st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
            st.sampled_from(["name", "steps", "id", "tool", "set", "map", "switch", "when",
                             "over", "output", "limits", "input", "x"]), inner, max_size=5),
        max_leaves=20))
    def test_arbitrary_json(self, doc: Any) -> None:
        """Arbitrary JSON-like values never make validation raise anything else."""
        try:
            validate_workflow(doc)
        except ValidationError as exc:
            assert exc.field.startswith("workflow")
