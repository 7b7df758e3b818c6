"""Sandbox evaluations and evolution runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from auto_dev.models.base import Base, UTCDateTime, created_column, id_column, tenant_column


class Evaluation(Base):
    """One sandbox validation of a candidate: backend, limits, per-case results, timings."""

    __tablename__ = "evaluations"
    __table_args__ = (Index("ix_evaluations_candidate", "candidate_kind", "candidate_id"),)

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    # Any candidate kind (tool_mutation, skill_candidate, tool_version): polymorphic on purpose.
    candidate_kind: Mapped[str] = mapped_column(String(32), nullable=False)
    candidate_id: Mapped[str | None] = mapped_column(String(32))
    backend: Mapped[str] = mapped_column(String(32), nullable=False)
    limits: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    cases: Mapped[list[Any]] = mapped_column(JSON, nullable=False, default=list)
    passed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    total: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    duration_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    peak_memory_kb: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    logs: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = created_column()


class EvolutionRun(Base):
    """One cycle of an engine on a target. A partial unique index allows one running cycle per
    (tenant, target), whatever the engine; ``owner`` holds it until ``lease_until``, which its
    heartbeat keeps extending. A run whose lease expired belongs to a dead process."""

    __tablename__ = "evolution_runs"
    __table_args__ = (
        Index(
            "uq_evolution_runs_one_running",
            "tenant_id",
            "target",
            unique=True,
            sqlite_where=text("status = 'running'"),
            postgresql_where=text("status = 'running'"),
        ),
        Index("ix_evolution_runs_tenant_started", "tenant_id", "started_at"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    engine: Mapped[str] = mapped_column(String(100), nullable=False)
    target: Mapped[str] = mapped_column(String(200), nullable=False)
    tool_id: Mapped[str | None] = mapped_column(ForeignKey("tools.id", ondelete="SET NULL"))
    trigger: Mapped[str] = mapped_column(String(20), nullable=False, default="manual")
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="running")
    budget: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    evaluations: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    # Enough to resume after a crash (seed, generation, best ids).
    state: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = created_column()
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    agent: Mapped[str | None] = mapped_column(String(200))
    job_id: Mapped[str | None] = mapped_column(String(32))


class CycleJob(Base):
    """A cycle waiting to run, or running under a lease.

    ``queued`` jobs are coalesced: a partial unique index allows one queued job per (tenant,
    engine, target), so a burst of failures of one tool is one job. A worker claims a job by
    moving it to ``running`` with its ``owner`` and ``lease_until``; a job whose lease expired is
    claimable again (its worker died), up to ``max_attempts`` claims.
    """

    __tablename__ = "cycle_jobs"
    __table_args__ = (
        Index(
            "uq_cycle_jobs_one_queued",
            "tenant_id",
            "engine",
            "target",
            unique=True,
            sqlite_where=text("status = 'queued'"),
            postgresql_where=text("status = 'queued'"),
        ),
        Index("ix_cycle_jobs_status_due", "status", "not_before"),
        Index("ix_cycle_jobs_tenant_created", "tenant_id", "created_at"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    engine: Mapped[str] = mapped_column(String(100), nullable=False)
    target: Mapped[str] = mapped_column(String(200), nullable=False)
    trigger: Mapped[str] = mapped_column(String(20), nullable=False, default="event")
    agent: Mapped[str | None] = mapped_column(String(200))
    budget: Mapped[int] = mapped_column(Integer, nullable=False)
    deadline_s: Mapped[float] = mapped_column(Float, nullable=False)
    # queued -> running -> done | failed; running with an expired lease -> claimable again
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="queued")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=3)
    requests: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    not_before: Mapped[datetime] = created_column()
    owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    run_id: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_column()
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
