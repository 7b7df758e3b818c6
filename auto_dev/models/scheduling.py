"""Schedules of evolution cycles, and APScheduler's job table in the same database.

APScheduler's SQLAlchemyJobStore creates ``apscheduler_jobs`` itself only when it is missing; we
declare the same table here so that the alembic migration, not the job store, creates it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    LargeBinary,
    String,
    Table,
    Unicode,
)
from sqlalchemy.orm import Mapped, mapped_column

from auto_dev.models.base import Base, UTCDateTime, created_column, tenant_column

APSCHEDULER_TABLE = "apscheduler_jobs"

apscheduler_jobs = Table(
    APSCHEDULER_TABLE,
    Base.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)


class Schedule(Base):
    """Run ``engine``'s cycle every ``interval_s`` on ``target`` or on recently failing tools."""

    __tablename__ = "schedules"
    __table_args__ = (Index("ix_schedules_tenant", "tenant_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = tenant_column()
    engine: Mapped[str] = mapped_column(String(100), nullable=False)
    target: Mapped[str | None] = mapped_column(String(200))
    interval_s: Mapped[float] = mapped_column(Float, nullable=False)
    budget: Mapped[int] = mapped_column(nullable=False, default=100)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = created_column()
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
