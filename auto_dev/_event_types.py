"""Event classes: frozen, validated, past-tense facts, and their JSON payload form.

Re-exported by :mod:`auto_dev.events`; see there for the bus. Every event validates itself on
construction (direct or from a payload) and raises :class:`~auto_dev.MalformedEventError` naming
the field. JSON-valued fields (``inputs``, ``metadata``, ``output``, ``expected``) are copied on
construction (tuples become lists), so the event owns its data and ``to_payload`` /
``from_payload`` round-trip exactly.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from auto_dev._exceptions import MalformedEventError

#: How deep a JSON value may nest; deeper is refused instead of exhausting the stack.
MAX_JSON_DEPTH = 64

_EVENT_ID = re.compile(r"[0-9A-Za-z_-]{1,32}")

Checker = Callable[[str, Any], Any]


# -- field checkers: each returns the value to store (a private copy for JSON) or raises -------


def _fail(name: str, problem: str) -> typing.NoReturn:
    raise MalformedEventError(name, problem)


def _type_name(value: Any) -> str:
    return type(value).__name__


def _check_text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        _fail(name, f"must be a string, got {_type_name(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        _fail(name, "must be valid Unicode text (it contains a lone surrogate)")
    return value


def identifier(max_len: int) -> Checker:
    """A non-empty printable string of at most ``max_len`` characters (names, ids, keys)."""

    def check(name: str, value: Any) -> str:
        text = _check_text(name, value)
        if not text.strip():
            _fail(name, "must not be empty")
        if len(text) > max_len:
            _fail(name, f"must be at most {max_len} characters, got {len(text)}")
        if not text.isprintable():
            _fail(name, "must not contain control characters")
        return text

    return check


def optional(checker: Checker) -> Checker:
    def check(name: str, value: Any) -> Any:
        return None if value is None else checker(name, value)

    return check


def _check_event_id(name: str, value: Any) -> str:
    text = _check_text(name, value)
    if not _EVENT_ID.fullmatch(text):
        _fail(name, "must be 1-32 characters of letters, digits, '_' or '-'")
    return text


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        _fail(name, f"must be true or false, got {_type_name(value)}")
    return value


def _check_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(name, f"must be an integer, got {_type_name(value)}")
    return value


def _check_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(name, f"must be a number, got {_type_name(value)}")
    try:
        number = float(value)
    except OverflowError:
        _fail(name, "is too large for a floating-point number")
    if not math.isfinite(number):
        _fail(name, f"must be a finite number, got {value!r}")
    return number


def non_negative(name: str, value: Any) -> float:
    number = _check_float(name, value)
    if number < 0:
        _fail(name, f"must be >= 0, got {number!r}")
    return number


def _check_datetime(name: str, value: Any) -> datetime:
    if not isinstance(value, datetime):
        _fail(name, f"must be a datetime, got {_type_name(value)}")
    if value.tzinfo is None or value.utcoffset() is None:
        _fail(name, "must be timezone-aware (use datetime.now(UTC))")
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        _fail(name, f"is out of range in UTC: {value.isoformat()}")


def _json_copy(name: str, value: Any, depth: int = 0) -> Any:
    if depth > MAX_JSON_DEPTH:
        _fail(name, f"nests deeper than {MAX_JSON_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            _fail(name, f"must be JSON: {value!r} is not a finite number")
        return float(value)
    if isinstance(value, str):
        return _check_text(name, value)
    if isinstance(value, list | tuple):
        return [_json_copy(f"{name}[{i}]", item, depth + 1) for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        copied: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                _fail(name, f"must be JSON: object key {key!r} is not a string")
            _check_text(f"{name}.{key}", key)
            copied[key] = _json_copy(f"{name}.{key}", item, depth + 1)
        return copied
    _fail(name, f"must be JSON, got {_type_name(value)}")


def _check_json(name: str, value: Any) -> Any:
    return _json_copy(name, value)


def _check_json_object(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        _fail(name, f"must be a JSON object (dict), got {_type_name(value)}")
    result: dict[str, Any] = _json_copy(name, value)
    return result


def _check_json_list(name: str, value: Any) -> list[Any]:
    if not isinstance(value, list | tuple):
        _fail(name, f"must be a JSON array (list), got {_type_name(value)}")
    result: list[Any] = _json_copy(name, value)
    return result


_SIMPLE_CHECKERS: dict[Any, Checker] = {
    str: _check_text,
    bool: _check_bool,
    int: _check_int,
    float: _check_float,
    datetime: _check_datetime,
    Any: _check_json,
}


def _checker_for(annotation: Any, where: str) -> Checker:
    """Derive a checker from a field's type annotation (for events without explicit checks)."""
    if annotation in _SIMPLE_CHECKERS:
        return _SIMPLE_CHECKERS[annotation]
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return optional(_checker_for(rest[0], where))
    if origin is dict and args and args[0] is str:
        return _check_json_object
    if origin is list:
        return _check_json_list
    raise TypeError(f"{where}: unsupported event field type {annotation!r}")


def check(checker: Checker) -> dict[str, Checker]:
    """Field metadata naming the checker that validates (and may normalise) the field's value.

    Use as ``name: str = field(default="", metadata=check(identifier(200)))``.
    """
    return {"check": checker}


def _new_event_id() -> str:
    return uuid.uuid4().hex


def _now() -> datetime:
    return datetime.now(UTC)


# -- the classes -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of every event. Subclasses are frozen keyword-only dataclasses named in the past tense.

    ``event_id`` identifies the event everywhere (outbox row, deliveries, logs); publishing the
    same event twice is harmless. ``tenant_id`` scopes it. ``occurred_at`` is aware UTC.
    Subclasses register themselves under their class name (or ``type_name``) for
    :meth:`from_payload`; pass ``abstract=True`` in the class statement for a grouping base.
    """

    type_name: ClassVar[str] = "Event"
    _registry: ClassVar[dict[str, type[Event]]] = {}
    _checkers: ClassVar[dict[str, Checker]]
    _timestamp_fields: ClassVar[frozenset[str]]

    event_id: str = field(default_factory=_new_event_id, metadata=check(_check_event_id))
    tenant_id: str = field(default="default", metadata=check(identifier(64)))
    occurred_at: datetime = field(default_factory=_now, metadata=check(_check_datetime))

    def __init_subclass__(cls, *, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type_name" not in cls.__dict__:
            cls.type_name = cls.__name__
        if abstract:
            return
        existing = Event._registry.get(cls.type_name)
        if existing is not None and (
            existing.__module__,
            existing.__qualname__,
        ) != (cls.__module__, cls.__qualname__):
            raise TypeError(
                f"event type name {cls.type_name!r} is already used by "
                f"{existing.__module__}.{existing.__qualname__}; "
                f"set type_name on {cls.__qualname__}"
            )
        Event._registry[cls.type_name] = cls

    def __post_init__(self) -> None:
        self.validate()

    # -- validation ---------------------------------------------------------------------

    @classmethod
    def _field_checkers(cls) -> dict[str, Checker]:
        cached = cls.__dict__.get("_checkers")
        if cached is not None:
            return cached
        hints = typing.get_type_hints(cls)
        checkers: dict[str, Checker] = {}
        for f in dataclasses.fields(cls):
            explicit = f.metadata.get("check")
            checkers[f.name] = explicit or _checker_for(hints[f.name], f"{cls.__name__}.{f.name}")
        cls._timestamp_fields = frozenset(n for n in checkers if hints[n] is datetime)
        cls._checkers = checkers
        return checkers

    def validate(self) -> None:
        """Check (and normalise) every field; raise :class:`MalformedEventError` naming it."""
        for name, checker in self._field_checkers().items():
            value = getattr(self, name)
            normalised = checker(name, value)
            if normalised is not value:
                object.__setattr__(self, name, normalised)
        self._check()

    def _check(self) -> None:
        """Cross-field rules of a subclass (override; the default has none)."""

    # -- payloads -------------------------------------------------------------------------

    def to_payload(self) -> dict[str, Any]:
        """The event as a JSON object (timestamps as ISO 8601 strings)."""
        payload: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, dict | list):
                value = _json_copy(f.name, value)
            payload[f.name] = value
        return payload

    @classmethod
    def event_types(cls) -> dict[str, type[Event]]:
        """Every registered event type by name."""
        return dict(Event._registry)

    @classmethod
    def from_payload(cls, type_name: str, payload: Any) -> Event:
        """Rebuild an event from its type name and JSON payload, or raise MalformedEventError."""
        if not isinstance(type_name, str):
            raise MalformedEventError("type", f"must be a string, got {_type_name(type_name)}")
        event_cls = Event._registry.get(type_name)
        if event_cls is None or not issubclass(event_cls, cls):
            known = ", ".join(sorted(n for n, c in Event._registry.items() if issubclass(c, cls)))
            raise MalformedEventError("type", f"unknown event type {type_name!r} (known: {known})")
        if not isinstance(payload, Mapping):
            raise MalformedEventError(
                "payload", f"must be a JSON object, got {_type_name(payload)}"
            )
        fields = {f.name: f for f in dataclasses.fields(event_cls) if f.init}
        kwargs: dict[str, Any] = {}
        for key, value in payload.items():
            if not isinstance(key, str):
                raise MalformedEventError("payload", f"field name {key!r} is not a string")
            if key not in fields:
                raise MalformedEventError(key, f"unknown field for {type_name}")
            kwargs[key] = value
        for name, f in fields.items():
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required and name not in kwargs:
                raise MalformedEventError(name, f"missing (required by {type_name})")
        event_cls._field_checkers()  # computes _timestamp_fields on first use
        for name in event_cls._timestamp_fields & kwargs.keys():
            kwargs[name] = _parse_timestamp(name, kwargs[name])
        return event_cls(**kwargs)


def _parse_timestamp(name: str, value: Any) -> datetime:
    if not isinstance(value, str):
        raise MalformedEventError(name, f"must be an ISO 8601 timestamp, got {_type_name(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise MalformedEventError(name, f"is not an ISO 8601 timestamp: {value!r}") from exc
    return parsed


_agent = identifier(200)
_name = identifier(200)
_opt_name = optional(identifier(200))
_opt_id = optional(identifier(64))


@dataclass(frozen=True, kw_only=True)
class TaskFailed(Event):
    """An agent's task failed. ``expected`` is the right answer when the platform knows it
    (``None``: unknown); ``inputs`` are the arguments the failing tool received."""

    agent_id: str = field(metadata=check(_agent))
    task_description: str = field(default="", metadata=check(_check_text))
    error_trace: str = field(default="", metadata=check(_check_text))
    tool_name: str | None = field(default=None, metadata=check(_opt_name))
    episode_id: str | None = field(default=None, metadata=check(_opt_id))
    inputs: dict[str, Any] = field(default_factory=dict, metadata=check(_check_json_object))
    expected: Any = field(default=None, metadata=check(_check_json))
    metadata: dict[str, Any] = field(default_factory=dict, metadata=check(_check_json_object))
    #: The registered workflow the task was a run of (``inputs`` is then the workflow's input).
    workflow: str | None = field(default=None, metadata=check(_opt_name))


@dataclass(frozen=True, kw_only=True)
class TaskSucceeded(Event):
    """An agent's task succeeded, with the inputs and the output it produced."""

    agent_id: str = field(metadata=check(_agent))
    task_description: str = field(default="", metadata=check(_check_text))
    tool_name: str | None = field(default=None, metadata=check(_opt_name))
    episode_id: str | None = field(default=None, metadata=check(_opt_id))
    inputs: dict[str, Any] = field(default_factory=dict, metadata=check(_check_json_object))
    output: Any = field(default=None, metadata=check(_check_json))
    metadata: dict[str, Any] = field(default_factory=dict, metadata=check(_check_json_object))
    #: The registered workflow the task was a run of (``inputs`` is then the workflow's input).
    workflow: str | None = field(default=None, metadata=check(_opt_name))


@dataclass(frozen=True, kw_only=True)
class SkillExecuted(Event):
    """A skill (a tool version) ran: whether it succeeded and how long it took."""

    agent_id: str = field(metadata=check(_agent))
    skill_name: str = field(metadata=check(_name))
    success: bool = field(metadata=check(_check_bool))
    execution_seconds: float = field(metadata=check(non_negative))
    tool_version_id: str | None = field(default=None, metadata=check(_opt_id))
    metadata: dict[str, Any] = field(default_factory=dict, metadata=check(_check_json_object))


def _target_kind(name: str, value: Any) -> str:
    if value not in ("tool", "workflow"):
        _fail(name, f"must be 'tool' or 'workflow', got {value!r}")
    return str(value)


@dataclass(frozen=True, kw_only=True)
class SignalRecorded(Event):
    """A signal (``kind``: business value, feedback, or a name of the user's own) was recorded
    against version ``version`` of a tool or workflow."""

    signal_id: str = field(metadata=check(identifier(32)))
    target_kind: str = field(metadata=check(_target_kind))
    target: str = field(metadata=check(_name))
    version_id: str = field(metadata=check(identifier(32)))
    version: int = field(metadata=check(_check_int))
    kind: str = field(metadata=check(_name))
    value: float = field(metadata=check(_check_float))
    agent_id: str | None = field(default=None, metadata=check(_opt_name))
    metadata: dict[str, Any] = field(default_factory=dict, metadata=check(_check_json_object))


@dataclass(frozen=True, kw_only=True)
class CandidateEvent(Event, abstract=True):
    """Base of the candidate lifecycle events (subscribe to it to receive every one)."""

    candidate_kind: str = field(metadata=check(identifier(32)))
    candidate_id: str = field(metadata=check(identifier(32)))
    tool_name: str | None = field(default=None, metadata=check(_opt_name))
    actor: str = field(default="system", metadata=check(identifier(200)))
    reason: str = field(default="", metadata=check(_check_text))
    metadata: dict[str, Any] = field(default_factory=dict, metadata=check(_check_json_object))


@dataclass(frozen=True, kw_only=True)
class CandidateCreated(CandidateEvent):
    """A learning engine stored a new candidate (it still needs evaluation and review)."""


@dataclass(frozen=True, kw_only=True)
class CandidateApproved(CandidateEvent):
    """A named human reviewer approved a candidate (it may now be promoted)."""


@dataclass(frozen=True, kw_only=True)
class CandidateRejected(CandidateEvent):
    """A named human reviewer rejected a candidate; ``reason`` says why."""


@dataclass(frozen=True, kw_only=True)
class CandidatePromoted(CandidateEvent):
    """A candidate became the active version ``tool_version_id`` of its tool."""

    tool_version_id: str | None = field(default=None, metadata=check(_opt_id))


@dataclass(frozen=True, kw_only=True)
class CandidateRolledBack(CandidateEvent):
    """A promoted candidate was rolled back; ``tool_version_id`` is the version active now."""

    tool_version_id: str | None = field(default=None, metadata=check(_opt_id))


#: Seed-compatible names: handlers annotated with these keep working.
TaskEvent = TaskFailed | TaskSucceeded
SkillExecutionEvent = SkillExecuted
