"""Scheduled evolution cycles on APScheduler, with jobs stored in auto-dev's own database.

A :class:`~auto_dev.models.Schedule` row is the source of truth; schedule ids are per tenant
(the key is ``(tenant_id, id)``). The APScheduler job that fires it is named
``<tenant>/<id>`` and lives in the ``apscheduler_jobs`` table (created by our migration). On start
the job store is reconciled with every tenant's schedules (``replace_existing``), so a restart
neither loses nor doubles jobs.

Firing a schedule runs nothing itself: it queues one durable cycle job per target, in the
schedule's tenant, with the trigger ``schedule`` (which the pipeline gates on
``auto_dev.background_evolution`` for the acting agent). The cycle worker runs the jobs; coalescing
means a schedule that fires twice while its job waits still makes one cycle. A schedule whose
last firing's cycles all failed or were denied backs off: it skips firings for
``interval * 2 ** failures`` (at most a day) until a cycle completes again.
"""

from __future__ import annotations

import asyncio
import math
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select

from auto_dev._exceptions import EngineError, NotFoundError, SchedulerError, ValidationError
from auto_dev.models import APSCHEDULER_TABLE, CycleJob, Schedule, utcnow
from auto_dev.queries import EpisodeQueries
from auto_dev.types import EvolutionRunResult

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from auto_dev.config import Settings
    from auto_dev.service import AutoDev

log = structlog.get_logger(__name__)

_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
#: The longest a failing schedule waits before firing again.
MAX_BACKOFF_S = 86_400.0
# The scheduler whose jobs this process runs. APScheduler stores jobs by function reference,
# so the job function finds its scheduler here rather than through a pickled object.
_active: EvolutionScheduler | None = None


async def _run_schedule_job(tenant_id: str, schedule_id: str) -> None:
    if _active is None:  # fired while this process shuts its scheduler down
        log.debug("schedule_fired_after_shutdown", tenant_id=tenant_id, schedule_id=schedule_id)
        return
    await _active.run_schedule(schedule_id, tenant_id=tenant_id)


def job_id(tenant_id: str, schedule_id: str) -> str:
    """The APScheduler job id of a schedule: unique across tenants."""
    return f"{tenant_id}/{schedule_id}"


def check_interval(interval_s: Any, settings: Settings) -> float:
    """``interval_s`` as a float, or :class:`ValidationError` naming ``interval_s``: a finite
    number of seconds within the settings ``scheduler_min_interval_s`` and
    ``scheduler_max_interval_s`` (an unbounded one overflows APScheduler's clock on start)."""
    low, high = settings.scheduler_min_interval_s, settings.scheduler_max_interval_s
    if isinstance(interval_s, bool) or not isinstance(interval_s, int | float) \
            or not math.isfinite(interval_s) or not low <= interval_s <= high:
        raise ValidationError(
            "interval_s", f"must be a finite number of seconds between {low:,g} and "
            f"{high:,.0f} ({high / 86_400:,g} days), got {interval_s!r}")
    return float(interval_s)


class EvolutionScheduler:
    """Manages schedules and, while :meth:`start`-ed, fires every tenant's schedules."""

    def __init__(self, autodev: AutoDev, *, recent_failure_window: timedelta = timedelta(days=1)):
        self.autodev = autodev
        self.window = recent_failure_window
        self._scheduler: AsyncIOScheduler | None = None

    # -- managing schedules (works without a running scheduler) --------------------------------

    def add(self, engine: str, *, interval_s: float, target: str | None = None,
            budget: int = 100, schedule_id: str | None = None,
            tenant_id: str | None = None) -> Schedule:
        """Store a schedule in ``tenant_id`` (and, if the scheduler runs, its job). Validates
        every field."""
        tid = tenant_id or self.autodev.tenant_id
        try:
            engine = self.autodev.engines.get(engine).name
        except EngineError as exc:
            raise ValidationError("engine", str(exc)) from None
        interval = check_interval(interval_s, self.autodev.settings)
        if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= 1_000_000:
            raise ValidationError("budget", "must be an integer between 1 and 1,000,000")
        sid = schedule_id or f"{engine}.{target or 'recent-failures'}"
        if not _ID.match(sid):
            raise ValidationError("schedule_id", f"must match {_ID.pattern}")
        with self.autodev.database.session() as session:
            self.autodev.database.ensure_tenant(session, tid)
            if session.get(Schedule, (tid, sid)) is not None:
                raise ValidationError("schedule_id", f"this tenant already has a schedule {sid!r}")
            row = Schedule(id=sid, tenant_id=tid, engine=engine, target=target,
                           interval_s=interval, budget=budget)
            session.add(row)
        if self._scheduler is not None:
            self._add_job(row)
        return row

    def schedules(self, tenant_id: str | None = None) -> list[Schedule]:
        """The schedules of ``tenant_id`` (default: the facade's tenant), by id."""
        tid = tenant_id or self.autodev.tenant_id
        with self.autodev.database.session() as session:
            return list(session.scalars(
                select(Schedule).where(Schedule.tenant_id == tid).order_by(Schedule.id)))

    def _every_schedule(self) -> list[Schedule]:
        with self.autodev.database.session() as session:
            return list(session.scalars(
                select(Schedule).where(Schedule.enabled.is_(True))
                .order_by(Schedule.tenant_id, Schedule.id)))

    def remove(self, schedule_id: str, *, tenant_id: str | None = None) -> None:
        tid = tenant_id or self.autodev.tenant_id
        with self.autodev.database.session() as session:
            row = session.get(Schedule, (tid, schedule_id))
            if row is None:
                raise NotFoundError(f"no schedule {schedule_id!r} in tenant {tid!r}")
            session.delete(row)
        if self._scheduler is not None and self._scheduler.get_job(job_id(tid, schedule_id)):
            self._scheduler.remove_job(job_id(tid, schedule_id))

    def job_ids(self) -> list[str]:
        """Ids of the jobs in APScheduler's store (for inspection and tests)."""
        with self.autodev.database.session(readonly=True) as session:
            from auto_dev.models import apscheduler_jobs

            return sorted(session.scalars(select(apscheduler_jobs.c.id)))

    # -- running ---------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether this scheduler fires schedules now (started and not shut down)."""
        return self._scheduler is not None and bool(self._scheduler.running)

    async def start(self) -> None:
        """Start firing schedules: reconcile the stored jobs with every tenant's schedules."""
        global _active
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        if self._scheduler is not None:
            return
        if _active is not None and _active is not self:
            raise SchedulerError("another EvolutionScheduler is already running in this process")
        store = SQLAlchemyJobStore(engine=self.autodev.database.engine,
                                   tablename=APSCHEDULER_TABLE)
        scheduler = AsyncIOScheduler(
            jobstores={"default": store},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
            timezone=UTC,
        )
        _active = self
        self._scheduler = scheduler
        scheduler.start()
        wanted: dict[str, Schedule] = {}
        for row in self._every_schedule():
            try:
                check_interval(row.interval_s, self.autodev.settings)
            except ValidationError as exc:  # a bad row must not stop the others
                log.error("schedule_skipped", tenant_id=row.tenant_id, schedule_id=row.id,
                          error=str(exc))
                continue
            wanted[job_id(row.tenant_id, row.id)] = row
        for job in scheduler.get_jobs():
            if job.id not in wanted:
                scheduler.remove_job(job.id)
        for row in wanted.values():
            self._add_job(row)
        log.info("scheduler_started", schedules=len(wanted))

    def _add_job(self, row: Schedule) -> None:
        assert self._scheduler is not None
        self._scheduler.add_job(
            "auto_dev.scheduler:_run_schedule_job",
            trigger="interval",
            seconds=row.interval_s,
            args=[row.tenant_id, row.id],
            id=job_id(row.tenant_id, row.id),
            name=f"{row.engine} on {row.target or 'recent failures'} ({row.tenant_id})",
            replace_existing=True,
        )

    async def run_forever(self, *, duration_s: float | None = None) -> None:
        """Start and keep firing until cancelled (or for ``duration_s`` seconds)."""
        await self.start()
        try:
            if duration_s is None:
                await asyncio.Event().wait()
            else:
                await asyncio.sleep(duration_s)
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        global _active
        if _active is self:
            _active = None
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    # -- what a job does ---------------------------------------------------------------------------

    async def run_schedule(self, schedule_id: str, *, tenant_id: str | None = None) -> list[str]:
        """Fire one schedule now: queue its engine's cycle on its target, or on every recent
        target of its engine in its tenant (:meth:`recent_targets`). Returns the queued job
        ids (none while backing off)."""
        tid = tenant_id or self.autodev.tenant_id
        now = utcnow()
        with self.autodev.database.session() as session:
            row = session.get(Schedule, (tid, schedule_id))
            if row is None:
                raise NotFoundError(f"no schedule {schedule_id!r} in tenant {tid!r}")
            self._update_backoff(session, row, now)
            if row.backoff_until is not None and row.backoff_until > now:
                log.info("schedule_backing_off", tenant_id=tid, schedule_id=schedule_id,
                         failures=row.failures, until=row.backoff_until.isoformat())
                return []
            engine, target, budget = row.engine, row.target, row.budget
        targets = [target] if target else self.recent_targets(engine, tid)
        job_ids = []
        for name in targets:
            request = self.autodev.pipeline.request(engine, name, budget=budget,
                                                    trigger="schedule", tenant_id=tid)
            job_ids.append(await asyncio.to_thread(self.autodev.enqueue_cycle, request))
        with self.autodev.database.session() as session:
            row = session.get(Schedule, (tid, schedule_id))
            if row is not None:
                row.last_run_at = now
                row.last_job_ids = job_ids
        log.info("schedule_fired", tenant_id=tid, schedule_id=schedule_id, jobs=len(job_ids))
        return job_ids

    async def fire_all(self, tenant_id: str | None = None) -> list[EvolutionRunResult]:
        """Fire every schedule of ``tenant_id`` now and run the queued cycles to the end in
        this task (``auto-dev scheduler run --once``). Returns the cycles' outcomes."""
        job_ids: list[str] = []
        for row in self.schedules(tenant_id):
            if row.enabled:
                job_ids += await self.run_schedule(row.id, tenant_id=row.tenant_id)
        return await self.autodev.wait_for_jobs(list(dict.fromkeys(job_ids)))

    @staticmethod
    def _update_backoff(session: Any, row: Schedule, now: datetime) -> None:
        """Count the last firing: all of its cycles failed or were denied -> back off longer;
        any completed -> reset. Jobs still queued or running decide nothing yet."""
        if not row.last_job_ids:
            return
        jobs = session.scalars(select(CycleJob).where(CycleJob.id.in_(row.last_job_ids))).all()
        if not jobs or any(j.status in ("queued", "running") for j in jobs):
            return
        failed = all(j.status == "failed" or (j.outcome or {}).get("status") in
                     ("failed", "denied") for j in jobs)
        if failed:
            row.failures += 1
            wait = min(row.interval_s * 2 ** min(row.failures, 30), MAX_BACKOFF_S)
            row.backoff_until = now + timedelta(seconds=wait)
        else:
            row.failures = 0
            row.backoff_until = None
        row.last_job_ids = []

    def recent_targets(self, engine: str, tenant_id: str | None = None) -> list[str]:
        """What a schedule of ``engine`` without a target fires on: the engine's recent
        targets in the window (failing tools; failing workflows for the workflow engine)."""
        from auto_dev.queries import TenantView

        since = datetime.now(UTC) - self.window
        view = TenantView(self.autodev.database, tenant_id or self.autodev.tenant_id)
        return self.autodev.engines.get(engine).recent_targets(view, since=since)

    def recently_failing_tools(self, tenant_id: str | None = None) -> list[str]:
        since = datetime.now(UTC) - self.window
        return EpisodeQueries(self.autodev.database,
                              tenant_id or self.autodev.tenant_id).failing_tools(since=since)


def describe_job(job: Any) -> dict[str, Any]:
    return {"id": job.id, "name": job.name, "next_run_time": job.next_run_time}
