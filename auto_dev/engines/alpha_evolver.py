"""AlphaEvolver: evolves a tool's code against its tests when the tool fails.

A cycle reads the tool's active version and tests, runs an :class:`EvolutionSearch` (islands,
archive, cascade evaluation, AST or LLM mutators) in the sandbox, and stores through the
candidate store (the gate's choke point) every candidate that entered the population, each with
its parent (lineage), operator, island, generation, objective vector and evaluation. The best
candidate, if it is promotable against the active version, is offered for review (``passed``);
the others are closed as ``failed`` with the reason. Every other evaluated proposal (broke a
case, fixed nothing) is kept as a ``failed`` mutation with its parent, operator and reason,
written in batches under the run's gate decision; proposals filtered before the sandbox
(syntax errors, duplicates) are counted per status and operator in the run's stats.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy import desc, select

from auto_dev._exceptions import GateDeniedError, NotFoundError
from auto_dev.abc import BaseLearningEngine
from auto_dev.engines.base import (
    EvolutionRunResult,
    ToolSnapshot,
    ValidationResult,
    episode_analysis,
    load_tool,
    run_lock,
)
from auto_dev.events import Event, TaskFailed
from auto_dev.evolution.dedup import never_passes, normalized_hash
from auto_dev.evolution.program import MutationContext, Program, Proposal
from auto_dev.evolution.records import CandidateRecord, SearchHooks, SearchProgress, SearchResult
from auto_dev.evolution.search import EvolutionSearch, SearchConfig
from auto_dev.fitness.pareto import promotion_verdict
from auto_dev.fitness.service import FitnessService
from auto_dev.models import Agent, Episode, new_id
from auto_dev.sandbox.base import SandboxJob

log = structlog.get_logger(__name__)

AUTO_PROMOTION = "auto_dev.auto_promotion"
_MAX_STAT_LINES = 2000


class AlphaEvolver(BaseLearningEngine):
    """Evolutionary repair and improvement of existing tools."""

    name = "alpha_evolver"
    capability = "auto_dev.alpha_evolver"
    subscriptions = (TaskFailed,)

    def __init__(
        self,
        *,
        event_budget: int = 150,
        config: SearchConfig | None = None,
        rng_seed: int = 0,
        on_progress: Callable[[SearchProgress], None] | None = None,
    ) -> None:
        self.event_budget = event_budget
        self.config = config or SearchConfig()
        self.rng_seed = rng_seed
        self.on_progress = on_progress
        self.fitness = FitnessService()

    # -- events -------------------------------------------------------------------------------

    async def handle_event(self, event: Event) -> None:
        """A failure of a known tool starts a cycle on that tool (gated, one at a time)."""
        if not isinstance(event, TaskFailed) or not event.tool_name:
            return
        if event.tenant_id != self.context.tenant_id:
            return
        try:
            result = await self.run_cycle(event.tool_name, self.event_budget, trigger="event",
                                          agent=event.agent_id)
        except NotFoundError:
            log.debug("alpha_evolver.unknown_tool", tool=event.tool_name)
            return
        log.info("alpha_evolver.cycle", tool=event.tool_name, status=result.status,
                 reason=result.reason, evaluations=result.evaluations)

    # -- lifecycle ------------------------------------------------------------------------------

    async def analyze_episode(self, episode_id: str, **kwargs: Any) -> dict[str, Any]:
        """The failing call of an episode: tool, inputs, expected value, error."""
        return episode_analysis(self.context, episode_id, kwargs.get("tenant_id"))

    async def propose_code_change(self, context: dict[str, Any], **kwargs: Any) -> list[Proposal]:
        """Proposals for ``context["tool_name"]`` from the configured mutators (one batch)."""
        import random

        from auto_dev.evolution.program import CaseFeedback

        tool_name = context.get("tool_name")
        if not tool_name:
            return []
        snapshot = self._snapshot(str(tool_name), kwargs.get("tenant_id"))
        feedback: list[CaseFeedback] = []
        if snapshot.cases:
            result = await self.context.sandbox.run(SandboxJob(
                code=snapshot.program.code, entrypoint=snapshot.program.entrypoint,
                cases=snapshot.cases, limits=self.context.limits))
            for case_result in result.cases:
                if not case_result.passed:
                    case = snapshot.cases[case_result.index]
                    feedback.append(CaseFeedback(
                        index=case_result.index, args=case.args, kwargs=case.kwargs,
                        expected=case.expected, actual=case_result.output,
                        status=case_result.status.value, error=case_result.error))
        mutation_context = MutationContext(
            rng=random.Random(self.rng_seed), failing_cases=feedback,
            max_proposals=int(kwargs.get("n", 8)), tenant_id=snapshot_tenant(self, kwargs),
        )
        proposals: list[Proposal] = []
        for mutator in self.context.mutators:
            proposals.extend(await mutator.mutate(snapshot.program, mutation_context))
        return proposals[: int(kwargs.get("n", 8))]

    async def validate_change(self, proposal: Proposal, **kwargs: Any) -> ValidationResult:
        """Run ``proposal`` against its tool's tests; passed means promotable vs the active."""
        tool_name = kwargs.get("tool_name")
        if not tool_name:
            raise NotFoundError("validate_change needs tool_name=... to find the tests")
        snapshot = self._snapshot(str(tool_name), kwargs.get("tenant_id"))
        job = SandboxJob(code=proposal.code, entrypoint=proposal.entrypoint,
                         cases=snapshot.cases, limits=self.context.limits)
        parent_job = SandboxJob(code=snapshot.program.code, entrypoint=snapshot.program.entrypoint,
                                cases=snapshot.cases, limits=self.context.limits)
        result = await self.context.sandbox.run(job)
        parent_result = await self.context.sandbox.run(parent_job)
        parent_passed = parent_result.passed_indices()
        scores = self.fitness.score(result, proposal.code, baseline_passed=parent_passed)
        parent_scores = self.fitness.score(parent_result, snapshot.program.code)
        problem = never_passes(proposal.code, snapshot.program.code)
        if problem is not None:
            return ValidationResult(proposal, result, scores, False, problem)
        verdict = promotion_verdict(
            Program(proposal.code, proposal.entrypoint, scores=scores,
                    passed_cases=result.passed_indices()),
            Program(snapshot.program.code, snapshot.program.entrypoint, scores=parent_scores,
                    passed_cases=parent_passed),
        )
        return ValidationResult(proposal, result, scores, verdict.promotable, verdict.reason)

    async def run_cycle(self, target: str, budget: int, *, trigger: str = "manual",
                        agent: str | None = None) -> EvolutionRunResult:
        """Evolve tool ``target`` with at most ``budget`` sandbox evaluations."""
        started = time.perf_counter()
        ctx = self.context
        tid = ctx.tenant_id
        snapshot = self._snapshot(target, tid)
        agent_key = agent or self._latest_failing_agent(target)
        outcome = EvolutionRunResult(engine=self.name, target=target, status="completed",
                                     strategy=ctx.strategy)
        with run_lock(ctx.database, tenant_id=tid, engine=self.name, target=target,
                      trigger=trigger, budget=budget, tool_id=snapshot.tool_id) as run:
            if run is None:
                outcome.status, outcome.reason = "skipped", "a cycle on this tool is running"
                return outcome
            outcome.run_id = run.id
            with ctx.database.session() as session:
                decision = ctx.gatekeeper.authorize(
                    session, tenant_id=tid, agent_id=agent_key, capability=self.capability,
                    action="run_cycle")
            if not decision.allowed:
                run.status = "denied"
                run.error = decision.reason
                outcome.status, outcome.reason = "denied", decision.reason
                return outcome
            if not snapshot.cases:
                run.status = "skipped"
                outcome.status, outcome.reason = "skipped", "the tool has no test cases"
                return outcome
            persister = _Persister(self, snapshot, run.id, agent_key, decision)
            search = EvolutionSearch(
                snapshot.program, snapshot.cases, ctx.sandbox, ctx.mutators,
                budget=budget, rng_seed=self.rng_seed, limits=ctx.limits,
                mix=ctx.mutator_weights or None, config=self.config, fitness=self.fitness,
                run_id=run.id, tenant_id=tid,
                hooks=SearchHooks(on_seed=persister.on_seed, on_evaluated=persister.on_evaluated,
                                  on_progress=self.on_progress),
            )
            try:
                result = await search.run()
            except GateDeniedError as exc:
                outcome.status, outcome.reason = "denied", exc.reason
                run.status, run.error = "denied", exc.reason
                persister.close_all(f"run stopped by the gate: {exc.reason}")
                outcome.candidate_ids = list(persister.stored)
                return outcome
            outcome.evaluations = result.evaluations
            outcome.pass_rate_before = result.seed_pass_rate
            outcome.pass_rate_after = result.pass_rate
            outcome.candidate_ids = list(persister.stored)
            offered, reason = persister.settle(result)
            outcome.reason = reason
            if offered:
                outcome.offered_ids.append(offered)
                promoted = self._maybe_auto_promote(offered, agent_key)
                if promoted:
                    outcome.promoted_ids.append(offered)
            run.evaluations = result.evaluations
            run.stats = _run_stats(result, outcome)
            run.state = {"rng_seed": self.rng_seed, "best_id": result.best.id,
                         "stop_reason": result.stop_reason}
        outcome.seconds = time.perf_counter() - started
        return outcome

    # -- helpers ---------------------------------------------------------------------------------

    def _snapshot(self, tool_name: str, tenant_id: str | None = None) -> ToolSnapshot:
        with self.context.database.session() as session:
            return load_tool(session, tenant_id or self.context.tenant_id, tool_name)

    def _latest_failing_agent(self, tool_name: str) -> str | None:
        with self.context.database.session() as session:
            return session.scalars(
                select(Agent.key).join(Episode, Episode.agent_id == Agent.id)
                .where(Episode.tenant_id == self.context.tenant_id,
                       Episode.tool_name == tool_name, Episode.success.is_(False))
                .order_by(desc(Episode.created_at)).limit(1)
            ).one_or_none()

    def _maybe_auto_promote(self, candidate_id: str, agent_key: str | None) -> bool:
        """Promote without a human only when ``auto_dev.auto_promotion`` allows it."""
        ctx = self.context
        with ctx.database.session() as session:
            decision = ctx.gatekeeper.authorize(
                session, tenant_id=ctx.tenant_id, agent_id=agent_key,
                capability=AUTO_PROMOTION, action="auto_promote")
        if not decision.allowed:
            log.info("auto_promotion_denied", candidate_id=candidate_id, reason=decision.reason)
            return False
        try:
            with ctx.database.session() as session:
                ctx.store.promote(session, tenant_id=ctx.tenant_id, candidate_id=candidate_id,
                                  actor="auto-dev", reason=f"auto-promotion: {decision.reason}",
                                  auto=True)
        except GateDeniedError as exc:
            log.info("auto_promotion_denied", candidate_id=candidate_id, reason=exc.reason)
            return False
        return True


def snapshot_tenant(engine: BaseLearningEngine, kwargs: dict[str, Any]) -> str:
    return str(kwargs.get("tenant_id") or engine.context.tenant_id)


class _Persister:
    """Stores the candidates that enter the population, keeping lineage in storage ids."""

    #: Rejected candidates are written in batches of this size (one INSERT each).
    BATCH = 64

    def __init__(self, engine: AlphaEvolver, snapshot: ToolSnapshot, run_id: str,
                 agent_key: str | None, decision: Any) -> None:
        self.engine = engine
        self.snapshot = snapshot
        self.run_id = run_id
        self.agent_key = agent_key
        self.decision = decision
        self.stored: dict[str, CandidateRecord] = {}
        self.rejected: list[dict[str, Any]] = []
        #: Stored ids that children may name as parents (population members, stepping stones).
        self.parents: set[str] = set()
        self.rejected_count = 0
        self.known: dict[str, tuple[dict[str, float], frozenset[int]]] = {}
        self.seed: Program | None = None

    async def on_seed(self, seed: Program, result: Any) -> None:
        self.seed = seed
        self.known[seed.id or self.snapshot.version_id] = (dict(seed.scores), seed.passed_cases)

    async def on_evaluated(self, record: CandidateRecord) -> str | None:
        ctx = self.engine.context
        parent = record.parent_ids[0] if record.parent_ids else self.snapshot.version_id
        parent_is_version = parent not in self.parents
        second = record.parent_ids[1] if len(record.parent_ids) > 1 else None
        if second not in self.parents:
            second = None
        digest = normalized_hash(record.proposal.code)
        if not record.status.accepted:
            # Kept for lineage, born failed: batched under the run's gate decision. The id is
            # chosen now so that a stepping stone's children can name it as their parent.
            row_id = new_id()
            self.rejected.append({
                "id": row_id,
                "code": record.proposal.code, "entrypoint": record.proposal.entrypoint,
                "operator": record.operator,
                "parent_version_id": self.snapshot.version_id if parent_is_version else None,
                "parent_mutation_id": None if parent_is_version else parent,
                "second_parent_id": second,
                "ast_hash": digest.hex() if digest else None, "island": record.island,
                "generation": record.generation, "objectives": record.objectives,
                "details": {"mutator": record.mutator, "status": record.status.value,
                            "reason": record.reason, "stage": record.stage,
                            "passed_cases": sorted(record.passed_cases),
                            "search_id": record.id},
            })
            if record.stepping_stone:
                self.parents.add(row_id)
                self.known[row_id] = (dict(record.objectives), record.passed_cases)
            if len(self.rejected) >= self.BATCH or record.stepping_stone:
                self.flush()  # a stone's children must find it in the table
            return row_id if record.stepping_stone else None
        parent_scores, parent_cases = self.known.get(parent, ({}, frozenset()))
        with ctx.database.session() as session:
            row = ctx.store.create_tool_mutation(
                session, tenant_id=ctx.tenant_id, tool_id=self.snapshot.tool_id,
                code=record.proposal.code, operator=record.operator,
                entrypoint=record.proposal.entrypoint, agent_id=self.agent_key,
                run_id=self.run_id,
                parent_version_id=self.snapshot.version_id if parent_is_version else None,
                parent_mutation_id=None if parent_is_version else parent,
                second_parent_id=second,
                ast_hash=digest.hex() if digest else None, island=record.island,
                generation=record.generation, objectives=record.objectives,
                details={"mutator": record.mutator, "reason": record.reason,
                         "stage": record.stage, "description": record.proposal.description,
                         "passed_cases": sorted(record.passed_cases),
                         "search_id": record.id, **_llm_meta(record.proposal)},
                capability=self.engine.capability,
            )
            if record.result is not None:
                ctx.store.record_evaluation(
                    session, tenant_id=ctx.tenant_id, candidate_id=row.id, result=record.result,
                    limits=ctx.limits.to_wire(), objectives=record.objectives,
                    parent_objectives=parent_scores, parent_passed_cases=parent_cases,
                )
        self.stored[row.id] = record
        self.parents.add(row.id)
        self.known[row.id] = (dict(record.objectives), record.passed_cases)
        return row.id

    def flush(self) -> None:
        """Write the buffered rejected candidates (one INSERT)."""
        if not self.rejected:
            return
        ctx = self.engine.context
        with ctx.database.session() as session:
            ctx.store.record_rejected_mutations(
                session, decision=self.decision, tenant_id=ctx.tenant_id,
                tool_id=self.snapshot.tool_id, run_id=self.run_id,
                capability=self.engine.capability, rows=self.rejected)
        self.rejected_count += len(self.rejected)
        self.rejected = []

    def settle(self, result: SearchResult) -> tuple[str | None, str]:
        """Offer the best stored candidate if promotable against the active version; close the
        rest. Returns the offered id (or None) and why."""
        self.flush()
        ctx = self.engine.context
        best_id = result.best.id if result.best.id in self.stored else None
        offered: str | None = None
        reason = f"no candidate improved on the active version ({result.stop_reason})"
        if best_id is not None and self.seed is not None:
            verdict = promotion_verdict(result.best, self.seed)
            if verdict.promotable:
                offered = best_id
                reason = f"offered {best_id}: {verdict.reason}"
            else:
                reason = f"best candidate not promotable: {verdict.reason}"
        with ctx.database.session() as session:
            for cid in self.stored:
                if cid == offered:
                    ctx.store.set_status(session, tenant_id=ctx.tenant_id, candidate_id=cid,
                                         status="passed", reason=reason)
                else:
                    ctx.store.set_status(session, tenant_id=ctx.tenant_id, candidate_id=cid,
                                         status="failed",
                                         reason=f"not offered: superseded in run {self.run_id}")
        return offered, reason

    def close_all(self, reason: str) -> None:
        ctx = self.engine.context
        try:
            self.flush()
            with ctx.database.session() as session:
                for cid in self.stored:
                    ctx.store.set_status(session, tenant_id=ctx.tenant_id, candidate_id=cid,
                                         status="failed", reason=reason)
        except GateDeniedError as exc:
            log.warning("alpha_evolver.close_denied", reason=exc.reason)


def _llm_meta(proposal: Proposal) -> dict[str, Any]:
    meta = proposal.meta or {}
    return {k: meta[k] for k in ("llm_call_id", "llm_cost_usd", "model") if k in meta}


def _run_stats(result: SearchResult, outcome: EvolutionRunResult) -> dict[str, Any]:
    stats = result.to_dict()
    stats.pop("best_code", None)
    stats["strategy"] = outcome.strategy
    stats["offered"] = list(outcome.offered_ids)
    stats["lineage_lines"] = [
        {"id": c.id, "parent": c.parent_id, "operator": c.operator, "status": c.status,
         "stage": c.stage, "passed": c.passed}
        for c in result.candidates[:_MAX_STAT_LINES]
    ]
    return stats
