"""Tenants and agents."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from auto_dev.models.base import Base, TolerantJSON, created_column, id_column, tenant_column


class Tenant(Base):
    """A tenant. ``settings`` holds its auto-dev toggles, limits and budgets (default: all off)."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    settings: Mapped[dict[str, Any]] = mapped_column(TolerantJSON, nullable=False, default=dict)
    created_at: Mapped[datetime] = created_column()


class Agent(Base):
    """An agent of a tenant, known to the platform by ``key``."""

    __tablename__ = "agents"
    __table_args__ = (UniqueConstraint("tenant_id", "key", name="uq_agents_tenant_key"),)

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    key: Mapped[str] = mapped_column(String(200), nullable=False)
    created_at: Mapped[datetime] = created_column()



