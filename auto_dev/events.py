"""Events and the durable EventBus.

An event is a frozen, validated fact in the past tense (:class:`TaskFailed`, :class:`TaskSucceeded`,
:class:`SkillExecuted`, the candidate lifecycle events). The bus is an outbox:

1. :meth:`EventBus.emit` adds the event (an ``EventRecord``) and one ``EventDelivery`` per current
   subscriber to the caller's session, so the event commits or rolls back with the work that
   raised it. :meth:`EventBus.publish` does the same in a transaction of its own.
2. After the commit the deliveries are claimed (``running``, with a lease) and the handlers run
   concurrently, each under ``handler_timeout_s``; sync handlers run in a thread. One handler's
   exception or timeout never reaches another handler or the emitter.
3. A delivery ends ``delivered``, or ``failed`` with ``next_attempt_at`` (exponential backoff) and
   is retried by :meth:`EventBus.redeliver_due`, or ``dead`` after ``max_attempts``.
4. :meth:`EventBus.recover` (call it at startup, or use :meth:`EventBus.start`) delivers what a
   process that died left behind: deliveries never dispatched, and claims whose lease expired.

Delivery is at least once: a handler may see an event again after a crash, so handlers should be
idempotent (``event.event_id`` identifies the event). Deliveries are matched to handlers by name
(``module.qualname`` unless given), which is what lets a restarted process pick them up.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import functools
import inspect
import time
import traceback
import types
import typing
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

import structlog
from sqlalchemy import ColumnElement, and_, exists, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from auto_dev._event_types import (
    CandidateCreated,
    CandidateEvent,
    CandidatePromoted,
    CandidateRolledBack,
    Event,
    SkillExecuted,
    SkillExecutionEvent,
    TaskEvent,
    TaskFailed,
    TaskSucceeded,
)
from auto_dev._exceptions import MalformedEventError, StorageError, ValidationError
from auto_dev.db import Database
from auto_dev.models import EventDelivery, EventRecord, utcnow

__all__ = [
    "CandidateCreated",
    "CandidateEvent",
    "CandidatePromoted",
    "CandidateRolledBack",
    "Event",
    "EventBus",
    "Handler",
    "SkillExecuted",
    "SkillExecutionEvent",
    "TaskEvent",
    "TaskFailed",
    "TaskSucceeded",
]

log = structlog.get_logger(__name__)

Handler = Callable[[Any], Awaitable[None] | None]
H = TypeVar("H", bound=Callable[..., Any])

_MAX_ERROR_CHARS = 8000
_HANDLER_NAME_MAX = 300
_SESSION_KEY = "auto_dev.events.pending"

Outcome = Literal["delivered", "failed", "dead", "release"]


@dataclass
class _Subscription:
    name: str
    handler: Callable[..., Any]
    event_types: set[type[Event]]
    is_async: bool


@dataclass(frozen=True)
class _Claim:
    delivery_id: int
    event_id: str
    handler: str
    attempts: int
    event: Event | None
    error: str | None  # why the stored event cannot be delivered (never retried)


@dataclass(frozen=True)
class _Result:
    claim: _Claim
    outcome: Outcome
    error: str | None = None


def _is_async_callable(handler: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(type(handler), "__call__", None)  # noqa: B004 - a callable object's method
    return call is not None and inspect.iscoroutinefunction(call)


def _default_name(handler: Callable[..., Any]) -> str:
    target: Any = handler
    qualname = getattr(target, "__qualname__", None)
    if qualname is None and not isinstance(handler, functools.partial):
        target = type(handler)  # a callable object: name it by its class
        qualname = target.__qualname__
    module = getattr(target, "__module__", None)
    if qualname is None or module is None or "<lambda>" in qualname:
        raise ValidationError(
            "name", f"cannot derive a stable name for handler {handler!r}: pass name=..."
        )
    return f"{module}.{qualname}"


def _event_classes(event_cls: Any) -> list[type[Event]]:
    """``TaskFailed`` -> [TaskFailed]; ``TaskFailed | TaskSucceeded`` (``TaskEvent``) -> both."""
    if typing.get_origin(event_cls) in (types.UnionType, typing.Union):
        members = typing.get_args(event_cls)
    else:
        members = (event_cls,)
    for member in members:
        if not (isinstance(member, type) and issubclass(member, Event)):
            raise ValidationError("event_cls", f"must be an Event subclass, got {member!r}")
    return list(members)


def _format_error(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc))
    if len(text) > _MAX_ERROR_CHARS:
        text = text[: _MAX_ERROR_CHARS // 2] + "\n...\n" + text[-_MAX_ERROR_CHARS // 2 :]
    return text


class EventBus:
    """A durable, asynchronous, error-isolating event bus over ``database``.

    ``handler_timeout_s`` bounds each handler call; ``max_attempts`` counts calls before a
    delivery is ``dead``; attempt *n* that fails is retried after
    ``backoff_base_s * 2 ** (n - 1)`` seconds (capped at ``backoff_max_s``). A claimed delivery
    whose process dies is reclaimed ``lease_s`` after the claim (default: the handler timeout
    plus 30 s).
    """

    def __init__(
        self,
        database: Database,
        *,
        handler_timeout_s: float = 30.0,
        max_attempts: int = 5,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 3600.0,
        lease_s: float | None = None,
        batch_size: int = 200,
        max_handler_threads: int = 16,
    ) -> None:
        _positive("handler_timeout_s", handler_timeout_s)
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValidationError("max_attempts", f"must be an integer >= 1, got {max_attempts!r}")
        _non_negative("backoff_base_s", backoff_base_s)
        _non_negative("backoff_max_s", backoff_max_s)
        if lease_s is not None:
            _positive("lease_s", lease_s)
        if batch_size < 1:
            raise ValidationError("batch_size", f"must be >= 1, got {batch_size!r}")
        self.database = database
        self.handler_timeout_s = float(handler_timeout_s)
        self.max_attempts = max_attempts
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self.lease_s = float(lease_s) if lease_s is not None else self.handler_timeout_s + 30.0
        self.batch_size = batch_size
        self._subs: dict[str, _Subscription] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._executor = ThreadPoolExecutor(
            max_workers=max_handler_threads, thread_name_prefix="auto-dev-handler"
        )
        self._poller: asyncio.Task[None] | None = None
        self._closed = False

    # -- subscriptions ---------------------------------------------------------------------

    def subscribe(self, event_cls: Any, handler: H, *, name: str | None = None) -> H:
        """Call ``handler(event)`` for every event of ``event_cls`` (or a subclass) from now on.

        ``event_cls`` may be a union such as :data:`TaskEvent`. ``handler`` may be async or sync
        (sync handlers run in a worker thread). ``name`` (default ``module.qualname``) must be
        stable across restarts: pending deliveries are matched to handlers by it. Subscribing
        the same handler under the same name again adds event classes; a different handler
        under a taken name is refused. Returns ``handler``, so this works as a decorator helper.
        """
        if not callable(handler):
            raise ValidationError("handler", f"must be callable, got {handler!r}")
        classes = _event_classes(event_cls)
        key = name if name is not None else _default_name(handler)
        if not isinstance(key, str) or not key.strip() or len(key) > _HANDLER_NAME_MAX:
            raise ValidationError("name", f"must be 1-{_HANDLER_NAME_MAX} characters, got {key!r}")
        current = self._subs.get(key)
        if current is not None and current.handler != handler:
            raise ValidationError(
                "name",
                f"{key!r} is already subscribed by {current.handler!r}; pass a different name=",
            )
        if current is None:
            current = _Subscription(key, handler, set(), _is_async_callable(handler))
            self._subs[key] = current
        current.event_types.update(classes)
        log.debug("handler subscribed", handler=key, events=[c.type_name for c in classes])
        return handler

    def on(self, event_cls: Any, *, name: str | None = None) -> Callable[[H], H]:
        """Decorator form of :meth:`subscribe`: ``@bus.on(TaskFailed)``."""

        def decorate(handler: H) -> H:
            return self.subscribe(event_cls, handler, name=name)

        return decorate

    def on_task_fail(self, handler: H | None = None, *, name: str | None = None) -> Any:
        """``@bus.on_task_fail``, ``@bus.on_task_fail(name=...)`` or ``bus.on_task_fail(fn)``."""
        return self._decorator(TaskFailed, handler, name)

    def on_task_success(self, handler: H | None = None, *, name: str | None = None) -> Any:
        """Subscribe to :class:`TaskSucceeded` (same forms as :meth:`on_task_fail`)."""
        return self._decorator(TaskSucceeded, handler, name)

    def on_skill_execution(self, handler: H | None = None, *, name: str | None = None) -> Any:
        """Subscribe to :class:`SkillExecuted` (same forms as :meth:`on_task_fail`)."""
        return self._decorator(SkillExecuted, handler, name)

    def _decorator(self, event_cls: type[Event], handler: H | None, name: str | None) -> Any:
        if handler is None:
            return self.on(event_cls, name=name)
        return self.subscribe(event_cls, handler, name=name)

    def unsubscribe(self, handler: Callable[..., Any] | str, event_cls: Any = None) -> bool:
        """Stop delivering to ``handler`` (a callable or its name), for ``event_cls`` or for all.

        Deliveries already recorded for it stay in the outbox and are delivered if a handler
        of that name subscribes again. Returns whether anything was removed.
        """
        if isinstance(handler, str):
            keys = [handler] if handler in self._subs else []
        else:
            keys = [k for k, s in self._subs.items() if s.handler == handler]
        removed = False
        for key in keys:
            sub = self._subs[key]
            if event_cls is None:
                del self._subs[key]
                removed = True
                continue
            for cls in _event_classes(event_cls):
                if cls in sub.event_types:
                    sub.event_types.discard(cls)
                    removed = True
            if not sub.event_types:
                del self._subs[key]
        return removed

    def subscribers(self, event_cls: type[Event]) -> list[str]:
        """Names of the handlers an event of ``event_cls`` is delivered to, sorted."""
        return sorted(
            name
            for name, sub in self._subs.items()
            if any(issubclass(event_cls, t) for t in sub.event_types)
        )

    @property
    def handler_names(self) -> list[str]:
        return sorted(self._subs)

    # -- accepting events ----------------------------------------------------------------

    def emit(self, session: Session, event: Event) -> None:
        """Record ``event`` in ``session``'s transaction; it is dispatched after that commits.

        The event and one delivery per current subscriber are flushed now, so a duplicate id or
        a locked database surfaces here. Emitting an event whose id is already stored (with
        the same type) is a no-op, which makes retrying producers safe.
        """
        if self._record(session, event):
            self._track(session, event.event_id)

    async def publish(self, event: Event, *, dispatch: bool = True, wait: bool = False) -> None:
        """Persist ``event`` in a transaction of its own, then dispatch it.

        Returns once the event is durable (it is never lost after that); ``wait=True`` also waits
        for its handlers. ``dispatch=False`` only persists: :meth:`recover` delivers it later.
        Raises :class:`~auto_dev.MalformedEventError` or :class:`~auto_dev.StorageError`
        (:class:`~auto_dev.DatabaseLockedError`), in which case nothing was stored.
        """
        self._loop = asyncio.get_running_loop()

        def persist() -> bool:
            with self.database.session() as session:
                return self._record(session, event)

        fresh = await asyncio.to_thread(persist)
        if not (fresh and dispatch and not self._closed):
            return
        task = self._spawn(self._dispatch_events([event.event_id]))
        if wait:
            await asyncio.shield(task)

    def _record(self, session: Session, event: Event) -> bool:
        if not isinstance(event, Event):
            raise MalformedEventError("event", f"must be an Event, got {type(event).__name__}")
        event.validate()  # frozen, but object.__setattr__ could have broken it since
        try:
            existing = session.get(EventRecord, event.event_id)
            if existing is not None:
                if existing.type != event.type_name or existing.tenant_id != event.tenant_id:
                    raise MalformedEventError(
                        "event_id", f"{event.event_id!r} is already used by another event"
                    )
                log.debug("duplicate event ignored", event_id=event.event_id)
                return False
            self.database.ensure_tenant(session, event.tenant_id)
            names = self.subscribers(type(event))
            now = utcnow()
            session.add(
                EventRecord(
                    id=event.event_id,
                    tenant_id=event.tenant_id,
                    type=event.type_name,
                    payload=event.to_payload(),
                    status="pending" if names else "dispatched",
                    created_at=now,
                    dispatched_at=None if names else now,
                )
            )
            # Deliveries reference the record, and no ORM relationship tells the unit of work
            # to insert the record first: flush it on its own.
            session.flush()
            session.add_all(
                EventDelivery(
                    tenant_id=event.tenant_id,
                    event_id=event.event_id,
                    handler=name,
                    status="pending",
                    attempts=0,
                )
                for name in names
            )
            session.flush()
        except SQLAlchemyError as exc:
            raise self.database.translate_error(exc) from exc
        log.debug(
            "event accepted",
            event_type=event.type_name,
            event_id=event.event_id,
            handlers=len(names),
        )
        return bool(names)

    def _track(self, session: Session, event_id: str) -> None:
        pending: dict[int, list[str]] = session.info.setdefault(_SESSION_KEY, {})
        if id(self) not in pending:
            pending[id(self)] = []
            from sqlalchemy import event as sa_event

            sa_event.listen(session, "after_commit", self._after_commit)
            sa_event.listen(session, "after_rollback", self._after_rollback)
        pending[id(self)].append(event_id)

    def _take_pending(self, session: Session) -> list[str]:
        pending: dict[int, list[str]] = session.info.get(_SESSION_KEY, {})
        ids = pending.get(id(self), [])
        if ids:
            pending[id(self)] = []
        return ids

    def _after_commit(self, session: Session) -> None:
        if session.in_nested_transaction():
            return  # a savepoint was released: the outer transaction may still roll back
        ids = self._take_pending(session)
        if ids:
            self._schedule(ids)

    def _after_rollback(self, session: Session) -> None:
        if not session.in_nested_transaction():
            self._take_pending(session)

    def _schedule(self, event_ids: list[str]) -> None:
        """Start dispatching from whatever thread committed; keep the events if no loop runs."""
        if self._closed:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:
            self._loop = running
            self._spawn(self._dispatch_events(event_ids))
            return
        loop = self._loop
        if loop is not None and loop.is_running():
            try:
                loop.call_soon_threadsafe(self._spawn_dispatch, event_ids)
                return
            except RuntimeError:  # the loop closed in between
                pass
        log.info("events kept for recover(): no running event loop", count=len(event_ids))

    def _spawn_dispatch(self, event_ids: list[str]) -> None:
        if not self._closed:
            self._spawn(self._dispatch_events(event_ids))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._inflight.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error(
                "event dispatch failed; deliveries stay in the outbox for redelivery",
                error=str(exc),
                error_type=type(exc).__name__,
            )

    # -- dispatching -------------------------------------------------------------------------

    async def _dispatch_events(self, event_ids: list[str]) -> None:
        fresh = and_(EventDelivery.event_id.in_(event_ids), EventDelivery.status == "pending")
        claims = await asyncio.to_thread(self._claim, fresh)
        await self._deliver(claims)

    async def redeliver_due(self) -> int:
        """Retry failed deliveries whose backoff has elapsed and reclaim expired leases.

        Returns how many deliveries were attempted.
        """
        self._loop = asyncio.get_running_loop()
        now = utcnow()
        return await self._drain_claims(
            or_(
                and_(EventDelivery.status == "failed", EventDelivery.next_attempt_at <= now),
                and_(EventDelivery.status == "running", EventDelivery.next_attempt_at <= now),
            )
        )

    async def recover(self) -> int:
        """Deliver everything a previous process left: never-dispatched deliveries, expired
        claims and due retries. Call it once at startup, after subscribing the handlers."""
        self._loop = asyncio.get_running_loop()
        now = utcnow()
        count = await self._drain_claims(
            or_(
                EventDelivery.status == "pending",
                and_(
                    EventDelivery.status.in_(("failed", "running")),
                    EventDelivery.next_attempt_at <= now,
                ),
            )
        )
        if count:
            log.info("recovered undelivered events", deliveries=count)
        return count

    async def _drain_claims(self, condition: ColumnElement[bool]) -> int:
        total = 0
        while True:
            claims = await asyncio.to_thread(self._claim, condition)
            if not claims:
                return total
            total += len(claims)
            await self._deliver(claims)
            if len(claims) < self.batch_size:
                return total

    def _claim(self, condition: ColumnElement[bool]) -> list[_Claim]:
        """Atomically mark matching deliveries of subscribed handlers ``running`` and load them."""
        names = list(self._subs)
        if not names:
            return []
        now = utcnow()
        lease_until = now + timedelta(seconds=self.lease_s)
        with self.database.session() as session:
            ids = session.scalars(
                select(EventDelivery.id)
                .where(condition, EventDelivery.handler.in_(names))
                .order_by(EventDelivery.id)
                .limit(self.batch_size)
            ).all()
            if not ids:
                return []
            # Re-checking the condition in the UPDATE makes the claim atomic: a concurrent
            # dispatcher (another process) that got there first leaves nothing to claim.
            rows = session.execute(
                update(EventDelivery)
                .where(EventDelivery.id.in_(ids), condition)
                .values(
                    status="running",
                    attempts=EventDelivery.attempts + 1,
                    next_attempt_at=lease_until,
                )
                .returning(
                    EventDelivery.id,
                    EventDelivery.event_id,
                    EventDelivery.handler,
                    EventDelivery.attempts,
                )
                .execution_options(synchronize_session=False)
            ).all()
            event_ids = {row.event_id for row in rows}
            records = session.execute(
                select(EventRecord.id, EventRecord.type, EventRecord.payload).where(
                    EventRecord.id.in_(event_ids)
                )
            ).all()
        events: dict[str, Event | str] = {}
        for record in records:
            try:
                events[record.id] = Event.from_payload(record.type, record.payload)
            except MalformedEventError as exc:
                events[record.id] = f"stored event cannot be rebuilt: {exc}"
        claims = []
        for row in sorted(rows, key=lambda r: r.id):
            stored = events.get(row.event_id, "stored event is missing")
            claims.append(
                _Claim(
                    delivery_id=row.id,
                    event_id=row.event_id,
                    handler=row.handler,
                    attempts=row.attempts,
                    event=stored if isinstance(stored, Event) else None,
                    error=stored if isinstance(stored, str) else None,
                )
            )
        return claims

    async def _deliver(self, claims: list[_Claim]) -> None:
        if not claims:
            return
        results = await asyncio.gather(*(self._run_one(claim) for claim in claims))
        try:
            await asyncio.to_thread(self._settle, results)
        except StorageError as exc:
            # The claims stay ``running`` and are redelivered when their lease expires.
            log.error(
                "could not record delivery results; they will be redelivered",
                error=str(exc),
                deliveries=len(results),
            )

    async def _run_one(self, claim: _Claim) -> _Result:
        if claim.event is None:
            log.error(
                "event cannot be delivered",
                event_id=claim.event_id,
                handler=claim.handler,
                reason=claim.error,
            )
            return _Result(claim, "dead", claim.error)
        sub = self._subs.get(claim.handler)
        if sub is None:  # unsubscribed since the claim: give the delivery back untouched
            return _Result(claim, "release")
        event = copy.deepcopy(claim.event)  # handlers cannot change what the others see
        started = time.perf_counter()
        bound = log.bind(
            event_type=event.type_name,
            event_id=event.event_id,
            handler=claim.handler,
            attempt=claim.attempts,
        )
        try:
            await asyncio.wait_for(self._call(sub, event), timeout=self.handler_timeout_s)
        except TimeoutError:
            error = f"handler timed out after {self.handler_timeout_s:g} s"
            bound.error(
                "event handler timed out",
                timeout_s=self.handler_timeout_s,
                will_retry=claim.attempts < self.max_attempts,
            )
            return _Result(claim, "failed", error)
        except Exception as exc:
            bound.error(
                "event handler failed",
                error=str(exc),
                error_type=type(exc).__name__,
                will_retry=claim.attempts < self.max_attempts,
                exc_info=exc,
            )
            return _Result(claim, "failed", _format_error(exc))
        bound.debug("event delivered", seconds=round(time.perf_counter() - started, 6))
        return _Result(claim, "delivered")

    async def _call(self, sub: _Subscription, event: Event) -> None:
        if sub.is_async:
            await sub.handler(event)
            return
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        result = await loop.run_in_executor(self._executor, context.run, sub.handler, event)
        if inspect.isawaitable(result):  # a sync callable that returned a coroutine
            await result

    def _backoff(self, attempts: int) -> timedelta:
        seconds = self.backoff_base_s * (2 ** min(max(attempts - 1, 0), 62))
        return timedelta(seconds=min(seconds, self.backoff_max_s))

    def _settle(self, results: Iterable[_Result]) -> None:
        now = utcnow()
        event_ids: set[str] = set()
        with self.database.session() as session:
            for result in results:
                claim = result.claim
                event_ids.add(claim.event_id)
                values: dict[str, Any]
                if result.outcome == "delivered":
                    values = {
                        "status": "delivered",
                        "delivered_at": now,
                        "last_error": None,
                        "next_attempt_at": None,
                    }
                elif result.outcome == "release":
                    values = {
                        "status": "pending",
                        "attempts": claim.attempts - 1,
                        "next_attempt_at": None,
                    }
                elif result.outcome == "dead" or claim.attempts >= self.max_attempts:
                    values = {"status": "dead", "last_error": result.error, "next_attempt_at": None}
                else:
                    values = {
                        "status": "failed",
                        "last_error": result.error,
                        "next_attempt_at": now + self._backoff(claim.attempts),
                    }
                # Only our own claim: if the lease expired and someone reclaimed the delivery,
                # its attempt count moved on and this update matches nothing.
                session.execute(
                    update(EventDelivery)
                    .where(
                        EventDelivery.id == claim.delivery_id,
                        EventDelivery.status == "running",
                        EventDelivery.attempts == claim.attempts,
                    )
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
            _mark_dispatched(session, event_ids, now)

    # -- operations --------------------------------------------------------------------------

    def stats(self, tenant_id: str | None = None) -> dict[str, int]:
        """Deliveries by status (``pending``, ``running``, ``delivered``, ``failed``, ``dead``)."""
        query = select(EventDelivery.status, func.count()).group_by(EventDelivery.status)
        if tenant_id is not None:
            query = query.where(EventDelivery.tenant_id == tenant_id)
        with self.database.session(readonly=True) as session:
            counts = {status: int(n) for status, n in session.execute(query).all()}
        return {s: counts.get(s, 0) for s in ("pending", "running", "delivered", "failed", "dead")}

    def requeue_dead(self, *, handler: str | None = None, tenant_id: str | None = None) -> int:
        """Give dead deliveries a fresh set of attempts (due now). Returns how many."""
        condition = [EventDelivery.status == "dead"]
        if handler is not None:
            condition.append(EventDelivery.handler == handler)
        if tenant_id is not None:
            condition.append(EventDelivery.tenant_id == tenant_id)
        with self.database.session() as session:
            result = session.execute(
                update(EventDelivery)
                .where(*condition)
                .values(status="failed", attempts=0, next_attempt_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            count = int(getattr(result, "rowcount", 0) or 0)
            if count:
                session.execute(
                    update(EventRecord)
                    .where(
                        EventRecord.status == "dispatched",
                        exists().where(
                            EventDelivery.event_id == EventRecord.id,
                            EventDelivery.status == "failed",
                        ),
                    )
                    .values(status="pending", dispatched_at=None)
                    .execution_options(synchronize_session=False)
                )
        return count

    async def drain(self, timeout_s: float | None = None) -> None:
        """Wait until every dispatch started so far (and any it started) has finished."""

        async def wait_all() -> None:
            while self._inflight:
                await asyncio.gather(*list(self._inflight), return_exceptions=True)
                await asyncio.sleep(0)  # let thread-scheduled dispatches register

        await asyncio.wait_for(wait_all(), timeout=timeout_s)

    async def start(self, *, poll_interval_s: float = 1.0) -> None:
        """Recover leftovers, then retry due deliveries every ``poll_interval_s`` until closed."""
        _positive("poll_interval_s", poll_interval_s)
        self._closed = False
        await self.recover()
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll(poll_interval_s))

    async def _poll(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.redeliver_due()
            except Exception as exc:  # keep polling: the next round may succeed
                log.error("redelivery round failed", error=str(exc), error_type=type(exc).__name__)

    async def aclose(self, *, drain_timeout_s: float | None = 30.0) -> None:
        """Stop polling, wait for in-flight dispatches, release the handler threads.

        Events emitted after this are still stored; a later :meth:`recover` delivers them.
        """
        self._closed = True
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None
        try:
            await self.drain(drain_timeout_s)
        except TimeoutError:
            log.warning("event dispatches still running at close; they will be redelivered")
            for task in list(self._inflight):
                task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def __aenter__(self) -> EventBus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _mark_dispatched(session: Session, event_ids: set[str], now: datetime) -> None:
    """Events whose every delivery is settled (delivered or dead) become ``dispatched``."""
    if not event_ids:
        return
    unsettled = exists().where(
        EventDelivery.event_id == EventRecord.id,
        EventDelivery.status.not_in(("delivered", "dead")),
    )
    session.execute(
        update(EventRecord)
        .where(EventRecord.id.in_(event_ids), EventRecord.status == "pending", ~unsettled)
        .values(status="dispatched", dispatched_at=now)
        .execution_options(synchronize_session=False)
    )


def _positive(field: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValidationError(field, f"must be a number > 0, got {value!r}")


def _non_negative(field: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValidationError(field, f"must be a number >= 0, got {value!r}")
