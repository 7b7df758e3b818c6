"""The seed's engine lifecycle (analyze -> propose -> validate) as a cycle's work.

An engine written against the seed's API implements ``analyze_episode``,
``propose_code_change`` and ``validate_change``; :meth:`BaseLearningEngine.evolve` then calls
:func:`evolve_by_lifecycle`, which walks the target's recent failures through those three and
stores every validated proposal through the cycle's candidate sink (tool mutations for a
registered tool, skill candidates otherwise). The framework's pipeline does the rest (lock,
gate, review, auto-promotion), exactly as for the built-in engines.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from auto_dev._exceptions import NotFoundError, ValidationError
from auto_dev.engines.base import ValidationResult
from auto_dev.evolution.dedup import never_passes
from auto_dev.evolution.program import Program, Proposal
from auto_dev.fitness.pareto import promotion_verdict
from auto_dev.fitness.service import FitnessService
from auto_dev.sandbox.base import Limits, SandboxJob, SandboxResult
from auto_dev.types import CycleRequest, EvolutionRunResult

if TYPE_CHECKING:
    from auto_dev.abc import BaseLearningEngine, Sandbox
    from auto_dev.engines.pipeline import Cycle
    from auto_dev.queries import ToolSnapshot

log = structlog.get_logger(__name__)

#: How far back the lifecycle looks for failures of the target, and how many it analyses.
FAILURE_WINDOW = timedelta(days=7)
MAX_EPISODES = 20
STRATEGY = "seed lifecycle: analyze_episode -> propose_code_change -> validate_change"


async def evolve_by_lifecycle(engine: BaseLearningEngine, request: CycleRequest,
                              cycle: Cycle) -> EvolutionRunResult:
    """One cycle through ``engine``'s seed lifecycle methods."""
    outcome = EvolutionRunResult(engine=engine.name, target=request.target, status="completed",
                                 tenant_id=request.tenant_id, strategy=STRATEGY)
    tool_name = None if request.target.startswith("task:") else request.target
    failures = cycle.tenant.episodes.failures(
        tool_name, since=datetime.now(UTC) - FAILURE_WINDOW, limit=MAX_EPISODES)
    if not failures:
        outcome.status, outcome.reason = "skipped", f"no recent failures of {request.target}"
        return outcome
    snapshot = _snapshot(cycle, tool_name)
    proposed = 0
    for episode in failures:
        if outcome.evaluations >= request.budget:
            break
        signal = await engine.analyze_episode(episode.id, tenant_id=request.tenant_id,
                                              cycle=cycle)
        raw = await engine.propose_code_change(signal, tenant_id=request.tenant_id,
                                               target=request.target, cycle=cycle)
        for proposal in _proposals(raw, snapshot, engine.name):
            if outcome.evaluations >= request.budget:
                break
            proposed += 1
            verdict = await engine.validate_change(
                proposal, tool_name=tool_name, target=request.target,
                tenant_id=request.tenant_id, cycle=cycle)
            outcome.evaluations += 1
            candidate_id, offered = _store(cycle, request, snapshot, proposal,
                                           _as_validation(proposal, verdict))
            outcome.candidate_ids.append(candidate_id)
            if offered:
                outcome.offered_ids.append(candidate_id)
    outcome.reason = (f"{len(outcome.offered_ids)} of {proposed} proposal(s) passed validation"
                      if proposed else f"analysed {len(failures)} failure(s); no proposals")
    return outcome


async def validate_against_tool(engine: BaseLearningEngine, proposal: Proposal,
                                cycle: Cycle) -> ValidationResult:
    """Validate ``proposal`` against the cycle's target tool (see :func:`validate_against`)."""
    return await validate_against(cycle.sandbox, cycle.limits, proposal,
                                  cycle.tenant.tools.snapshot(cycle.request.target))


async def validate_against(sandbox: Sandbox, limits: Limits, proposal: Proposal,
                           snapshot: ToolSnapshot) -> ValidationResult:
    """Run ``proposal`` and the active version on the tool's tests; passed means promotable
    against the active version (no regression on a case it passed, something better)."""
    fitness = FitnessService()
    result = await sandbox.run(SandboxJob(
        code=proposal.code, entrypoint=proposal.entrypoint, cases=snapshot.cases, limits=limits))
    parent = await sandbox.run(SandboxJob(
        code=snapshot.program.code, entrypoint=snapshot.program.entrypoint,
        cases=snapshot.cases, limits=limits))
    parent_passed = parent.passed_indices()
    scores = fitness.score(result, proposal.code, baseline_passed=parent_passed)
    problem = never_passes(proposal.code, snapshot.program.code)
    if problem is not None:
        return ValidationResult(proposal, result, scores, False, problem)
    verdict = promotion_verdict(
        Program(proposal.code, proposal.entrypoint, scores=scores,
                passed_cases=result.passed_indices()),
        Program(snapshot.program.code, snapshot.program.entrypoint,
                scores=fitness.score(parent, snapshot.program.code), passed_cases=parent_passed),
    )
    return ValidationResult(proposal, result, scores, verdict.promotable, verdict.reason)


def _snapshot(cycle: Cycle, tool_name: str | None) -> ToolSnapshot | None:
    if tool_name is None:
        return None
    try:
        return cycle.tenant.tools.snapshot(tool_name)
    except NotFoundError:
        return None


def _proposals(raw: Any, snapshot: ToolSnapshot | None, engine: str) -> list[Proposal]:
    """Whatever ``propose_code_change`` returned (a proposal, a list, or code as the seed's
    engines return it) as proposals; code needs a tool to name its entrypoint."""
    items = raw if isinstance(raw, list | tuple) else [raw]
    out: list[Proposal] = []
    for item in items:
        if isinstance(item, Proposal):
            out.append(item)
        elif isinstance(item, str) and item.strip() and snapshot is not None:
            out.append(Proposal(code=item, entrypoint=snapshot.program.entrypoint,
                                operator=engine, parent_ids=(snapshot.version_id,)))
        elif item is not None and item != "":
            log.warning("lifecycle_proposal_ignored", engine=engine,
                        kind=type(item).__name__)
    return out


def _as_validation(proposal: Proposal, verdict: ValidationResult | dict[str, Any]
                   ) -> ValidationResult:
    if isinstance(verdict, ValidationResult):
        return verdict
    if isinstance(verdict, dict):
        passed = verdict.get("passed") is True
        reason = str(verdict.get("reason") or verdict.get("error") or
                     ("passed" if passed else "failed validation"))
        objectives = {k: float(v) for k, v in (verdict.get("objectives") or {}).items()
                      if isinstance(v, int | float) and not isinstance(v, bool)}
        return ValidationResult(proposal, SandboxResult(backend="engine", cases=(), total=0),
                                objectives, passed, reason)
    raise ValidationError("validate_change", "must return a ValidationResult or a dict with "
                          f"'passed', got {type(verdict).__name__}")


def _store(cycle: Cycle, request: CycleRequest, snapshot: ToolSnapshot | None,
           proposal: Proposal, verdict: ValidationResult) -> tuple[str, bool]:
    """Store one validated proposal; returns its id and whether it is offered for review."""
    with cycle.candidates.transaction() as tx:
        if snapshot is not None:
            row = tx.create_tool_mutation(
                tool_id=snapshot.tool_id, code=proposal.code, operator=proposal.operator,
                entrypoint=proposal.entrypoint, parent_version_id=snapshot.version_id,
                objectives=verdict.objectives,
                details={"reason": verdict.reason, "description": proposal.description})
        else:
            row = tx.create_skill_candidate(
                name=_skill_name(request.target), code=proposal.code,
                entrypoint=proposal.entrypoint, strategy="lifecycle",
                description=proposal.description or verdict.reason,
                objectives=verdict.objectives)
        if verdict.sandbox.cases:
            tx.record_evaluation(candidate_id=row.id, result=verdict.sandbox,
                                 limits=cycle.limits.to_wire(), objectives=verdict.objectives)
        candidate_id = row.id
    status, reason = ("passed", verdict.reason) if verdict.passed else ("failed", verdict.reason)
    try:
        with cycle.candidates.transaction() as tx:
            tx.set_status(candidate_id, status, reason)
    except ValidationError as exc:  # the store refuses to offer it (e.g. comment-only code)
        with cycle.candidates.transaction() as tx:
            tx.set_status(candidate_id, "failed", exc.problem)
        return candidate_id, False
    return candidate_id, verdict.passed


def _skill_name(target: str) -> str:
    name = "".join(c if c.isalnum() or c == "_" else "_" for c in target.removeprefix("task:"))
    return f"skill_{name}"[:100].strip("_") or "skill"
