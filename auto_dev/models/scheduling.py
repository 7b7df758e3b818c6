"""Schedules of evolution cycles, and APScheduler's job table in the same database.

APScheduler's SQLAlchemyJobStore creates ``apscheduler_jobs`` itself only when it is missing; we
declare the same table here so that the alembic migration, not the job store, creates it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Unicode,
)
from sqlalchemy.orm import Mapped, mapped_column

from auto_dev.models.base import Base, UTCDateTime, created_column

APSCHEDULER_TABLE = "apscheduler_jobs"

apscheduler_jobs = Table(
    APSCHEDULER_TABLE,
    Base.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)


class Schedule(Base):
    """Run ``engine``'s cycle every ``interval_s`` on ``target`` or on recently failing tools.

    Ids are per tenant (the key is ``(tenant_id, id)``). ``failures`` counts consecutive firings
    whose cycles all failed; the schedule then waits ``backoff_until`` before firing again.
    """

    __tablename__ = "schedules"
    __table_args__ = (Index("ix_schedules_tenant", "tenant_id"),)

    tenant_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    engine: Mapped[str] = mapped_column(String(100), nullable=False)
    target: Mapped[str | None] = mapped_column(String(200))
    interval_s: Mapped[float] = mapped_column(Float, nullable=False)
    budget: Mapped[int] = mapped_column(nullable=False, default=100)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = created_column()
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0,
                                          server_default="0")
    backoff_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: The cycle jobs the last firing queued: their outcomes decide the next backoff.
    last_job_ids: Mapped[list[Any]] = mapped_column(JSON, nullable=False, default=list,
                                                       server_default="[]")
