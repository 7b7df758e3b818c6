"""Tests for auto_dev.events: event validation and payloads, and the durable EventBus."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import sqlite3
import string
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator
from dataclasses import field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from auto_dev._exceptions import DatabaseLockedError, MalformedEventError, ValidationError
from auto_dev.db import Database
from auto_dev.events import (
    CandidateCreated,
    CandidateEvent,
    CandidatePromoted,
    CandidateRolledBack,
    Event,
    EventBus,
    SignalRecorded,
    SkillExecuted,
    SkillExecutionEvent,
    TaskEvent,
    TaskFailed,
    TaskSucceeded,
)
from auto_dev.models import EventDelivery, EventRecord, utcnow

REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ToolTimedOut(Event):
    """A custom event whose checks come from its annotations alone."""

    tool_name: str
    seconds: float
    attempts: int = 1
    tags: list[Any] = field(default_factory=list)
    note: str | None = None


def module_level_handler(event: Event) -> None:
    """A handler whose default name is derived from the module and qualname."""


def _failed(**kwargs: Any) -> TaskFailed:
    return TaskFailed(agent_id=kwargs.pop("agent_id", "agent-1"), **kwargs)


def _deliveries(db: Database) -> dict[tuple[str, str], tuple[str, int]]:
    with db.session(readonly=True) as s:
        rows = s.scalars(select(EventDelivery)).all()
        return {(r.event_id, r.handler): (r.status, r.attempts) for r in rows}


def _record_status(db: Database, event_id: str) -> str | None:
    with db.session(readonly=True) as s:
        record = s.get(EventRecord, event_id)
        return None if record is None else record.status


@pytest.fixture
async def bus(database: Database) -> AsyncIterator[EventBus]:
    event_bus = EventBus(database, handler_timeout_s=1.0, backoff_base_s=0.05, max_attempts=3)
    yield event_bus
    await event_bus.aclose(drain_timeout_s=5)


# -- strategies ------------------------------------------------------------------------------

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=16)
# Letters, digits, punctuation and symbols are all printable: no filter needed (filters are slow).
_ident = st.text(
    alphabet=st.characters(whitelist_categories=("L", "N", "P", "S")), min_size=1, max_size=16
)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_text, children, max_size=3),
    max_leaves=8,
)
_json_object = st.dictionaries(_text, _json, max_size=3)
_when = st.datetimes(
    min_value=datetime(1900, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
    ),
)
_common: dict[str, Any] = {
    "event_id": st.text(
        alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=32
    ),
    "tenant_id": _ident,
    "occurred_at": _when,
}
_opt_ident = st.none() | _ident
_candidate: dict[str, Any] = {
    "candidate_kind": _ident,
    "candidate_id": _ident,
    "tool_name": _opt_ident,
    "actor": _ident,
    "reason": _text,
    "metadata": _json_object,
}
_events = st.one_of(
    st.builds(
        TaskFailed,
        agent_id=_ident,
        task_description=_text,
        error_trace=_text,
        tool_name=_opt_ident,
        episode_id=_opt_ident,
        inputs=_json_object,
        expected=_json,
        metadata=_json_object,
        workflow=_opt_ident,
        **_common,
    ),
    st.builds(
        TaskSucceeded,
        agent_id=_ident,
        task_description=_text,
        tool_name=_opt_ident,
        episode_id=_opt_ident,
        inputs=_json_object,
        output=_json,
        metadata=_json_object,
        workflow=_opt_ident,
        **_common,
    ),
    st.builds(
        SkillExecuted,
        agent_id=_ident,
        skill_name=_ident,
        success=st.booleans(),
        execution_seconds=st.floats(min_value=0, max_value=1e6),
        tool_version_id=_opt_ident,
        metadata=_json_object,
        **_common,
    ),
    st.builds(
        SignalRecorded,
        signal_id=_ident.filter(lambda t: len(t) <= 32),
        target_kind=st.sampled_from(["tool", "workflow"]),
        target=_ident,
        version_id=_ident.filter(lambda t: len(t) <= 32),
        version=st.integers(1, 10**6),
        kind=_ident,
        value=st.floats(allow_nan=False, allow_infinity=False),
        agent_id=_opt_ident,
        metadata=_json_object,
        **_common,
    ),
    st.builds(CandidateCreated, **_candidate, **_common),
    st.builds(CandidatePromoted, tool_version_id=_opt_ident, **_candidate, **_common),
    st.builds(CandidateRolledBack, tool_version_id=_opt_ident, **_candidate, **_common),
    st.builds(
        ToolTimedOut,
        tool_name=_text,
        seconds=st.floats(allow_nan=False, allow_infinity=False),
        attempts=st.integers(),
        tags=st.lists(_json, max_size=3),
        note=st.none() | _text,
        **_common,
    ),
)
_junk = (
    _json
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=4)
    | st.tuples(st.integers(), _text)
    | st.sets(st.integers(), max_size=2)
    | st.builds(object)
    | st.datetimes()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.dictionaries(st.integers() | st.text(max_size=3), st.integers(), max_size=2)
    | st.just("2024-01-01T00:00:00")
    | st.just("0001-01-01T00:00:00+05:00")
)


def _round_trip(event: Event) -> Event:
    text = json.dumps(event.to_payload(), allow_nan=False)
    return Event.from_payload(event.type_name, json.loads(text))


class TestEventValidation:
    """Every event validates itself and names the bad field."""

    @pytest.mark.parametrize(
        ("type_name", "payload", "field_name"),
        [
            ("TaskFailed", {}, "agent_id"),
            ("TaskFailed", {"agent_id": ""}, "agent_id"),
            ("TaskFailed", {"agent_id": 3}, "agent_id"),
            ("TaskFailed", {"agent_id": "a", "inputs": [1]}, "inputs"),
            ("TaskFailed", {"agent_id": "a", "inputs": {"x": float("nan")}}, "inputs.x"),
            ("TaskFailed", {"agent_id": "a", "metadata": {"k": {1, 2}}}, "metadata.k"),
            ("TaskFailed", {"agent_id": "a", "metadata": {"k": [1, b"x"]}}, "metadata.k[1]"),
            ("TaskFailed", {"agent_id": "a", "bogus": 1}, "bogus"),
            ("TaskFailed", {"agent_id": "a", "occurred_at": "yesterday"}, "occurred_at"),
            ("TaskFailed", {"agent_id": "a", "occurred_at": "2024-01-01T00:00:00"}, "occurred_at"),
            ("TaskFailed", {"agent_id": "a", "occurred_at": 1700000000}, "occurred_at"),
            ("TaskFailed", {"agent_id": "a", "tenant_id": ""}, "tenant_id"),
            ("TaskFailed", {"agent_id": "a", "event_id": "has space"}, "event_id"),
            ("TaskFailed", {"agent_id": "a", "error_trace": None}, "error_trace"),
            ("TaskFailed", {"agent_id": "a", "tool_name": "bad\nname"}, "tool_name"),
            ("TaskSucceeded", {"agent_id": "a", "output": b"bytes"}, "output"),
            ("TaskSucceeded", {"agent_id": "a", "task_description": "\ud800"}, "task_description"),
            (
                "SkillExecuted",
                {"agent_id": "a", "skill_name": "s", "success": True, "execution_seconds": -0.5},
                "execution_seconds",
            ),
            (
                "SkillExecuted",
                {"agent_id": "a", "skill_name": "s", "success": "yes", "execution_seconds": 1},
                "success",
            ),
            (
                "SkillExecuted",
                {"agent_id": "a", "skill_name": "s", "success": True, "execution_seconds": "1"},
                "execution_seconds",
            ),
            (
                "SkillExecuted",
                {"agent_id": "a", "skill_name": "s", "success": True},
                "execution_seconds",
            ),
            ("CandidatePromoted", {"candidate_kind": "tool_mutation"}, "candidate_id"),
            ("ToolTimedOut", {"tool_name": "t", "seconds": 1, "attempts": 1.5}, "attempts"),
            ("ToolTimedOut", {"tool_name": "t", "seconds": 1, "tags": {"a": 1}}, "tags"),
            ("NoSuchEvent", {}, "type"),
            ("CandidateEvent", {}, "type"),
            (5, {}, "type"),
            ("TaskFailed", [1, 2], "payload"),
            ("TaskFailed", {1: "a"}, "payload"),
        ],
    )
    def test_malformed_payload_names_the_field(
        self, type_name: Any, payload: Any, field_name: str
    ) -> None:
        """Each malformed payload raises MalformedEventError with the offending field."""
        with pytest.raises(MalformedEventError) as info:
            Event.from_payload(type_name, payload)
        assert info.value.field == field_name
        assert isinstance(info.value, ValueError)

    def test_deep_nesting_is_refused(self) -> None:
        """A JSON value nested past the limit is refused, not a RecursionError."""
        value: Any = 1
        for _ in range(200):
            value = [value]
        with pytest.raises(MalformedEventError) as info:
            _failed(inputs={"deep": value})
        assert info.value.field.startswith("inputs.deep")

    def test_direct_construction_validates(self) -> None:
        """Building an event in Python runs the same checks as a payload."""
        with pytest.raises(MalformedEventError) as info:
            SkillExecuted(agent_id="a", skill_name="s", success=True, execution_seconds=-1)
        assert info.value.field == "execution_seconds"
        with pytest.raises(MalformedEventError, match="timezone-aware"):
            _failed(occurred_at=datetime(2024, 1, 1))

    def test_events_are_frozen_and_own_their_data(self) -> None:
        """Fields cannot be reassigned, and the caller's dicts are copied (tuples to lists)."""
        inputs = {"xs": (1, 2)}
        event = _failed(inputs=inputs)
        inputs["xs"] = (9,)
        assert event.inputs == {"xs": [1, 2]}
        with pytest.raises(dataclasses.FrozenInstanceError):
            event.agent_id = "other"  # type: ignore[misc]

    def test_timestamps_are_normalised_to_utc(self) -> None:
        """occurred_at is stored in UTC; 'Z' and offsets in payloads are understood."""
        event = Event.from_payload(
            "TaskSucceeded", {"agent_id": "a", "occurred_at": "2024-03-01T10:00:00+02:00"}
        )
        assert event.occurred_at == datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
        assert event.occurred_at.utcoffset() == timedelta(0)
        zulu = Event.from_payload(
            "TaskSucceeded", {"agent_id": "a", "occurred_at": "2024-03-01T08:00:00Z"}
        )
        assert zulu.occurred_at == event.occurred_at

    def test_seed_aliases(self) -> None:
        """TaskEvent covers both task events and SkillExecutionEvent is SkillExecuted."""
        assert isinstance(_failed(), TaskEvent)
        assert isinstance(TaskSucceeded(agent_id="a"), TaskEvent)
        assert SkillExecutionEvent is SkillExecuted

    def test_defaults(self) -> None:
        """event_id is a fresh hex id, tenant_id is 'default', occurred_at is now in UTC."""
        first, second = _failed(), _failed()
        assert first.event_id != second.event_id and len(first.event_id) == 32
        assert first.tenant_id == "default"
        assert abs(datetime.now(UTC) - first.occurred_at) < timedelta(seconds=5)

    def test_duplicate_type_name_is_refused(self) -> None:
        """Two different classes cannot register the same event type name."""
        with pytest.raises(TypeError, match="already used"):

            @dataclasses.dataclass(frozen=True, kw_only=True)
            class TaskFailed(Event):  # the clash with auto_dev.events.TaskFailed is the point
                pass

    def test_task_events_stored_before_workflows_still_load(self) -> None:
        """A TaskFailed/TaskSucceeded payload written before ``workflow`` existed loads, with
        ``workflow`` None; a new one round-trips it."""
        for cls in (TaskFailed, TaskSucceeded):
            payload = cls(agent_id="a").to_payload()
            del payload["workflow"]
            assert Event.from_payload(cls.__name__, payload).workflow is None  # type: ignore[attr-defined]
            with_flow = cls(agent_id="a", workflow="refund").to_payload()
            assert Event.from_payload(cls.__name__, with_flow).workflow == "refund"  # type: ignore[attr-defined]
        with pytest.raises(MalformedEventError) as info:
            TaskFailed(agent_id="a", workflow="")
        assert info.value.field == "workflow"

    def test_signal_target_kind(self) -> None:
        """A signal is about a tool or a workflow, nothing else."""
        with pytest.raises(MalformedEventError) as info:
            SignalRecorded(signal_id="s", target_kind="skill", target="t", version_id="v",
                           version=1, kind="feedback", value=1.0)
        assert info.value.field == "target_kind"

    def test_payload_type_must_match_the_class_asked(self) -> None:
        """Parsing through a subclass only accepts that family of events."""
        payload = CandidateCreated(candidate_kind="tool_mutation", candidate_id="c1").to_payload()
        assert isinstance(
            CandidateEvent.from_payload("CandidateCreated", payload), CandidateCreated
        )
        with pytest.raises(MalformedEventError):
            CandidateEvent.from_payload("TaskFailed", {"agent_id": "a"})


class TestEventProperties:
    """Hypothesis properties of payload round trips."""

    @settings(max_examples=100, deadline=None)
    @given(event=_events)
    def test_valid_events_round_trip_through_json(self, event: Event) -> None:
        """to_payload -> JSON text -> from_payload gives back an equal event."""
        assert _round_trip(event) == event

    @settings(max_examples=150, deadline=None)
    @given(event=_events, data=st.data())
    def test_damaged_payloads_round_trip_or_are_refused(self, event: Event, data: Any) -> None:
        """A payload with one field dropped or replaced by junk parses to a valid event or raises
        MalformedEventError, never anything else."""
        payload = event.to_payload()
        key = data.draw(st.sampled_from([*sorted(payload), "unknown_field"]))
        if data.draw(st.booleans()):
            payload.pop(key, None)
        else:
            payload[key] = data.draw(_junk)
        try:
            parsed = Event.from_payload(event.type_name, payload)
        except MalformedEventError:
            return
        assert _round_trip(parsed) == parsed

    @settings(max_examples=200, deadline=None)
    @given(
        type_name=st.sampled_from(sorted(Event.event_types())) | st.text(max_size=8) | _junk,
        payload=st.dictionaries(st.text(max_size=12) | st.integers(), _junk, max_size=6) | _junk,
    )
    def test_random_junk_never_raises_anything_else(self, type_name: Any, payload: Any) -> None:
        """Arbitrary junk either round-trips or raises MalformedEventError."""
        try:
            parsed = Event.from_payload(type_name, payload)
        except MalformedEventError:
            return
        assert _round_trip(parsed) == parsed


class TestSubscriptions:
    """subscribe / decorators / unsubscribe."""

    def test_decorator_forms(self, database: Database) -> None:
        """@bus.on_task_fail, @bus.on_task_success(name=...), bus.on_skill_execution(fn)."""
        bus = EventBus(database)

        @bus.on_task_fail
        async def on_fail(event: TaskFailed) -> None: ...

        @bus.on_task_success(name="success-hook")
        def on_success(event: TaskSucceeded) -> None: ...

        async def on_skill(event: SkillExecuted) -> None: ...

        assert bus.on_skill_execution(on_skill) is on_skill
        assert callable(on_fail) and callable(on_success)
        assert bus.subscribers(TaskFailed) == [f"{__name__}.{on_fail.__qualname__}"]
        assert bus.subscribers(TaskSucceeded) == ["success-hook"]
        assert bus.subscribers(SkillExecuted) == [f"{__name__}.{on_skill.__qualname__}"]

    def test_default_name_is_module_and_qualname(self, database: Database) -> None:
        """A module-level function is named module.qualname, stable across restarts."""
        bus = EventBus(database)
        bus.subscribe(TaskFailed, module_level_handler)
        assert bus.handler_names == ["tests.test_events.module_level_handler"]

    def test_lambda_needs_a_name(self, database: Database) -> None:
        """A lambda has no stable name, so one must be given."""
        bus = EventBus(database)
        with pytest.raises(ValidationError) as info:
            bus.subscribe(TaskFailed, lambda e: None)
        assert info.value.field == "name"
        bus.subscribe(TaskFailed, lambda e: None, name="lambda-hook")
        assert bus.handler_names == ["lambda-hook"]

    def test_name_clash_and_idempotence(self, database: Database) -> None:
        """The same handler again adds classes; another handler under a taken name is refused."""
        bus = EventBus(database)
        bus.subscribe(TaskFailed, module_level_handler, name="h")
        bus.subscribe(TaskSucceeded, module_level_handler, name="h")
        assert bus.subscribers(TaskSucceeded) == ["h"]
        with pytest.raises(ValidationError, match="already subscribed"):
            bus.subscribe(TaskFailed, lambda e: None, name="h")

    def test_unions_and_base_classes(self, database: Database) -> None:
        """TaskEvent subscribes to both task events; a base class receives its subclasses."""
        bus = EventBus(database)
        bus.subscribe(TaskEvent, module_level_handler, name="tasks")
        bus.subscribe(Event, module_level_handler, name="everything")
        bus.subscribe(CandidateEvent, module_level_handler, name="candidates")
        assert bus.subscribers(TaskSucceeded) == ["everything", "tasks"]
        assert bus.subscribers(CandidatePromoted) == ["candidates", "everything"]
        assert bus.subscribers(SkillExecuted) == ["everything"]

    def test_bad_subscriptions_are_refused(self, database: Database) -> None:
        """A non-event class or a non-callable handler names the field."""
        bus = EventBus(database)
        with pytest.raises(ValidationError) as info:
            bus.subscribe(dict, module_level_handler)
        assert info.value.field == "event_cls"
        with pytest.raises(ValidationError) as info:
            bus.subscribe(TaskFailed, "not callable")  # type: ignore[arg-type]
        assert info.value.field == "handler"

    def test_unsubscribe(self, database: Database) -> None:
        """Unsubscribing by handler, by name, or for one class only."""
        bus = EventBus(database)
        bus.subscribe(TaskEvent, module_level_handler, name="h")
        assert bus.unsubscribe(module_level_handler, TaskFailed)
        assert bus.subscribers(TaskFailed) == [] and bus.subscribers(TaskSucceeded) == ["h"]
        assert bus.unsubscribe("h")
        assert bus.handler_names == []
        assert not bus.unsubscribe("h")

    def test_bad_bus_settings_are_refused(self, database: Database) -> None:
        """Timeouts, attempts and backoff are validated and named."""
        for kwargs, name in [
            ({"handler_timeout_s": 0}, "handler_timeout_s"),
            ({"max_attempts": 0}, "max_attempts"),
            ({"backoff_base_s": -1}, "backoff_base_s"),
        ]:
            with pytest.raises(ValidationError) as info:
                EventBus(database, **kwargs)
            assert info.value.field == name


class TestEmit:
    """emit() joins the caller's transaction."""

    async def test_emit_persists_then_dispatches_after_commit(
        self, database: Database, bus: EventBus
    ) -> None:
        """The event and its deliveries are stored with the work; handlers run after commit."""
        seen: list[str] = []
        bus.subscribe(TaskFailed, lambda e: seen.append(e.agent_id), name="recorder")
        await bus.start(poll_interval_s=60)
        event = _failed(tenant_id="acme")
        with database.session() as s:
            bus.emit(s, event)
            assert seen == []  # nothing runs before the commit
        await bus.drain()
        assert seen == ["agent-1"]
        assert _deliveries(database) == {(event.event_id, "recorder"): ("delivered", 1)}
        assert _record_status(database, event.event_id) == "dispatched"

    async def test_rolled_back_work_takes_its_events_with_it(
        self, database: Database, bus: EventBus
    ) -> None:
        """If the transaction fails, the event is neither stored nor dispatched."""
        seen: list[Event] = []
        bus.subscribe(Event, seen.append, name="recorder")
        await bus.start(poll_interval_s=60)
        event = _failed()
        with pytest.raises(RuntimeError), database.session() as s:
            bus.emit(s, event)
            raise RuntimeError("the work failed")
        await bus.drain()
        assert seen == [] and _record_status(database, event.event_id) is None

    async def test_savepoint_rollback_drops_only_its_event(
        self, database: Database, bus: EventBus
    ) -> None:
        """An event emitted in a rolled-back savepoint is dropped; the outer one is delivered."""
        seen: list[str] = []
        bus.subscribe(Event, lambda e: seen.append(e.event_id), name="recorder")
        await bus.start(poll_interval_s=60)
        inner, outer = _failed(), _failed()
        with database.session() as s:
            with pytest.raises(RuntimeError), s.begin_nested():
                bus.emit(s, inner)
                raise RuntimeError("undo the savepoint")
            bus.emit(s, outer)
        await bus.drain()
        assert seen == [outer.event_id]
        assert _record_status(database, inner.event_id) is None

    async def test_emit_from_a_worker_thread(self, database: Database, bus: EventBus) -> None:
        """A commit in another thread hands the dispatch to the bus's event loop."""
        seen: list[str] = []
        bus.subscribe(TaskFailed, lambda e: seen.append(e.event_id), name="recorder")
        await bus.start(poll_interval_s=60)
        event = _failed()

        def work() -> None:
            with database.session() as s:
                bus.emit(s, event)

        await asyncio.to_thread(work)
        await bus.drain()
        assert seen == [event.event_id]

    async def test_many_events_in_one_transaction(self, database: Database) -> None:
        """More events than one claim batch, committed together, are all delivered."""
        bus = EventBus(database, batch_size=5)
        seen: list[str] = []
        bus.subscribe(TaskFailed, lambda e: seen.append(e.event_id), name="a")
        bus.subscribe(TaskFailed, lambda e: seen.append(e.event_id), name="b")
        await bus.start(poll_interval_s=60)
        events = [_failed() for _ in range(12)]
        with database.session() as s:
            for event in events:
                bus.emit(s, event)
        await bus.drain()
        assert sorted(seen) == sorted(e.event_id for e in events for _ in "ab")
        assert bus.stats()["delivered"] == 24
        await bus.aclose()

    async def test_duplicates_and_reused_ids(self, database: Database, bus: EventBus) -> None:
        """Publishing the same event twice delivers it once; reusing its id elsewhere is refused."""
        calls: list[str] = []
        bus.subscribe(TaskFailed, lambda e: calls.append(e.event_id), name="recorder")
        event = _failed()
        await bus.publish(event, wait=True)
        await bus.publish(event, wait=True)
        assert calls == [event.event_id]
        with pytest.raises(MalformedEventError) as info:
            await bus.publish(TaskSucceeded(agent_id="a", event_id=event.event_id))
        assert info.value.field == "event_id"

    async def test_event_without_subscribers_is_kept_as_dispatched(
        self, database: Database, bus: EventBus
    ) -> None:
        """An event nobody listens to is still recorded (and its tenant created)."""
        event = SkillExecuted(
            agent_id="a", skill_name="s", success=True, execution_seconds=0.1, tenant_id="new"
        )
        await bus.publish(event)
        assert _record_status(database, event.event_id) == "dispatched"
        assert _deliveries(database) == {}

    async def test_non_events_and_tampered_events_are_refused(
        self, database: Database, bus: EventBus
    ) -> None:
        """emit re-validates: a non-event or an event broken after construction is refused."""
        with pytest.raises(MalformedEventError), database.session() as s:
            bus.emit(s, {"agent_id": "a"})  # type: ignore[arg-type]
        event = _failed()
        object.__setattr__(event, "agent_id", "")
        with pytest.raises(MalformedEventError) as info:
            await bus.publish(event)
        assert info.value.field == "agent_id"


class TestDispatch:
    """Concurrent, isolated, time-limited handler calls with retries."""

    async def test_handlers_run_concurrently(self, database: Database, bus: EventBus) -> None:
        """Two handlers that each wait for the other both succeed only if run concurrently."""
        a_started, b_started = asyncio.Event(), asyncio.Event()

        async def a(event: Event) -> None:
            a_started.set()
            await asyncio.wait_for(b_started.wait(), 0.8)

        async def b(event: Event) -> None:
            b_started.set()
            await asyncio.wait_for(a_started.wait(), 0.8)

        bus.subscribe(TaskFailed, a, name="a")
        bus.subscribe(TaskFailed, b, name="b")
        event = _failed()
        await bus.publish(event, wait=True)
        statuses = {h: s for (_, h), (s, _) in _deliveries(database).items()}
        assert statuses == {"a": "delivered", "b": "delivered"}

    async def test_raising_handler_is_isolated_and_retried(self, database: Database) -> None:
        """A raising handler fails alone, is retried after its backoff, and then succeeds."""
        # A backoff far longer than the test's own steps take on a loaded machine; the clock
        # is then moved past it by making the retry due, not by sleeping.
        bus = EventBus(database, handler_timeout_s=1.0, backoff_base_s=30, max_attempts=3)
        good: list[str] = []
        attempts = {"n": 0}

        async def flaky(event: Event) -> None:
            attempts["n"] += 1
            if attempts["n"] == 1:
                raise RuntimeError("first call fails")

        bus.subscribe(TaskFailed, flaky, name="flaky")
        bus.subscribe(TaskFailed, lambda e: good.append(e.event_id), name="good")
        event = _failed()
        await bus.publish(event, wait=True)
        state = _deliveries(database)
        assert state[(event.event_id, "good")] == ("delivered", 1)
        assert state[(event.event_id, "flaky")] == ("failed", 1)
        assert _record_status(database, event.event_id) == "pending"
        with database.session(readonly=True) as s:
            row = s.scalars(select(EventDelivery).where(EventDelivery.handler == "flaky")).one()
            assert row.last_error is not None and "first call fails" in row.last_error
        assert await bus.redeliver_due() == 0  # not due before the backoff elapses
        with database.session() as s:
            s.execute(update(EventDelivery).where(EventDelivery.handler == "flaky")
                      .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
        assert await bus.redeliver_due() == 1
        assert _deliveries(database)[(event.event_id, "flaky")] == ("delivered", 2)
        assert good == [event.event_id]
        assert _record_status(database, event.event_id) == "dispatched"
        await bus.aclose(drain_timeout_s=5)

    async def test_backoff_then_dead_after_max_attempts(
        self, database: Database, bus: EventBus
    ) -> None:
        """Retries wait base * 2^(n-1); after max_attempts the delivery is dead and kept."""

        async def always(event: Event) -> None:
            raise ValueError("never works")

        bus.subscribe(TaskFailed, always, name="always")
        event = _failed()
        await bus.publish(event, wait=True)
        waits = []
        for expected_attempts in (2, 3):
            with database.session(readonly=True) as s:
                row = s.scalars(select(EventDelivery)).one()
                assert row.next_attempt_at is not None
                waits.append((row.next_attempt_at - datetime.now(UTC)).total_seconds())
                await asyncio.sleep(max(0.0, waits[-1]) + 0.02)
            assert await bus.redeliver_due() == 1
            assert _deliveries(database)[(event.event_id, "always")][1] == expected_attempts
        assert waits[0] < waits[1] <= 0.1 + 0.01
        assert _deliveries(database)[(event.event_id, "always")] == ("dead", 3)
        assert _record_status(database, event.event_id) == "dispatched"
        assert bus.stats()["dead"] == 1
        assert bus.requeue_dead(handler="always") == 1
        assert _deliveries(database)[(event.event_id, "always")] == ("failed", 0)
        assert _record_status(database, event.event_id) == "pending"

    async def test_hanging_handlers_time_out(self, database: Database) -> None:
        """Async and sync handlers past the timeout fail without holding up the others."""
        release = threading.Event()
        bus = EventBus(database, handler_timeout_s=0.2, backoff_base_s=10)
        fast: list[str] = []

        async def hangs(event: Event) -> None:
            await asyncio.sleep(30)

        def hangs_in_a_thread(event: Event) -> None:
            release.wait(10)

        bus.subscribe(TaskFailed, hangs, name="hangs")
        bus.subscribe(TaskFailed, hangs_in_a_thread, name="hangs-sync")
        bus.subscribe(TaskFailed, lambda e: fast.append(e.event_id), name="fast")
        event = _failed()
        started = asyncio.get_running_loop().time()
        try:
            await bus.publish(event, wait=True)
        finally:
            release.set()
        assert asyncio.get_running_loop().time() - started < 2.0
        state = _deliveries(database)
        assert state[(event.event_id, "fast")] == ("delivered", 1)
        assert state[(event.event_id, "hangs")] == ("failed", 1)
        assert state[(event.event_id, "hangs-sync")] == ("failed", 1)
        with database.session(readonly=True) as s:
            errors = s.scalars(
                select(EventDelivery.last_error).where(EventDelivery.handler == "hangs")
            ).all()
            assert errors and "timed out" in str(errors[0])
        await bus.aclose()

    async def test_each_handler_gets_its_own_copy(self, database: Database, bus: EventBus) -> None:
        """A handler mutating the event's dicts cannot affect what another handler sees."""
        seen: list[dict[str, Any]] = []

        async def vandal(event: TaskFailed) -> None:
            event.metadata["vandal"] = True

        async def reader(event: TaskFailed) -> None:
            await asyncio.sleep(0.01)
            seen.append(dict(event.metadata))

        bus.subscribe(TaskFailed, vandal, name="vandal")
        bus.subscribe(TaskFailed, reader, name="reader")
        await bus.publish(_failed(metadata={"k": 1}), wait=True)
        assert seen == [{"k": 1}]


class TestDurability:
    """No accepted event is lost."""

    async def test_recover_delivers_what_a_dead_process_never_dispatched(
        self, database: Database
    ) -> None:
        """Persisted but undispatched (a crash right after commit): a new bus delivers it."""
        first = EventBus(database)
        first.subscribe(TaskFailed, module_level_handler, name="recorder")
        event = _failed()
        await first.publish(event, dispatch=False)
        await first.aclose()
        assert _deliveries(database) == {(event.event_id, "recorder"): ("pending", 0)}

        seen: list[str] = []
        # The dead process's delivery is stale at once for this bus (stale_after_s=0).
        second = EventBus(database, stale_after_s=0)
        second.subscribe(TaskFailed, lambda e: seen.append(e.event_id), name="recorder")
        assert await second.recover() == 1
        assert seen == [event.event_id]
        assert _record_status(database, event.event_id) == "dispatched"
        assert await second.recover() == 0
        await second.aclose()

    async def test_events_emitted_without_a_loop_wait_for_recover(self, database: Database) -> None:
        """Sync code with no running event loop still records events; recover delivers them."""
        bus = EventBus(database)
        seen: list[str] = []
        bus.subscribe(TaskFailed, lambda e: seen.append(e.event_id), name="recorder")
        event = _failed()

        def sync_program() -> None:
            with database.session() as s:
                bus.emit(s, event)

        await asyncio.to_thread(sync_program)
        await bus.drain()
        assert seen == []
        assert await bus.recover() == 1
        assert seen == [event.event_id]
        await bus.aclose()

    async def test_poller_picks_up_stale_pending_deliveries(self, database: Database) -> None:
        """A started bus delivers, without recover(), deliveries whose dispatch never happened."""
        bus = EventBus(database, stale_after_s=0.1)
        seen: list[str] = []
        bus.subscribe(TaskFailed, lambda e: seen.append(e.event_id), name="recorder")
        await bus.start(poll_interval_s=0.05)
        event = _failed()
        await bus.publish(event, dispatch=False)  # as if the dispatch were lost
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.02)
        assert seen == [event.event_id]
        await bus.aclose()

    async def test_process_killed_mid_dispatch(self, database_url: str, tmp_path: Path) -> None:
        """A process dying inside a handler leaves a claim; after its lease it is redelivered."""
        script = tmp_path / "crash.py"
        script.write_text(
            textwrap.dedent(
                f"""
                import asyncio, os
                from auto_dev.db import Database
                from auto_dev.events import EventBus, TaskFailed

                async def main():
                    bus = EventBus(Database({database_url!r}), lease_s=0.3)

                    def dies(event):
                        os._exit(17)

                    bus.subscribe(TaskFailed, dies, name="recorder")
                    await bus.publish(TaskFailed(agent_id="a", event_id="crashed"), wait=True)

                asyncio.run(main())
                """
            )
        )
        result = subprocess.run(
            [sys.executable, str(script)], cwd=REPO, capture_output=True, timeout=60
        )
        assert result.returncode == 17, result.stderr.decode()
        database = Database(database_url)
        assert _deliveries(database) == {("crashed", "recorder"): ("running", 1)}
        seen: list[str] = []
        bus = EventBus(database)
        bus.subscribe(TaskFailed, lambda e: seen.append(e.event_id), name="recorder")
        await asyncio.sleep(0.35)  # the dead process's lease runs out
        assert await bus.recover() == 1
        assert seen == ["crashed"]
        assert _deliveries(database) == {("crashed", "recorder"): ("delivered", 2)}
        await bus.aclose()
        database.dispose()

    async def test_unknown_handlers_keep_their_deliveries(self, database: Database) -> None:
        """Deliveries for a handler not subscribed yet stay pending until it subscribes."""
        first = EventBus(database)
        first.subscribe(TaskFailed, module_level_handler, name="a")
        first.subscribe(TaskFailed, module_level_handler, name="b")
        event = _failed()
        await first.publish(event, dispatch=False)
        second = EventBus(database, stale_after_s=0)
        second.subscribe(TaskFailed, module_level_handler, name="a")
        assert await second.recover() == 1
        assert _deliveries(database)[(event.event_id, "b")] == ("pending", 0)
        second.subscribe(TaskFailed, module_level_handler, name="b")
        assert await second.recover() == 1
        assert _deliveries(database)[(event.event_id, "b")] == ("delivered", 1)
        await first.aclose()
        await second.aclose()

    async def test_two_recovering_buses_deliver_each_event_once(self, database: Database) -> None:
        """Claims are atomic: two processes recovering at once never double-deliver."""
        calls: list[str] = []
        buses = [EventBus(database, batch_size=5, stale_after_s=0) for _ in range(2)]
        for bus in buses:
            bus.subscribe(TaskFailed, lambda e: calls.append(e.event_id), name="recorder")
        events = [_failed() for _ in range(20)]
        for event in events:
            await buses[0].publish(event, dispatch=False)
        counts = await asyncio.gather(*(bus.recover() for bus in buses))
        assert sum(counts) == 20
        assert sorted(calls) == sorted(e.event_id for e in events)
        for bus in buses:
            await bus.aclose()

    async def test_results_lost_to_a_locked_database_are_redelivered(
        self, database_url: str
    ) -> None:
        """If recording a result fails, the delivery stays claimed and is retried later."""
        database = Database(database_url, busy_timeout_s=0.1)
        bus = EventBus(database, lease_s=0.3)
        holder: list[sqlite3.Connection] = []

        def grabs_the_lock(event: Event) -> None:
            if not holder:  # first call: lock the file so the result cannot be written
                raw = sqlite3.connect(
                    str(database.url.database), isolation_level=None, check_same_thread=False
                )
                raw.execute("BEGIN IMMEDIATE")
                holder.append(raw)

        bus.subscribe(TaskFailed, grabs_the_lock, name="locker")
        event = _failed()
        await bus.publish(event, wait=True)
        holder[0].close()
        assert _deliveries(database) == {(event.event_id, "locker"): ("running", 1)}
        await asyncio.sleep(0.35)
        assert await bus.redeliver_due() == 1
        assert _deliveries(database) == {(event.event_id, "locker"): ("delivered", 2)}
        await bus.aclose()
        database.dispose()


class TestFaults:
    """Bad input and faults at the bus boundary."""

    async def test_locked_database_refuses_publish_with_nothing_written(
        self, database_url: str
    ) -> None:
        """A locked SQLite file gives DatabaseLockedError and no record or delivery survives."""
        database = Database(database_url, busy_timeout_s=0.2)
        bus = EventBus(database)
        bus.subscribe(TaskFailed, module_level_handler, name="recorder")
        raw = sqlite3.connect(str(database.url.database), isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        event = _failed()
        try:
            with pytest.raises(DatabaseLockedError, match="locked"):
                await bus.publish(event)
        finally:
            raw.close()
        assert _record_status(database, event.event_id) is None
        assert _deliveries(database) == {}
        await bus.publish(event, wait=True)  # once the lock is gone the same event goes through
        assert _deliveries(database) == {(event.event_id, "recorder"): ("delivered", 1)}
        await bus.aclose()
        database.dispose()

    async def test_broken_logging_does_not_break_delivery(self, database: Database) -> None:
        """Even if every log call raises (a closed stream), results are still recorded."""
        closed = io.StringIO()
        closed.close()
        saved = structlog.get_config()
        structlog.configure(logger_factory=lambda *a: structlog.PrintLogger(file=closed))
        try:
            bus = EventBus(database)

            async def fails(event: Event) -> None:
                raise RuntimeError("handler error")

            bus.subscribe(TaskFailed, fails, name="fails")
            bus.subscribe(TaskFailed, module_level_handler, name="works")
            event = _failed()
            await bus.publish(event, wait=True)
        finally:
            structlog.configure(**saved)
        assert _deliveries(database) == {
            (event.event_id, "fails"): ("failed", 1),
            (event.event_id, "works"): ("delivered", 1),
        }
        await bus.aclose()

    async def test_unreadable_stored_event_goes_dead(self, database: Database) -> None:
        """A stored payload that no longer parses is marked dead with the reason, not retried."""
        bus = EventBus(database)
        bus.subscribe(TaskFailed, module_level_handler, name="recorder")
        event = _failed()
        await bus.publish(event, dispatch=False)
        with database.session() as s:
            record = s.get(EventRecord, event.event_id)
            assert record is not None
            record.payload = {"agent_id": ""}
        assert await bus.recover() == 1
        assert _deliveries(database)[(event.event_id, "recorder")] == ("dead", 1)
        await bus.aclose()


class TestLifecycle:
    """start / poll / aclose."""

    async def test_started_bus_retries_on_its_own(self, database: Database) -> None:
        """After start(), a failed delivery is retried by the poller without any call."""
        calls = {"n": 0}

        async def flaky(event: Event) -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("once")

        bus = EventBus(database, backoff_base_s=0.01)
        bus.subscribe(TaskFailed, flaky, name="flaky")
        await bus.start(poll_interval_s=0.02)
        event = _failed()
        await bus.publish(event, wait=True)
        for _ in range(100):
            if _deliveries(database)[(event.event_id, "flaky")][0] == "delivered":
                break
            await asyncio.sleep(0.02)
        assert _deliveries(database)[(event.event_id, "flaky")] == ("delivered", 2)
        await bus.aclose()

    async def test_async_context_manager_recovers_on_entry(self, database: Database) -> None:
        """`async with EventBus(...)` runs recover() on entry and closes on exit."""
        first = EventBus(database)
        first.subscribe(TaskFailed, module_level_handler, name="recorder")
        event = _failed()
        await first.publish(event, dispatch=False)
        seen: list[str] = []
        second = EventBus(database, stale_after_s=0)
        second.subscribe(TaskFailed, lambda e: seen.append(e.event_id), name="recorder")
        async with second:
            assert seen == [event.event_id]
        await first.aclose()

    async def test_events_after_close_are_kept(self, database: Database) -> None:
        """A closed bus still stores events (nothing is lost) but no longer dispatches them."""
        bus = EventBus(database)
        seen: list[str] = []
        bus.subscribe(TaskFailed, lambda e: seen.append(e.event_id), name="recorder")
        await bus.aclose()
        event = _failed()
        await bus.publish(event)
        assert seen == []
        assert _deliveries(database) == {(event.event_id, "recorder"): ("pending", 0)}


@pytest.mark.postgres
class TestPostgresBus:
    """The outbox on PostgreSQL."""

    async def test_publish_retry_and_recover(self, postgres_database: Database) -> None:
        """Claims (UPDATE ... RETURNING), retries and recovery work on PostgreSQL."""
        calls = {"n": 0}

        async def flaky(event: Event) -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("once")

        bus = EventBus(postgres_database, backoff_base_s=0)
        bus.subscribe(TaskFailed, flaky, name="flaky")
        first = _failed(tenant_id="pg")
        await bus.publish(first, wait=True)
        assert await bus.redeliver_due() == 1
        second = _failed(tenant_id="pg")
        await bus.publish(second, dispatch=False)
        assert await bus.recover() == 1
        state = _deliveries(postgres_database)
        assert state[(first.event_id, "flaky")] == ("delivered", 2)
        assert state[(second.event_id, "flaky")] == ("delivered", 1)
        await bus.aclose()
