"""Human decisions, promotion, rollback and tool-version activation: the store's write paths
that change what code is live. Called only through :class:`~auto_dev.gates.CandidateStore`.

Every activation deactivates the old version and flushes *before* inserting the new one: the
partial unique index allows one active version per tool, and the unit of work would otherwise be
free to insert first. Promotion and rollback run in a savepoint, so a failure half-way (the bus,
the database, a bug) leaves the old version active and the candidate where it was.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from auto_dev._event_types import (
    CandidateApproved,
    CandidatePromoted,
    CandidateRejected,
    CandidateRolledBack,
)
from auto_dev._exceptions import (
    GateDeniedError,
    IllegalTransitionError,
    NotFoundError,
    StaleCandidateError,
    ValidationError,
)
from auto_dev.candidates._events import emit
from auto_dev.candidates._kinds import (
    AUTO_ACTOR,
    AUTO_PROMOTION,
    Candidate,
    CandidateKind,
    capability_of,
    kind_of,
)
from auto_dev.candidates._rollback import rollback_target
from auto_dev.candidates.lineage import parent_objectives, parent_passed_cases, passed_cases
from auto_dev.candidates.rejections import (
    code_fingerprint,
    describe,
    lift,
    rejected_before,
    remember,
    remember_candidate,
)
from auto_dev.candidates.staleness import staleness
from auto_dev.gates._audit import write_audit
from auto_dev.gates.capability import APPROVE, PROMOTE
from auto_dev.models import (
    CandidateStatus,
    ReviewDecision,
    SkillCandidate,
    Tool,
    ToolMutation,
    ToolVersion,
    Workflow,
    WorkflowVariant,
    WorkflowVersion,
    transition,
)

if TYPE_CHECKING:
    from auto_dev.candidates.store import CandidateStore

log = structlog.get_logger(__name__)

#: ToolVersion.source values, and which candidate table a version's source_id points into.
SOURCE_MODELS: dict[str, Any] = {
    "mutation": ToolMutation,
    "skill": SkillCandidate,
}


@dataclass(frozen=True, slots=True)
class PromotionResult:
    """What a promotion did: the new active version of the tool, or (``workflow_name`` set)
    of the workflow."""

    candidate_id: str
    kind: str
    auto: bool
    tool_id: str | None = None
    tool_name: str | None = None
    workflow_name: str | None = None
    version_id: str | None = None
    version: int | None = None
    previous_version: int | None = None
    #: How a stale candidate was re-evaluated before its promotion ("" when it was not stale).
    reevaluated: str = ""


@dataclass(frozen=True, slots=True)
class RollbackResult:
    """What a rollback did."""

    tool_id: str
    tool_name: str
    from_version: int
    to_version: int
    active_version_id: str
    rolled_back_candidate_id: str | None


def _require_text(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, "must be a non-empty string")
    return value.strip()


def render_diff(old: str, new: str, name: str) -> str:
    """Unified diff from ``old`` to ``new`` (the shared renderer when present)."""
    try:
        from auto_dev.evolution.diff import unified_diff
    except ImportError:  # pragma: no cover - the evolution package ships with auto-dev
        return "".join(difflib.unified_diff(old.splitlines(keepends=True),
                                            new.splitlines(keepends=True),
                                            fromfile=f"{name} (active)",
                                            tofile=f"{name} (candidate)"))
    return unified_diff(old, new, fromfile=f"{name} (active)", tofile=f"{name} (candidate)")


def parent_code(session: Session, candidate: Candidate) -> str | None:
    """The code a candidate was derived from (``None`` when it has no parent)."""
    if isinstance(candidate, ToolMutation):
        if candidate.parent_mutation_id:
            parent = session.get(ToolMutation, candidate.parent_mutation_id)
            if parent is not None and parent.tenant_id == candidate.tenant_id:
                return parent.code
        if candidate.parent_version_id:
            version = session.get(ToolVersion, candidate.parent_version_id)
            if version is not None and version.tenant_id == candidate.tenant_id:
                return version.code
        return None
    if isinstance(candidate, SkillCandidate) and candidate.tool_id:
        from auto_dev.candidates.lineage import parent_version

        version = parent_version(session, candidate)
        return version.code if version else None
    return None


def target_name(session: Session, candidate: Candidate) -> str | None:
    """The name of what ``candidate`` changes: its tool, skill or workflow."""
    if isinstance(candidate, ToolMutation):
        tool = session.get(Tool, candidate.tool_id)
        return tool.name if tool is not None else None
    return candidate.name


def candidate_never_passes(session: Session, candidate: Candidate) -> str | None:
    """Why ``candidate`` may never be ``passed`` (empty, comment-only, unparsable, unchanged)."""
    if isinstance(candidate, WorkflowVariant):
        if not candidate.definition:
            return "the definition is empty"
        if candidate.parent_id:
            parent = session.get(WorkflowVariant, candidate.parent_id)
            if parent is not None and parent.definition == candidate.definition:
                return "the definition is identical to its parent's"
        return None
    from auto_dev.evolution.dedup import never_passes as code_never_passes

    return code_never_passes(candidate.code, parent_code(session, candidate))


def record_decision(
    store: CandidateStore, session: Session, candidate: Candidate, kind: str, decision: str,
    actor: str, reason: str, details: dict[str, Any] | None = None,
) -> None:
    """Append the ReviewDecision and the AuditEntry for one decision."""
    session.add(ReviewDecision(tenant_id=candidate.tenant_id, candidate_kind=kind,
                               candidate_id=candidate.id, decision=decision, actor=actor,
                               reason=reason, created_at=store.gatekeeper.now()))
    write_audit(session, tenant_id=candidate.tenant_id, actor=actor,
                action=f"candidate.{decision}", subject_kind=kind, subject_id=candidate.id,
                reason=reason, details=details)
    log.info("candidate_decision", tenant_id=candidate.tenant_id, candidate_id=candidate.id,
             decision=decision, actor=actor, reason=reason)


def human_decision(
    store: CandidateStore, session: Session, candidate: Candidate, kind: CandidateKind,
    target: CandidateStatus, actor: str, reason: str,
) -> None:
    """Approve or reject on behalf of a named human (rejection needs a reason)."""
    actor = _require_text("actor", actor)
    if actor == AUTO_ACTOR:
        raise ValidationError("actor", "must name the human reviewer, not auto-dev")
    if not isinstance(reason, str):
        raise ValidationError("reason", "must be a string")
    if target is CandidateStatus.REJECTED:
        _require_text("reason", reason)
    elif target is CandidateStatus.APPROVED:
        store.gatekeeper.require(session, tenant_id=candidate.tenant_id,
                                 agent_id=candidate.agent_id, capability=capability_of(candidate),
                                 action=APPROVE, reviewed_by=actor,
                                 subject=(kind.value, candidate.id))
    else:  # pragma: no cover - set_status routes only these two here
        raise IllegalTransitionError(f"{target.value} is not a human decision")
    transition(candidate, target)
    record_decision(store, session, candidate, kind.value, target.value, actor, reason)
    if target is CandidateStatus.REJECTED:  # the decision sticks: never offered again
        remember_candidate(store, session, candidate, "rejected", actor, reason)
    session.flush()
    # Announced in the decision's transaction: review verdicts are maturity evidence.
    event_cls = CandidateApproved if target is CandidateStatus.APPROVED else CandidateRejected
    emit(store.bus, session, event_cls(
        tenant_id=candidate.tenant_id, candidate_kind=kind.value, candidate_id=candidate.id,
        tool_name=target_name(session, candidate), actor=actor, reason=reason))


# -- tool versions --------------------------------------------------------------------------------


def _active(session: Session, tool: Tool) -> ToolVersion | None:
    return session.scalars(select(ToolVersion).where(
        ToolVersion.tenant_id == tool.tenant_id, ToolVersion.tool_id == tool.id,
        ToolVersion.is_active.is_(True))).one_or_none()


def activate_new_version(
    store: CandidateStore, session: Session, tool: Tool, *, code: str, entrypoint: str,
    source: str, source_id: str | None, actor: str,
) -> tuple[ToolVersion, ToolVersion | None]:
    """Add a new active version of ``tool``; return it and the version it replaced."""
    current = _active(session, tool)
    highest = session.scalar(select(func.max(ToolVersion.version)).where(
        ToolVersion.tool_id == tool.id)) or 0
    if current is not None:
        current.is_active = False
        session.flush()  # before the insert: one active version per tool, enforced by an index
    version = ToolVersion(tenant_id=tool.tenant_id, tool_id=tool.id, version=int(highest) + 1,
                          code=code, entrypoint=entrypoint, is_active=True, source=source,
                          source_id=source_id, created_by=actor, created_at=store.gatekeeper.now())
    session.add(version)
    if tool.entrypoint != entrypoint:
        tool.entrypoint = entrypoint
    session.flush()
    return version, current


# -- promotion ------------------------------------------------------------------------------------


def _auto_checks(store: CandidateStore, session: Session, candidate: Candidate,
                 kind: CandidateKind) -> str:
    """Gate and quality checks for auto-promotion; return a reason to record."""
    subject = (kind.value, candidate.id)
    gate = store.gatekeeper
    for capability in (AUTO_PROMOTION, capability_of(candidate)):
        gate.require(session, tenant_id=candidate.tenant_id, agent_id=candidate.agent_id,
                     capability=capability, action=PROMOTE, subject=subject)
    problem: str | None = None
    stale = staleness(session, candidate)
    if isinstance(candidate, ToolMutation):
        active = _active(session, session.get(Tool, candidate.tool_id))  # type: ignore[arg-type]
        if active is None:
            problem = "the tool has no active version"
    if stale is not None and not stale.cleared:
        problem = f"stale: {stale.describe()}"
    verdict_reason = ""
    if problem is None:
        problem, verdict_reason = _verdict(session, candidate)
    if problem is not None:
        reason = f"auto-promotion refused: {problem}"
        write_audit(session, tenant_id=candidate.tenant_id, actor=AUTO_ACTOR,
                    action="gate.auto_promote", subject_kind=kind.value, subject_id=candidate.id,
                    allowed=False, reason=reason, durable=True)
        log.warning("gate_decision", allowed=False, reason=reason, candidate_id=candidate.id)
        raise GateDeniedError(reason)
    return f"auto-promoted: {verdict_reason}"


class _Scored:
    __slots__ = ("passed_cases", "scores")

    def __init__(self, scores: dict[str, float], passed: frozenset[int]) -> None:
        self.scores = scores
        self.passed_cases = passed


def _verdict(session: Session, candidate: Candidate) -> tuple[str | None, str]:
    """Is the candidate promotable against its parent's objective vector? (problem, reason)"""
    from auto_dev.fitness.objectives import DEFAULT_OBJECTIVES
    from auto_dev.fitness.pareto import promotion_verdict

    mine = dict(candidate.objectives or {})
    theirs = parent_objectives(session, candidate)
    if not mine:
        return "the candidate has no objective vector", ""
    if not theirs:
        return "there is no objective vector of its parent to compare against", ""
    shared = [o for o in DEFAULT_OBJECTIVES if o.name in mine and o.name in theirs]
    if not shared:
        return "its objective vector shares no objective with its parent's", ""
    verdict = promotion_verdict(
        _Scored(mine, passed_cases(session, candidate)),
        _Scored(theirs, parent_passed_cases(session, candidate)),
        objectives=shared,
    )
    return (None if verdict.promotable else verdict.reason), verdict.reason


def promote(
    store: CandidateStore, session: Session, *, tenant_id: str, candidate_id: str, actor: str,
    reason: str, kind: CandidateKind | str | None, auto: bool,
) -> PromotionResult:
    actor = _require_text("actor", actor)
    if not isinstance(reason, str):
        raise ValidationError("reason", "must be a string")
    candidate = store.get(session, tenant_id, candidate_id, kind)
    ckind = kind_of(candidate)
    status = CandidateStatus(candidate.status)
    if auto:
        earlier = rejected_before(session, candidate)
        if earlier is not None:
            raise GateDeniedError(f"auto-promotion refused: {describe(earlier)}")
        if status not in (CandidateStatus.PASSED, CandidateStatus.APPROVED):
            raise IllegalTransitionError(f"candidate {candidate.id} is {status.value}: only a "
                                         "passed or approved candidate can be auto-promoted")
        checked = _auto_checks(store, session, candidate, ckind)
        reason = reason or checked
    else:
        if actor == AUTO_ACTOR:
            raise ValidationError("actor", "must name the human who promotes")
        if status is not CandidateStatus.APPROVED:
            raise IllegalTransitionError(f"candidate {candidate.id} is {status.value}: a human "
                                         "promotes only an approved candidate")
        approvals = [d for d in store.decisions(session, tenant_id, candidate.id)
                     if d.decision == CandidateStatus.APPROVED.value and d.actor != AUTO_ACTOR]
        if not approvals:
            raise GateDeniedError(f"candidate {candidate.id} has no recorded human approval")
        store.gatekeeper.require(session, tenant_id=tenant_id, agent_id=candidate.agent_id,
                                 capability=capability_of(candidate), action=PROMOTE,
                                 reviewed_by=actor, subject=(ckind.value, candidate.id))
        stale = staleness(session, candidate)
        if stale is not None and not stale.cleared:
            raise StaleCandidateError(
                f"candidate {candidate.id[:12]} was {stale.describe()}: it must be re-evaluated "
                f"against v{stale.active.version} first. `auto-dev candidates promote` and "
                "`await AutoDev.promote(...)` re-evaluate it and promote it only if it is "
                "still better")
    with session.begin_nested():
        if candidate.status == CandidateStatus.PASSED.value:
            transition(candidate, CandidateStatus.APPROVED)
            record_decision(store, session, candidate, ckind.value, "approved", actor, reason)
        version: ToolVersion | WorkflowVersion | None = None
        previous: ToolVersion | WorkflowVersion | None = None
        tool: Tool | None = None
        workflow: Workflow | None = None
        if isinstance(candidate, ToolMutation):
            tool = session.get(Tool, candidate.tool_id)
            assert tool is not None  # foreign key
            version, previous = activate_new_version(
                store, session, tool, code=candidate.code, entrypoint=candidate.entrypoint,
                source="mutation", source_id=candidate.id, actor=actor)
        elif isinstance(candidate, SkillCandidate):
            tool = _skill_tool(session, candidate)
            version, previous = activate_new_version(
                store, session, tool, code=candidate.code, entrypoint=candidate.entrypoint,
                source="skill", source_id=candidate.id, actor=actor)
        else:
            from auto_dev.candidates.workflow_versions import promote_variant

            workflow, version, previous = promote_variant(store, session, candidate, actor=actor)
        transition(candidate, CandidateStatus.PROMOTED)
        details = {"auto": auto, "version": version.version if version else None,
                   "previous_version": previous.version if previous else None,
                   **({"workflow_version_id": version.id} if workflow and version else {})}
        record_decision(store, session, candidate, ckind.value, "promoted", actor, reason, details)
        session.flush()
        emit(store.bus, session, CandidatePromoted(tenant_id=tenant_id,
             candidate_kind=ckind.value, candidate_id=candidate.id,
             tool_name=tool.name if tool else getattr(candidate, "name", None), actor=actor,
             reason=reason, tool_version_id=version.id if tool and version else None,
             metadata=details))
    return PromotionResult(
        candidate_id=candidate.id, kind=ckind.value, auto=auto,
        tool_id=tool.id if tool else None, tool_name=tool.name if tool else None,
        workflow_name=workflow.name if workflow else None,
        version_id=version.id if version else None, version=version.version if version else None,
        previous_version=previous.version if previous else None,
    )


def _skill_tool(session: Session, candidate: SkillCandidate) -> Tool:
    """The tool a skill becomes a version of: its own, the same-named one, or a new one."""
    if candidate.tool_id:
        tool = session.get(Tool, candidate.tool_id)
        if tool is not None and tool.tenant_id == candidate.tenant_id:
            return tool
    tool = session.scalars(select(Tool).where(Tool.tenant_id == candidate.tenant_id,
                                              Tool.name == candidate.name)).one_or_none()
    if tool is None:
        tool = Tool(tenant_id=candidate.tenant_id, name=candidate.name,
                    description=candidate.description, entrypoint=candidate.entrypoint)
        session.add(tool)
        session.flush()
    candidate.tool_id = tool.id
    return tool


# -- rollback -------------------------------------------------------------------------------------


def version_candidate(session: Session, version: ToolVersion) -> Candidate | None:
    """The candidate whose promotion produced ``version`` (``None`` for seed/manual versions)."""
    model = SOURCE_MODELS.get(version.source)
    if model is None or not version.source_id:
        return None
    row = session.get(model, version.source_id)
    return row if row is not None and row.tenant_id == version.tenant_id else None


def rollback_tool(
    store: CandidateStore, session: Session, *, tenant_id: str, tool_name: str, actor: str,
    reason: str, to_version: int | None,
) -> RollbackResult:
    actor = _require_text("actor", actor)
    reason = _require_text("reason", reason)
    _require_text("tool_name", tool_name)
    tool = session.scalars(select(Tool).where(Tool.tenant_id == tenant_id,
                                              Tool.name == tool_name)).one_or_none()
    if tool is None:
        raise NotFoundError(f"tool {tool_name!r} does not exist in tenant {tenant_id!r}")
    current = _active(session, tool)
    if current is None:
        raise NotFoundError(f"tool {tool_name!r} has no active version")
    versions = list(session.scalars(select(ToolVersion).where(
        ToolVersion.tenant_id == tenant_id, ToolVersion.tool_id == tool.id
    ).order_by(ToolVersion.version.desc())))
    target = rollback_target(
        versions, current, to_version, rolled_back=lambda v: was_rolled_back(session, v),
        subject=f"tool {tool_name!r}", name=tool_name, version_field="to_version",
        name_field="tool_name")
    with session.begin_nested():
        current.is_active = False
        session.flush()  # one active version per tool: deactivate before activating
        target.is_active = True
        session.flush()
        candidate = version_candidate(session, current)
        if candidate is not None and candidate.status == CandidateStatus.PROMOTED.value:
            transition(candidate, CandidateStatus.ROLLED_BACK)
        # A human putting a version back lifts its rejection; taking one back (to an older
        # version) remembers its code, so the same change is never offered again.
        lift(session, tenant_id=tenant_id, tool_name=tool.name, code=target.code, actor=actor,
             reason=reason)
        current_hash = code_fingerprint(current.code)
        if target.version < current.version and current_hash != code_fingerprint(target.code):
            remember(store, session, tenant_id=tenant_id, target=("tool", tool.name),
                     code_hash=current_hash, decision="rolled_back", actor=actor,
                     reason=reason, candidate=candidate)
        kind, subject_id = ((kind_of(candidate).value, candidate.id) if candidate is not None
                            else ("tool_version", current.id))
        session.add(ReviewDecision(tenant_id=tenant_id, candidate_kind=kind,
                                   candidate_id=subject_id, decision="rolled_back", actor=actor,
                                   reason=reason, created_at=store.gatekeeper.now()))
        write_audit(session, tenant_id=tenant_id, actor=actor, action="tool.rolled_back",
                    subject_kind="tool", subject_id=tool.id, reason=reason,
                    details={"tool": tool.name, "from_version": current.version,
                             "to_version": target.version, "candidate_id":
                             candidate.id if candidate else None})
        session.flush()
        emit(store.bus, session, CandidateRolledBack(tenant_id=tenant_id,
             candidate_kind=kind, candidate_id=subject_id, tool_name=tool.name, actor=actor,
             reason=reason, tool_version_id=target.id,
             metadata={"from_version": current.version, "to_version": target.version}))
    log.info("tool_rolled_back", tenant_id=tenant_id, tool=tool.name,
             from_version=current.version, to_version=target.version, actor=actor, reason=reason)
    return RollbackResult(tool_id=tool.id, tool_name=tool.name, from_version=current.version,
                          to_version=target.version, active_version_id=target.id,
                          rolled_back_candidate_id=candidate.id if candidate else None)


def was_rolled_back(session: Session, version: ToolVersion) -> bool:
    candidate = version_candidate(session, version)
    return candidate is not None and candidate.status == CandidateStatus.ROLLED_BACK.value
