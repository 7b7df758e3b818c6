"""The evolution loop: propose, filter cheaply, evaluate in a cascade, keep the winners.

One step picks an island and a mutator (by the configured mix), samples a parent there (see
:mod:`~auto_dev.evolution.population`; a parent whose neighbourhood the mutator has used up gives
way to the next best), asks for a small batch of proposals, and then:

1. *Filters* each proposal without a sandbox: it must parse, define the entrypoint, do something
   (not empty or comment-only), differ from its parent and from everything seen before (by
   normalised-AST hash). Filtered proposals never count against the budget and never pass.
2. *Evaluates* the survivors concurrently through :class:`~auto_dev.evolution.cascade.
   CascadeEvaluator` (quick cases first, the full suite only for survivors). Every candidate
   sent to the sandbox counts once against the budget, however many stages it ran.
3. *Selects* under the hard constraint: no regression on a case the parent (or the seed)
   passed. A strict superset of the parent's cases joins the population; all cases solves the
   run, which then stops unless ``continue_after_solved`` keeps improving latency, memory and
   size (judged by :func:`~auto_dev.fitness.pareto.is_promotable`). A regressing candidate that
   passes more cases overall is kept as a *stepping stone*: never the best, sometimes a parent,
   which is how repairs whose first edit alone breaks a case are found.

Randomness comes from generators seeded with ``seed``; given a deterministic sandbox the run is
reproducible, concurrency included (each batch is processed in proposal order).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from auto_dev._exceptions import AutoDevError, ValidationError
from auto_dev.abc import Mutator, Sandbox
from auto_dev.evolution.cascade import CascadeEvaluator, case_feedback
from auto_dev.evolution.dedup import (
    Deduplicator,
    SyntaxProblem,
    defines,
    hash_tree,
    is_trivial,
    node_count,
    normalized_hash,
    parse,
)
from auto_dev.evolution.llm_watch import LLMWatch
from auto_dev.evolution.population import Population
from auto_dev.evolution.program import CaseFeedback, MutationContext, Program, Proposal
from auto_dev.evolution.records import (
    CandidateRecord,
    CandidateStat,
    CandidateStatus,
    OperatorStats,
    SearchHooks,
    SearchProgress,
    SearchResult,
    lineage,
)
from auto_dev.fitness.pareto import is_promotable
from auto_dev.fitness.service import FitnessService
from auto_dev.sandbox.base import Case, Limits, SandboxResult

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SearchConfig:
    """Knobs of the loop besides budget, seed and limits (validated on construction)."""

    n_islands: int = 4
    island_capacity: int = 24
    migration_interval: int = 25
    batch_size: int = 4
    concurrency: int = 2
    quick_failing: int = 6
    quick_passing: int = 2
    cascade_min_cases: int = 5
    n_inspirations: int = 2
    max_idle_steps: int = 60
    continue_after_solved: bool = False
    adaptive_timeout: bool = True
    stone_rate: float = 0.15
    seed_rate: float = 0.4
    float_tolerance: float = 1e-6
    keep_candidate_stats: bool = True
    feedback_cases: int = 4

    def __post_init__(self) -> None:
        for name in ("n_islands", "island_capacity", "migration_interval", "batch_size",
                     "concurrency", "max_idle_steps"):
            if int(getattr(self, name)) < 1:
                raise ValidationError(f"config.{name}", "must be at least 1")
        for name in ("quick_failing", "quick_passing", "cascade_min_cases", "n_inspirations",
                     "feedback_cases"):
            if int(getattr(self, name)) < 0:
                raise ValidationError(f"config.{name}", "must not be negative")
        for name in ("stone_rate", "seed_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValidationError(f"config.{name}", "must be between 0 and 1")
        if self.stone_rate + self.seed_rate > 1:
            raise ValidationError("config.seed_rate", "stone_rate + seed_rate must not exceed 1")
        if not 0 <= self.float_tolerance < 1:
            raise ValidationError("config.float_tolerance", "must be in [0, 1)")


@dataclass(slots=True)
class _Candidate:
    proposal: Proposal
    parent: Program
    mutator: str
    id: str
    island: int  # the island of the step: children of the seed or a stone spread out
    quick: tuple[int, ...] = ()
    size: int | None = None
    record: CandidateRecord | None = None


class EvolutionSearch:
    """Evolve ``seed`` against ``cases`` in ``sandbox`` with ``mutators``.

    ``budget`` counts candidates sent to the sandbox (the seed's own evaluation is not a
    candidate). ``mix`` weights the mutators (default: equal).
    """

    def __init__(
        self,
        seed: Program,
        cases: Sequence[Case],
        sandbox: Sandbox,
        mutators: Sequence[Mutator],
        *,
        budget: int = 200,
        rng_seed: int = 0,
        limits: Limits | None = None,
        mix: Sequence[float] | None = None,
        hooks: SearchHooks | None = None,
        config: SearchConfig | None = None,
        fitness: FitnessService | None = None,
        run_id: str | None = None,
        tenant_id: str | None = None,
    ) -> None:
        if not cases:
            raise ValidationError("cases", "must not be empty")
        if not mutators:
            raise ValidationError("mutators", "must list at least one mutator")
        if not isinstance(budget, int) or budget < 0:
            raise ValidationError("budget", "must be a non-negative integer")
        weights = [1.0] * len(mutators) if mix is None else [float(w) for w in mix]
        if len(weights) != len(mutators):
            raise ValidationError("mix", f"has {len(weights)} weights for {len(mutators)} mutators")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValidationError("mix", "weights must be non-negative with a positive sum")
        tree = parse(seed.code)
        if isinstance(tree, SyntaxProblem):
            raise ValidationError("seed.code", f"does not parse: {tree}")
        if not seed.entrypoint.isidentifier() or not defines(tree, seed.entrypoint):
            raise ValidationError("seed.entrypoint", f"{seed.entrypoint!r} is not defined")
        self.seed = seed
        self.cases = tuple(cases)
        self.sandbox = sandbox
        self.mutators = tuple(mutators)
        self.weights = tuple(weights)
        self.budget = budget
        self.rng_seed = rng_seed
        self.limits = limits or Limits()
        self.hooks = hooks or SearchHooks()
        self.config = config or SearchConfig()
        self.fitness = fitness or FitnessService()
        self.run_id = run_id
        self.tenant_id = tenant_id
        self._prefix = f"{run_id}:" if run_id else ""
        cfg = self.config
        self._rng_select = random.Random(f"{rng_seed}:select")
        self._rng_mutate = random.Random(f"{rng_seed}:mutate")
        self.population = Population(
            random.Random(f"{rng_seed}:population"), n_islands=cfg.n_islands,
            island_capacity=cfg.island_capacity, migration_interval=cfg.migration_interval,
        )
        self._cascade = CascadeEvaluator(
            sandbox, self.cases, seed.entrypoint, rng=random.Random(f"{rng_seed}:cascade"),
            limits=self.limits, quick_failing=cfg.quick_failing, quick_passing=cfg.quick_passing,
            min_cases=cfg.cascade_min_cases, float_tolerance=cfg.float_tolerance,
            require_gain=not cfg.continue_after_solved,
        )
        self._dedup = Deduplicator()
        self._feedback: OrderedDict[str, list[CaseFeedback]] = OrderedDict()
        self._digests: OrderedDict[str, bytes] = OrderedDict()
        self._parents: dict[str, str] = {}
        self._evaluations = 0
        self._proposals = 0
        self._status_counts: Counter[str] = Counter()
        self._operator_stats: dict[str, OperatorStats] = {}
        self._stats: list[CandidateStat] = []
        self._best_record: CandidateRecord | None = None
        self._seed_passed: frozenset[int] = frozenset()
        self._seed_program: Program | None = None
        self._started = 0.0
        self._llm_watch = LLMWatch(())

    # --- the loop -------------------------------------------------------------------------------

    async def run(self) -> SearchResult:
        """Run until solved (unless continuing), out of budget, or out of new proposals."""
        self._started = time.perf_counter()
        self._llm_watch = LLMWatch(self.mutators)  # this run's share of the LLM calls
        seed = await self._evaluate_seed()
        stop = "budget"
        if self._solved(seed) and not self.config.continue_after_solved:
            return self._result(seed, "seed_passes")
        step = idle = 0
        cfg = self.config
        while self._evaluations < self.budget:
            if self._solved(self.population.best()) and not cfg.continue_after_solved:
                stop = "solved"
                break
            island = step % cfg.n_islands
            step += 1
            self.population.maybe_migrate(step)
            mutator = self._pick_mutator()
            parent = self._parent(island, mutator)
            room = min(cfg.batch_size, self.budget - self._evaluations)
            context = MutationContext(
                rng=self._rng_mutate,
                failing_cases=list(self._feedback.get(parent.code, ())),
                inspirations=self.population.inspirations(parent, cfg.n_inspirations),
                max_proposals=room,
                tenant_id=self.tenant_id,
                run_id=self.run_id,
            )
            try:
                proposals = list(await mutator.mutate(parent, context))[:room]
            except AutoDevError as exc:
                log.warning("search.mutator_failed", mutator=mutator.name, error=str(exc))
                proposals = []
            batch = [c for c in [await self._filter(p, parent, mutator, island)
                                 for p in proposals] if c]
            if not batch:
                idle += 1
                if idle >= cfg.max_idle_steps:
                    stop = "exhausted"
                    break
                continue
            idle = 0
            await self._evaluate_batch(batch)
            self._progress()
        else:
            if self._solved(self.population.best()) and not cfg.continue_after_solved:
                stop = "solved"
        return self._result(seed, stop)

    async def _evaluate_seed(self) -> Program:
        result = await self._cascade.run(self.seed.code, self._cascade.all_cases, self.limits)
        scores = self.fitness.score(result, self.seed.code)
        passed = result.passed_indices() if result.error is None else frozenset()
        seed = dataclasses.replace(
            self.seed, id=self.seed.id or f"{self._prefix}seed", scores=scores,
            passed_cases=passed, generation=0, island=0,
        )
        self._remember_feedback(seed, result)
        self._seed_passed = passed
        self._seed_program = seed
        digest = normalized_hash(seed.code)
        if digest is not None:
            self._dedup.add(digest)
        self.population.seed(seed)
        self._cascade.limits = self._adapt_limits(result)
        if self.hooks.on_seed is not None:
            await self.hooks.on_seed(seed, result)
        log.info("search.seed", passed=len(passed), total=len(self.cases),
                 timeout_s=self._cascade.limits.timeout_s)
        return seed

    def _adapt_limits(self, seed_result: SandboxResult) -> Limits:
        """Tighten the per-case timeout to a generous multiple of the seed's slowest passing
        case, so candidates that loop forever cost a fraction of a second, not the full limit."""
        if not self.config.adaptive_timeout:
            return self.limits
        ok = [c.duration_s for c in seed_result.cases if c.passed]
        if not ok:
            return self.limits
        timeout = min(self.limits.timeout_s, max(0.5, 20 * max(ok) + 0.25))
        return dataclasses.replace(self.limits, timeout_s=timeout)

    def _parent(self, island: int, mutator: Mutator) -> Program:
        cfg = self.config
        parent = self.population.sample_parent(island)
        exhausted = getattr(mutator, "exhausted", None)
        draw = self._rng_select.random()
        if self.population.stones and draw < cfg.stone_rate:
            parent = self.population.sample_stone() or parent
        elif (callable(exhausted) and self._seed_program is not None
              and draw < cfg.stone_rate + cfg.seed_rate
              and not exhausted(self._seed_program)):
            # Most bugs are one edit away from the seed: keep walking its neighbourhood while
            # partial fixes are explored, rather than only after they are used up.
            parent = self._seed_program
        if callable(exhausted) and exhausted(parent):
            # Its neighbourhood is used up: the next best parent with edits left, if any.
            parent = self.population.fresh_parent(island, lambda p: not exhausted(p)) or parent
        return parent

    def _pick_mutator(self) -> Mutator:
        if len(self.mutators) == 1:
            return self.mutators[0]
        return self._rng_select.choices(self.mutators, weights=self.weights, k=1)[0]

    # --- filtering ------------------------------------------------------------------------------

    async def _filter(
        self, proposal: Proposal, parent: Program, mutator: Mutator, island: int
    ) -> _Candidate | None:
        self._proposals += 1
        cid = f"{self._prefix}c{self._proposals}"
        candidate = _Candidate(proposal, parent, mutator.name, cid, island)
        stats = self._operator_stats.setdefault(proposal.operator, OperatorStats())
        stats.proposed += 1
        status, reason, candidate.size = self._cheap_checks(proposal, parent)
        if status is None:
            return candidate
        record = self._record(candidate, status, "filter", reason)
        self._count(record)
        if self.hooks.on_filtered is not None:
            await self.hooks.on_filtered(record)
        return None

    def _cheap_checks(
        self, proposal: Proposal, parent: Program
    ) -> tuple[CandidateStatus | None, str, int | None]:
        """(status or None when it may run, reason, code size measured on the way)."""
        tree = parse(proposal.code)
        if isinstance(tree, SyntaxProblem):
            return CandidateStatus.SYNTAX_ERROR, f"does not parse: {tree}", None
        if is_trivial(tree):
            return CandidateStatus.TRIVIAL, "empty or comment-only program", None
        if proposal.entrypoint != self.seed.entrypoint or not defines(tree, self.seed.entrypoint):
            return (CandidateStatus.NO_ENTRYPOINT, f"does not define {self.seed.entrypoint!r}",
                    None)
        digest = hash_tree(tree, in_place=True)  # strips docstrings: the tree is ours
        if digest == self._digest(parent.code):
            return CandidateStatus.UNCHANGED, "same program as its parent (normalised)", None
        if not self._dedup.add(digest):
            return CandidateStatus.DUPLICATE, "already seen (normalised AST hash)", None
        return None, "", node_count(tree)

    def _digest(self, code: str) -> bytes | None:
        digest = self._digests.get(code)
        if digest is None:
            digest = normalized_hash(code) or b""
            self._digests[code] = digest
            if len(self._digests) > 256:
                self._digests.popitem(last=False)
        return digest

    # --- evaluation -----------------------------------------------------------------------------

    async def _evaluate_batch(self, batch: list[_Candidate]) -> None:
        for candidate in batch:  # chosen up front so concurrency cannot change the choice
            candidate.quick = self._cascade.quick_cases(candidate.parent.passed_cases)
        semaphore = asyncio.Semaphore(self.config.concurrency)

        async def one(candidate: _Candidate) -> None:
            async with semaphore:
                await self._evaluate(candidate)

        tasks = [asyncio.ensure_future(one(c)) for c in batch]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            # A broken sandbox (or a cancelled run) stops the whole batch, not just one task.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        for candidate in batch:
            assert candidate.record is not None
            await self._accept(candidate, candidate.record)

    async def _evaluate(self, candidate: _Candidate) -> None:
        self._evaluations += 1
        number = self._evaluations
        parent = candidate.parent
        # No case the parent passed may break, nor any the seed passed (a stepping stone's
        # children must win those back before they count).
        required = parent.passed_cases | self._seed_passed
        outcome = await self._cascade.evaluate(candidate.proposal.code, parent.passed_cases,
                                               required, candidate.quick)
        ran = {c.index for c in outcome.result.cases}
        scores = self.fitness.score(outcome.result, candidate.proposal.code,
                                    llm_cost_usd=_cost(candidate.proposal),
                                    baseline_passed=required & ran, size=candidate.size)
        candidate.record = self._record(
            candidate, outcome.status, outcome.stage, outcome.reason, result=outcome.result,
            scores=scores, passed=outcome.passed, evaluation=number, seconds=outcome.seconds,
            stone=outcome.stepping_stone,
        )

    async def _accept(self, candidate: _Candidate, record: CandidateRecord) -> None:
        stats = self._operator_stats[record.operator]
        stats.evaluated += 1
        if self.hooks.on_evaluated is not None:
            storage_id = await self.hooks.on_evaluated(record)
            if storage_id:
                record = dataclasses.replace(record, id=str(storage_id))
        self._count(record)
        if record.status is CandidateStatus.IMPROVED:
            stats.improved += 1
        if record.status is CandidateStatus.PASSED:
            stats.passed += 1
        if record.stepping_stone:
            stone = Program(code=record.proposal.code, entrypoint=self.seed.entrypoint,
                            id=record.id, scores=record.objectives,
                            passed_cases=record.passed_cases, generation=record.generation,
                            island=record.island)
            if self.population.add_stone(stone) and record.result is not None:
                self._parents[record.id] = record.parent_ids[0] if record.parent_ids else ""
                self._remember_feedback(stone, record.result)
            return
        keep = record.status.accepted or (
            self.config.continue_after_solved and record.status is CandidateStatus.NO_GAIN
            and record.stage == "full"
        )
        if not keep:
            return
        program = Program(
            code=record.proposal.code, entrypoint=self.seed.entrypoint, id=record.id,
            scores=record.objectives, passed_cases=record.passed_cases,
            generation=record.generation, island=record.island,
        )
        previous = self.population.best()
        self.population.add(program)
        self._parents[record.id] = record.parent_ids[0] if record.parent_ids else ""
        if record.result is not None:
            self._remember_feedback(program, record.result)
        new_best = self.population.best()
        if self._solved(previous) and self._solved(program) and is_promotable(program, previous):
            # Secondary objectives: a faster or smaller full solution replaces the best.
            self.population.set_best(program)
            new_best = program
        if new_best is not previous and new_best is program:
            self._best_record = record
            log.info("search.new_best", id=record.id, operator=record.operator,
                     passed=len(program.passed_cases), total=len(self.cases))
            if self.hooks.on_new_best is not None:
                await self.hooks.on_new_best(record)

    # --- bookkeeping ----------------------------------------------------------------------------

    def _record(
        self, candidate: _Candidate, status: CandidateStatus, stage: str, reason: str, *,
        result: SandboxResult | None = None, scores: dict[str, float] | None = None,
        passed: frozenset[int] = frozenset(), evaluation: int = 0, seconds: float = 0.0,
        stone: bool = False,
    ) -> CandidateRecord:
        parent = candidate.parent
        parent_ids = candidate.proposal.parent_ids or ((parent.id,) if parent.id else ())
        return CandidateRecord(
            id=candidate.id, proposal=candidate.proposal, parent_ids=parent_ids,
            mutator=candidate.mutator, island=candidate.island,
            generation=parent.generation + 1,
            status=status, stage=stage, reason=reason, result=result, objectives=scores or {},
            passed_cases=passed, evaluation=evaluation, seconds=seconds, stepping_stone=stone,
        )

    def _count(self, record: CandidateRecord) -> None:
        self._status_counts[record.status.value] += 1
        if self.config.keep_candidate_stats:
            self._stats.append(CandidateStat(
                id=record.id, parent_id=record.parent_ids[0] if record.parent_ids else None,
                operator=record.operator, status=record.status.value, stage=record.stage,
                passed=len(record.passed_cases), seconds=round(record.seconds, 6),
            ))

    def _remember_feedback(self, program: Program, result: SandboxResult) -> None:
        self._feedback[program.code] = case_feedback(
            self.cases, result, program.passed_cases, self.config.feedback_cases)
        while len(self._feedback) > 4 * self.config.n_islands * self.config.island_capacity:
            self._feedback.popitem(last=False)

    def _solved(self, program: Program) -> bool:
        return len(program.passed_cases) == len(self.cases)

    def _progress(self) -> None:
        if self.hooks.on_progress is None:
            return
        self.hooks.on_progress(SearchProgress(
            evaluations=self._evaluations, budget=self.budget,
            best_passed=len(self.population.best().passed_cases), total=len(self.cases),
            elapsed_s=time.perf_counter() - self._started, proposals=self._proposals,
        ))

    def _result(self, seed: Program, stop: str) -> SearchResult:
        best = self.population.best()
        self._progress()
        result = SearchResult(
            best=best, seed=seed, total=len(self.cases), evaluations=self._evaluations,
            seconds=time.perf_counter() - self._started, stop_reason=stop,
            sandbox_seconds=self._cascade.sandbox_seconds,
            candidate_timeout_s=self._cascade.limits.timeout_s,
            best_record=self._best_record if best.id != seed.id else None,
            lineage=lineage(self._parents, best.id), status_counts=dict(self._status_counts),
            operator_stats=dict(self._operator_stats), candidates=self._stats,
            llm=self._llm_watch.report(),
        )
        log.info("search.done", stop=stop, evaluations=result.evaluations,
                 passed=result.passed, total=result.total, seconds=round(result.seconds, 3))
        return result


def _cost(proposal: Proposal) -> float:
    value = proposal.meta.get("llm_cost_usd", 0.0) if proposal.meta else 0.0
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return 0.0
