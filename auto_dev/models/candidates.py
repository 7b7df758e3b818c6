"""Candidates: tool mutations, workflow variants and skill candidates, and their lifecycle.

Every status change goes through :func:`transition`, which refuses moves the lifecycle forbids::

    pending -> evaluating -> passed | failed
    passed -> approved | rejected
    approved -> promoted | rejected
    promoted -> rolled_back
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from auto_dev._exceptions import IllegalTransitionError
from auto_dev.models.base import Base, UTCDateTime, created_column, id_column, tenant_column, utcnow


class CandidateStatus(enum.StrEnum):
    PENDING = "pending"
    EVALUATING = "evaluating"
    PASSED = "passed"
    FAILED = "failed"
    APPROVED = "approved"
    REJECTED = "rejected"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"


ALLOWED_TRANSITIONS: dict[CandidateStatus, frozenset[CandidateStatus]] = {
    CandidateStatus.PENDING: frozenset({CandidateStatus.EVALUATING, CandidateStatus.FAILED}),
    CandidateStatus.EVALUATING: frozenset({CandidateStatus.PASSED, CandidateStatus.FAILED}),
    CandidateStatus.PASSED: frozenset({CandidateStatus.APPROVED, CandidateStatus.REJECTED}),
    CandidateStatus.FAILED: frozenset(),
    CandidateStatus.APPROVED: frozenset({CandidateStatus.PROMOTED, CandidateStatus.REJECTED}),
    CandidateStatus.REJECTED: frozenset(),
    CandidateStatus.PROMOTED: frozenset({CandidateStatus.ROLLED_BACK}),
    CandidateStatus.ROLLED_BACK: frozenset(),
}


class _CandidateMixin(Protocol):
    status: str
    updated_at: datetime


def transition(candidate: _CandidateMixin, new: CandidateStatus | str) -> None:
    """Move ``candidate`` to ``new`` or raise :class:`IllegalTransitionError`."""
    target = CandidateStatus(new)
    current = CandidateStatus(candidate.status)
    if target not in ALLOWED_TRANSITIONS[current]:
        raise IllegalTransitionError(
            f"{type(candidate).__name__} {getattr(candidate, 'id', '?')}: "
            f"cannot go from {current.value} to {target.value}"
        )
    candidate.status = target.value
    candidate.updated_at = utcnow()


class ToolMutation(Base):
    """A candidate new version of a tool, with its lineage and evaluation evidence."""

    __tablename__ = "tool_mutations"
    __table_args__ = (
        Index("ix_tool_mutations_tenant_tool_status", "tenant_id", "tool_id", "status"),
        Index("ix_tool_mutations_run", "run_id"),
        Index("ix_tool_mutations_tenant_created", "tenant_id", "created_at"),
        Index("ix_tool_mutations_tool_hash", "tool_id", "ast_hash"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    tool_id: Mapped[str] = mapped_column(ForeignKey("tools.id", ondelete="CASCADE"))
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    run_id: Mapped[str | None] = mapped_column(
        ForeignKey("evolution_runs.id", ondelete="SET NULL")
    )
    parent_version_id: Mapped[str | None] = mapped_column(
        ForeignKey("tool_versions.id", ondelete="SET NULL")
    )
    parent_mutation_id: Mapped[str | None] = mapped_column(
        ForeignKey("tool_mutations.id", ondelete="SET NULL")
    )
    second_parent_id: Mapped[str | None] = mapped_column(
        ForeignKey("tool_mutations.id", ondelete="SET NULL")
    )
    evaluation_id: Mapped[str | None] = mapped_column(
        ForeignKey("evaluations.id", ondelete="SET NULL")
    )
    code: Mapped[str] = mapped_column(Text, nullable=False)
    entrypoint: Mapped[str] = mapped_column(String(200), nullable=False)
    diff: Mapped[str] = mapped_column(Text, nullable=False, default="")
    operator: Mapped[str] = mapped_column(String(100), nullable=False)
    ast_hash: Mapped[str | None] = mapped_column(String(64))
    island: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    generation: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="pending")
    objectives: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow
    )


class WorkflowVariant(Base):
    """A candidate workflow definition (JSON steps) with its objective vector."""

    __tablename__ = "workflow_variants"
    __table_args__ = (
        Index("ix_workflow_variants_tenant_status", "tenant_id", "status"),
        Index("ix_workflow_variants_tenant_agent", "tenant_id", "agent_id"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    parent_id: Mapped[str | None] = mapped_column(
        ForeignKey("workflow_variants.id", ondelete="SET NULL")
    )
    run_id: Mapped[str | None] = mapped_column(
        ForeignKey("evolution_runs.id", ondelete="SET NULL")
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    operator: Mapped[str] = mapped_column(String(100), nullable=False, default="seed")
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="pending")
    objectives: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    fitness: Mapped[float | None] = mapped_column(Float)
    #: Evidence and lineage: the version it was made from, the operators that made it, the
    #: per-task results before and after, the run's search figures.
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict,
                                                    server_default="{}")
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow
    )


class SkillCandidate(Base):
    """A new skill learned from failed episodes, with the tests it was validated against."""

    __tablename__ = "skill_candidates"
    __table_args__ = (
        Index("ix_skill_candidates_tenant_status", "tenant_id", "status"),
        Index("ix_skill_candidates_tenant_created", "tenant_id", "created_at"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    tool_id: Mapped[str | None] = mapped_column(ForeignKey("tools.id", ondelete="SET NULL"))
    run_id: Mapped[str | None] = mapped_column(
        ForeignKey("evolution_runs.id", ondelete="SET NULL")
    )
    evaluation_id: Mapped[str | None] = mapped_column(
        ForeignKey("evaluations.id", ondelete="SET NULL")
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    code: Mapped[str] = mapped_column(Text, nullable=False)
    entrypoint: Mapped[str] = mapped_column(String(200), nullable=False)
    diff: Mapped[str] = mapped_column(Text, nullable=False, default="")
    strategy: Mapped[str] = mapped_column(String(50), nullable=False)
    failure_pattern: Mapped[str] = mapped_column(Text, nullable=False, default="")
    source_episode_ids: Mapped[list[Any]] = mapped_column(JSON, nullable=False, default=list)
    tests: Mapped[list[Any]] = mapped_column(JSON, nullable=False, default=list)
    validation: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    exchange: Mapped[list[Any]] = mapped_column(JSON, nullable=False, default=list)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="pending")
    objectives: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow
    )
