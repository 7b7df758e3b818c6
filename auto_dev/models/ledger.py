"""The LLM cost ledger."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from auto_dev.models.base import Base, created_column, id_column, tenant_column


class LLMCall(Base):
    """One model call (success, failure or cache hit), or a budget reservation not yet settled.

    ``status`` is ``reserved`` while a call is in flight (``cost_usd`` then holds the worst-case
    estimate), then ``ok``, ``error`` or ``cache_hit`` with the real cost.
    """

    __tablename__ = "llm_calls"
    __table_args__ = (Index("ix_llm_calls_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    run_id: Mapped[str | None] = mapped_column(
        ForeignKey("evolution_runs.id", ondelete="SET NULL")
    )
    engine: Mapped[str | None] = mapped_column(String(100))
    purpose: Mapped[str | None] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    deployment: Mapped[str | None] = mapped_column(String(200))
    prompt_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    latency_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    cache_hit: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="reserved")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_column()
