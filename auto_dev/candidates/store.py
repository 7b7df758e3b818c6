"""The choke point: every candidate created, evaluated, decided on, promoted or rolled back, and
every tool or workflow version activated, goes through :class:`CandidateStore`.

Each write consults the :class:`~auto_dev.gates.capability.Gatekeeper` first and raises
:class:`~auto_dev.GateDeniedError` when it says no:

* creating a candidate: the engine's capability, action ``create_candidate`` (toggles, maturity,
  daily limits per agent and tenant);
* recording an evaluation or a machine status (evaluating, passed, failed): the candidate's
  capability, action ``evaluate``;
* a human approval or promotion: the human's decision is required and recorded; the gate checks
  the tenant's toggles and daily promotion limit (the human stands in for maturity);
* auto-promotion: ``auto_dev.auto_promotion`` (autonomous agents only) *and* the candidate's own
  capability, and the candidate must be promotable against its parent's objective vector;
* rejecting and rolling back are never refused (they only ever make things safer), but are
  recorded like every decision, with who and why.

Statuses only move through :func:`auto_dev.models.transition`. A candidate that is empty,
comment-only, does not parse or is identical to its parent can never become ``passed``; one
whose change a reviewer rejected (or that was rolled back) before is closed ``failed`` instead of
being offered (:mod:`~auto_dev.candidates.rejections`). A human promotion of a candidate made
against a version that is no longer active is refused until it has been re-evaluated against
the active one (:mod:`~auto_dev.candidates.staleness`, :mod:`~auto_dev.candidates.reevaluation`).
``tests/candidates/test_store.py`` scans the package to prove no other module writes these rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from auto_dev._exceptions import IllegalTransitionError, NotFoundError, ValidationError
from auto_dev.candidates import promotion as _promotion
from auto_dev.candidates import rejections as _rejections
from auto_dev.candidates._creation import CreationMixin, objectives_of, text_of
from auto_dev.candidates._kinds import (
    ALPHA_EVOLVER,
    AUTO_ACTOR,
    AUTO_PROMOTION,
    MEMENTO_SKILLS,
    MODELS,
    WORKFLOWS,
    Candidate,
    CandidateKind,
    capability_of,
    kind_of,
)
from auto_dev.candidates.staleness import PROMOTABLE_AGAINST
from auto_dev.gates._audit import write_audit
from auto_dev.gates.capability import PROPOSE, GateDecision, Gatekeeper
from auto_dev.models import (
    CandidateStatus,
    Evaluation,
    ReviewDecision,
    SkillCandidate,
    Tool,
    ToolMutation,
    transition,
)

if TYPE_CHECKING:
    from auto_dev.candidates.retention import PruneResult
    from auto_dev.candidates.workflow_versions import WorkflowRegistration, WorkflowRollbackResult
    from auto_dev.db import Database
    from auto_dev.sandbox.base import SandboxResult

log = structlog.get_logger(__name__)

__all__ = [
    "ALPHA_EVOLVER",
    "AUTO_ACTOR",
    "AUTO_PROMOTION",
    "MEMENTO_SKILLS",
    "MODELS",
    "WORKFLOWS",
    "Candidate",
    "CandidateKind",
    "CandidateStore",
    "capability_of",
    "kind_of",
]

_MACHINE_STATUSES = {CandidateStatus.EVALUATING, CandidateStatus.PASSED, CandidateStatus.FAILED}


class CandidateStore(CreationMixin):
    """Stores candidates and tool versions, consulting the gate before every write.

    ``bus`` (an :class:`auto_dev.events.EventBus`) receives ``CandidateCreated``,
    ``CandidateApproved``, ``CandidateRejected``, ``CandidatePromoted`` and
    ``CandidateRolledBack`` in the same transaction as the change (``bus.emit(session, event)``).
    All methods work in the caller's session; nothing commits here.
    """

    def __init__(self, database: Database | None, gatekeeper: Gatekeeper, bus: Any = None) -> None:
        self.database = database
        self.gatekeeper = gatekeeper
        self.bus = bus

    # -- tools ----------------------------------------------------------------------------------

    def register_tool(
        self,
        session: Session,
        *,
        tenant_id: str,
        name: str,
        code: str,
        entrypoint: str,
        description: str = "",
        actor: str = "user",
    ) -> Tool:
        """Create tool ``name`` with ``code`` as active version 1 (validated: it parses and
        defines ``entrypoint``). Identical code for an existing tool is a no-op; different code
        is refused (see :mod:`auto_dev.candidates.registration`).

        Not capability-gated (the platform registering its own tools is not auto-dev acting),
        but audited like every activation.
        """
        from auto_dev.candidates.registration import register_tool

        return register_tool(self, session, tenant_id=tenant_id, name=name, code=code,
                             entrypoint=entrypoint, description=description, actor=actor)

    # -- lookups --------------------------------------------------------------------------------

    @staticmethod
    def get(
        session: Session, tenant_id: str, candidate_id: str, kind: CandidateKind | str | None = None
    ) -> Candidate:
        """The tenant's candidate ``candidate_id`` (of ``kind`` if given) or NotFoundError."""
        kinds = [CandidateKind(kind)] if kind is not None else list(CandidateKind)
        for k in kinds:
            row = session.get(MODELS[k], candidate_id) if isinstance(candidate_id, str) else None
            if row is not None and row.tenant_id == tenant_id:
                return row
        raise NotFoundError(f"candidate {candidate_id!r} does not exist in tenant {tenant_id!r}")

    # -- evaluation and status --------------------------------------------------------------------

    def record_evaluation(
        self,
        session: Session,
        *,
        tenant_id: str,
        candidate_id: str,
        result: SandboxResult | None = None,
        kind: CandidateKind | str | None = None,
        backend: str | None = None,
        limits: Mapping[str, Any] | None = None,
        cases: Iterable[Mapping[str, Any]] | None = None,
        passed: int | None = None,
        total: int | None = None,
        duration_s: float | None = None,
        peak_memory_kb: int | None = None,
        logs: str = "",
        objectives: Mapping[str, Any] | None = None,
        parent_objectives: Mapping[str, Any] | None = None,
        parent_passed_cases: Iterable[int] | None = None,
        verdict: CandidateStatus | str | None = None,
        reason: str = "",
        promotable_against: str | None = None,
    ) -> Evaluation:
        """Store one sandbox validation of a candidate and link it.

        Give either ``result`` (a :class:`SandboxResult`) or the fields. ``objectives`` updates
        the candidate's objective vector; ``verdict`` (``passed``/``failed``) moves its status
        there (through ``evaluating``) in the same step. ``parent_objectives`` and
        ``parent_passed_cases`` record the baseline the engine compared against (review shows
        it; auto-promotion re-checks promotability against it). ``promotable_against`` is the
        id of the active version this evaluation compared the candidate with and found it still
        promotable against (the re-evaluation of a stale candidate,
        :mod:`auto_dev.candidates.reevaluation`); any other evaluation clears it.
        """
        target: CandidateStatus | None = None
        if verdict is not None:
            try:
                target = CandidateStatus(verdict)
            except ValueError:
                target = None
            if target not in (CandidateStatus.PASSED, CandidateStatus.FAILED):
                raise ValidationError("verdict", f"must be passed or failed, got {verdict!r}")
        candidate = self.get(session, tenant_id, candidate_id, kind)
        ckind = kind_of(candidate)
        self._gate_machine_step(session, candidate, ckind, "evaluate")
        if target is CandidateStatus.PASSED:
            self._check_can_pass(session, candidate, ckind)
        objective_values = objectives_of(objectives)
        baseline = objectives_of(parent_objectives, "parent_objectives")
        if promotable_against is not None:
            text_of("promotable_against", promotable_against)
        baseline_cases: list[int] | None = None
        if parent_passed_cases is not None:
            baseline_cases = sorted({int(i) for i in parent_passed_cases})
        if result is not None:
            case_rows = [c.to_dict() for c in result.cases]
            backend = backend or result.backend
            passed = result.passed if passed is None else passed
            total = result.total if total is None else total
            duration_s = result.duration_s if duration_s is None else duration_s
            peak_memory_kb = result.peak_memory_kb if peak_memory_kb is None else peak_memory_kb
            if result.error:
                logs = (logs + "\n" if logs else "") + f"sandbox error: {result.error}"
        else:
            case_rows = [dict(c) for c in (cases or [])]
        evaluation = Evaluation(
            tenant_id=tenant_id, candidate_kind=ckind.value, candidate_id=candidate.id,
            backend=text_of("backend", backend or "unknown"), limits=dict(limits or {}),
            cases=case_rows, passed=int(passed or 0), total=int(total or 0),
            duration_s=float(duration_s or 0.0), peak_memory_kb=int(peak_memory_kb or 0),
            logs=logs[-65_536:],  # capped: a flood of output must not bloat the database
        )
        session.add(evaluation)
        session.flush()
        if objective_values:
            candidate.objectives = {**(candidate.objectives or {}), **objective_values}
        if isinstance(candidate, ToolMutation | SkillCandidate):
            candidate.evaluation_id = evaluation.id
            extra: dict[str, Any] = {}
            if baseline:
                extra["parent_objectives"] = baseline
            if baseline_cases is not None:
                extra["parent_passed_cases"] = baseline_cases
            if promotable_against is not None:
                extra[PROMOTABLE_AGAINST] = promotable_against
            if isinstance(candidate, ToolMutation):
                kept = {k: v for k, v in (candidate.details or {}).items()
                        if k != PROMOTABLE_AGAINST}
                candidate.details = {**kept, **extra}
            else:
                kept = {k: v for k, v in (candidate.validation or {}).items()
                        if k != PROMOTABLE_AGAINST}
                candidate.validation = {**kept, **extra}
        if isinstance(candidate, SkillCandidate):
            candidate.validation = {
                **(candidate.validation or {}), "evaluation_id": evaluation.id,
                "passed": evaluation.passed, "total": evaluation.total,
                "pass_rate": evaluation.passed / evaluation.total if evaluation.total else 0.0,
            }
        if target is not None:
            self._move(session, candidate, ckind, target, actor=AUTO_ACTOR, reason=reason)
        return evaluation

    def set_status(
        self,
        session: Session,
        *,
        tenant_id: str,
        candidate_id: str,
        status: CandidateStatus | str,
        kind: CandidateKind | str | None = None,
        actor: str = AUTO_ACTOR,
        reason: str = "",
    ) -> Candidate:
        """Move a candidate's status.

        ``evaluating``/``passed``/``failed`` are machine steps (gated by the candidate's
        capability; ``passed`` from ``pending`` goes through ``evaluating``; ``passed`` for a
        change rejected before ends ``failed``, saying by whom: check the returned status).
        ``approved`` and ``rejected`` are human decisions: ``actor`` names the human,
        ``reason`` is required for a rejection, and both are recorded. ``promoted`` and
        ``rolled_back`` only happen through :meth:`promote` and :meth:`rollback_tool`.
        """
        try:
            target = CandidateStatus(status)
        except ValueError:
            raise ValidationError("status", f"unknown status {status!r}") from None
        candidate = self.get(session, tenant_id, candidate_id, kind)
        ckind = kind_of(candidate)
        if target in (CandidateStatus.PROMOTED, CandidateStatus.ROLLED_BACK):
            via = "promote" if target is CandidateStatus.PROMOTED else "rollback_tool"
            raise IllegalTransitionError(f"{target.value} is reached only through {via}")
        if target in _MACHINE_STATUSES:
            self._gate_machine_step(session, candidate, ckind, "evaluate")
        else:
            _promotion.human_decision(self, session, candidate, ckind, target, actor, reason)
            return candidate
        self._move(session, candidate, ckind, target, actor=actor, reason=reason)
        return candidate

    def _gate_machine_step(
        self, session: Session, candidate: Candidate, kind: CandidateKind, action: str
    ) -> None:
        proposer = (candidate.details or {}).get("proposed_by") \
            if isinstance(candidate, ToolMutation) else None
        if isinstance(proposer, str) and proposer:
            # A manual candidate's steps are taken on behalf of the human who proposed it.
            self.gatekeeper.require(session, tenant_id=candidate.tenant_id, agent_id=None,
                                    capability=capability_of(candidate), action=PROPOSE,
                                    reviewed_by=proposer, subject=(kind.value, candidate.id))
            return
        self.gatekeeper.require(session, tenant_id=candidate.tenant_id,
                                agent_id=candidate.agent_id, capability=capability_of(candidate),
                                action=action, subject=(kind.value, candidate.id))

    @staticmethod
    def _check_can_pass(session: Session, candidate: Candidate, kind: CandidateKind) -> None:
        problem = _promotion.candidate_never_passes(session, candidate)
        if problem is not None:
            raise ValidationError("code" if kind is not CandidateKind.WORKFLOW_VARIANT
                                  else "definition", f"{problem}: it can never pass")

    def _move(
        self, session: Session, candidate: Candidate, kind: CandidateKind,
        target: CandidateStatus, *, actor: str, reason: str,
    ) -> None:
        """Apply ``target`` through :func:`transition` (walking pending -> evaluating first)."""
        before = candidate.status
        if target is CandidateStatus.PASSED:
            self._check_can_pass(session, candidate, kind)
            if candidate.status == CandidateStatus.PENDING.value:
                transition(candidate, CandidateStatus.EVALUATING)
            earlier = _rejections.rejected_before(session, candidate)
            if earlier is not None:  # a reviewer said no to this very change: never offer it
                target, reason = CandidateStatus.FAILED, _rejections.describe(earlier)
                _promotion.record_decision(self, session, candidate, kind.value, "failed",
                                           AUTO_ACTOR, reason)
        transition(candidate, target)
        session.flush()
        log.info("candidate_status", tenant_id=candidate.tenant_id, candidate_id=candidate.id,
                 before=before, after=target.value, actor=actor)

    # -- cycles that ended badly ------------------------------------------------------------------

    def close_open_of_runs(self, session: Session, *, run_ids: Sequence[str],
                           reason: str) -> int:
        """Fail every candidate of ``run_ids`` still ``pending`` or ``evaluating``: a run that
        failed, was cancelled or died leaves nothing half-evaluated behind. Not gated: closing
        is the fail-closed direction. Returns how many were closed."""
        if not run_ids:
            return 0
        closed = 0
        for kind, model in MODELS.items():
            rows = session.scalars(select(model).where(
                model.run_id.in_(list(run_ids)),
                model.status.in_([CandidateStatus.PENDING.value,
                                  CandidateStatus.EVALUATING.value]))).all()
            for row in rows:
                self._move(session, row, kind, CandidateStatus.FAILED, actor=AUTO_ACTOR,
                           reason=reason)
                closed += 1
        return closed

    @staticmethod
    def open_skill_candidate_exists(session: Session, tenant_id: str, signature: str) -> bool:
        """Whether a skill candidate for failure ``signature`` is still open (not closed by a
        verdict or a decision), so a new one would only duplicate it."""
        open_statuses = [s.value for s in (CandidateStatus.PENDING, CandidateStatus.EVALUATING,
                                           CandidateStatus.PASSED, CandidateStatus.APPROVED)]
        return session.scalars(
            select(SkillCandidate.id).where(
                SkillCandidate.tenant_id == tenant_id,
                SkillCandidate.failure_pattern.like(f"%[{signature}]"),
                SkillCandidate.status.in_(open_statuses),
            ).limit(1)
        ).first() is not None

    # -- promotion and rollback -------------------------------------------------------------------

    def promote(
        self,
        session: Session,
        *,
        tenant_id: str,
        candidate_id: str,
        actor: str,
        reason: str = "",
        kind: CandidateKind | str | None = None,
        auto: bool = False,
    ) -> _promotion.PromotionResult:
        """Promote a candidate: a human's approved candidate, or (``auto=True``) a passed one
        when auto-promotion is allowed. Tool mutations and skills become the tool's new active
        version (a skill without a tool creates it), a workflow variant its workflow's (checked
        against the schema and the tenant's tools first). All or nothing: runs in a
        savepoint."""
        return _promotion.promote(self, session, tenant_id=tenant_id, candidate_id=candidate_id,
                                  actor=actor, reason=reason, kind=kind, auto=auto)

    def rollback_tool(
        self,
        session: Session,
        *,
        tenant_id: str,
        tool_name: str,
        actor: str,
        reason: str,
        to_version: int | None = None,
    ) -> _promotion.RollbackResult:
        """Re-activate an earlier version of ``tool_name`` (default: the newest one older than
        the active version that was not itself rolled back); the candidate that produced the
        version being replaced becomes ``rolled_back``."""
        return _promotion.rollback_tool(self, session, tenant_id=tenant_id, tool_name=tool_name,
                                        actor=actor, reason=reason, to_version=to_version)

    # -- workflows ------------------------------------------------------------------------------

    def register_workflow(self, session: Session, *, tenant_id: str, definition: Any,
                          actor: str, kinds: Iterable[str] = ()) -> WorkflowRegistration:
        """Validate ``definition`` (its tools must be the tenant's) and make it the active
        version of the workflow it names, creating the workflow the first time; an identical
        definition changes nothing. Not capability-gated (a person registering their own
        workflow is not auto-dev acting) but audited."""
        from auto_dev.candidates.workflow_versions import register_workflow

        return register_workflow(self, session, tenant_id=tenant_id, definition=definition,
                                 actor=_promotion._require_text("actor", actor),
                                 kinds=frozenset(kinds))

    def rollback_workflow(self, session: Session, *, tenant_id: str, name: str, actor: str,
                          reason: str, to_version: int | None = None) -> WorkflowRollbackResult:
        """Re-activate an earlier version of workflow ``name`` (default: the newest older one
        not itself rolled back); audited, the variant it replaces becomes ``rolled_back``."""
        from auto_dev.candidates.workflow_versions import rollback_workflow_version

        return rollback_workflow_version(self, session, tenant_id=tenant_id, name=name,
                                         to_version=to_version, actor=actor, reason=reason)

    # -- rejected changes and retention ------------------------------------------------------------

    @staticmethod
    def rejected_hashes(session: Session, tenant_id: str, target: str) -> frozenset[bytes]:
        """Normalised-AST digests (16 bytes) of the changes rejected or rolled back for tool
        ``target``: a search can skip them before paying for a sandbox run."""
        return _rejections.rejected_hashes(session, tenant_id, target)

    def prune(
        self,
        session: Session,
        *,
        tenant_id: str,
        older_than_days: int,
        actor: str,
        statuses: Iterable[str] = ("failed", "rejected"),
        dry_run: bool = False,
    ) -> PruneResult:
        """Delete closed candidates older than ``older_than_days`` and their evaluations,
        keeping every ancestor of what stays (see :mod:`auto_dev.candidates.retention`).
        Audited; ``dry_run`` only counts."""
        from auto_dev.candidates.retention import prune

        return prune(self, session, tenant_id=tenant_id, older_than_days=older_than_days,
                     statuses=statuses, actor=actor, dry_run=dry_run)

    def record_rejected_mutations(
        self,
        session: Session,
        *,
        decision: GateDecision,
        tenant_id: str,
        tool_id: str,
        run_id: str,
        capability: str,
        rows: Sequence[Mapping[str, Any]],
    ) -> list[str]:
        """Store a run's evaluated-and-rejected mutations in one INSERT, born ``failed``, under
        the run's allowing ``run_cycle`` decision (see :mod:`auto_dev.candidates._bulk`)."""
        from auto_dev.candidates._bulk import record_rejected_mutations

        return record_rejected_mutations(session, decision=decision, tenant_id=tenant_id,
                                         tool_id=tool_id, run_id=run_id, capability=capability,
                                         rows=rows)

    @staticmethod
    def decisions(session: Session, tenant_id: str, candidate_id: str) -> list[ReviewDecision]:
        """Every recorded decision about a candidate, oldest first."""
        return list(session.scalars(
            select(ReviewDecision).where(ReviewDecision.tenant_id == tenant_id,
                                         ReviewDecision.candidate_id == candidate_id)
            .order_by(ReviewDecision.created_at, ReviewDecision.id)
        ))

    def audit(self, session: Session, **kwargs: Any) -> None:
        """Write an audit entry (for collaborators that explain their own decisions)."""
        write_audit(session, **kwargs)
