"""Human review: list, inspect, approve, reject, promote, roll back. Every query is tenant-scoped.

:class:`ReviewService` opens one transaction per call and does its writes through the
:class:`~auto_dev.candidates.store.CandidateStore`, so review decisions pass the same gate and
land in the same audit trail as everything else. Candidates may be named by a unique id prefix
(at least 4 characters), which is what the CLI prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from auto_dev._exceptions import NotFoundError, ValidationError
from auto_dev.candidates._kinds import MODELS, Candidate, CandidateKind, capability_of, kind_of
from auto_dev.candidates.lineage import (
    LineageStep,
    candidate_evaluation,
    lineage,
    parent_objectives,
    version_objectives,
)
from auto_dev.candidates.llm_exchange import LLMExchange, candidate_exchange
from auto_dev.candidates.promotion import PromotionResult, RollbackResult, parent_code, render_diff
from auto_dev.models import (
    Agent,
    CandidateStatus,
    Evaluation,
    SkillCandidate,
    TestCase,
    Tool,
    ToolMutation,
    ToolVersion,
    WorkflowVariant,
)

if TYPE_CHECKING:
    from auto_dev.candidates.retention import PruneResult
    from auto_dev.candidates.store import CandidateStore
    from auto_dev.db import Database

#: Statuses that wait for a human: passed (approve or reject) and approved (promote).
PENDING_REVIEW = (CandidateStatus.PASSED.value, CandidateStatus.APPROVED.value)
_MIN_PREFIX = 4
_LIVE_OR_DONE = (CandidateStatus.PROMOTED.value, CandidateStatus.ROLLED_BACK.value)


@dataclass(frozen=True, slots=True)
class CandidateSummary:
    kind: str
    id: str
    status: str
    target: str  # the tool, skill or workflow name
    operator: str
    agent: str | None
    created_at: datetime
    objectives: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ObjectiveRow:
    """One objective: the candidate's value, the parent's, and whether the candidate is better."""

    name: str
    candidate: float | None
    parent: float | None
    direction: str | None  # "max" | "min" | None (unknown objective)
    better: bool | None  # None when not comparable or equal


@dataclass(frozen=True, slots=True)
class CaseRow:
    index: int
    status: str
    duration_s: float
    output: Any = None
    error: str | None = None
    inputs: dict[str, Any] | None = None
    expected: Any = None


@dataclass(frozen=True, slots=True)
class DecisionRow:
    decision: str
    actor: str
    reason: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CandidateDetail:
    """Everything a reviewer needs about one candidate."""

    summary: CandidateSummary
    capability: str
    code: str  # the code, or the workflow definition as JSON
    diff: str  # against the tool's active version (its parent once promoted), computed now
    diff_base: str  # what the diff is against, e.g. "slugify v3 (active)"
    objectives: list[ObjectiveRow]
    cases: list[CaseRow]
    evaluation: dict[str, Any] | None
    lineage: list[LineageStep]
    decisions: list[DecisionRow]
    extra: dict[str, Any] = field(default_factory=dict)
    base_code: str = ""  # the whole text ``diff`` is against ("" when nothing)
    active_objectives: dict[str, float] = field(default_factory=dict)  # the active version's
    llm: LLMExchange | None = None  # the model calls that made it, when any


@dataclass(frozen=True, slots=True)
class ToolSummary:
    id: str
    name: str
    entrypoint: str
    active_version: int | None
    versions: int
    pending_candidates: int
    description: str = ""


@dataclass(frozen=True, slots=True)
class VersionRow:
    id: str
    version: int
    is_active: bool
    source: str
    source_id: str | None
    created_by: str
    created_at: datetime
    candidate_status: str | None = None


@dataclass(frozen=True, slots=True)
class ToolDetail:
    tool: ToolSummary
    versions: list[VersionRow]
    active_code: str | None


def _directions() -> dict[str, str]:
    from auto_dev.fitness.objectives import DEFAULT_OBJECTIVES

    return {o.name: o.direction for o in DEFAULT_OBJECTIVES}


def compare_objectives(mine: dict[str, float], theirs: dict[str, float]) -> list[ObjectiveRow]:
    """Rows for every objective either vector has, known objectives first."""
    directions = _directions()
    names = [n for n in directions if n in mine or n in theirs]
    names += sorted((set(mine) | set(theirs)) - set(names))
    rows = []
    for name in names:
        c, p, d = mine.get(name), theirs.get(name), directions.get(name)
        better: bool | None = None
        if c is not None and p is not None and d is not None and c != p:
            better = c > p if d == "max" else c < p
        rows.append(ObjectiveRow(name, c, p, d, better))
    return rows


class ReviewService:
    """The review workflow over one database; ``store`` performs every write."""

    def __init__(self, database: Database, store: CandidateStore) -> None:
        self.database = database
        self.store = store

    # -- reading --------------------------------------------------------------------------------

    def list_pending(self, tenant_id: str, kind: CandidateKind | str | None = None
                     ) -> list[CandidateSummary]:
        """Candidates waiting for a human (passed or approved), oldest first."""
        return self.list_candidates(tenant_id, kind=kind, statuses=PENDING_REVIEW)

    def list_candidates(
        self,
        tenant_id: str,
        *,
        kind: CandidateKind | str | None = None,
        statuses: Sequence[str] | None = None,
        limit: int = 200,
        target: str | None = None,
        offset: int = 0,
    ) -> list[CandidateSummary]:
        """The newest ``limit`` candidates after skipping the ``offset`` newest, oldest first;
        ``target`` keeps those of one tool, skill or workflow."""
        kinds = _kinds(kind)
        if statuses is not None:
            for status in statuses:
                try:
                    CandidateStatus(status)
                except ValueError:
                    raise ValidationError("status", f"unknown status {status!r}") from None
        if not isinstance(limit, int) or limit < 1:
            raise ValidationError("limit", "must be a positive integer")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValidationError("offset", "must be an integer >= 0")
        out: list[CandidateSummary] = []
        with self.database.session(readonly=True) as session:
            for k in kinds:
                model = MODELS[k]
                query = _filtered(select(model), model, tenant_id, statuses, target)
                rows = session.scalars(query.order_by(model.created_at.desc())
                                       .limit(limit + offset))
                out.extend(_summary(session, row) for row in rows)
        out.sort(key=lambda s: (s.created_at, s.id), reverse=True)
        return out[offset:offset + limit][::-1]

    def count_candidates(self, tenant_id: str, *, kind: CandidateKind | str | None = None,
                         statuses: Sequence[str] | None = None,
                         target: str | None = None) -> int:
        """How many candidates :meth:`list_candidates` would return without a limit."""
        kinds = _kinds(kind)
        total = 0
        with self.database.session(readonly=True) as session:
            for k in kinds:
                model = MODELS[k]
                query = _filtered(select(func.count()).select_from(model), model, tenant_id,
                                  statuses, target)
                total += session.scalar(query) or 0
        return total

    def resolve(self, session: Session, tenant_id: str, ref: str) -> Candidate:
        """The tenant's candidate whose id is ``ref`` or starts with it (unique prefix)."""
        if not isinstance(ref, str) or len(ref.strip()) < _MIN_PREFIX:
            raise ValidationError("candidate_id", f"must be an id or a prefix of at least "
                                  f"{_MIN_PREFIX} characters")
        ref = ref.strip()
        matches: list[Candidate] = []
        for model in MODELS.values():
            exact = session.get(model, ref)
            if exact is not None and exact.tenant_id == tenant_id:
                return exact
            escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            matches.extend(session.scalars(
                select(model).where(model.tenant_id == tenant_id,
                                    model.id.like(escaped + "%", escape="\\")).limit(2)))
        if not matches:
            raise NotFoundError(f"candidate {ref!r} does not exist in tenant {tenant_id!r}")
        if len(matches) > 1:
            raise ValidationError("candidate_id", f"prefix {ref!r} matches several candidates")
        return matches[0]

    def show(self, tenant_id: str, candidate_id: str) -> CandidateDetail:
        """Diff against the active version, objectives against the parent's, per-case results,
        lineage and the decisions so far."""
        with self.database.session(readonly=True) as session:
            candidate = self.resolve(session, tenant_id, candidate_id)
            summary = _summary(session, candidate)
            steps = lineage(session, candidate)
            code, diff, base, base_code, active = _code_and_diff(session, candidate)
            if candidate.status in _LIVE_OR_DONE and not isinstance(candidate, WorkflowVariant):
                # Once promoted, the active version is the candidate itself (or whatever
                # replaced it): what a reviewer wants is what the candidate changed.
                before = parent_code(session, candidate)
                if before is not None and len(steps) > 1:
                    name = summary.target
                    diff = render_diff(before, candidate.code, name)
                    base, base_code = f"its parent, {steps[1].label}", before
            evaluation = candidate_evaluation(session, candidate)
            inputs = _case_inputs(session, candidate, evaluation)
            cases = []
            eval_info: dict[str, Any] | None = None
            if evaluation is not None:
                for position, case in enumerate(evaluation.cases or []):
                    index = int(case.get("index", position))
                    test = inputs[index] if 0 <= index < len(inputs) else None
                    cases.append(CaseRow(
                        index=index, status=str(case.get("status", "?")),
                        duration_s=float(case.get("duration_s") or 0.0),
                        output=case.get("output"), error=case.get("error"),
                        inputs=_inputs_of(test) if test else None,
                        expected=test.get("expected") if test else None,
                    ))
                eval_info = {
                    "id": evaluation.id, "backend": evaluation.backend,
                    "passed": evaluation.passed, "total": evaluation.total,
                    "duration_s": evaluation.duration_s,
                    "peak_memory_kb": evaluation.peak_memory_kb,
                    "logs": evaluation.logs[-2000:], "created_at": evaluation.created_at,
                }
            extra: dict[str, Any] = {}
            if isinstance(candidate, SkillCandidate):
                extra = {"description": candidate.description, "strategy": candidate.strategy,
                         "failure_pattern": candidate.failure_pattern,
                         "source_episode_ids": list(candidate.source_episode_ids or [])}
            return CandidateDetail(
                summary=summary, capability=capability_of(candidate), code=code, diff=diff,
                diff_base=base,
                objectives=compare_objectives(dict(candidate.objectives or {}),
                                              parent_objectives(session, candidate)),
                cases=cases, evaluation=eval_info, lineage=steps,
                decisions=[DecisionRow(d.decision, d.actor, d.reason, d.created_at)
                           for d in self.store.decisions(session, tenant_id, candidate.id)],
                extra=extra, base_code=base_code,
                active_objectives=version_objectives(session, active) if active else {},
                llm=candidate_exchange(session, candidate),
            )

    def texts(self, tenant_id: str, candidate_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """Candidate id -> (its text, the text :meth:`show` diffs it against), in one
        transaction: what a queue needs to weigh many candidates without their whole detail."""
        with self.database.session(readonly=True) as session:
            out: dict[str, tuple[str, str]] = {}
            for ref in candidate_ids:
                candidate = self.resolve(session, tenant_id, ref)
                code, _diff, _label, base_code, _active = _code_and_diff(session, candidate)
                out[candidate.id] = (code, base_code)
            return out

    # -- decisions ------------------------------------------------------------------------------

    def approve(self, tenant_id: str, candidate_id: str, actor: str, reason: str = ""
                ) -> CandidateSummary:
        return self._decide(tenant_id, candidate_id, CandidateStatus.APPROVED, actor, reason)

    def reject(self, tenant_id: str, candidate_id: str, actor: str, reason: str
               ) -> CandidateSummary:
        return self._decide(tenant_id, candidate_id, CandidateStatus.REJECTED, actor, reason)

    def _decide(self, tenant_id: str, candidate_id: str, status: CandidateStatus, actor: str,
                reason: str) -> CandidateSummary:
        with self.database.session() as session:
            candidate = self.resolve(session, tenant_id, candidate_id)
            self.store.set_status(session, tenant_id=tenant_id, candidate_id=candidate.id,
                                  kind=kind_of(candidate), status=status, actor=actor,
                                  reason=reason)
            return _summary(session, candidate)

    def promote(self, tenant_id: str, candidate_id: str, actor: str, reason: str = ""
                ) -> PromotionResult:
        """Promote an approved candidate: one transaction, nothing half-done on failure.

        A stale candidate (made against a version that is no longer active) is refused with
        :class:`~auto_dev.StaleCandidateError`: it needs the sandbox, so only the async path
        (:class:`~auto_dev.candidates.reevaluation.PromotionService`, ``AutoDev.promote``,
        ``auto-dev candidates promote``) re-evaluates and promotes it.
        """
        with self.database.session() as session:
            candidate = self.resolve(session, tenant_id, candidate_id)
            return self.store.promote(session, tenant_id=tenant_id, candidate_id=candidate.id,
                                      kind=kind_of(candidate), actor=actor, reason=reason)

    def rollback(self, tenant_id: str, tool_name: str, actor: str, reason: str,
                 to_version: int | None = None) -> RollbackResult:
        with self.database.session() as session:
            return self.store.rollback_tool(session, tenant_id=tenant_id, tool_name=tool_name,
                                            actor=actor, reason=reason, to_version=to_version)

    def prune(self, tenant_id: str, *, older_than_days: int, actor: str,
              statuses: Sequence[str] = ("failed", "rejected"), dry_run: bool = False
              ) -> PruneResult:
        """Delete old closed candidates and their evaluations in one transaction."""
        with self.database.session() as session:
            return self.store.prune(session, tenant_id=tenant_id,
                                    older_than_days=older_than_days, actor=actor,
                                    statuses=statuses, dry_run=dry_run)

    # -- tools ----------------------------------------------------------------------------------

    def list_tools(self, tenant_id: str) -> list[ToolSummary]:
        with self.database.session(readonly=True) as session:
            tools = session.scalars(select(Tool).where(Tool.tenant_id == tenant_id)
                                    .order_by(Tool.name))
            return [_tool_summary(session, tool) for tool in tools]

    def show_tool(self, tenant_id: str, name: str) -> ToolDetail:
        with self.database.session(readonly=True) as session:
            tool = session.scalars(select(Tool).where(Tool.tenant_id == tenant_id,
                                                      Tool.name == name)).one_or_none()
            if tool is None:
                raise NotFoundError(f"tool {name!r} does not exist in tenant {tenant_id!r}")
            from auto_dev.candidates.promotion import version_candidate

            versions = list(session.scalars(select(ToolVersion).where(
                ToolVersion.tenant_id == tenant_id, ToolVersion.tool_id == tool.id)
                .order_by(ToolVersion.version)))
            rows = []
            for v in versions:
                cand = version_candidate(session, v)
                rows.append(VersionRow(v.id, v.version, v.is_active, v.source, v.source_id,
                                       v.created_by, v.created_at,
                                       cand.status if cand is not None else None))
            active = next((v for v in versions if v.is_active), None)
            return ToolDetail(_tool_summary(session, tool), rows,
                              active.code if active else None)


# -- helpers --------------------------------------------------------------------------------------


def _kinds(kind: CandidateKind | str | None) -> list[CandidateKind]:
    if kind is None:
        return list(CandidateKind)
    try:
        return [CandidateKind(kind)]
    except ValueError:
        allowed = ", ".join(k.value for k in CandidateKind)
        raise ValidationError("kind", f"must be one of {allowed}, got {kind!r}") from None


def _filtered(query: Any, model: Any, tenant_id: str, statuses: Sequence[str] | None,
              target: str | None) -> Any:
    query = query.where(model.tenant_id == tenant_id)
    if statuses is not None:
        query = query.where(model.status.in_(list(statuses)))
    if target is not None:
        if model is ToolMutation:  # named by its tool
            query = query.where(model.tool_id.in_(select(Tool.id).where(
                Tool.tenant_id == tenant_id, Tool.name == target)))
        else:
            query = query.where(model.name == target)
    return query


def _summary(session: Session, row: Candidate) -> CandidateSummary:
    agent = session.get(Agent, row.agent_id) if row.agent_id else None
    if isinstance(row, ToolMutation):
        tool = session.get(Tool, row.tool_id)
        target, operator = (tool.name if tool else row.tool_id), row.operator
    elif isinstance(row, SkillCandidate):
        target, operator = row.name, row.strategy
    else:
        target, operator = row.name, row.operator
    return CandidateSummary(kind=kind_of(row).value, id=row.id, status=row.status, target=target,
                            operator=operator, agent=agent.key if agent else None,
                            created_at=row.created_at, objectives=dict(row.objectives or {}))


def _code_and_diff(session: Session, candidate: Candidate
                   ) -> tuple[str, str, str, str, ToolVersion | None]:
    """The candidate's text, its diff, what the diff is against (label and text) and the
    active version of its tool."""
    if isinstance(candidate, WorkflowVariant):  # a structural diff, not a text diff of JSON
        from auto_dev.candidates.workflow_versions import variant_code_and_diff

        code, diff, label, base_code = variant_code_and_diff(session, candidate)
        return code, diff, label, base_code, None
    tool_id = candidate.tool_id
    if tool_id is None and isinstance(candidate, SkillCandidate):
        tool = session.scalars(select(Tool).where(Tool.tenant_id == candidate.tenant_id,
                                                  Tool.name == candidate.name)).one_or_none()
        tool_id = tool.id if tool else None
    active = None
    tool = session.get(Tool, tool_id) if tool_id else None
    if tool is not None:
        active = session.scalars(select(ToolVersion).where(
            ToolVersion.tenant_id == candidate.tenant_id, ToolVersion.tool_id == tool.id,
            ToolVersion.is_active.is_(True))).one_or_none()
    if active is None or tool is None:
        name = tool.name if tool else getattr(candidate, "name", "tool")
        return (candidate.code, render_diff("", candidate.code, name), "nothing (new tool)", "",
                None)
    return (candidate.code, render_diff(active.code, candidate.code, tool.name),
            f"{tool.name} v{active.version} (active)", active.code, active)


def _inputs_of(test: dict[str, Any]) -> Any:
    """A case's inputs as review shows them: a workflow task's input object, or a tool's
    call (args and kwargs)."""
    if "input" in test:
        return test["input"]
    return {"args": test.get("args", []), "kwargs": test.get("kwargs", {})}


def _case_inputs(session: Session, candidate: Candidate,
                 evaluation: Evaluation | None) -> list[dict[str, Any]]:
    """The inputs of the evaluated cases, by index, when they can be known for sure."""
    total = evaluation.total if evaluation else 0
    if isinstance(candidate, WorkflowVariant):
        # A workflow's tasks are recorded with their results (input, expected when known).
        rows = list(evaluation.cases or []) if evaluation is not None else []
        return [{k: c[k] for k in ("input", "expected") if k in c}
                if isinstance(c, dict) and "input" in c else {} for c in rows]
    if isinstance(candidate, SkillCandidate):
        return [t for t in candidate.tests or [] if isinstance(t, dict)]
    if isinstance(candidate, ToolMutation):
        rows = list(session.scalars(select(TestCase).where(
            TestCase.tenant_id == candidate.tenant_id, TestCase.tool_id == candidate.tool_id)
            .order_by(TestCase.created_at, TestCase.id)))
        # Same order as the engines load them; only trusted while the count still matches.
        if len(rows) == total:
            return [{"args": r.args, "kwargs": r.kwargs,
                     **({"expected": r.expected} if r.has_expected else {})} for r in rows]
    return []


def _tool_summary(session: Session, tool: Tool) -> ToolSummary:
    active = session.scalars(select(ToolVersion.version).where(
        ToolVersion.tool_id == tool.id, ToolVersion.is_active.is_(True))).one_or_none()
    count = session.scalar(select(func.count()).select_from(ToolVersion)
                           .where(ToolVersion.tool_id == tool.id)) or 0
    pending = session.scalar(select(func.count()).select_from(ToolMutation).where(
        ToolMutation.tenant_id == tool.tenant_id, ToolMutation.tool_id == tool.id,
        ToolMutation.status.in_(PENDING_REVIEW))) or 0
    pending += session.scalar(select(func.count()).select_from(SkillCandidate).where(
        SkillCandidate.tenant_id == tool.tenant_id, SkillCandidate.tool_id == tool.id,
        SkillCandidate.status.in_(PENDING_REVIEW))) or 0
    return ToolSummary(id=tool.id, name=tool.name, entrypoint=tool.entrypoint,
                       active_version=active, versions=int(count),
                       pending_candidates=int(pending), description=tool.description)
