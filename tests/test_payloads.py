"""The checks on what agents report (``auto_dev.payloads``): JSON only, valid text, bounded."""

from __future__ import annotations

import enum
import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auto_dev import ValidationError
from auto_dev.config import load_settings
from auto_dev.payloads import (
    PayloadLimits,
    check_episode,
    check_json,
    check_signal,
    check_skill_execution,
    parse_json_text,
)

LIMITS = PayloadLimits()
#: Text PostgreSQL can store: no lone surrogates, no NUL.
TEXT = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
EPISODE: dict[str, Any] = {"agent": "a", "task": "t", "success": False}


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def refusal(fn: Any, *args: Any, **kwargs: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        fn(*args, **kwargs)
    return info.value


class Colour(enum.IntEnum):
    RED = 1


class Name(str):
    pass


class TestJSONValues:
    """Only plain JSON gets through, copied into plain types, with the path of any problem."""

    @pytest.mark.parametrize(("value", "path", "words"), [
        (b"raw", "output", "bytes are not JSON"),
        ({"k": {1, 2}}, "output.k", "a set is not JSON"),
        ([1, object()], "output[1]", "got object"),
        ({"a b": [0, float("nan")]}, "output['a b'][1]", "finite number"),
        ({"x": float("-inf")}, "output.x", "finite number"),
        ({1: "int key"}, "output", "keys must be strings"),
        ({"k": "\ud800"}, "output.k", "lone surrogate"),
        ({"\udc00": 1}, "output['\\udc00']", "lone surrogate"),
        (["a\x00b"], "output[0]", "NUL"),
        ({"n": 10**1500}, "output.n", "more than 1000 digits"),
        (1j, "output", "complex"),
    ])
    def test_refusals_name_the_path(self, value: Any, path: str, words: str) -> None:
        """Each non-JSON value is refused with the path from the field to the value."""
        error = refusal(check_json, "output", value, LIMITS)
        assert error.field == path
        assert words in error.problem

    def test_depth_is_bounded_and_the_limit_is_exact(self) -> None:
        """max_json_depth containers nest; one more is refused (even 5,000 deep, no
        RecursionError)."""
        limits = PayloadLimits(max_json_depth=5)
        assert check_json("v", nested(5), limits) == nested(5)
        assert "deeper than 5 levels" in refusal(check_json, "v", nested(6), limits).problem
        error = refusal(check_json, "v", nested(5000), LIMITS)
        assert error.field == "v" + "[0]" * 64 and "max_json_depth" in error.problem

    def test_a_cycle_is_refused_not_looped(self) -> None:
        """A list containing itself stops at the depth limit."""
        loop: list[Any] = []
        loop.append(loop)
        assert "deeper" in refusal(check_json, "v", loop, LIMITS).problem

    def test_copies_are_plain_and_independent(self) -> None:
        """Tuples become lists, enum and str subclasses plain values; later changes to the
        caller's objects do not reach the copy."""
        original = {"t": (1, Colour.RED), "s": Name("x"), "l": [1.5, None, True]}
        copied = check_json("v", original, LIMITS)
        assert copied == {"t": [1, 1], "s": "x", "l": [1.5, None, True]}
        assert type(copied["t"][1]) is int and type(copied["s"]) is str
        original["l"].append(2)
        assert copied["l"] == [1.5, None, True]

    def test_size_counts_the_encoded_json(self) -> None:
        """The byte limit is the compact UTF-8 JSON size: escapes count, and a huge value is
        refused without being walked to its end."""
        limits = PayloadLimits(max_payload_bytes=1024)
        exact = "x" * (1024 - 2)  # the quotes make it exactly 1024 bytes
        assert check_json("v", exact, limits) == exact
        assert "1,024 bytes" in refusal(check_json, "v", exact + "x", limits).problem
        escaped = "\n" * 600  # 600 characters, 1,202 bytes as JSON
        assert refusal(check_json, "v", escaped, limits).field == "payload"
        huge = refusal(check_json, "v", list(range(5000)), limits)
        assert huge.field.startswith("v[") and "max_payload_bytes" in huge.problem

    @settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
    @given(st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False,
                                                              allow_infinity=False)
        | st.text(TEXT, max_size=8),
        lambda children: st.lists(children, max_size=4)
        | st.dictionaries(st.text(TEXT, max_size=4), children, max_size=4),
        max_leaves=20))
    def test_json_round_trips(self, value: Any) -> None:
        """Any JSON value within the limits is accepted unchanged."""
        copied = check_json("v", value, LIMITS)
        assert copied == value
        assert json.loads(json.dumps(copied)) == value


class TestParseJSONText:
    """Text from outside (``evolve -t``) is parsed without the parser's own crashes."""

    def test_deeper_than_the_interpreter_can_parse(self) -> None:
        """100,000 levels are a ValidationError on the document, not a RecursionError."""
        error = refusal(parse_json_text, "tests", "[" * 100_000 + "]" * 100_000, LIMITS)
        assert error.field == "tests" and "nests too deeply" in error.problem

    def test_integer_too_long_for_python(self) -> None:
        """A 5,000-digit literal is named by its path instead of a ValueError from int()."""
        text = '[{"args": [1], "expected": -' + "9" * 5000 + "}]"
        error = refusal(parse_json_text, "tests", text, LIMITS)
        assert error.field == "tests[0].expected"
        assert "5000 digits" in error.problem

    def test_nan_literals_and_overflowing_floats(self) -> None:
        """Python's json accepts NaN and 1e999 (infinity); they are not JSON numbers here."""
        assert refusal(parse_json_text, "t", "[NaN]", LIMITS).field == "t[0]"
        assert refusal(parse_json_text, "t", '{"a": 1e999}', LIMITS).field == "t.a"

    def test_syntax_error_names_line_and_column(self) -> None:
        """Invalid JSON says where."""
        error = refusal(parse_json_text, "t", "[1,\n 2", LIMITS)
        assert error.field == "t" and "line 2" in error.problem

    def test_valid_document(self) -> None:
        """A normal document parses as json.loads would."""
        assert parse_json_text("t", '[{"args": [1, 2.5], "k": null}]', LIMITS) == [
            {"args": [1, 2.5], "k": None}]


class TestCheckEpisode:
    """record_episode's arguments: each field checked, named and normalised."""

    @pytest.mark.parametrize(("changes", "field"), [
        ({"agent": ""}, "agent"),
        ({"agent": "x" * 201}, "agent"),
        ({"agent": "a\nb"}, "agent"),
        ({"task": 7}, "task"),
        ({"task": "\ud800"}, "task"),
        ({"task": "x" * 65_537}, "task"),
        ({"success": 1}, "success"),
        ({"tool_name": ""}, "tool_name"),
        ({"inputs": [1], "expected": 2}, "inputs"),
        ({"inputs": {"args": [b"x"]}}, "inputs.args[0]"),
        ({"inputs": {"args": 1}}, "inputs.args"),
        ({"inputs": {"argz": []}}, "inputs.argz"),
        ({"expected": {1}}, "expected"),
        ({"metadata": "m"}, "metadata"),
        ({"metadata": {"k": object()}}, "metadata.k"),
        ({"error_trace": "x" * 1_048_577}, "error_trace"),
        ({"error_trace": b"trace"}, "error_trace"),
        ({"segments": [1, 2]}, "segments[0]"),
        ({"segments": "abc"}, "segments"),
        ({"segments": [{}, {"tool": "x"}]}, "segments[1].tool"),
        ({"segments": [{"kind": "k" * 33}]}, "segments[0].kind"),
        ({"segments": [{"inputs": [1]}]}, "segments[0].inputs"),
        ({"segments": [{"output": {2j}}]}, "segments[0].output"),
        ({"segments": [{"duration_s": math.nan}]}, "segments[0].duration_s"),
        ({"tenant_id": "t" * 65}, "tenant_id"),
    ])
    def test_each_field_is_named(self, changes: dict[str, Any], field: str) -> None:
        """The first problem is a ValidationError whose field is the path of the bad value."""
        assert refusal(check_episode, LIMITS, **{**EPISODE, **changes}).field == field

    def test_normalised_report(self) -> None:
        """Segments get every key; expected makes a regression case; tuples become lists."""
        report = check_episode(LIMITS, **EPISODE, tool_name="inc", inputs={"args": (1,)},
                               expected=2, segments=({"output": 3},))
        assert report.inputs == {"args": [1]}
        assert report.segments == ({"kind": "tool_call", "tool_name": None, "inputs": {},
                                    "output": 3, "error": None, "duration_s": None},)
        assert report.case is not None and report.case.args == (1,)
        assert report.case.expected == 2 and report.case.has_expected

    def test_without_expected(self) -> None:
        """No expected value: no case, and ``expected`` stays the ``...`` marker (None is a
        real expected value)."""
        report = check_episode(LIMITS, **EPISODE)
        assert report.case is None and report.expected is ...
        assert report.inputs == {} and report.metadata == {} and report.segments == ()
        assert check_episode(LIMITS, **EPISODE, expected=None).case is not None

    def test_the_byte_limit_covers_every_json_part(self) -> None:
        """Inputs, output, metadata and segments share one budget."""
        limits = PayloadLimits(max_payload_bytes=2048)
        half = "x" * 900
        check_episode(limits, **EPISODE, output=half, metadata={"m": half})
        error = refusal(check_episode, limits, **EPISODE, output=half, metadata={"m": half},
                        segments=[{"error": "e", "output": half}])
        assert error.field == "segments[0].output"

    def test_an_endless_segment_iterable_stops(self) -> None:
        """A generator that never ends is cut off by the byte limit."""
        def forever() -> Any:
            while True:
                yield {}

        error = refusal(check_episode, PayloadLimits(max_payload_bytes=4096), **EPISODE,
                        segments=forever())
        assert error.field.startswith("segments[")


class TestCheckSkillExecution:
    """record_skill_execution's arguments."""

    @pytest.mark.parametrize(("changes", "field"), [
        ({"skill_name": ""}, "skill_name"),
        ({"skill_name": "s\ud800"}, "skill_name"),
        ({"skill_name": None}, "skill_name"),
        ({"execution_seconds": math.nan}, "execution_seconds"),
        ({"execution_seconds": math.inf}, "execution_seconds"),
        ({"execution_seconds": -0.5}, "execution_seconds"),
        ({"execution_seconds": 1e300}, "execution_seconds"),
        ({"execution_seconds": True}, "execution_seconds"),
        ({"execution_seconds": "1"}, "execution_seconds"),
        ({"metadata": {"k": b"v"}}, "metadata.k"),
        ({"metadata": [1]}, "metadata"),
        ({"success": None}, "success"),
    ])
    def test_each_field_is_named(self, changes: dict[str, Any], field: str) -> None:
        """Bad values are refused naming the field."""
        base = {"agent": "a", "skill_name": "s", "success": True, "execution_seconds": 0.5}
        assert refusal(check_skill_execution, LIMITS, **{**base, **changes}).field == field

    def test_accepted(self) -> None:
        """An integer duration becomes a float; missing metadata an empty object."""
        report = check_skill_execution(LIMITS, agent="a", skill_name="s", success=True,
                                       execution_seconds=2)
        assert report.execution_seconds == 2.0 and type(report.execution_seconds) is float
        assert report.metadata == {} and report.tenant_id is None


class TestLimits:
    """The limits come from the settings, which validate them."""

    def test_from_settings(self) -> None:
        """Each setting reaches its limit; the defaults are the documented ones."""
        limits = PayloadLimits.from_settings(load_settings(max_task_chars=10, max_json_depth=3))
        assert limits.max_task_chars == 10 and limits.max_json_depth == 3
        assert PayloadLimits.from_settings(load_settings()) == PayloadLimits()
        assert refusal(check_episode, limits, **{**EPISODE, "task": "x" * 11}).field == "task"

    @pytest.mark.parametrize(("name", "value"), [
        ("max_json_depth", 65),  # events refuse deeper values: it can only be lowered
        ("max_json_int_digits", 5000),  # Python cannot print longer integers
        ("max_payload_bytes", 10),
        ("max_task_chars", 0),
    ])
    def test_settings_refuse_unusable_limits(self, name: str, value: int) -> None:
        """Out-of-range limits are a ConfigurationError naming the setting."""
        from auto_dev import ConfigurationError

        with pytest.raises(ConfigurationError, match=name):
            load_settings(**{name: value})

    def test_limits_refuse_non_positive_values(self) -> None:
        """PayloadLimits built by hand are checked too."""
        assert refusal(PayloadLimits, max_json_depth=0).field == "max_json_depth"


class TestWorkflowEpisodesAndSignals:
    """``workflow`` on episodes and the arguments of ``record_signal``."""

    def test_a_workflow_run_takes_any_input_object(self) -> None:
        """With ``workflow`` the inputs are the workflow's input, not a tool call: no case."""
        report = check_episode(LIMITS, **EPISODE, workflow="refund", inputs={"order_id": 7},
                               expected="ok")
        assert report.workflow == "refund" and report.case is None
        assert report.inputs == {"order_id": 7}

    @pytest.mark.parametrize(("kwargs", "field"), [
        ({"workflow": ""}, "workflow"),
        ({"workflow": 3}, "workflow"),
        ({"workflow": "w\x00"}, "workflow"),
        ({"workflow": "w", "tool_name": "t"}, "workflow"),
        ({"workflow": "w", "inputs": [1]}, "inputs"),
    ])
    def test_bad_workflow_fields(self, kwargs: dict[str, Any], field: str) -> None:
        """Each problem names its field."""
        assert refusal(check_episode, LIMITS, **{**EPISODE, **kwargs}).field == field

    def test_a_signal_is_copied(self) -> None:
        """A valid signal comes back as plain values; the metadata is a copy."""
        meta = {"order": [1, 2]}
        report = check_signal(LIMITS, kind="feedback", value=1, workflow="w", agent="a",
                              metadata=meta, version=2)
        meta["order"].append(3)
        assert (report.kind, report.value, report.workflow, report.version) == (
            "feedback", 1.0, "w", 2)
        assert report.metadata == {"order": [1, 2]} and isinstance(report.value, float)

    @given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(),
                     st.booleans(), st.text(max_size=3), st.none()))
    def test_values_are_finite_numbers(self, value: Any) -> None:
        """Any finite int or float is a value; anything else is refused naming ``value``."""
        ok = (isinstance(value, int | float) and not isinstance(value, bool)
              and math.isfinite(float(value)))
        if ok:
            assert check_signal(LIMITS, kind="k", value=value, tool="t").value == float(value)
        else:
            assert refusal(check_signal, LIMITS, kind="k", value=value, tool="t").field == "value"
