"""Workflows, their versions (exactly one active), their tasks, and the signals recorded against
tool and workflow versions after they went live."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
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


class Workflow(Base):
    """A named workflow of one tenant; its definitions are its versions."""

    __tablename__ = "workflows"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_workflows_tenant_name"),)

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = created_column()

    versions: Mapped[list[WorkflowVersion]] = relationship(
        back_populates="workflow", order_by="WorkflowVersion.version",
        cascade="all, delete-orphan")


class WorkflowVersion(Base):
    """One definition of a workflow. A partial unique index keeps one active version per
    workflow, as for tool versions."""

    __tablename__ = "workflow_versions"
    __table_args__ = (
        UniqueConstraint("workflow_id", "version", name="uq_workflow_versions_workflow_version"),
        Index(
            "uq_workflow_versions_one_active",
            "workflow_id",
            unique=True,
            sqlite_where=text("is_active"),
            postgresql_where=text("is_active"),
        ),
        Index("ix_workflow_versions_tenant_workflow", "tenant_id", "workflow_id"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    workflow_id: Mapped[str] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    #: ``auto_dev.workflows.workflow_hash`` of the definition: identical definitions, one hash.
    definition_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # How the version came to be: user (registered), variant (a promoted candidate).
    source: Mapped[str] = mapped_column(String(32), nullable=False, default="user")
    candidate_id: Mapped[str | None] = mapped_column(
        ForeignKey("workflow_variants.id", ondelete="SET NULL"))
    created_by: Mapped[str] = mapped_column(String(200), nullable=False, default="system")
    created_at: Mapped[datetime] = created_column()

    workflow: Mapped[Workflow] = relationship(back_populates="versions")


class WorkflowTaskRecord(Base):
    """An input of a workflow and the output expected from it (from a user or an episode),
    stored once per workflow (``key`` hashes input and expected)."""

    __tablename__ = "workflow_tasks"
    __table_args__ = (
        UniqueConstraint("workflow_id", "key", name="uq_workflow_tasks_workflow_key"),
        Index("ix_workflow_tasks_tenant_workflow", "tenant_id", "workflow_id"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    workflow_id: Mapped[str] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64), nullable=False)
    input: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    expected: Mapped[Any] = mapped_column(JSON, nullable=True)
    has_expected: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    source: Mapped[str] = mapped_column(String(32), nullable=False, default="user")
    episode_id: Mapped[str | None] = mapped_column(ForeignKey("episodes.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = created_column()


class VersionSignal(Base):
    """A number recorded against one tool version or one workflow version after it went live:
    ``kind`` is ``business_value``, ``feedback`` or a name of the user's own."""

    __tablename__ = "version_signals"
    __table_args__ = (
        CheckConstraint(
            "(tool_version_id IS NULL) <> (workflow_version_id IS NULL)", name="one_version"),
        Index("ix_version_signals_tool_version", "tool_version_id", "kind", "created_at"),
        Index("ix_version_signals_workflow_version", "workflow_version_id", "kind",
              "created_at"),
        Index("ix_version_signals_tenant_created", "tenant_id", "created_at"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    tool_version_id: Mapped[str | None] = mapped_column(
        ForeignKey("tool_versions.id", ondelete="CASCADE"))
    workflow_version_id: Mapped[str | None] = mapped_column(
        ForeignKey("workflow_versions.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(200), nullable=False)
    value: Mapped[float] = mapped_column(Float, nullable=False)
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    # ``metadata`` is reserved on declarative classes: the attribute has another name.
    details: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, nullable=False,
                                                    default=dict)
    created_at: Mapped[datetime] = created_column()
