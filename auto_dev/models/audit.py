"""Review decisions and the audit trail: append-only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from auto_dev.models.base import Base, created_column, id_column, tenant_column


class ReviewDecision(Base):
    """Who decided what about a candidate, when and why."""

    __tablename__ = "review_decisions"
    __table_args__ = (Index("ix_review_decisions_candidate", "candidate_kind", "candidate_id"),)

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    candidate_kind: Mapped[str] = mapped_column(String(32), nullable=False)
    candidate_id: Mapped[str] = mapped_column(String(32), nullable=False)
    decision: Mapped[str] = mapped_column(String(20), nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = created_column()


class AuditEntry(Base):
    """Every gate decision and state change worth explaining later."""

    __tablename__ = "audit_entries"
    __table_args__ = (Index("ix_audit_entries_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    action: Mapped[str] = mapped_column(String(100), nullable=False)
    subject_kind: Mapped[str | None] = mapped_column(String(32))
    subject_id: Mapped[str | None] = mapped_column(String(64))
    allowed: Mapped[bool | None] = mapped_column(nullable=True)
    reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    created_at: Mapped[datetime] = created_column()
