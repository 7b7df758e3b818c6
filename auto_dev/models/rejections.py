"""Changes a reviewer turned down: remembered per target by normalised hash, so they are never
offered again, even after the candidates themselves are pruned."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from auto_dev.models.base import Base, created_column, id_column, tenant_column


class RejectedChange(Base):
    """One rejected (or rolled back) change of a target: who, when, why, and its fingerprint.

    ``candidate_id`` is deliberately not a foreign key: the row outlives the candidate it came
    from (``auto-dev candidates prune``).
    """

    __tablename__ = "rejected_changes"
    __table_args__ = (
        Index("ix_rejected_changes_target", "tenant_id", "target_kind", "target", "code_hash"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    #: "tool" (tool mutations and skills, named by tool) or "workflow" (variants, by name).
    target_kind: Mapped[str] = mapped_column(String(16), nullable=False)
    target: Mapped[str] = mapped_column(String(200), nullable=False)
    #: Hex of the normalised-AST digest (a workflow: of its canonical JSON).
    code_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    #: "rejected" (a reviewer said no) or "rolled_back" (it was live and was taken back).
    decision: Mapped[str] = mapped_column(String(20), nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    candidate_kind: Mapped[str | None] = mapped_column(String(32))
    candidate_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = created_column()
