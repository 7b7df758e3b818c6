"""Scheduled evolution cycles on APScheduler, with jobs stored in auto-dev's own database.

A :class:`~auto_dev.models.Schedule` row is the source of truth; the APScheduler job that fires
it has the same id and lives in the ``apscheduler_jobs`` table (created by our migration). On
start the job store is reconciled with the schedules (``replace_existing``), so a restart
neither loses nor doubles jobs. Each job runs with ``max_instances=1`` and every cycle takes the
per-target run lock, so one target never has two cycles at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import desc, func, select

from auto_dev._exceptions import NotFoundError, SchedulerError, ValidationError
from auto_dev.engines.base import EvolutionRunResult
from auto_dev.models import APSCHEDULER_TABLE, Agent, Episode, Schedule, Tool, utcnow

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from auto_dev.config import Settings
    from auto_dev.service import AutoDev

log = structlog.get_logger(__name__)

BACKGROUND_CAPABILITY = "auto_dev.background_evolution"
_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
# The scheduler whose jobs this process runs. APScheduler stores jobs by function reference,
# so the job function finds its scheduler here rather than through a pickled object.
_active: EvolutionScheduler | None = None


async def _run_schedule_job(schedule_id: str) -> None:
    if _active is None:
        log.error("schedule_fired_without_scheduler", schedule_id=schedule_id)
        return
    await _active.run_schedule(schedule_id)


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
    """Manages schedules and, while :meth:`start`-ed, fires them."""

    def __init__(self, autodev: AutoDev, *, recent_failure_window: timedelta = timedelta(days=1)):
        self.autodev = autodev
        self.window = recent_failure_window
        self._scheduler: AsyncIOScheduler | None = None

    # -- managing schedules (works without a running scheduler) --------------------------------

    def add(self, engine: str, *, interval_s: float, target: str | None = None,
            budget: int = 100, schedule_id: str | None = None) -> Schedule:
        """Store a schedule (and, if the scheduler runs, its job). Validates every field."""
        if engine not in self.autodev.engines:
            raise ValidationError("engine", f"no engine named {engine!r} is registered")
        interval = check_interval(interval_s, self.autodev.settings)
        if not isinstance(budget, int) or budget < 1:
            raise ValidationError("budget", "must be a positive integer")
        sid = schedule_id or f"{engine}.{target or 'recent-failures'}"
        if not _ID.match(sid):
            raise ValidationError("schedule_id", f"must match {_ID.pattern}")
        with self.autodev.database.session() as session:
            if session.get(Schedule, sid) is not None:
                raise ValidationError("schedule_id", f"a schedule {sid!r} already exists")
            row = Schedule(id=sid, tenant_id=self.autodev.tenant_id, engine=engine,
                           target=target, interval_s=interval, budget=budget)
            session.add(row)
        if self._scheduler is not None:
            self._add_job(row)
        return row

    def schedules(self) -> list[Schedule]:
        with self.autodev.database.session() as session:
            return list(session.scalars(
                select(Schedule).where(Schedule.tenant_id == self.autodev.tenant_id)
                .order_by(Schedule.id)
            ))

    def remove(self, schedule_id: str) -> None:
        with self.autodev.database.session() as session:
            row = session.get(Schedule, schedule_id)
            if row is None or row.tenant_id != self.autodev.tenant_id:
                raise NotFoundError(f"no schedule {schedule_id!r}")
            session.delete(row)
        if self._scheduler is not None:
            with contextlib.suppress(Exception):
                self._scheduler.remove_job(schedule_id)

    def job_ids(self) -> list[str]:
        """Ids of the jobs in APScheduler's store (for inspection and tests)."""
        with self.autodev.database.session() as session:
            from auto_dev.models import apscheduler_jobs

            return sorted(session.scalars(select(apscheduler_jobs.c.id)))

    # -- running ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start firing schedules: reconcile the stored jobs with the schedules, then run."""
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
        for row in self.schedules():
            if not row.enabled:
                continue
            try:
                check_interval(row.interval_s, self.autodev.settings)
            except ValidationError as exc:  # a bad row must not stop the others
                log.error("schedule_skipped", schedule_id=row.id, error=str(exc))
                continue
            wanted[row.id] = row
        for job in scheduler.get_jobs():
            if job.id not in wanted and self._owned(job.id):
                scheduler.remove_job(job.id)
        for row in wanted.values():
            self._add_job(row)
        log.info("scheduler_started", schedules=len(wanted))

    def _owned(self, job_id: str) -> bool:
        with self.autodev.database.session() as session:
            row = session.get(Schedule, job_id)
            return row is None or row.tenant_id == self.autodev.tenant_id

    def _add_job(self, row: Schedule) -> None:
        assert self._scheduler is not None
        self._scheduler.add_job(
            "auto_dev.scheduler:_run_schedule_job",
            trigger="interval",
            seconds=row.interval_s,
            args=[row.id],
            id=row.id,
            name=f"{row.engine} on {row.target or 'recent failures'}",
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
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        if _active is self:
            _active = None

    # -- what a job does ---------------------------------------------------------------------------

    async def run_schedule(self, schedule_id: str) -> list[EvolutionRunResult]:
        """Run one schedule now: its engine's cycle on its target or on every recently failing
        tool, each gated by ``auto_dev.background_evolution``."""
        with self.autodev.database.session() as session:
            row = session.get(Schedule, schedule_id)
            if row is None:
                raise NotFoundError(f"no schedule {schedule_id!r}")
            engine, target, budget = row.engine, row.target, row.budget
            row.last_run_at = utcnow()
        targets = [target] if target else self.recently_failing_tools()
        results: list[EvolutionRunResult] = []
        for name in targets:
            allowed, reason = self._background_allowed(name)
            if not allowed:
                results.append(EvolutionRunResult(engine=engine, target=name, status="denied",
                                                  reason=reason))
                log.info("scheduled_cycle_denied", engine=engine, target=name, reason=reason)
                continue
            try:
                results.append(await self.autodev.run_cycle(engine, name, budget=budget,
                                                            trigger="schedule"))
            except Exception as exc:  # one failing target must not stop the others
                log.error("scheduled_cycle_failed", engine=engine, target=name, error=str(exc))
                results.append(EvolutionRunResult(engine=engine, target=name, status="failed",
                                                  reason=str(exc)))
        return results

    def recently_failing_tools(self) -> list[str]:
        since = datetime.now(UTC) - self.window
        tid = self.autodev.tenant_id
        with self.autodev.database.session() as session:
            rows = session.execute(
                select(Episode.tool_name, func.count())
                .join(Tool, (Tool.tenant_id == Episode.tenant_id)
                      & (Tool.name == Episode.tool_name))
                .where(Episode.tenant_id == tid, Episode.success.is_(False),
                       Episode.created_at >= since)
                .group_by(Episode.tool_name)
                .order_by(desc(func.count()), Episode.tool_name)
            ).all()
        return [name for name, _ in rows if name]

    def _background_allowed(self, tool_name: str) -> tuple[bool, str]:
        """Background cycles act for the agent whose failure they answer: that agent must be
        autonomous for background evolution. Any error denies."""
        tid = self.autodev.tenant_id
        try:
            with self.autodev.database.session() as session:
                agent_id = session.scalars(
                    select(Agent.id).join(Episode, Episode.agent_id == Agent.id)
                    .where(Episode.tenant_id == tid, Episode.tool_name == tool_name)
                    .order_by(desc(Episode.created_at)).limit(1)
                ).one_or_none()
                if agent_id is None:
                    return False, f"no agent has used tool {tool_name!r}"
                decision = self.autodev.gates.authorize(
                    session, tenant_id=tid, agent_id=agent_id,
                    capability=BACKGROUND_CAPABILITY, action="background_cycle",
                )
                return decision.allowed, decision.reason
        except Exception as exc:  # fail closed
            return False, f"gate error: {exc}"


def describe_job(job: Any) -> dict[str, Any]:
    return {"id": job.id, "name": job.name, "next_run_time": job.next_run_time}
