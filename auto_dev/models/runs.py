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
    """One cycle of an engine on a target. A partial unique index allows one running per target."""

    __tablename__ = "evolution_runs"
    __table_args__ = (
        Index(
            "uq_evolution_runs_one_running",
            "tenant_id",
            "engine",
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
