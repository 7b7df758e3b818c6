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

from collections.abc import Callable
from typing import Any

import structlog

from auto_dev._exceptions import NotFoundError
from auto_dev.abc import BaseLearningEngine
from auto_dev.engines.base import ValidationResult
from auto_dev.engines.lifecycle import validate_against
from auto_dev.engines.pipeline import Cycle
from auto_dev.events import TaskFailed
from auto_dev.evolution.dedup import normalized_hash
from auto_dev.evolution.mutators import fallback_strategy
from auto_dev.evolution.program import MutationContext, Program, Proposal
from auto_dev.evolution.records import CandidateRecord, SearchHooks, SearchProgress, SearchResult
from auto_dev.evolution.search import EvolutionSearch, SearchConfig
from auto_dev.fitness.pareto import promotion_verdict
from auto_dev.fitness.service import FitnessService
from auto_dev.models import new_id
from auto_dev.queries import EpisodeQueries, ToolQueries, ToolSnapshot
from auto_dev.sandbox.base import SandboxJob
from auto_dev.types import CycleRequest, EvolutionRunResult

log = structlog.get_logger(__name__)

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
    # The default cycle_target applies: a failure of a tool of the event's tenant asks for a
    # cycle on that tool (queued by the framework, run by the cycle worker).

    # -- lifecycle ------------------------------------------------------------------------------

    async def analyze_episode(self, episode_id: str, **kwargs: Any) -> dict[str, Any]:
        """The failing call of an episode: tool, inputs, expected value, error."""
        return EpisodeQueries(self.context.database, self._tenant(kwargs)).analysis(episode_id)

    async def propose_code_change(self, context: dict[str, Any], **kwargs: Any) -> list[Proposal]:
        """Proposals for ``context["tool_name"]`` from the configured mutators (one batch)."""
        import random

        from auto_dev.evolution.program import CaseFeedback

        tool_name = context.get("tool_name")
        if not tool_name:
            return []
        snapshot = self._snapshot(str(tool_name), self._tenant(kwargs))
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
            max_proposals=int(kwargs.get("n", 8)), tenant_id=self._tenant(kwargs),
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
        snapshot = self._snapshot(str(tool_name), self._tenant(kwargs))
        return await validate_against(self.context.sandbox, self.context.limits, proposal,
                                      snapshot)

    # -- the work ---------------------------------------------------------------------------------

    async def evolve(self, request: CycleRequest, cycle: Cycle) -> EvolutionRunResult:
        """Evolve tool ``request.target`` with at most ``request.budget`` sandbox evaluations."""
        snapshot = cycle.tenant.tools.snapshot(request.target)
        outcome = EvolutionRunResult(engine=self.name, target=request.target, status="completed",
                                     tenant_id=request.tenant_id, strategy=cycle.strategy)
        if not snapshot.cases:
            outcome.status, outcome.reason = "skipped", "the tool has no test cases"
            return outcome
        persister = _Persister(self, cycle, snapshot)
        search = EvolutionSearch(
            snapshot.program, snapshot.cases, cycle.sandbox, cycle.mutators,
            budget=request.budget, rng_seed=self.rng_seed, limits=cycle.limits,
            mix=cycle.mutator_weights or None, config=self.config, fitness=self.fitness,
            run_id=cycle.run_id, tenant_id=request.tenant_id,
            hooks=SearchHooks(on_seed=persister.on_seed, on_evaluated=persister.on_evaluated,
                              on_rechecked=persister.on_rechecked,
                              on_progress=self.on_progress),
        )
        result = await search.run()
        outcome.evaluations = result.evaluations
        # A run whose model was unusable says what it really did (and the stats say why).
        outcome.strategy = fallback_strategy(cycle.strategy, result.llm,
                                             ast_share=_ast_share(cycle))
        outcome.pass_rate_before = result.seed_pass_rate
        outcome.pass_rate_after = result.pass_rate
        outcome.candidate_ids = list(persister.stored)
        offered, reason = persister.settle(result)
        outcome.reason = reason
        if offered:
            outcome.offered_ids.append(offered)
        cycle.stats.update(_run_stats(result, outcome))
        cycle.state.update({"rng_seed": self.rng_seed, "best_id": result.best.id,
                            "stop_reason": result.stop_reason})
        return outcome

    # -- helpers ---------------------------------------------------------------------------------

    def _tenant(self, kwargs: dict[str, Any]) -> str:
        return str(kwargs.get("tenant_id") or self.context.settings.tenant)

    def _snapshot(self, tool_name: str, tenant_id: str) -> ToolSnapshot:
        return ToolQueries(self.context.database, tenant_id).snapshot(tool_name)


class _Persister:
    """Stores the candidates that enter the population, keeping lineage in storage ids."""

    #: Rejected candidates are written in batches of this size (one INSERT each).
    BATCH = 64

    def __init__(self, engine: AlphaEvolver, cycle: Cycle, snapshot: ToolSnapshot) -> None:
        self.engine = engine
        self.cycle = cycle
        self.snapshot = snapshot
        self.run_id = cycle.run_id
        self.stored: dict[str, CandidateRecord] = {}
        #: The storage id of each stored candidate by its search id.
        self.rows: dict[str, str] = {}
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
        with self.cycle.candidates.transaction() as tx:
            row = tx.create_tool_mutation(
                tool_id=self.snapshot.tool_id,
                code=record.proposal.code, operator=record.operator,
                entrypoint=record.proposal.entrypoint,
                parent_version_id=self.snapshot.version_id if parent_is_version else None,
                parent_mutation_id=None if parent_is_version else parent,
                second_parent_id=second,
                ast_hash=digest.hex() if digest else None, island=record.island,
                generation=record.generation, objectives=record.objectives,
                details={"mutator": record.mutator, "reason": record.reason,
                         "stage": record.stage, "description": record.proposal.description,
                         "passed_cases": sorted(record.passed_cases),
                         "search_id": record.id, **_llm_meta(record.proposal)},
            )
            if record.result is not None:
                tx.record_evaluation(
                    candidate_id=row.id, result=record.result,
                    limits=self.cycle.limits.to_wire(), objectives=record.objectives,
                    parent_objectives=parent_scores, parent_passed_cases=parent_cases,
                )
        self.stored[row.id] = record
        self.rows[record.id] = row.id
        self.parents.add(row.id)
        self.known[row.id] = (dict(record.objectives), record.passed_cases)
        return row.id

    async def on_rechecked(self, record: CandidateRecord) -> None:
        """A stored candidate passed its deadline-cut cases at the full limit: its evaluation
        row is replaced by the full-limit one, so review sees what the run reports."""
        row_id = self.rows.get(record.id)
        if row_id is None or record.result is None:
            return  # not stored as a candidate (kept for lineage only)
        parent = record.parent_ids[0] if record.parent_ids else self.snapshot.version_id
        parent_scores, parent_cases = self.known.get(parent, ({}, frozenset()))
        with self.cycle.candidates.transaction() as tx:
            tx.record_evaluation(
                candidate_id=row_id, result=record.result, limits=self.cycle.limits.to_wire(),
                objectives=record.objectives, parent_objectives=parent_scores,
                parent_passed_cases=parent_cases)
        self.stored[row_id] = record
        self.known[row_id] = (dict(record.objectives), record.passed_cases)

    def flush(self) -> None:
        """Write the buffered rejected candidates (one INSERT)."""
        if not self.rejected:
            return
        with self.cycle.candidates.transaction() as tx:
            tx.record_rejected_mutations(tool_id=self.snapshot.tool_id, rows=self.rejected)
        self.rejected_count += len(self.rejected)
        self.rejected = []

    def settle(self, result: SearchResult) -> tuple[str | None, str]:
        """Offer the best stored candidate if promotable against the active version; close the
        rest. Returns the offered id (or None) and why."""
        self.flush()
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
        with self.cycle.candidates.transaction() as tx:
            for cid in self.stored:
                if cid == offered:
                    tx.set_status(cid, "passed", reason)
                else:
                    tx.set_status(cid, "failed", f"not offered: superseded in run {self.run_id}")
        return offered, reason


def _ast_share(cycle: Cycle) -> float:
    """The share of the search's steps that the offline AST operators get."""
    weights = cycle.mutator_weights or [1.0] * len(cycle.mutators)
    total = sum(weights)
    ast = sum(w for m, w in zip(cycle.mutators, weights, strict=False) if m.name == "ast")
    return ast / total if total else 0.0


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
