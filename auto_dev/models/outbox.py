"""The event outbox: every event persisted before dispatch, with per-handler deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from auto_dev.models.base import Base, UTCDateTime, created_column, tenant_column


class EventRecord(Base):
    __tablename__ = "event_records"
    __table_args__ = (Index("ix_event_records_status_created", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = tenant_column()
    type: Mapped[str] = mapped_column(String(100), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    # pending: not yet dispatched; dispatched: every delivery settled (done or dead).
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="pending")
    created_at: Mapped[datetime] = created_column()
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class EventDelivery(Base):
    """One event to one handler: retried with backoff until delivered or out of attempts."""

    __tablename__ = "event_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "handler", name="uq_event_deliveries_event_handler"),
        Index("ix_event_deliveries_status_next", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = tenant_column()
    event_id: Mapped[str] = mapped_column(ForeignKey("event_records.id", ondelete="CASCADE"))
    handler: Mapped[str] = mapped_column(String(300), nullable=False)
    # pending -> delivered | failed (will retry) -> dead (out of attempts)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
