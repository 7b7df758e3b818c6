"""Checks for what agents report: the arguments of ``record_episode`` and
``record_skill_execution``.

Everything an agent hands auto-dev ends up in JSON columns (text on SQLite, ``json`` on
PostgreSQL), in event payloads and in sandbox job frames. So before a session is opened, every
value is checked and copied into plain JSON types:

* JSON values only: ``dict`` with ``str`` keys, ``list`` (a ``tuple`` is taken as a list),
  ``str``, ``int``, finite ``float``, ``bool`` and ``None``. Bytes, sets, NaN, infinities and
  arbitrary objects are refused, with a hint for the common ones.
* Text is valid Unicode (no lone surrogates: they cannot be encoded as UTF-8) and has no NUL
  characters (PostgreSQL cannot store them in text or JSON).
* Bounded: nesting depth, integer digits, characters of the task and of traces, and the bytes of
  the JSON parts together (:class:`PayloadLimits`, from :class:`~auto_dev.config.Settings`).
  Counting stops at the first excess, so a 20 MB value costs no more than the limit to refuse.

The first problem raises :class:`~auto_dev.ValidationError` whose ``field`` is the path of the
value (``inputs.args[0]``, ``segments[1].output``, ``metadata["a b"]``), so an HTTP API can report
it as it is. The copies returned are the caller's no longer: changing the caller's objects later
does not change what is stored.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from auto_dev._exceptions import ValidationError
from auto_dev._payload_json import (
    MAX_DURATION_S,
    TENANT_ID_MAX_CHARS,
    JSONWalker,
    PayloadLimits,
    bounded_int_parser,
    check_bool,
    check_duration,
    check_name,
    check_tenant,
    check_text,
    path_step,
    type_name,
)
from auto_dev.sandbox.base import Case

__all__ = [
    "MAX_DURATION_S",
    "NAME_MAX_CHARS",
    "SEGMENT_FIELDS",
    "SEGMENT_KIND_MAX_CHARS",
    "TENANT_ID_MAX_CHARS",
    "EpisodeReport",
    "PayloadLimits",
    "SignalReport",
    "SkillExecutionReport",
    "check_episode",
    "check_json",
    "check_signal",
    "check_skill_execution",
    "parse_json_text",
]

#: Longest agent key, tool, skill, workflow or signal kind name (the width of their columns).
NAME_MAX_CHARS = 200
#: Longest segment kind (the width of its column).
SEGMENT_KIND_MAX_CHARS = 32
#: The keys a segment may have; ``kind`` defaults to ``tool_call``.
SEGMENT_FIELDS = ("kind", "tool_name", "inputs", "output", "error", "duration_s")


@dataclass(frozen=True, slots=True)
class EpisodeReport:
    """The checked arguments of ``record_episode``.

    ``expected`` is ``...`` when the caller gave none (``None`` is a valid expected value);
    ``case`` is the regression test the episode describes when it has an expected value.
    ``segments`` are plain dicts with every key of :data:`SEGMENT_FIELDS`.
    """

    agent: str
    task: str
    success: bool
    tool_name: str | None
    inputs: dict[str, Any]
    expected: Any
    output: Any
    error_trace: str | None
    segments: tuple[dict[str, Any], ...]
    metadata: dict[str, Any]
    tenant_id: str | None
    case: Case | None = field(default=None)
    #: The workflow the episode was a run of: ``inputs`` is then its input, not a tool call.
    workflow: str | None = field(default=None)


@dataclass(frozen=True, slots=True)
class SkillExecutionReport:
    """The checked arguments of ``record_skill_execution``."""

    agent: str
    skill_name: str
    success: bool
    execution_seconds: float
    metadata: dict[str, Any]
    tenant_id: str | None


def check_episode(
    limits: PayloadLimits,
    *,
    agent: Any,
    task: Any,
    success: Any,
    tool_name: Any = None,
    inputs: Any = None,
    expected: Any = ...,
    output: Any = None,
    error_trace: Any = None,
    segments: Any = (),
    metadata: Any = None,
    tenant_id: Any = None,
    workflow: Any = None,
) -> EpisodeReport:
    """Check and copy ``record_episode``'s arguments; raise ValidationError naming the field.

    With ``workflow``, the episode is a run of that workflow: ``inputs`` is the workflow's
    input (any JSON object) and no tool test is made of it.
    """
    name = check_name("agent", agent, NAME_MAX_CHARS)
    text = check_text("task", task, limits.max_task_chars)
    ok = check_bool("success", success)
    tool = None if tool_name is None else check_name("tool_name", tool_name, NAME_MAX_CHARS)
    flow = None if workflow is None else check_name("workflow", workflow, NAME_MAX_CHARS)
    if flow is not None and tool is not None:
        raise ValidationError("workflow", "an episode is a run of one tool (tool_name) or of one "
                              "workflow, not both; report the workflow's tool calls as segments")
    trace = None if error_trace is None else check_text("error_trace", error_trace,
                                                         limits.max_trace_chars)
    tenant = check_tenant(tenant_id)
    walker = JSONWalker(limits)
    call = walker.object("inputs", inputs)
    has_expected = expected is not ...
    copied_expected = walker.value("expected", expected) if has_expected else ...
    copied_output = walker.value("output", output)
    meta = walker.object("metadata", metadata)
    parts = _check_segments(walker, limits, segments)
    walker.check_encoded_size([call, copied_expected if has_expected else None,
                               copied_output, meta, list(parts)])
    case: Case | None = None
    if flow is not None:
        pass  # a workflow's input has the shape its document declares, checked when it runs
    elif has_expected:
        case = Case.from_dict({**call, "expected": copied_expected}, where="inputs")
    elif call:
        Case.from_dict(call, where="inputs")  # the shape of a tool call, even without expected
    return EpisodeReport(
        agent=name, task=text, success=ok, tool_name=tool, inputs=call,
        expected=copied_expected, output=copied_output, error_trace=trace, segments=parts,
        metadata=meta, tenant_id=tenant, case=case, workflow=flow,
    )


def check_skill_execution(
    limits: PayloadLimits,
    *,
    agent: Any,
    skill_name: Any,
    success: Any,
    execution_seconds: Any,
    metadata: Any = None,
    tenant_id: Any = None,
) -> SkillExecutionReport:
    """Check and copy ``record_skill_execution``'s arguments; raise ValidationError naming the
    field."""
    name = check_name("agent", agent, NAME_MAX_CHARS)
    skill = check_name("skill_name", skill_name, NAME_MAX_CHARS)
    ok = check_bool("success", success)
    seconds = check_duration("execution_seconds", execution_seconds)
    tenant = check_tenant(tenant_id)
    walker = JSONWalker(limits)
    meta = walker.object("metadata", metadata)
    walker.check_encoded_size([meta])
    return SkillExecutionReport(agent=name, skill_name=skill, success=ok,
                                execution_seconds=seconds, metadata=meta, tenant_id=tenant)


@dataclass(frozen=True, slots=True)
class SignalReport:
    """The checked arguments of ``record_signal``: exactly one of ``tool`` and ``workflow``;
    ``version`` ``None`` means the active version."""

    kind: str
    value: float
    tool: str | None
    workflow: str | None
    version: int | None
    agent: str | None
    metadata: dict[str, Any]
    tenant_id: str | None


def check_signal(
    limits: PayloadLimits,
    *,
    kind: Any,
    value: Any,
    tool: Any = None,
    workflow: Any = None,
    version: Any = None,
    agent: Any = None,
    metadata: Any = None,
    tenant_id: Any = None,
) -> SignalReport:
    """Check and copy ``record_signal``'s arguments; raise ValidationError naming the field."""
    if (tool is None) == (workflow is None):
        raise ValidationError("tool" if tool is None else "workflow",
                              "name exactly one of tool and workflow")
    target_tool = None if tool is None else check_name("tool", tool, NAME_MAX_CHARS)
    target_flow = None if workflow is None else check_name("workflow", workflow, NAME_MAX_CHARS)
    signal_kind = check_name("kind", kind, NAME_MAX_CHARS)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError("value", f"must be a number, got {type_name(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise ValidationError("value", "is too large") from None
    if not math.isfinite(number):
        raise ValidationError("value", f"must be a finite number, got {number!r}")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)
                                or version < 1):
        raise ValidationError("version", f"must be a positive version number, got {version!r}")
    who = None if agent is None else check_name("agent", agent, NAME_MAX_CHARS)
    walker = JSONWalker(limits)
    meta = walker.object("metadata", metadata)
    walker.check_encoded_size([meta])
    return SignalReport(kind=signal_kind, value=number, tool=target_tool, workflow=target_flow,
                        version=version, agent=who, metadata=meta,
                        tenant_id=check_tenant(tenant_id))


def check_json(field_name: str, value: Any, limits: PayloadLimits, *,
               max_bytes: int | None = None) -> Any:
    """A plain-JSON copy of ``value`` within ``limits`` (``max_bytes`` instead of
    ``limits.max_payload_bytes`` when given); raise ValidationError naming the path."""
    walker = JSONWalker(limits, max_bytes=max_bytes)
    copied = walker.value(field_name, value)
    walker.check_encoded_size([copied])
    return copied


def parse_json_text(field_name: str, text: str, limits: PayloadLimits) -> Any:
    """``json.loads`` for text from outside, then :func:`check_json` without a byte limit (the
    text's own size was the reader's choice).

    Raises ValidationError naming ``field_name`` for what ``json.loads`` itself cannot survive
    (nesting deeper than the interpreter's recursion limit, integers longer than its digit
    limit) and naming the path inside the document for everything else.
    """
    try:
        data = json.loads(text, parse_int=bounded_int_parser(limits))
    except RecursionError:
        raise ValidationError(field_name, f"nests too deeply (at most {limits.max_json_depth} "
                                          "levels)") from None
    except json.JSONDecodeError as exc:
        raise ValidationError(field_name, f"is not valid JSON: {exc.msg} at line {exc.lineno} "
                                          f"column {exc.colno}") from None
    return check_json(field_name, data, limits, max_bytes=sys.maxsize)


# -- segments ----------------------------------------------------------------------------------


def _check_segments(walker: JSONWalker, limits: PayloadLimits,
                    segments: Any) -> tuple[dict[str, Any], ...]:
    if segments is None:
        return ()
    if isinstance(segments, str | bytes | bytearray | Mapping | set | frozenset) or not isinstance(
            segments, Iterable):
        raise ValidationError("segments", f"must be a list of objects, got "
                                          f"{type_name(segments)}")
    checked: list[dict[str, Any]] = []
    for seq, segment in enumerate(segments):
        where = f"segments[{seq}]"
        if not isinstance(segment, Mapping):
            raise ValidationError(where, f"must be an object with the keys "
                                         f"{', '.join(SEGMENT_FIELDS)}; got "
                                         f"{type_name(segment)}")
        unknown = [k for k in segment if k not in SEGMENT_FIELDS]
        if unknown:
            raise ValidationError(f"{where}{path_step(unknown[0])}",
                                  f"unknown field (known: {', '.join(SEGMENT_FIELDS)})")
        kind = segment.get("kind", "tool_call")
        tool_name = segment.get("tool_name")
        error = segment.get("error")
        duration = segment.get("duration_s")
        checked.append({
            "kind": check_name(f"{where}.kind", kind, SEGMENT_KIND_MAX_CHARS),
            "tool_name": None if tool_name is None else check_name(
                f"{where}.tool_name", tool_name, NAME_MAX_CHARS),
            "inputs": walker.object(f"{where}.inputs", segment.get("inputs")),
            "output": walker.value(f"{where}.output", segment.get("output")),
            "error": None if error is None else check_text(f"{where}.error", error,
                                                            limits.max_trace_chars),
            "duration_s": None if duration is None else check_duration(
                f"{where}.duration_s", duration),
        })
        walker.spend(where, 8)  # a segment is never free, so an endless iterable stops
    return tuple(checked)

