"""Episodes: one task an agent ran, and its segments (tool calls with inputs and outputs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from auto_dev.models.base import Base, created_column, id_column, tenant_column


class Episode(Base):
    __tablename__ = "episodes"
    __table_args__ = (
        Index("ix_episodes_tenant_agent_created", "tenant_id", "agent_id", "created_at"),
        Index("ix_episodes_tenant_tool_success", "tenant_id", "tool_name", "success", "created_at"),
        Index("ix_episodes_tenant_workflow_success", "tenant_id", "workflow_id", "success",
              "created_at"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    task_description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    success: Mapped[bool] = mapped_column(Boolean, nullable=False)
    error_trace: Mapped[str | None] = mapped_column(Text)
    tool_name: Mapped[str | None] = mapped_column(String(200))
    #: The workflow the episode was a run of (``None``: a tool call or a task of no workflow).
    workflow_id: Mapped[str | None] = mapped_column(
        ForeignKey("workflows.id", ondelete="SET NULL"))
    duration_s: Mapped[float | None] = mapped_column(Float)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    created_at: Mapped[datetime] = created_column()

    segments: Mapped[list[EpisodeSegment]] = relationship(
        back_populates="episode", order_by="EpisodeSegment.seq", cascade="all, delete-orphan"
    )


class EpisodeSegment(Base):
    __tablename__ = "episode_segments"
    __table_args__ = (Index("ix_episode_segments_episode_seq", "episode_id", "seq"),)

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    episode_id: Mapped[str] = mapped_column(ForeignKey("episodes.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False, default="tool_call")
    tool_name: Mapped[str | None] = mapped_column(String(200))
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    output: Mapped[Any] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text)
    duration_s: Mapped[float | None] = mapped_column(Float)

    episode: Mapped[Episode] = relationship(back_populates="segments")
