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
   A started bus polls for due retries, expired leases and deliveries left pending too long.

Delivery is at least once: a handler may see an event again after a crash, so handlers should be
idempotent (``event.event_id`` identifies the event). Deliveries are matched to handlers by name
(``module.qualname`` unless given), which is what lets a restarted process pick them up.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import inspect
import time
import traceback
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from auto_dev import _outbox as outbox
from auto_dev._event_types import (
    CandidateApproved,
    CandidateCreated,
    CandidateEvent,
    CandidatePromoted,
    CandidateRejected,
    CandidateRolledBack,
    Event,
    SignalRecorded,
    SkillExecuted,
    SkillExecutionEvent,
    TaskEvent,
    TaskFailed,
    TaskSucceeded,
)
from auto_dev._exceptions import MalformedEventError, StorageError, ValidationError
from auto_dev._outbox import Claim, Outbox, Result
from auto_dev._subscriptions import (
    ALL_TENANTS,
    Handler,
    Subscription,
    SubscriptionRegistry,
    _log,
)
from auto_dev.db import Database
from auto_dev.models import utcnow

__all__ = [
    "CandidateApproved",
    "CandidateCreated",
    "CandidateEvent",
    "CandidatePromoted",
    "CandidateRejected",
    "CandidateRolledBack",
    "Event",
    "EventBus",
    "Handler",
    "SignalRecorded",
    "SkillExecuted",
    "SkillExecutionEvent",
    "TaskEvent",
    "TaskFailed",
    "TaskSucceeded",
]

_MAX_ERROR_CHARS = 8000
_SESSION_KEY = "auto_dev.events.pending"


def _format_error(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc))
    if len(text) > _MAX_ERROR_CHARS:
        text = text[: _MAX_ERROR_CHARS // 2] + "\n...\n" + text[-_MAX_ERROR_CHARS // 2 :]
    return text


class EventBus(SubscriptionRegistry):
    """A durable, asynchronous, error-isolating event bus over ``database``.

    ``handler_timeout_s`` bounds each handler call; ``max_attempts`` counts calls before a
    delivery is ``dead``; attempt *n* that fails is retried after
    ``backoff_base_s * 2 ** (n - 1)`` seconds (capped at ``backoff_max_s``). A claimed delivery
    whose process dies is reclaimed ``lease_s`` after the claim (default: the handler timeout
    plus 30 s). A started bus's poller also dispatches deliveries still pending
    ``stale_after_s`` after their event was stored (a dispatch that never happened). Up to
    ``batch_size`` deliveries are claimed per transaction; sync handlers share
    ``max_handler_threads`` threads.
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
        stale_after_s: float = 5.0,
        batch_size: int = 200,
        max_handler_threads: int = 16,
        default_tenant: str = ALL_TENANTS,
    ) -> None:
        _positive("handler_timeout_s", handler_timeout_s)
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValidationError("max_attempts", f"must be an integer >= 1, got {max_attempts!r}")
        _non_negative("backoff_base_s", backoff_base_s)
        _non_negative("backoff_max_s", backoff_max_s)
        if lease_s is not None:
            _positive("lease_s", lease_s)
        _non_negative("stale_after_s", stale_after_s)
        if batch_size < 1:
            raise ValidationError("batch_size", f"must be >= 1, got {batch_size!r}")
        super().__init__(default_tenant)
        self.database = database
        self.handler_timeout_s = float(handler_timeout_s)
        self.max_attempts = max_attempts
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self.lease_s = float(lease_s) if lease_s is not None else self.handler_timeout_s + 30.0
        self.stale_after_s = float(stale_after_s)
        self.batch_size = batch_size
        self._outbox = Outbox(
            database,
            lease_s=self.lease_s,
            max_attempts=max_attempts,
            backoff_base_s=self.backoff_base_s,
            backoff_max_s=self.backoff_max_s,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._queue: list[str] = []
        self._dispatcher: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=max_handler_threads, thread_name_prefix="auto-dev-handler"
        )
        self._poller: asyncio.Task[None] | None = None
        self._closed = False
        #: Events this process accepted while no loop ran: recover() dispatches them.
        self._kept: list[str] = []

    # -- accepting events ----------------------------------------------------------------

    def emit(self, session: Session, event: Event) -> None:
        """Record ``event`` in ``session``'s transaction; it is dispatched after that commits.

        The event and one delivery per current subscriber are flushed now, so a duplicate id or
        a locked database surfaces here. Emitting an event whose id is already stored (with
        the same type) is a no-op, which makes retrying producers safe.
        """
        if self._accept(session, event):
            self._track(session, event.event_id)

    async def publish(self, event: Event, *, dispatch: bool = True, wait: bool = False) -> None:
        """Persist ``event`` in a transaction of its own, then dispatch it.

        Returns once the event is durable (it is never lost after that); ``wait=True`` also waits
        for its handlers. ``dispatch=False`` only persists: this bus's :meth:`recover` delivers
        it later (another process's, once it is ``stale_after_s`` old).
        Raises :class:`~auto_dev.MalformedEventError` or :class:`~auto_dev.StorageError`
        (:class:`~auto_dev.DatabaseLockedError`), in which case nothing was stored.
        """
        self._loop = asyncio.get_running_loop()

        def persist() -> bool:
            with self.database.session() as session:
                return self._accept(session, event)

        fresh = await asyncio.to_thread(persist)
        if fresh and not dispatch:
            self._kept.append(event.event_id)
        if not (fresh and dispatch and not self._closed):
            return
        if wait:
            await asyncio.shield(self._spawn(self._dispatch_now([event.event_id])))
        else:
            self._request_dispatch([event.event_id])

    def _accept(self, session: Session, event: Event) -> bool:
        if not isinstance(event, Event):
            raise MalformedEventError("event", f"must be an Event, got {type(event).__name__}")
        event.validate()  # frozen, but object.__setattr__ could have broken it since
        handlers = self.subscribers(type(event), event.tenant_id)
        fresh = self._outbox.record(session, event, handlers)
        _log(
            "debug",
            "event accepted",
            event_type=event.type_name,
            event_id=event.event_id,
            handlers=len(handlers),
            duplicate=not fresh and bool(handlers),
        )
        return fresh

    def _track(self, session: Session, event_id: str) -> None:
        pending: dict[int, list[str]] = session.info.setdefault(_SESSION_KEY, {})
        if id(self) not in pending:
            pending[id(self)] = []
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
        """Hand committed events to the loop from whatever thread committed them.

        With no running loop they stay pending in the outbox: :meth:`recover`, or the poller of
        a started bus after ``stale_after_s``, delivers them.
        """
        if self._closed:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:
            self._loop = running
            self._request_dispatch(event_ids)
            return
        loop = self._loop
        if loop is not None and loop.is_running():
            try:
                loop.call_soon_threadsafe(self._request_dispatch, event_ids)
                return
            except RuntimeError:  # the loop closed in between
                pass
        self._kept.extend(event_ids)
        _log("info", "events kept for recover(): no running event loop", count=len(event_ids))

    # -- dispatching -------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._inflight.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            _log(
                "error",
                "event dispatch failed; its deliveries stay in the outbox for redelivery",
                error=str(exc),
                error_type=type(exc).__name__,
            )

    def _request_dispatch(self, event_ids: list[str]) -> None:
        """Queue events for the dispatcher (runs in the loop thread)."""
        if self._closed:
            return
        self._queue.extend(event_ids)
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = self._spawn(self._dispatch_queue())

    async def _dispatch_queue(self) -> None:
        # Events committed while a claim is in flight pile up and are claimed together next
        # round: one claim transaction per batch instead of per event under load. Handlers run
        # in their own tasks, so a slow handler never holds up the claims.
        while self._queue:
            batch, self._queue = self._queue[: self.batch_size], self._queue[self.batch_size :]
            claims = await self._claim(outbox.fresh(batch), limit=None)
            if claims:
                self._spawn(self._deliver(claims))

    async def _dispatch_now(self, event_ids: list[str]) -> None:
        await self._deliver(await self._claim(outbox.fresh(event_ids), limit=None))

    async def _claim(self, condition: ColumnElement[bool], limit: int | None) -> list[Claim]:
        return await asyncio.to_thread(self._outbox.claim, condition, self.scopes(), limit)

    async def redeliver_due(self) -> int:
        """Retry failed deliveries whose backoff elapsed, reclaim expired leases, and dispatch
        deliveries left pending for more than ``stale_after_s``. Returns how many ran."""
        self._loop = asyncio.get_running_loop()
        now = utcnow()
        return await self._drain(outbox.due(now, now - timedelta(seconds=self.stale_after_s)))

    async def recover(self) -> int:
        """Deliver what this process accepted without a running loop, and what a dead process
        left: deliveries pending for more than ``stale_after_s``, claims whose lease expired
        and due retries. A delivery another live process is about to dispatch, or is running
        under a live lease, is never taken. Call it at startup, after subscribing."""
        self._loop = asyncio.get_running_loop()
        now = utcnow()
        kept, self._kept = self._kept, []
        count = await self._drain(outbox.fresh(kept)) if kept else 0
        count += await self._drain(outbox.due(now, now - timedelta(seconds=self.stale_after_s)))
        if count:
            _log("info", "recovered undelivered events", deliveries=count)
        return count

    async def _drain(self, condition: ColumnElement[bool]) -> int:
        total = 0
        while True:
            claims = await self._claim(condition, limit=self.batch_size)
            total += len(claims)
            await self._deliver(claims)
            if len(claims) < self.batch_size:
                return total

    async def _deliver(self, claims: list[Claim]) -> None:
        if not claims:
            return
        results = await asyncio.gather(*(self._run_one(claim) for claim in claims))
        try:
            await asyncio.to_thread(self._outbox.settle, results)
        except StorageError as exc:
            # The claims stay ``running`` and are redelivered when their lease expires.
            _log(
                "error",
                "could not record delivery results; they will be redelivered",
                error=str(exc),
                deliveries=len(results),
            )

    async def _run_one(self, claim: Claim) -> Result:
        if claim.event is None:
            _log(
                "error",
                "event cannot be delivered",
                event_id=claim.event_id,
                handler=claim.handler,
                reason=claim.error,
            )
            return Result(claim, "dead", claim.error)
        sub = self._subs.get(claim.handler)
        if sub is None:  # unsubscribed since the claim: give the delivery back untouched
            return Result(claim, "release")
        event = copy.deepcopy(claim.event)  # handlers cannot change what the others see
        started = time.perf_counter()
        context = {
            "event_type": event.type_name,
            "event_id": event.event_id,
            "handler": claim.handler,
            "attempt": claim.attempts,
            "will_retry": claim.attempts < self.max_attempts,
        }
        try:
            await asyncio.wait_for(self._call(sub, event), timeout=self.handler_timeout_s)
        except TimeoutError:
            _log("error", "event handler timed out", timeout_s=self.handler_timeout_s, **context)
            return Result(claim, "failed", f"handler timed out after {self.handler_timeout_s:g} s")
        except Exception as exc:
            _log(
                "error",
                "event handler failed",
                error=str(exc),
                error_type=type(exc).__name__,
                exc_info=exc,
                **context,
            )
            return Result(claim, "failed", _format_error(exc))
        context.pop("will_retry")
        _log("debug", "event delivered", seconds=round(time.perf_counter() - started, 6), **context)
        return Result(claim, "delivered")

    async def _call(self, sub: Subscription, event: Event) -> None:
        if sub.is_async:
            await sub.handler(event)
            return
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        result = await loop.run_in_executor(self._executor, context.run, sub.handler, event)
        if inspect.isawaitable(result):  # a sync callable that returned a coroutine
            await result

    # -- operations --------------------------------------------------------------------------

    def stats(self, tenant_id: str | None = None) -> dict[str, int]:
        """Deliveries by status: pending, running, delivered, failed, dead."""
        return self._outbox.stats(tenant_id)

    def requeue_dead(self, *, handler: str | None = None, tenant_id: str | None = None) -> int:
        """Give dead deliveries a fresh set of attempts, due now. Returns how many."""
        return self._outbox.requeue_dead(handler=handler, tenant_id=tenant_id)

    async def drain(self, timeout_s: float | None = None) -> None:
        """Wait until every dispatch started so far (and any it started) has finished."""

        async def wait_all() -> None:
            while self._inflight:
                await asyncio.gather(*list(self._inflight), return_exceptions=True)
                await asyncio.sleep(0)  # let thread-scheduled dispatches register

        await asyncio.wait_for(wait_all(), timeout=timeout_s)

    async def start(self, *, poll_interval_s: float = 1.0) -> None:
        """Recover leftovers, then run :meth:`redeliver_due` every ``poll_interval_s``."""
        _positive("poll_interval_s", poll_interval_s)
        self._closed = False
        await self.recover()
        if self._poller is not None and not self._poller.done():
            self._poller.cancel()
        self._poller = asyncio.get_running_loop().create_task(self._poll(poll_interval_s))

    async def _poll(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.redeliver_due()
            except Exception as exc:  # keep polling: the next round may succeed
                _log(
                    "error",
                    "redelivery round failed",
                    error=str(exc),
                    error_type=type(exc).__name__,
                )

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
            _log("warning", "event dispatches still running at close; they will be redelivered")
            for task in list(self._inflight):
                task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def __aenter__(self) -> EventBus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _positive(field: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValidationError(field, f"must be a number > 0, got {value!r}")


def _non_negative(field: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValidationError(field, f"must be a number >= 0, got {value!r}")
