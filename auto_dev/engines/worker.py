"""The cycle worker: runs queued cycle jobs through the pipeline, each under its own lease,
budget and deadline, outside any event handler.

Every started :class:`~auto_dev.AutoDev` runs one (``settings.cycle_worker``); several processes
on one database share the queue, each job running once. A worker that dies leaves its jobs
``running`` with a lease that stops being renewed; another worker reclaims them when it expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import TYPE_CHECKING

import structlog

from auto_dev.queries.jobs import ClaimedJob, CycleJobQueue
from auto_dev.types import CycleRequest, EvolutionRunResult

if TYPE_CHECKING:
    from auto_dev.engines.pipeline import CyclePipeline

log = structlog.get_logger(__name__)

#: How long a job waits before it is tried again when its target was busy.
BUSY_RETRY_S = 2.0


class CycleWorker:
    """Claims due cycle jobs and runs up to ``concurrency`` of them at a time."""

    def __init__(self, pipeline: CyclePipeline, queue: CycleJobQueue, *, concurrency: int = 1,
                 poll_s: float = 1.0, drain_timeout_s: float = 30.0) -> None:
        self.pipeline = pipeline
        self.queue = queue
        self.concurrency = concurrency
        self.poll_s = poll_s
        self.drain_timeout_s = drain_timeout_s
        self._running: dict[str, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closed = False

    @property
    def busy(self) -> int:
        return len(self._running)

    @property
    def started(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    def enqueue(self, request: CycleRequest) -> str:
        """Queue ``request`` (coalesced with a queued job on the same target) and wake up."""
        job_id = self.queue.enqueue(request, deadline_s=request.deadline_s or
                                    self.pipeline.context.settings.cycle_deadline_s,
                                    max_attempts=self.pipeline.context.settings.cycle_max_attempts)
        self.wake()
        return job_id

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._closed = False
            self._loop_task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while not self._closed:
            try:
                await self._claim_and_start()
            except Exception as exc:  # the database may be back on the next round
                log.error("cycle_worker_round_failed", error=str(exc))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_s)

    async def _claim_and_start(self) -> None:
        free = self.concurrency - len(self._running)
        if free <= 0:
            return
        for job in await asyncio.to_thread(self.queue.claim, free):
            task = asyncio.get_running_loop().create_task(self._run(job))
            self._running[job.id] = task
            task.add_done_callback(functools.partial(self._done, job.id))

    def _done(self, job_id: str, _task: object = None) -> None:
        self._running.pop(job_id, None)
        self.wake()  # a slot is free, and a job on the same target may now be due

    async def run_due(self) -> list[EvolutionRunResult]:
        """Run every job due now in this task, one after the other, and return their outcomes
        (``scheduler run --once``, tests). Jobs on busy targets stay queued."""
        outcomes: list[EvolutionRunResult] = []
        while True:
            jobs = await asyncio.to_thread(self.queue.claim, 1)
            if not jobs:
                return outcomes
            outcome = await self._execute(jobs[0])
            if outcome is not None:
                outcomes.append(outcome)

    async def _run(self, job: ClaimedJob) -> None:
        await self._execute(job)

    async def _execute(self, job: ClaimedJob) -> EvolutionRunResult | None:
        heartbeat = asyncio.get_running_loop().create_task(self._heartbeat(job.id))
        deadline = job.request.deadline_s
        try:
            outcome = await asyncio.wait_for(self.pipeline.run(job.request), timeout=deadline)
        except TimeoutError:
            reason = f"deadline of {deadline:g} s exceeded"
            log.warning("cycle_job_deadline", job_id=job.id, target=job.request.target)
            await asyncio.to_thread(self.queue.finish, job.id, status="failed", outcome={},
                                    error=reason)
            return EvolutionRunResult(engine=job.request.engine, target=job.request.target,
                                      status="failed", reason=reason,
                                      tenant_id=job.request.tenant_id)
        except asyncio.CancelledError:
            # Shutting down: the job goes back to the queue for this or another process.
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.queue.release, job.id)
            raise
        except Exception as exc:  # bad request (unknown tool, engine): the job fails, loudly
            log.warning("cycle_job_failed", job_id=job.id, target=job.request.target,
                        error=str(exc))
            await asyncio.to_thread(self.queue.finish, job.id, status="failed", outcome={},
                                    error=f"{type(exc).__name__}: {exc}")
            return None
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        if outcome.status == "skipped" and outcome.run_id is None:
            # Another cycle holds the target: try again shortly instead of dropping the job.
            await asyncio.to_thread(self.queue.release, job.id, delay_s=BUSY_RETRY_S)
            return None
        status = "failed" if outcome.status == "failed" else "done"
        await asyncio.to_thread(self.queue.finish, job.id, status=status,
                                outcome=outcome.to_dict(),
                                error=outcome.reason if status == "failed" else None,
                                run_id=outcome.run_id)
        return outcome

    async def _heartbeat(self, job_id: str) -> None:
        interval = max(self.queue.lease_s / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.queue.renew, job_id)
            except Exception as exc:
                log.warning("cycle_job_heartbeat_failed", job_id=job_id, error=str(exc))

    async def aclose(self) -> None:
        """Stop claiming; let running cycles finish within the drain timeout, then cancel the
        rest (their jobs go back to the queue, their runs are marked interrupted)."""
        self._closed = True
        self.wake()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        tasks = list(self._running.values())
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self.drain_timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
