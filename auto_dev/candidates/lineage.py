"""A candidate's ancestry, its parent's objective vector and the cases each of them passes.

Read-only helpers shared by promotion (auto-promotion compares a candidate with its parent) and
review (``show`` prints the lineage and the objective vector against the parent's).

Where the parent's objective vector comes from, first match wins:

1. what the engine recorded with the evaluation (``details["parent_objectives"]`` of a tool
   mutation, ``validation["parent_objectives"]`` of a skill);
2. the parent candidate's own vector (a mutation's parent mutation, a variant's parent variant);
3. the parent tool version's latest evaluation (``Evaluation.candidate_kind == "tool_version"``),
   scored by the default :class:`~auto_dev.fitness.service.FitnessService`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from auto_dev.candidates._kinds import Candidate, kind_of
from auto_dev.models import (
    Evaluation,
    SkillCandidate,
    Tool,
    ToolMutation,
    ToolVersion,
    WorkflowVariant,
)

log = structlog.get_logger(__name__)

_MAX_DEPTH = 1000


@dataclass(frozen=True, slots=True)
class LineageStep:
    """One ancestor (or the candidate itself, first)."""

    kind: str  # tool_mutation | skill_candidate | workflow_variant | tool_version
    id: str
    label: str
    operator: str = ""
    generation: int | None = None
    status: str = ""
    objectives: dict[str, float] = field(default_factory=dict)
    note: str = ""


def latest_evaluation(session: Session, tenant_id: str, kind: str, subject_id: str
                      ) -> Evaluation | None:
    return session.scalars(
        select(Evaluation).where(Evaluation.tenant_id == tenant_id,
                                 Evaluation.candidate_kind == kind,
                                 Evaluation.candidate_id == subject_id)
        .order_by(Evaluation.created_at.desc(), Evaluation.id.desc()).limit(1)
    ).first()


def candidate_evaluation(session: Session, candidate: Candidate) -> Evaluation | None:
    """The evaluation linked to a candidate (or its latest one)."""
    evaluation_id = getattr(candidate, "evaluation_id", None)
    if evaluation_id:
        row = session.get(Evaluation, evaluation_id)
        if row is not None and row.tenant_id == candidate.tenant_id:
            return row
    return latest_evaluation(session, candidate.tenant_id, kind_of(candidate).value, candidate.id)


def _ok_indices(evaluation: Evaluation | None) -> frozenset[int]:
    if evaluation is None:
        return frozenset()
    out = set()
    for position, case in enumerate(evaluation.cases or []):
        if isinstance(case, dict) and case.get("status") == "ok":
            out.add(int(case.get("index", position)))
    return frozenset(out)


def passed_cases(session: Session, candidate: Candidate) -> frozenset[int]:
    return _ok_indices(candidate_evaluation(session, candidate))


def _recorded(candidate: Candidate, key: str) -> Any:
    if isinstance(candidate, ToolMutation | WorkflowVariant):
        return (candidate.details or {}).get(key)
    if isinstance(candidate, SkillCandidate):
        return (candidate.validation or {}).get(key)
    return None


def parent_version(session: Session, candidate: Candidate) -> ToolVersion | None:
    """The tool version a candidate was derived from (directly, not through a parent mutation)."""
    version_id: str | None = None
    if isinstance(candidate, ToolMutation):
        version_id = candidate.parent_version_id
    elif isinstance(candidate, SkillCandidate) and candidate.tool_id:
        validation = candidate.validation or {}
        if "parent_version_id" in validation:  # recorded at creation (None: a brand-new tool)
            recorded = validation["parent_version_id"]
            version_id = recorded if isinstance(recorded, str) else None
        else:  # a row from before it was recorded: the active version is the best guess
            return session.scalars(select(ToolVersion).where(
                ToolVersion.tenant_id == candidate.tenant_id,
                ToolVersion.tool_id == candidate.tool_id,
                ToolVersion.is_active.is_(True))).one_or_none()
    if version_id is None:
        return None
    row = session.get(ToolVersion, version_id)
    return row if row is not None and row.tenant_id == candidate.tenant_id else None


def _parent_candidate(session: Session, candidate: Candidate) -> Candidate | None:
    parent: Candidate | None = None
    if isinstance(candidate, ToolMutation) and candidate.parent_mutation_id:
        parent = session.get(ToolMutation, candidate.parent_mutation_id)
    elif isinstance(candidate, WorkflowVariant) and candidate.parent_id:
        parent = session.get(WorkflowVariant, candidate.parent_id)
    return parent if parent is not None and parent.tenant_id == candidate.tenant_id else None


def version_objectives(session: Session, version: ToolVersion) -> dict[str, float]:
    """The objective vector of a tool version's latest evaluation (empty when never run)."""
    evaluation = latest_evaluation(session, version.tenant_id, "tool_version", version.id)
    if evaluation is None:
        return {}
    try:
        from auto_dev.fitness.service import FitnessService
        from auto_dev.sandbox.base import CaseResult, SandboxResult

        result = SandboxResult(
            backend=evaluation.backend,
            cases=tuple(CaseResult.from_wire(c) for c in evaluation.cases or []),
            total=evaluation.total, duration_s=evaluation.duration_s,
        )
        return FitnessService().score(result, version.code)
    except Exception as exc:  # a malformed stored evaluation: no vector rather than a crash
        log.warning("version_objectives_unreadable", version_id=version.id, error=str(exc))
        return {}


def parent_objectives(session: Session, candidate: Candidate) -> dict[str, float]:
    """The parent's objective vector (see the module docstring for the sources)."""
    recorded = _recorded(candidate, "parent_objectives")
    if isinstance(recorded, dict) and recorded:
        return {str(k): float(v) for k, v in recorded.items()}
    parent = _parent_candidate(session, candidate)
    if parent is not None and parent.objectives:
        return dict(parent.objectives)
    version = parent_version(session, candidate)
    return version_objectives(session, version) if version is not None else {}


def parent_passed_cases(session: Session, candidate: Candidate) -> frozenset[int]:
    recorded = _recorded(candidate, "parent_passed_cases")
    if isinstance(recorded, list | tuple):
        return frozenset(int(i) for i in recorded)
    parent = _parent_candidate(session, candidate)
    if parent is not None:
        return passed_cases(session, parent)
    version = parent_version(session, candidate)
    if version is None:
        return frozenset()
    return _ok_indices(latest_evaluation(session, version.tenant_id, "tool_version", version.id))


def _version_step(session: Session, version: ToolVersion, note: str = "") -> LineageStep:
    tool = session.get(Tool, version.tool_id)
    name = tool.name if tool else version.tool_id
    return LineageStep(kind="tool_version", id=version.id, label=f"{name} v{version.version}",
                       operator=version.source, status="active" if version.is_active else "",
                       note=note)


def _candidate_step(candidate: Candidate, note: str = "") -> LineageStep:
    if isinstance(candidate, ToolMutation):
        label, operator, generation = (f"mutation g{candidate.generation} "
                                       f"island {candidate.island}", candidate.operator,
                                       candidate.generation)
    elif isinstance(candidate, SkillCandidate):
        label, operator, generation = f"skill {candidate.name}", candidate.strategy, None
    else:
        label, operator, generation = f"workflow {candidate.name}", candidate.operator, None
    return LineageStep(kind=kind_of(candidate).value, id=candidate.id, label=label,
                       operator=operator, generation=generation, status=candidate.status,
                       objectives=dict(candidate.objectives or {}), note=note)


def lineage(session: Session, candidate: Candidate) -> list[LineageStep]:
    """The candidate, then its parents up to the tool version the chain started from."""
    steps: list[LineageStep] = []
    seen: set[str] = set()
    node: Candidate | None = candidate
    while node is not None and node.id not in seen and len(steps) < _MAX_DEPTH:
        seen.add(node.id)
        note = ""
        if isinstance(node, ToolMutation) and node.second_parent_id:
            note = f"crossover with {node.second_parent_id[:12]}"
        steps.append(_candidate_step(node, note))
        parent = _parent_candidate(session, node)
        if parent is None:
            version = parent_version(session, node)
            if version is not None:
                steps.append(_version_step(session, version,
                                           "the version it repairs"
                                           if isinstance(node, SkillCandidate) else ""))
            break
        node = parent
    return steps
