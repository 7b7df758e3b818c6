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

import functools
import json
import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from auto_dev._exceptions import ValidationError
from auto_dev.sandbox.base import Case

if TYPE_CHECKING:
    from auto_dev.config import Settings

#: Longest agent key, tool or skill name (the width of their columns).
NAME_MAX_CHARS = 200
#: Longest tenant id and segment kind (the width of their columns).
TENANT_ID_MAX_CHARS = 64
SEGMENT_KIND_MAX_CHARS = 32
#: The keys a segment may have; ``kind`` defaults to ``tool_call``.
SEGMENT_FIELDS = ("kind", "tool_name", "inputs", "output", "error", "duration_s")
#: Longest time an execution or a segment may claim (ten years), so sums stay finite.
MAX_DURATION_S = 10 * 365 * 86_400.0


@dataclass(frozen=True, slots=True)
class PayloadLimits:
    """How much one report may carry. Defaults match :class:`~auto_dev.config.Settings`."""

    max_task_chars: int = 65_536
    max_trace_chars: int = 1_048_576
    #: The JSON parts of one report together (inputs, expected, output, metadata, segments),
    #: as compact UTF-8 JSON.
    max_payload_bytes: int = 4 * 1024 * 1024
    max_json_depth: int = 64
    max_json_int_digits: int = 1000

    def __post_init__(self) -> None:
        for name in ("max_task_chars", "max_trace_chars", "max_payload_bytes",
                     "max_json_depth", "max_json_int_digits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(name, f"must be a positive integer, got {value!r}")

    @classmethod
    def from_settings(cls, settings: Settings) -> PayloadLimits:
        return cls(
            max_task_chars=settings.max_task_chars,
            max_trace_chars=settings.max_trace_chars,
            max_payload_bytes=settings.max_payload_bytes,
            max_json_depth=settings.max_json_depth,
            max_json_int_digits=settings.max_json_int_digits,
        )


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
) -> EpisodeReport:
    """Check and copy ``record_episode``'s arguments; raise ValidationError naming the field."""
    name = _check_name("agent", agent, NAME_MAX_CHARS)
    text = _check_text("task", task, limits.max_task_chars)
    ok = _check_bool("success", success)
    tool = None if tool_name is None else _check_name("tool_name", tool_name, NAME_MAX_CHARS)
    trace = None if error_trace is None else _check_text("error_trace", error_trace,
                                                         limits.max_trace_chars)
    tenant = _check_tenant(tenant_id)
    walker = _JSONWalker(limits)
    call = walker.object("inputs", inputs)
    has_expected = expected is not ...
    copied_expected = walker.value("expected", expected) if has_expected else ...
    copied_output = walker.value("output", output)
    meta = walker.object("metadata", metadata)
    parts = _check_segments(walker, limits, segments)
    walker.check_encoded_size([call, copied_expected if has_expected else None,
                               copied_output, meta, list(parts)])
    case: Case | None = None
    if has_expected:
        case = Case.from_dict({**call, "expected": copied_expected}, where="inputs")
    elif call:
        Case.from_dict(call, where="inputs")  # the shape of a tool call, even without expected
    return EpisodeReport(
        agent=name, task=text, success=ok, tool_name=tool, inputs=call,
        expected=copied_expected, output=copied_output, error_trace=trace, segments=parts,
        metadata=meta, tenant_id=tenant, case=case,
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
    name = _check_name("agent", agent, NAME_MAX_CHARS)
    skill = _check_name("skill_name", skill_name, NAME_MAX_CHARS)
    ok = _check_bool("success", success)
    seconds = _check_duration("execution_seconds", execution_seconds)
    tenant = _check_tenant(tenant_id)
    walker = _JSONWalker(limits)
    meta = walker.object("metadata", metadata)
    walker.check_encoded_size([meta])
    return SkillExecutionReport(agent=name, skill_name=skill, success=ok,
                                execution_seconds=seconds, metadata=meta, tenant_id=tenant)


def check_json(field_name: str, value: Any, limits: PayloadLimits, *,
               max_bytes: int | None = None) -> Any:
    """A plain-JSON copy of ``value`` within ``limits`` (``max_bytes`` instead of
    ``limits.max_payload_bytes`` when given); raise ValidationError naming the path."""
    walker = _JSONWalker(limits, max_bytes=max_bytes)
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
        data = json.loads(text, parse_int=_bounded_int_parser(limits))
    except RecursionError:
        raise ValidationError(field_name, f"nests too deeply (at most {limits.max_json_depth} "
                                          "levels)") from None
    except json.JSONDecodeError as exc:
        raise ValidationError(field_name, f"is not valid JSON: {exc.msg} at line {exc.lineno} "
                                          f"column {exc.colno}") from None
    return check_json(field_name, data, limits, max_bytes=sys.maxsize)


# -- scalars -----------------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    return type(value).__name__


def _check_bool(field_name: str, value: Any) -> bool:
    if value is True or value is False:
        return value
    raise ValidationError(field_name, f"must be true or false, got {_type_name(value)}")


def _plain_text(field_name: str, value: Any) -> str:
    """``value`` as an exact ``str`` that can be stored anywhere, or ValidationError."""
    if not isinstance(value, str):
        raise ValidationError(field_name, f"must be a string, got {_type_name(value)}")
    text = str.__str__(value)  # a str subclass becomes a plain str
    problem = _text_problem(text)
    if problem:
        raise ValidationError(field_name, problem)
    return text


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "must not contain NUL characters (\\x00)"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            return (f"must be valid Unicode text: it contains a lone surrogate "
                    f"({text[exc.start]!r} at position {exc.start})")
    return None


def _check_text(field_name: str, value: Any, max_chars: int) -> str:
    if isinstance(value, str) and len(value) > max_chars:
        # Before the character checks: refusing 20 MB should not cost scanning 20 MB.
        raise ValidationError(field_name, f"is {len(value):,} characters long; at most "
                                          f"{max_chars:,} are accepted")
    return _plain_text(field_name, value)


def _check_name(field_name: str, value: Any, max_chars: int) -> str:
    text = _check_text(field_name, value, max_chars)
    if not text.strip():
        raise ValidationError(field_name, "must be a non-empty string")
    if not text.isprintable():
        raise ValidationError(field_name, "must not contain control characters")
    return text


def _check_tenant(value: Any) -> str | None:
    return None if value is None else _check_name("tenant_id", value, TENANT_ID_MAX_CHARS)


def _check_duration(field_name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(field_name, f"must be a number of seconds, got {_type_name(value)}")
    try:
        seconds = float(value)
    except OverflowError:
        raise ValidationError(field_name, "is too large") from None
    if not math.isfinite(seconds):
        raise ValidationError(field_name, f"must be a finite number, got {seconds!r}")
    if seconds < 0:
        raise ValidationError(field_name, f"must be >= 0, got {seconds!r}")
    if seconds > MAX_DURATION_S:
        raise ValidationError(field_name, f"must be at most {MAX_DURATION_S:g} seconds")
    return seconds


# -- segments ----------------------------------------------------------------------------------


def _check_segments(walker: _JSONWalker, limits: PayloadLimits,
                    segments: Any) -> tuple[dict[str, Any], ...]:
    if segments is None:
        return ()
    if isinstance(segments, str | bytes | bytearray | Mapping | set | frozenset) or not isinstance(
            segments, Iterable):
        raise ValidationError("segments", f"must be a list of objects, got "
                                          f"{_type_name(segments)}")
    checked: list[dict[str, Any]] = []
    for seq, segment in enumerate(segments):
        where = f"segments[{seq}]"
        if not isinstance(segment, Mapping):
            raise ValidationError(where, f"must be an object with the keys "
                                         f"{', '.join(SEGMENT_FIELDS)}; got "
                                         f"{_type_name(segment)}")
        unknown = [k for k in segment if k not in SEGMENT_FIELDS]
        if unknown:
            raise ValidationError(f"{where}{_path_step(unknown[0])}",
                                  f"unknown field (known: {', '.join(SEGMENT_FIELDS)})")
        kind = segment.get("kind", "tool_call")
        tool_name = segment.get("tool_name")
        error = segment.get("error")
        duration = segment.get("duration_s")
        checked.append({
            "kind": _check_name(f"{where}.kind", kind, SEGMENT_KIND_MAX_CHARS),
            "tool_name": None if tool_name is None else _check_name(
                f"{where}.tool_name", tool_name, NAME_MAX_CHARS),
            "inputs": walker.object(f"{where}.inputs", segment.get("inputs")),
            "output": walker.value(f"{where}.output", segment.get("output")),
            "error": None if error is None else _check_text(f"{where}.error", error,
                                                            limits.max_trace_chars),
            "duration_s": None if duration is None else _check_duration(
                f"{where}.duration_s", duration),
        })
        walker.spend(where, 8)  # a segment is never free, so an endless iterable stops
    return tuple(checked)


# -- JSON --------------------------------------------------------------------------------------


class _Refusal(Exception):
    """A problem deep inside a value; each level on the way out adds its key to the path."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.keys: list[str | int] = []  # innermost first


class _HugeInt:
    """What the JSON parser makes of an integer literal too long to convert (reported with its
    path by the walker instead of failing inside ``json.loads``)."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _bounded_int_parser(limits: PayloadLimits) -> Any:
    def parse(literal: str) -> int | _HugeInt:
        digits = len(literal.lstrip("-"))
        if digits > limits.max_json_int_digits:
            return _HugeInt(digits)
        return int(literal)

    return parse


_HINTS: dict[type, str] = {
    bytes: "bytes are not JSON; decode them to text or base64-encode them",
    bytearray: "bytes are not JSON; decode them to text or base64-encode them",
    set: "a set is not JSON; pass a list",
    frozenset: "a set is not JSON; pass a list",
    complex: "a complex number is not JSON",
}


def _path_step(key: str | int) -> str:
    if isinstance(key, int):
        return f"[{key}]"
    shown = key if len(key) <= 40 else key[:40] + "..."
    return f".{shown}" if shown.isidentifier() else f"[{shown!r}]"


class _JSONWalker:
    """Copies JSON values of one report, sharing one byte budget between them."""

    def __init__(self, limits: PayloadLimits, *, max_bytes: int | None = None) -> None:
        self.limits = limits
        self.max_bytes = limits.max_payload_bytes if max_bytes is None else max_bytes
        # A lower bound of the encoded size so far: stops the walk early on huge values.
        self.spent = 0
        digits = limits.max_json_int_digits
        interpreter_max = sys.get_int_max_str_digits()
        if interpreter_max:  # 0 means the interpreter has no limit
            digits = min(digits, interpreter_max)
        self.max_int_digits = digits
        self.int_bound = _int_bound(digits)

    def spend(self, field_name: str, amount: int) -> None:
        self.spent += amount
        if self.spent > self.max_bytes:
            raise ValidationError(field_name, self._too_big())

    def _too_big(self) -> str:
        return (f"makes the report larger than {self.max_bytes:,} bytes of JSON "
                "(setting max_payload_bytes)")

    def value(self, field_name: str, value: Any) -> Any:
        try:
            return self._copy(value, 0)
        except _Refusal as refusal:
            path = field_name + "".join(_path_step(k) for k in reversed(refusal.keys))
            raise ValidationError(path, refusal.problem) from None

    def object(self, field_name: str, value: Any) -> dict[str, Any]:
        """A JSON object (``None`` is the empty object)."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ValidationError(field_name, f"must be an object (a dict with string keys), "
                                              f"got {_type_name(value)}")
        copied: dict[str, Any] = self.value(field_name, value)
        return copied

    def check_encoded_size(self, values: list[Any]) -> None:
        """The exact size, once everything is known to be JSON (escapes and long numbers make
        it larger than the running count)."""
        if self.max_bytes >= sys.maxsize:
            return
        encoded = json.dumps(values, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        total = len(encoded) if encoded.isascii() else len(encoded.encode("utf-8"))
        size = total - (len(values) + 1)  # without the list's brackets and commas
        if size > self.max_bytes:
            raise ValidationError("payload", f"is {size:,} bytes of JSON; at most "
                                             f"{self.max_bytes:,} are accepted "
                                             "(setting max_payload_bytes)")

    def _charge(self, amount: int) -> None:
        self.spent += amount
        if self.spent > self.max_bytes:
            raise _Refusal(self._too_big())

    def _copy(self, value: Any, depth: int) -> Any:
        # Exact types first (what agents almost always send), subclasses after.
        kind = type(value)
        if kind is str or (kind is not bool and isinstance(value, str)):
            self._charge(len(value) + 2)  # before scanning it: refuse a huge string cheaply
            text = value if kind is str else str.__str__(value)
            problem = _text_problem(text)
            if problem:
                raise _Refusal(problem)
            return text
        if value is None or kind is bool:
            self._charge(4)
            return value
        if kind is int or isinstance(value, int):
            if not -self.int_bound < value < self.int_bound:
                raise _Refusal(f"is an integer of more than {self.max_int_digits} digits "
                               "(setting max_json_int_digits)")
            self._charge(1)
            return value if kind is int else int.__int__(value)  # an IntEnum: a plain int
        if kind is float or isinstance(value, float):
            number = float.__float__(value)
            if not math.isfinite(number):
                raise _Refusal(f"must be a finite number, got {number!r} (not valid JSON)")
            self._charge(1)
            return number
        if kind is dict or kind is list or isinstance(value, list | tuple | Mapping):
            if depth >= self.limits.max_json_depth:
                raise _Refusal(f"nests deeper than {self.limits.max_json_depth} levels "
                               "(setting max_json_depth)")
            self._charge(2)
            if isinstance(value, Mapping):
                return self._copy_object(value, depth)
            copied_list = []
            for index, item in enumerate(value):
                try:
                    copied_list.append(self._copy(item, depth + 1))
                except _Refusal as refusal:
                    refusal.keys.append(index)
                    raise
                self._charge(1)
            return copied_list
        if isinstance(value, _HugeInt):
            raise _Refusal(f"is an integer of {value.digits} digits; at most "
                           f"{self.max_int_digits} are accepted (setting max_json_int_digits)")
        hint = _HINTS.get(kind)
        raise _Refusal(hint or f"must be JSON (null, true/false, a number, a string, a list or "
                               f"an object), got {_type_name(value)}")

    def _copy_object(self, value: Mapping[Any, Any], depth: int) -> dict[str, Any]:
        copied: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Refusal(f"object keys must be strings; {_type_name(key)} key "
                               f"{_short_repr(key)} is not")
            self._charge(len(key) + 3)
            plain = str.__str__(key)
            problem = _text_problem(plain)
            if problem:
                refusal = _Refusal(f"key {problem}")
                refusal.keys.append(plain)  # shown escaped: repr() in _path_step
                raise refusal
            try:
                copied[plain] = self._copy(item, depth + 1)
            except _Refusal as refusal:
                refusal.keys.append(plain)
                raise
        return copied


@functools.lru_cache(maxsize=8)
def _int_bound(digits: int) -> int:
    return int(10**digits)


def _short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ must not replace the real problem
        return f"<{_type_name(value)}>"
    return text if len(text) <= 40 else text[:40] + "..."

