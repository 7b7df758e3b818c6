"""The LLM cost ledger, and the per-tenant daily totals the budget checks against."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from auto_dev.models.base import Base, created_column, id_column, tenant_column


class LLMCall(Base):
    """One model call (success, failure or cache hit), or a budget reservation not yet settled.

    ``status`` is ``reserved`` while a call is in flight (``cost_usd`` then holds the worst-case
    estimate), then ``ok``, ``error`` or ``cache_hit`` with the real cost. This is the ledger of
    record; :class:`LLMBudgetDay` is derived from it.
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


class LLMBudgetDay(Base):
    """A tenant's ledger totals for one UTC day, so that a budget check reads one row.

    ``committed_usd`` sums the settled rows' costs, ``reserved_usd`` the estimates of the rows
    still ``reserved`` (``reserved_calls`` of them). Triggers on ``llm_calls`` (created by the
    initial migration, on SQLite and PostgreSQL) keep it equal to the ledger in the same
    statement as every insert, update or delete of a ledger row, whoever writes it; see
    :mod:`auto_dev.llm.budget`.
    """

    __tablename__ = "llm_budget_days"

    tenant_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    committed_usd: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    reserved_usd: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    reserved_calls: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
