"""Capability maturity per (agent, capability) and the usage history graduation reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from auto_dev.models.base import Base, UTCDateTime, created_column, id_column, tenant_column, utcnow


class CapabilityState(Base):
    __tablename__ = "capability_states"
    __table_args__ = (
        UniqueConstraint(
            "tenant_id", "agent_id", "capability", name="uq_capability_states_agent_capability"
        ),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    capability: Mapped[str] = mapped_column(String(100), nullable=False)
    maturity: Mapped[str] = mapped_column(String(20), nullable=False, default="student")
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow
    )


class UsageRecord(Base):
    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_records_agent_capability", "tenant_id", "agent_id", "capability",
              "created_at"),
        # A usage row recorded from an outcome carries that outcome's key (an event id, or a
        # candidate's review verdict): a redelivered event can never count twice.
        Index("uq_usage_records_tenant_event_key", "tenant_id", "event_key", unique=True),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    capability: Mapped[str] = mapped_column(String(100), nullable=False)
    success: Mapped[bool] = mapped_column(Boolean, nullable=False)
    verified: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    #: What the record was made from, unique per tenant; ``None`` for direct calls.
    event_key: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = created_column()
