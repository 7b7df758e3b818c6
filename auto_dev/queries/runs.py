"""Writes of the evolution-run aggregate: the per-target lock, its lease, and recovery.

A run row with status ``running`` *is* the lock on its (tenant, target): a partial unique index
refuses a second one. The process that inserted it is its ``owner`` and keeps ``lease_until`` in
the future with a heartbeat; a run whose lease expired belongs to a process that died, and any
process (whatever its tenant) may mark it ``interrupted`` and take the target. Nothing here
touches a run whose lease is alive, so a starting process never steals a live cycle's lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import and_, select, update

from auto_dev._exceptions import StorageError
from auto_dev.models import EvolutionRun, utcnow
from auto_dev.queries.paging import Page, check_window, count_of

if TYPE_CHECKING:
    from auto_dev.db import Database
    from auto_dev.types import CycleRequest

log = structlog.get_logger(__name__)

INTERRUPTED = "the process running this cycle stopped before it finished"


@dataclass(frozen=True, slots=True)
class HeldRun:
    """A run this process holds the lock of."""

    id: str
    tenant_id: str
    target: str


def changed(result: Any) -> bool:
    """Whether an UPDATE matched a row (``rowcount`` is on the cursor result of DML)."""
    return bool(getattr(result, "rowcount", 0))


def is_unique_violation(exc: BaseException) -> bool:
    text = str(exc).lower()
    if exc.__cause__ is not None:
        text += " " + str(exc.__cause__).lower()
    return "unique" in text or "duplicate key" in text


class RunLeases:
    """Acquires, renews, finishes and recovers evolution runs for one process (``owner``)."""

    def __init__(self, database: Database, *, owner: str, lease_s: float) -> None:
        self.database = database
        self.owner = owner
        self.lease_s = lease_s

    def _lease(self) -> Any:
        return utcnow() + timedelta(seconds=self.lease_s)

    def acquire(self, request: CycleRequest, *, tool_id: str | None,
                agent: str | None) -> HeldRun | None:
        """Insert the running row for ``request`` or return ``None`` if a live cycle holds the
        target. A holder whose lease expired is marked interrupted first."""
        for attempt in range(2):
            row = EvolutionRun(
                tenant_id=request.tenant_id, engine=request.engine, target=request.target,
                tool_id=tool_id, trigger=request.trigger, status="running",
                budget=request.budget, heartbeat_at=utcnow(), owner=self.owner,
                lease_until=self._lease(), agent=agent, job_id=request.job_id,
            )
            try:
                with self.database.session() as session:
                    session.add(row)
                return HeldRun(row.id, request.tenant_id, request.target)
            except StorageError as exc:
                if not is_unique_violation(exc):
                    raise
            if attempt == 0 and not self._expire_holder(request.tenant_id, request.target):
                break
        log.info("cycle_already_running", engine=request.engine, target=request.target,
                 tenant_id=request.tenant_id)
        return None

    def _expire_holder(self, tenant_id: str, target: str) -> bool:
        """Mark the running run of (tenant, target) interrupted if its lease expired."""
        now = utcnow()
        with self.database.session() as session:
            result = session.execute(
                update(EvolutionRun)
                .where(EvolutionRun.tenant_id == tenant_id, EvolutionRun.target == target,
                       EvolutionRun.status == "running", EvolutionRun.lease_until < now)
                .values(status="interrupted", finished_at=now, error=INTERRUPTED)
                .execution_options(synchronize_session=False)
            )
            return changed(result)

    def renew(self, run_id: str) -> bool:
        """Extend the lease of a run this process still holds; False if it lost it."""
        now = utcnow()
        with self.database.session() as session:
            result = session.execute(
                update(EvolutionRun)
                .where(EvolutionRun.id == run_id, EvolutionRun.owner == self.owner,
                       EvolutionRun.status == "running")
                .values(heartbeat_at=now, lease_until=self._lease())
                .execution_options(synchronize_session=False)
            )
            return changed(result)

    def finish(self, run_id: str, *, status: str, error: str | None = None,
               evaluations: int = 0, stats: dict[str, Any] | None = None,
               state: dict[str, Any] | None = None) -> None:
        """Close the run (releasing the target) with its outcome."""
        with self.database.session() as session:
            row = session.get(EvolutionRun, run_id)
            if row is None:
                return
            row.status = status
            row.error = error
            row.evaluations = evaluations
            row.stats = dict(stats or {})
            row.state = dict(state or {})
            row.finished_at = utcnow()
            row.lease_until = None

    def expire_dead(self) -> list[HeldRun]:
        """Mark every running run whose lease expired ``interrupted`` (any tenant) and return
        them, so their open candidates can be resolved."""
        now = utcnow()
        with self.database.session() as session:
            rows = session.execute(
                select(EvolutionRun.id, EvolutionRun.tenant_id, EvolutionRun.target)
                .where(EvolutionRun.status == "running", EvolutionRun.lease_until < now)
            ).all()
            if not rows:
                return []
            session.execute(
                update(EvolutionRun)
                .where(and_(EvolutionRun.id.in_([r.id for r in rows]),
                            EvolutionRun.status == "running", EvolutionRun.lease_until < now))
                .values(status="interrupted", finished_at=now, error=INTERRUPTED)
                .execution_options(synchronize_session=False)
            )
        return [HeldRun(r.id, r.tenant_id, r.target) for r in rows]

    def status(self, run_id: str) -> str | None:
        with self.database.session(readonly=True) as session:
            row = session.get(EvolutionRun, run_id)
            return row.status if row else None


class RunHistory:
    """The evolution runs of one tenant for a reviewer: newest first, filtered and paged."""

    def __init__(self, database: Database, tenant_id: str) -> None:
        self.database = database
        self.tenant_id = tenant_id

    def page(self, *, status: str | None = None, engine: str | None = None,
             target: str | None = None, limit: int = 50, offset: int = 0
             ) -> Page[EvolutionRun]:
        limit, offset = check_window(limit, offset)
        query = select(EvolutionRun).where(EvolutionRun.tenant_id == self.tenant_id)
        for column, value in ((EvolutionRun.status, status), (EvolutionRun.engine, engine),
                              (EvolutionRun.target, target)):
            if value is not None:
                query = query.where(column == value)
        with self.database.session(readonly=True) as session:
            total = count_of(session, query)
            rows = list(session.scalars(query.order_by(EvolutionRun.started_at.desc(),
                                                       EvolutionRun.id.desc())
                                        .limit(limit).offset(offset)))
            session.expunge_all()  # usable after the read-only session rolls back
        return Page(rows, total, limit, offset)
