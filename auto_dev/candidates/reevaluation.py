"""Promotion that re-evaluates stale candidates, and proposing manual changes to a tool.

:class:`PromotionService` is the async promotion path (``AutoDev.promote``, ``auto-dev
candidates promote``). A candidate derived from the active version is promoted exactly as
:meth:`~auto_dev.candidates.review.ReviewService.promote` does. A *stale* one (made against a
version that has since been replaced, see :mod:`auto_dev.candidates.staleness`) is first:

1. refused without running anything when its code is the active code (normalised hash);
2. run in the sandbox, with the active version, against the tool's current tests;
3. recorded as a new evaluation (objectives against the active version's);
4. promoted only if :func:`~auto_dev.fitness.pareto.promotion_verdict` still says it is
   promotable against the active version, else refused with the verdict's reason.

Candidate code only ever runs in the sandbox. Refusals raise
:class:`~auto_dev.StaleCandidateError` and are audited (``candidate.promotion_refused``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from auto_dev._exceptions import StaleCandidateError, ValidationError
from auto_dev.candidates._kinds import AUTO_ACTOR, kind_of
from auto_dev.candidates.promotion import PromotionResult, _Scored
from auto_dev.candidates.rejections import code_fingerprint
from auto_dev.candidates.staleness import staleness
from auto_dev.gates._audit import write_audit
from auto_dev.models import CandidateStatus, SkillCandidate, TestCase, Tool, ToolMutation
from auto_dev.sandbox.base import Case, Limits, SandboxJob, SandboxResult

if TYPE_CHECKING:
    from auto_dev.abc import Sandbox
    from auto_dev.candidates.manual import ManualChange
    from auto_dev.candidates.review import ReviewService
    from auto_dev.fitness.pareto import Verdict

log = structlog.get_logger(__name__)

def tool_cases(session: Session, tool: Tool, extra: Iterable[Any] = ()) -> tuple[Case, ...]:
    """The tool's current tests (in the order the engines load them), then ``extra`` test
    dicts (a skill's own) that are not already among them."""
    rows = session.scalars(select(TestCase).where(
        TestCase.tenant_id == tool.tenant_id, TestCase.tool_id == tool.id)
        .order_by(TestCase.created_at, TestCase.id))
    cases = [Case(args=tuple(r.args or []), kwargs=dict(r.kwargs or {}), expected=r.expected,
                  has_expected=r.has_expected, name=r.id) for r in rows]
    seen = {(repr(c.args), repr(c.kwargs), repr(c.expected), c.has_expected) for c in cases}
    for i, test in enumerate(extra):
        if not isinstance(test, Mapping):
            continue
        case = Case.from_dict(dict(test), where=f"tests[{i}]")
        key = (repr(case.args), repr(case.kwargs), repr(case.expected), case.has_expected)
        if key not in seen:
            seen.add(key)
            cases.append(case)
    return tuple(cases)


@dataclass(frozen=True, slots=True)
class Comparison:
    """A candidate and the active version, run against the same cases."""

    candidate: SandboxResult
    active: SandboxResult
    candidate_scores: dict[str, float]
    active_scores: dict[str, float]
    active_passed: frozenset[int]
    verdict: Verdict


def _passed(result: SandboxResult) -> frozenset[int]:
    return result.passed_indices() if result.error is None else frozenset()


async def compare_with_active(
    sandbox: Sandbox, limits: Limits, *, code: str, entrypoint: str, active_code: str,
    active_entrypoint: str, cases: tuple[Case, ...],
) -> Comparison:
    """Run both programs in the sandbox and decide promotability against the active one."""
    from auto_dev.fitness.pareto import promotion_verdict
    from auto_dev.fitness.service import FitnessService

    mine, theirs = await asyncio.gather(
        sandbox.run(SandboxJob(code=code, entrypoint=entrypoint, cases=cases, limits=limits)),
        sandbox.run(SandboxJob(code=active_code, entrypoint=active_entrypoint, cases=cases,
                               limits=limits)),
    )
    fitness = FitnessService()
    active_passed = _passed(theirs)
    mine_scores = fitness.score(mine, code, baseline_passed=active_passed)
    theirs_scores = fitness.score(theirs, active_code)
    verdict = promotion_verdict(_Scored(mine_scores, _passed(mine)),
                                _Scored(theirs_scores, active_passed))
    return Comparison(mine, theirs, mine_scores, theirs_scores, active_passed, verdict)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What re-evaluating a stale candidate needs, read in one transaction."""

    candidate_id: str
    kind: str
    code: str
    entrypoint: str
    tool_name: str
    active_id: str
    active_version: int
    active_code: str
    active_entrypoint: str
    stale: str  # "made against inc v1, active is v2"
    identical: bool
    cases: tuple[Case, ...]

    @property
    def headline(self) -> str:
        return f"candidate {self.candidate_id[:12]} was {self.stale}"


class PromotionService:
    """Async promotion (re-evaluating stale candidates) and manual change proposals.

    ``sandbox`` is a :class:`~auto_dev.abc.Sandbox` or a callable returning one (called only
    when something has to run, so promoting a fresh candidate never starts a sandbox).
    """

    def __init__(self, review: ReviewService, sandbox: Sandbox | Callable[[], Sandbox],
                 limits: Limits | None = None) -> None:
        self.review = review
        self.database = review.database
        self.store = review.store
        self._sandbox = sandbox
        self.limits = limits or Limits()

    def sandbox(self) -> Sandbox:
        from auto_dev.abc import Sandbox

        return self._sandbox if isinstance(self._sandbox, Sandbox) else self._sandbox()

    async def promote(self, tenant_id: str, candidate_id: str, actor: str, reason: str = ""
                      ) -> PromotionResult:
        """Promote an approved candidate; a stale one only after re-evaluating it against the
        active version (see the module docstring). Raises :class:`StaleCandidateError` with
        the reason when it is refused."""
        if not isinstance(actor, str) or not actor.strip() or actor.strip() == AUTO_ACTOR:
            raise ValidationError("actor", "must name the human who promotes")
        if not isinstance(reason, str):
            raise ValidationError("reason", "must be a string")
        plan = self._plan(tenant_id, candidate_id)
        if plan is None:  # fresh, a workflow, or not approved (the sync path says why)
            return self.review.promote(tenant_id, candidate_id, actor, reason)
        if plan.identical:
            self._refuse(tenant_id, plan, actor, f"{plan.headline}: identical to "
                         f"v{plan.active_version}, so there is nothing to promote; reject it")
        comparison = await compare_with_active(
            self.sandbox(), self.limits, code=plan.code, entrypoint=plan.entrypoint,
            active_code=plan.active_code, active_entrypoint=plan.active_entrypoint,
            cases=plan.cases)
        verdict = comparison.verdict
        log.info("candidate_reevaluated", tenant_id=tenant_id, candidate_id=plan.candidate_id,
                 against=f"{plan.tool_name} v{plan.active_version}",
                 promotable=verdict.promotable, reason=verdict.reason)
        refusal = ""
        with self.database.session() as session:
            candidate = self.store.get(session, tenant_id, plan.candidate_id)
            now = staleness(session, candidate)
            if now is None or now.active.id != plan.active_id:
                refusal = (f"the active version of {plan.tool_name} changed while candidate "
                           f"{plan.candidate_id[:12]} was re-evaluated: promote it again")
            else:
                self.store.record_evaluation(
                    session, tenant_id=tenant_id, candidate_id=plan.candidate_id,
                    result=comparison.candidate, limits=self.limits.to_wire(),
                    objectives=comparison.candidate_scores,
                    parent_objectives=comparison.active_scores,
                    parent_passed_cases=comparison.active_passed,
                    logs=f"re-evaluated against {plan.tool_name} v{plan.active_version}: "
                         f"{verdict.reason}",
                    promotable_against=plan.active_id if verdict.promotable else None)
                if not verdict.promotable:
                    refusal = (f"{plan.headline}: no longer better than "
                               f"v{plan.active_version}: {verdict.reason}")
                    _audit_refusal(session, tenant_id, plan, actor, refusal)
                else:
                    note = f"re-evaluated against v{plan.active_version}: {verdict.reason}"
                    result = self.store.promote(
                        session, tenant_id=tenant_id, candidate_id=plan.candidate_id,
                        kind=kind_of(candidate), actor=actor,
                        reason=f"{reason} ({note})" if reason else note)
                    return replace(result, reevaluated=note)
        raise StaleCandidateError(refusal)

    async def propose_tool_change(
        self, tenant_id: str, name: str, code: str, *, actor: str, reason: str,
        entrypoint: str | None = None,
    ) -> ManualChange:
        """See :func:`auto_dev.candidates.manual.propose_tool_change`."""
        from auto_dev.candidates.manual import propose_tool_change

        return await propose_tool_change(self, tenant_id, name, code, actor=actor,
                                         reason=reason, entrypoint=entrypoint)

    # -- helpers ---------------------------------------------------------------------------------

    def _plan(self, tenant_id: str, candidate_id: str) -> _Plan | None:
        with self.database.session(readonly=True) as session:
            candidate = self.review.resolve(session, tenant_id, candidate_id)
            if candidate.status != CandidateStatus.APPROVED.value:
                return None
            if not isinstance(candidate, ToolMutation | SkillCandidate):
                return None
            stale = staleness(session, candidate)
            if stale is None or stale.cleared:
                return None
            active = stale.active
            extra = candidate.tests if isinstance(candidate, SkillCandidate) else ()
            return _Plan(
                candidate_id=candidate.id, kind=kind_of(candidate).value, code=candidate.code,
                entrypoint=candidate.entrypoint,
                tool_name=stale.tool.name, active_id=active.id, active_version=active.version,
                active_code=active.code, active_entrypoint=active.entrypoint,
                stale=stale.describe(),
                identical=candidate.entrypoint == active.entrypoint
                and code_fingerprint(candidate.code) == code_fingerprint(active.code),
                cases=tool_cases(session, stale.tool, extra or ()),
            )

    def _refuse(self, tenant_id: str, plan: _Plan, actor: str, refusal: str) -> None:
        with self.database.session() as session:
            _audit_refusal(session, tenant_id, plan, actor, refusal)
        raise StaleCandidateError(refusal)


def _audit_refusal(session: Session, tenant_id: str, plan: _Plan, actor: str,
                   refusal: str) -> None:
    write_audit(session, tenant_id=tenant_id, actor=actor, action="candidate.promotion_refused",
                subject_kind=plan.kind, subject_id=plan.candidate_id, allowed=False,
                reason=refusal, details={"tool": plan.tool_name,
                                         "active_version": plan.active_version})
    log.info("promotion_refused", tenant_id=tenant_id, candidate_id=plan.candidate_id,
             reason=refusal)
