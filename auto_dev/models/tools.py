"""Tools, their versions (exactly one active) and their test cases."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from auto_dev.models.base import Base, created_column, id_column, tenant_column


class Tool(Base):
    __tablename__ = "tools"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_tools_tenant_name"),)

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    entrypoint: Mapped[str] = mapped_column(String(200), nullable=False)
    created_at: Mapped[datetime] = created_column()

    versions: Mapped[list[ToolVersion]] = relationship(
        back_populates="tool", order_by="ToolVersion.version", cascade="all, delete-orphan"
    )


class ToolVersion(Base):
    """One version of a tool's code. A partial unique index keeps one active version per tool."""

    __tablename__ = "tool_versions"
    __table_args__ = (
        UniqueConstraint("tool_id", "version", name="uq_tool_versions_tool_version"),
        Index(
            "uq_tool_versions_one_active",
            "tool_id",
            unique=True,
            sqlite_where=text("is_active"),
            postgresql_where=text("is_active"),
        ),
        Index("ix_tool_versions_tenant_tool", "tenant_id", "tool_id"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    tool_id: Mapped[str] = mapped_column(ForeignKey("tools.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    code: Mapped[str] = mapped_column(Text, nullable=False)
    entrypoint: Mapped[str] = mapped_column(String(200), nullable=False)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # How the version came to be: seed, mutation, skill, rollback.
    source: Mapped[str] = mapped_column(String(32), nullable=False, default="seed")
    source_id: Mapped[str | None] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(200), nullable=False, default="system")
    created_at: Mapped[datetime] = created_column()

    tool: Mapped[Tool] = relationship(back_populates="versions")


class TestCase(Base):
    """Inputs and the expected output of a tool, from an episode, a user or generation."""

    __test__ = False  # not a pytest class
    __tablename__ = "test_cases"
    __table_args__ = (Index("ix_test_cases_tenant_tool", "tenant_id", "tool_id"),)

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    tool_id: Mapped[str] = mapped_column(ForeignKey("tools.id", ondelete="CASCADE"))
    args: Mapped[list[Any]] = mapped_column(JSON, nullable=False, default=list)
    kwargs: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    expected: Mapped[Any] = mapped_column(JSON, nullable=True)
    has_expected: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    source: Mapped[str] = mapped_column(String(32), nullable=False, default="user")
    episode_id: Mapped[str | None] = mapped_column(ForeignKey("episodes.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = created_column()
