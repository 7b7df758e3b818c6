"""Writes of the cycle-job aggregate: the durable queue between events and the cycle worker.

::

    enqueue --> queued --claim--> running --finish--> done | failed
                  ^                  |  '--lease expired (worker died)--> claimable again
                  '----release-------'      (after max_attempts claims: failed)

Enqueueing is coalesced: one queued job per (tenant, engine, target), so a burst of failures of
one tool is one job (``requests`` counts how many asked). A claim is an ``UPDATE ... WHERE <still
claimable> RETURNING`` (with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so two workers, in one
process or many, never run the same job; a job is not claimed while another job on the same
target holds a live lease, so a target's cycles run one after the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, and_, exists, func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import aliased

from auto_dev.models import CycleJob, new_id, utcnow
from auto_dev.queries.runs import changed
from auto_dev.types import CycleRequest

if TYPE_CHECKING:
    from auto_dev.db import Database

_JOBS = cast(Table, CycleJob.__table__)
STATUSES = ("queued", "running", "done", "failed")


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job this worker now runs until its lease expires (renewed by its heartbeat)."""

    id: str
    request: CycleRequest
    attempts: int


class CycleJobQueue:
    """The cycle-job table for one process (``owner``)."""

    def __init__(self, database: Database, *, owner: str, lease_s: float) -> None:
        self.database = database
        self.owner = owner
        self.lease_s = lease_s

    def enqueue(self, request: CycleRequest, *, deadline_s: float, max_attempts: int = 3,
                delay_s: float = 0.0) -> str:
        """Queue ``request`` (or join the queued job on the same target). Returns the job id."""
        now = utcnow()
        values: dict[str, Any] = {
            "id": new_id(), "tenant_id": request.tenant_id, "engine": request.engine,
            "target": request.target, "trigger": request.trigger, "agent": request.agent,
            "budget": request.budget, "deadline_s": float(request.deadline_s or deadline_s),
            "status": "queued", "attempts": 0, "max_attempts": max_attempts, "requests": 1,
            "not_before": now + timedelta(seconds=delay_s), "outcome": {}, "created_at": now,
        }
        with self.database.session() as session:
            self.database.ensure_tenant(session, request.tenant_id)
            session.flush()
            dialect = session.get_bind().dialect.name
            upsert: Any = sqlite_insert(_JOBS) if dialect == "sqlite" else (
                postgresql_insert(_JOBS) if dialect == "postgresql" else None)
            if upsert is None:  # no portable upsert: look first
                found = self._queued_id(session, request)
                if found is None:
                    session.execute(insert(_JOBS).values(values))
                    return str(values["id"])
                session.execute(update(CycleJob).where(CycleJob.id == found)
                                .values(requests=CycleJob.requests + 1, agent=request.agent))
                return found
            statement = upsert.values(values).on_conflict_do_update(
                index_elements=["tenant_id", "engine", "target"],
                index_where=text("status = 'queued'"),
                # The queued job acts for the agent whose request is the newest.
                set_={"requests": _JOBS.c.requests + 1, "agent": upsert.excluded.agent,
                      "budget": func.max(_JOBS.c.budget, upsert.excluded.budget)
                      if dialect == "sqlite" else func.greatest(_JOBS.c.budget,
                                                                upsert.excluded.budget)},
            ).returning(_JOBS.c.id)
            return str(session.execute(statement).scalar_one())

    @staticmethod
    def _queued_id(session: Any, request: CycleRequest) -> str | None:
        return session.scalars(select(CycleJob.id).where(
            CycleJob.tenant_id == request.tenant_id, CycleJob.engine == request.engine,
            CycleJob.target == request.target, CycleJob.status == "queued")).first()

    def claim(self, limit: int) -> list[ClaimedJob]:
        """Take up to ``limit`` due jobs (queued, or running under an expired lease)."""
        if limit < 1:
            return []
        now = utcnow()
        lease_until = now + timedelta(seconds=self.lease_s)
        other = aliased(CycleJob)
        target_busy = exists().where(
            other.tenant_id == CycleJob.tenant_id, other.target == CycleJob.target,
            other.status == "running", other.lease_until >= now, other.id != CycleJob.id)
        claimable = and_(
            or_(and_(CycleJob.status == "queued", CycleJob.not_before <= now),
                and_(CycleJob.status == "running", CycleJob.lease_until < now,
                     CycleJob.attempts < CycleJob.max_attempts)),
            ~target_busy,
        )
        with self.database.session() as session:
            self._fail_exhausted(session, now)
            query = select(CycleJob.id).where(claimable).order_by(
                CycleJob.not_before, CycleJob.created_at).limit(limit)
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True, of=CycleJob)
            ids = list(session.scalars(query))
            if not ids:
                return []
            rows = session.execute(
                update(CycleJob).where(CycleJob.id.in_(ids), claimable)
                .values(status="running", owner=self.owner, lease_until=lease_until,
                        attempts=CycleJob.attempts + 1, started_at=now)
                .returning(CycleJob.id, CycleJob.tenant_id, CycleJob.engine, CycleJob.target,
                           CycleJob.trigger, CycleJob.agent, CycleJob.budget,
                           CycleJob.deadline_s, CycleJob.attempts)
                .execution_options(synchronize_session=False)
            ).all()
        return [
            ClaimedJob(id=r.id, attempts=r.attempts, request=CycleRequest(
                tenant_id=r.tenant_id, engine=r.engine, target=r.target, budget=r.budget,
                trigger=r.trigger, agent=r.agent, deadline_s=r.deadline_s, job_id=r.id))
            for r in rows
        ]

    @staticmethod
    def _fail_exhausted(session: Any, now: Any) -> None:
        """A job whose worker died ``max_attempts`` times is not tried again: it may be what
        kills its workers."""
        session.execute(
            update(CycleJob)
            .where(CycleJob.status == "running", CycleJob.lease_until < now,
                   CycleJob.attempts >= CycleJob.max_attempts)
            .values(status="failed", finished_at=now, lease_until=None,
                    error="its worker stopped before finishing it on every attempt")
            .execution_options(synchronize_session=False)
        )

    def renew(self, job_id: str) -> bool:
        """Extend the lease of a job this worker still holds; False if it lost it."""
        with self.database.session() as session:
            result = session.execute(
                update(CycleJob)
                .where(CycleJob.id == job_id, CycleJob.owner == self.owner,
                       CycleJob.status == "running")
                .values(lease_until=utcnow() + timedelta(seconds=self.lease_s))
                .execution_options(synchronize_session=False)
            )
            return changed(result)

    def finish(self, job_id: str, *, status: str, outcome: dict[str, Any],
               error: str | None = None, run_id: str | None = None) -> bool:
        """Record how the job ended, if this worker still holds it."""
        with self.database.session() as session:
            result = session.execute(
                update(CycleJob)
                .where(CycleJob.id == job_id, CycleJob.owner == self.owner,
                       CycleJob.status == "running")
                .values(status=status, outcome=outcome, error=error, run_id=run_id,
                        finished_at=utcnow(), lease_until=None)
                .execution_options(synchronize_session=False)
            )
            return changed(result)

    def release(self, job_id: str, *, delay_s: float = 0.0, count_attempt: bool = False) -> None:
        """Give a held job back to the queue (shutting down, or its target was busy). If a job on
        the same target was queued meanwhile, the two are merged."""
        now = utcnow()
        with self.database.session() as session:
            job = session.get(CycleJob, job_id)
            if job is None or job.owner != self.owner or job.status != "running":
                return
            queued = session.scalars(select(CycleJob).where(
                CycleJob.tenant_id == job.tenant_id, CycleJob.engine == job.engine,
                CycleJob.target == job.target, CycleJob.status == "queued")).first()
            if queued is not None:
                queued.requests += job.requests
                queued.budget = max(queued.budget, job.budget)
                session.delete(job)
                return
            job.status = "queued"
            job.owner = None
            job.lease_until = None
            job.not_before = now + timedelta(seconds=delay_s)
            if not count_attempt:
                job.attempts = max(job.attempts - 1, 0)

    def get(self, job_id: str) -> CycleJob | None:
        with self.database.session() as session:
            return session.get(CycleJob, job_id)

    def list(self, tenant_id: str | None = None, *, status: str | None = None,
             limit: int = 100) -> list[CycleJob]:
        with self.database.session() as session:
            query = select(CycleJob).order_by(CycleJob.created_at.desc()).limit(limit)
            if tenant_id is not None:
                query = query.where(CycleJob.tenant_id == tenant_id)
            if status is not None:
                query = query.where(CycleJob.status == status)
            return list(session.scalars(query))

    def counts(self, tenant_id: str | None = None) -> dict[str, int]:
        """Jobs by status."""
        with self.database.session(readonly=True) as session:
            query = select(CycleJob.status, func.count()).group_by(CycleJob.status)
            if tenant_id is not None:
                query = query.where(CycleJob.tenant_id == tenant_id)
            found = dict(session.execute(query).all())
        return {status: int(found.get(status, 0)) for status in STATUSES}
