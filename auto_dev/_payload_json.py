"""The building blocks of :mod:`auto_dev.payloads`: limits, scalar checks and the JSON walker
that copies a value into plain JSON types within the limits, naming the path of the first
problem. Split out of ``payloads`` to keep both modules short; import from there."""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from auto_dev._exceptions import ValidationError

if TYPE_CHECKING:
    from auto_dev.config import Settings

#: Longest time an execution or a segment may claim (ten years), so sums stay finite.
MAX_DURATION_S = 10 * 365 * 86_400.0
#: Longest tenant id (the width of its column).
TENANT_ID_MAX_CHARS = 64


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



# -- scalars -----------------------------------------------------------------------------------


def type_name(value: Any) -> str:
    return type(value).__name__


def check_bool(field_name: str, value: Any) -> bool:
    if value is True or value is False:
        return value
    raise ValidationError(field_name, f"must be true or false, got {type_name(value)}")


def plain_text(field_name: str, value: Any) -> str:
    """``value`` as an exact ``str`` that can be stored anywhere, or ValidationError."""
    if not isinstance(value, str):
        raise ValidationError(field_name, f"must be a string, got {type_name(value)}")
    text = str.__str__(value)  # a str subclass becomes a plain str
    problem = text_problem(text)
    if problem:
        raise ValidationError(field_name, problem)
    return text


def text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "must not contain NUL characters (\\x00)"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            return (f"must be valid Unicode text: it contains a lone surrogate "
                    f"({text[exc.start]!r} at position {exc.start})")
    return None


def check_text(field_name: str, value: Any, max_chars: int) -> str:
    if isinstance(value, str) and len(value) > max_chars:
        # Before the character checks: refusing 20 MB should not cost scanning 20 MB.
        raise ValidationError(field_name, f"is {len(value):,} characters long; at most "
                                          f"{max_chars:,} are accepted")
    return plain_text(field_name, value)


def check_name(field_name: str, value: Any, max_chars: int) -> str:
    text = check_text(field_name, value, max_chars)
    if not text.strip():
        raise ValidationError(field_name, "must be a non-empty string")
    if not text.isprintable():
        raise ValidationError(field_name, "must not contain control characters")
    return text


def check_tenant(value: Any) -> str | None:
    return None if value is None else check_name("tenant_id", value, TENANT_ID_MAX_CHARS)


def check_duration(field_name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(field_name, f"must be a number of seconds, got {type_name(value)}")
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


def bounded_int_parser(limits: PayloadLimits) -> Any:
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


def path_step(key: str | int) -> str:
    if isinstance(key, int):
        return f"[{key}]"
    shown = key if len(key) <= 40 else key[:40] + "..."
    return f".{shown}" if shown.isidentifier() else f"[{shown!r}]"


class JSONWalker:
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
            path = field_name + "".join(path_step(k) for k in reversed(refusal.keys))
            raise ValidationError(path, refusal.problem) from None

    def object(self, field_name: str, value: Any) -> dict[str, Any]:
        """A JSON object (``None`` is the empty object)."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ValidationError(field_name, f"must be an object (a dict with string keys), "
                                              f"got {type_name(value)}")
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
            problem = text_problem(text)
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
                               f"an object), got {type_name(value)}")

    def _copy_object(self, value: Mapping[Any, Any], depth: int) -> dict[str, Any]:
        copied: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Refusal(f"object keys must be strings; {type_name(key)} key "
                               f"{_short_repr(key)} is not")
            self._charge(len(key) + 3)
            plain = str.__str__(key)
            problem = text_problem(plain)
            if problem:
                refusal = _Refusal(f"key {problem}")
                refusal.keys.append(plain)  # shown escaped: repr() in path_step
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
        return f"<{type_name(value)}>"
    return text if len(text) <= 40 else text[:40] + "..."

