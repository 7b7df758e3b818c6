"""The jobs of a :class:`~auto_dev.sandbox.ray.RaySandbox` between its callers and its actors.

A :class:`RayJobBook` holds the jobs waiting for a slot and the jobs in flight, places each on
an actor (:func:`~auto_dev.sandbox._ray_layout.choose_actor`), and settles it when Ray says it
ended: answered, lost with its actor (run again elsewhere, or ``crashed`` after its tries),
refused by a broken pool, or cancelled. Every job has an id and one attempt at a time, and its
caller's future is resolved exactly once, so a job that ran twice is still counted once.

The book is given the ``ray`` module by the sandbox (it never imports Ray itself) and is used
from the callers' event loops and from the sandbox's collector thread, under one lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import structlog

from auto_dev._exceptions import SandboxError, ValidationError
from auto_dev.sandbox._ray_layout import (
    ActorSlot,
    RaySandboxStats,
    choose_actor,
    crashed_result,
    short_error,
)
from auto_dev.sandbox.base import SandboxJob, SandboxResult

log = structlog.get_logger(__name__)

#: How long the collector waits on in-flight jobs before it looks again: short while slots are
#: free (a caller may have placed a job it does not wait on yet), longer when every slot is
#: busy (nothing new can be placed before one of the awaited jobs ends).
POLL_S = 0.002
BUSY_POLL_S = 0.05


@dataclass(eq=False, slots=True)
class PendingJob:
    """One ``run`` call: at most one attempt in flight at a time."""

    id: str
    job: SandboxJob
    future: asyncio.Future[SandboxResult]
    started: float
    tries: int = 0
    died_on: set[int] = field(default_factory=set)
    ref: Any = None
    cancelled: bool = False


class RayJobBook:
    """Waiting and in-flight jobs of one sandbox (see the module docstring).

    ``respawn(actor)`` replaces a dead actor's handle; it is called with the book's lock held.
    """

    def __init__(self, ray: ModuleType, actors: list[ActorSlot], *, max_tries: int,
                 backend: str, respawn: Callable[[ActorSlot], None]) -> None:
        self._ray = ray
        self._actors = actors
        self._max_tries = max_tries
        self._backend = backend
        self._respawn = respawn
        self._lock = threading.Condition()
        self._waiting: deque[PendingJob] = deque()
        self._in_flight: dict[Any, tuple[PendingJob, ActorSlot, int]] = {}
        self._closed = False
        self.counts: Counter[str] = Counter()

    # ------------------------------------------------------------------ callers

    def submit(self, pending: PendingJob) -> None:
        with self._lock:
            if self._closed:
                raise SandboxError("the Ray sandbox is closed")
            self._waiting.append(pending)
            self._place_locked()
            self._lock.notify_all()

    def cancel(self, pending: PendingJob) -> None:
        """The caller stopped waiting: drop the job, or ask Ray to cancel its attempt."""
        with self._lock:
            pending.cancelled = True
            with contextlib.suppress(ValueError):
                self._waiting.remove(pending)
            ref = pending.ref if pending.ref in self._in_flight else None
        if ref is not None:
            with contextlib.suppress(Exception):
                self._ray.cancel(ref)

    def stats(self) -> RaySandboxStats:
        with self._lock:
            counts = self.counts
            return RaySandboxStats(
                jobs=counts["jobs"], attempts=counts["attempts"], retried=counts["retried"],
                crashed=counts["crashed"], actors_replaced=counts["replaced"],
                in_flight=len(self._in_flight), waiting=len(self._waiting),
                slots=sum(a.plan.slots for a in self._actors),
                most_in_flight=counts["most_in_flight"])

    def busy_handles(self) -> list[Any]:
        with self._lock:
            return [actor.handle for actor in self._actors if actor.busy]

    def handles(self) -> list[Any]:
        with self._lock:
            return [actor.handle for actor in self._actors]

    def close(self) -> list[Any]:
        """Stop placing; fail the waiting jobs; return the handles to end."""
        with self._lock:
            self._closed = True
            waiting = list(self._waiting)
            self._waiting.clear()
            self._lock.notify_all()
            handles = [actor.handle for actor in self._actors]
        for pending in waiting:
            answer_caller(pending, error=SandboxError("the Ray sandbox is closed"))
        return handles

    def abandon(self, reason: str) -> None:
        """Fail every job still waiting or in flight (the cluster is gone, or closing)."""
        with self._lock:
            lost = [entry[0] for entry in self._in_flight.values()] + list(self._waiting)
            self._in_flight.clear()
            self._waiting.clear()
            for actor in self._actors:
                actor.busy = 0
        for pending in lost:
            answer_caller(pending, error=SandboxError(reason))

    # ------------------------------------------------------------------ the collector thread

    def collect(self) -> None:
        """Wait on the in-flight jobs with ``ray.wait`` and settle each as it ends; returns
        once the book is closed and nothing is in flight."""
        ray = self._ray
        while True:
            with self._lock:
                while not self._in_flight and not self._closed:
                    self._lock.wait()
                if not self._in_flight:
                    return
                refs = list(self._in_flight)
                timeout = BUSY_POLL_S if self._waiting else POLL_S
            try:
                ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
                if ready and len(refs) > 1:
                    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            except Exception as exc:  # the connection to the cluster is gone
                log.error("ray_sandbox.cluster_lost", error=short_error(exc))
                self.abandon(f"lost the Ray cluster: {short_error(exc)}")
                continue
            for ref in ready:
                try:
                    self._settle(ref)
                except Exception as exc:  # never lose the collector over one job
                    log.error("ray_sandbox.settle_failed", error=short_error(exc))

    # ------------------------------------------------------------------ internals

    def _place_locked(self) -> None:
        """Give waiting jobs free slots, first come first served (lock held)."""
        while self._waiting and not self._closed:
            pending = self._waiting[0]
            actor = choose_actor(self._actors, pending.died_on)
            if actor is None:
                return
            self._waiting.popleft()
            try:
                pending.ref = actor.handle.run.remote(pending.id, pending.job)
            except Exception as exc:  # Ray itself is unreachable: nothing can run
                answer_caller(pending, error=SandboxError(
                    f"cannot reach the Ray cluster: {short_error(exc)}"))
                continue
            pending.tries += 1
            actor.busy += 1
            self._in_flight[pending.ref] = (pending, actor, actor.generation)
            self.counts["attempts"] += 1
            self.counts["most_in_flight"] = max(self.counts["most_in_flight"],
                                                len(self._in_flight))

    def _settle(self, ref: Any) -> None:
        with self._lock:
            entry = self._in_flight.pop(ref, None)
            if entry is None:
                return
            pending, actor, generation = entry
            actor.busy -= 1  # a replaced actor's slots free up as its lost jobs come back
        exceptions = self._ray.exceptions
        try:
            result: SandboxResult = self._ray.get(ref, timeout=0)
        except exceptions.TaskCancelledError:
            self._finish(pending, error=asyncio.CancelledError())
        except exceptions.RayTaskError as exc:  # the actor answered with an exception
            cause = getattr(exc, "cause", None)
            if isinstance(cause, ValidationError):
                self._finish(pending, error=cause)
            elif isinstance(cause, SandboxError):  # that node's pool is broken: a fresh
                # actor (with a fresh pool) takes its place, the job tries another actor
                self._lost(pending, actor, generation, f"{type(cause).__name__}: {cause}",
                           replace=True, broken=True)
            else:
                self._finish(pending, error=SandboxError(
                    f"the evaluation actor failed: {short_error(cause or exc)}"))
        except exceptions.RayError as exc:  # the actor (or its node, or the object) is gone
            # An actor that cannot even be created (its pool fails to start) is a broken
            # sandbox, not a candidate that crashes it.
            self._lost(pending, actor, generation, short_error(exc), replace=True,
                       broken="creation task" in str(exc))
        else:
            with self._lock:
                actor.jobs_done += 1
            self._finish(pending, result=SandboxResult(
                backend=self._backend, cases=result.cases, total=result.total,
                duration_s=time.monotonic() - pending.started, error=result.error))

    def _lost(self, pending: PendingJob, actor: ActorSlot, generation: int, reason: str, *,
              replace: bool, broken: bool) -> None:
        """The attempt ended without a result: replace the actor if it died (once per death),
        then run the job on another actor, or end it once it has used its tries."""
        log.warning("ray_sandbox.attempt_lost", job_id=pending.id, actor=actor.index,
                    attempt=pending.tries, reason=reason)
        with self._lock:
            if replace and actor.generation == generation and not self._closed:
                self._respawn(actor)
                self.counts["replaced"] += 1
            pending.died_on.add(actor.index)
            closed, cancelled = self._closed, pending.cancelled
            retry = not (closed or cancelled) and pending.tries < self._max_tries
            if retry:
                self.counts["retried"] += 1
                self._waiting.appendleft(pending)  # it has waited longest
                self._place_locked()
                self._lock.notify_all()
        if retry:
            return
        if closed:
            self._finish(pending, error=SandboxError("the Ray sandbox is closed"))
        elif cancelled:
            self._finish(pending, error=asyncio.CancelledError())
        elif broken:
            self._finish(pending, error=SandboxError(
                f"the sandbox pools failed this job on {pending.tries} actors; last: {reason}"))
        else:
            with self._lock:
                self.counts["crashed"] += 1
            self._finish(pending, result=crashed_result(
                pending.job, f"the evaluation actor died under this job on each of its "
                f"{pending.tries} tries; last: {reason}", time.monotonic() - pending.started,
                self._backend))

    def _finish(self, pending: PendingJob, *, result: SandboxResult | None = None,
                error: BaseException | None = None) -> None:
        """Count the job once, answer its caller, and hand the freed slot to the next job."""
        with self._lock:
            if result is not None:
                self.counts["jobs"] += 1
            self._place_locked()
            self._lock.notify_all()
        answer_caller(pending, result=result, error=error)


def answer_caller(pending: PendingJob, *, result: SandboxResult | None = None,
            error: BaseException | None = None) -> None:
    """Resolve the caller's future on its own loop (from any thread; at most once)."""
    future = pending.future

    def settle() -> None:
        if future.done():
            return
        if isinstance(error, asyncio.CancelledError):
            future.cancel()
        elif error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    with contextlib.suppress(RuntimeError):  # the caller's loop is gone: nobody to answer
        future.get_loop().call_soon_threadsafe(settle)


__all__ = ["BUSY_POLL_S", "POLL_S", "PendingJob", "RayJobBook", "answer_caller"]
