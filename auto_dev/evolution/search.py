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

Three things keep the search from wasting sandbox time, evaluations and model calls:

* *Adaptive deadlines* (:mod:`~auto_dev.evolution.deadlines`): each case runs under a deadline
  from the seed's (or the best candidate's) own time on it, so a looping mutant is cut in a
  fraction of the limit. A candidate that only cuts kept from passing every case is queued and
  re-checked at the full limit (when the search stalls, and before the run gives up), and the
  reported best is re-checked too: a slow but correct program is never lost to a deadline.
* *Composed edits* (:mod:`~auto_dev.evolution.compose`): candidates that fixed different cases
  are merged (three-way, over their common ancestor) and the merges evaluated before the next
  mutator call; a stepping stone that passes cases the best does not becomes the parent of the
  next steps; model mutators are shown the edits that fixed cases elsewhere.
* *Waste control* (:mod:`~auto_dev.evolution.waste`): per parent, the model answers that were
  filtered before evaluation are counted; a run of them makes the mutator explore (hotter, more
  failing cases shown) and then moves the search to another parent (the next best, or a
  neutral child whose neighbourhood holds the two-edit programs) before more calls are spent.
  Before that, each call goes to the parent (of the seed and the population) with the best
  chance of a new answer that helps: a partial fix whose answers stop paying gives the calls
  back to a neighbourhood less explored.

``SearchConfig.legacy()`` turns the three off (one seed-derived timeout for every case), which
reproduces the search as it was before them; the repair benchmark measures against it.

*Concurrency*: the search keeps as many candidate evaluations in flight as the sandbox runs at
once (:attr:`auto_dev.abc.Sandbox.slots`: the process or Docker pool size, the slots of a Ray
cluster's actors), unless ``SearchConfig.concurrency`` is set, which then wins. A window wider
than one step's batch is filled with further steps (on the next islands) proposed from the same
state; the round is evaluated together, never more than the window in the sandbox at once, and
settled in proposal order before the next round is proposed. A window of at most
``batch_size`` leaves the search exactly as it was with one step per round. (A round waits for
its slowest candidate: the price of an order of acceptance that never depends on timing.)

Randomness comes from generators seeded with ``seed``; given a deterministic sandbox the run is
reproducible, concurrency included (each round is settled in proposal order).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Sequence

import structlog

from auto_dev._exceptions import AutoDevError, ValidationError
from auto_dev.abc import Mutator, Sandbox
from auto_dev.evolution._search_candidate import SearchCandidate, proposal_cost
from auto_dev.evolution._search_compose import ComposeMixin
from auto_dev.evolution._search_filters import FilterMixin
from auto_dev.evolution._search_parents import ParentMixin
from auto_dev.evolution._search_rechecks import RecheckMixin
from auto_dev.evolution.cascade import CascadeEvaluator, case_feedback
from auto_dev.evolution.compose import Composer, PartialFix
from auto_dev.evolution.deadlines import CaseDeadlines, RecheckQueue
from auto_dev.evolution.dedup import (
    Deduplicator,
    SyntaxProblem,
    defines,
    normalized_hash,
    parse,
)
from auto_dev.evolution.llm_watch import LLMWatch
from auto_dev.evolution.population import Population
from auto_dev.evolution.program import CaseFeedback, MutationContext, Program, Proposal
from auto_dev.evolution.records import (
    CandidateRecord,
    CandidateStat,
    OperatorStats,
    SearchHooks,
    SearchProgress,
    SearchResult,
    SearchStatus,
    lineage,
)
from auto_dev.evolution.search_config import SearchConfig
from auto_dev.evolution.waste import WasteLedger
from auto_dev.fitness.pareto import is_promotable
from auto_dev.fitness.service import FitnessService
from auto_dev.sandbox.base import Case, Limits, SandboxResult

__all__ = ["EvolutionSearch", "SearchConfig"]

log = structlog.get_logger(__name__)


class EvolutionSearch(ParentMixin, RecheckMixin, ComposeMixin, FilterMixin):
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
        self._deadlines = CaseDeadlines(
            self.limits.timeout_s, cfg.deadline_multiplier, cfg.deadline_floor_s,
        ) if cfg.adaptive_timeout and cfg.deadline_mode == "case" else None
        self._cascade = CascadeEvaluator(
            sandbox, self.cases, seed.entrypoint, rng=random.Random(f"{rng_seed}:cascade"),
            limits=self.limits, quick_failing=cfg.quick_failing, quick_passing=cfg.quick_passing,
            min_cases=cfg.cascade_min_cases, float_tolerance=cfg.float_tolerance,
            require_gain=not cfg.continue_after_solved, deadlines=self._deadlines,
        )
        self._rechecks = RecheckQueue(cfg.recheck_capacity)
        self._composer = Composer() if cfg.compose else None
        self._composed: deque[tuple[Proposal, Program, tuple[PartialFix, ...]]] = deque(
            maxlen=8 * cfg.batch_size)
        self._composed_count = 0
        self._focus: deque[Program] = deque(maxlen=3 * cfg.n_islands)
        self._waste = WasteLedger(patience=cfg.waste_patience)
        self._since_best = 0
        self._recheck_backoff = 1
        self._step = 0  # steps taken (one island, one mutator call or the waiting merges)
        self._idle = 0  # consecutive steps that gave no candidate
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
        window = self._window()  # after the seed's job: a Ray sandbox knows its slots now
        log.info("search.window", window=window,
                 source="config" if self.config.concurrency is not None else "sandbox")
        while self._evaluations < self.budget:
            if self._done():
                stop = "solved"
                break
            batch = await self._round(window)
            if batch:
                await self._evaluate_batch(batch, window)
                await self._maybe_recheck()
                self._progress()
            if self._idle >= self.config.max_idle_steps:
                stop = "exhausted"
                break
        else:
            if self._done():
                stop = "solved"
        await self._finish()
        if stop != "solved" and self._done():
            stop = "solved"  # a re-check at the full limit found the repair
        return self._result(seed, stop)

    def _done(self) -> bool:
        return self._solved(self.population.best()) and not self.config.continue_after_solved

    def _window(self) -> int:
        """Candidate evaluations in flight at once: ``config.concurrency`` when set, else the
        sandbox's slots (at least one)."""
        if self.config.concurrency is not None:
            return self.config.concurrency
        slots = self.sandbox.slots
        return slots if isinstance(slots, int) and slots >= 1 else 1

    async def _round(self, window: int) -> list[SearchCandidate]:
        """The candidates of the next round, proposed from the same settled state.

        A step (one island, one mutator call or the waiting merges) gives up to ``batch_size``
        candidates. When the window holds no more than one batch, a round is the first step
        that gives any (the search as it always was); a wider window takes further steps, on
        the next islands, until the round fills it. Empty steps count towards
        ``max_idle_steps``; the caller stops when they reach it.
        """
        cfg = self.config
        batch: list[SearchCandidate] = []
        while self._idle < cfg.max_idle_steps:
            left = self.budget - self._evaluations - len(batch)
            free = window - len(batch)
            if left <= 0 or (batch and (window <= cfg.batch_size or free <= 0)):
                break
            island = self._step % cfg.n_islands
            self._step += 1
            self.population.maybe_migrate(self._step)
            room = min(cfg.batch_size, left) if not batch else min(cfg.batch_size, left, free)
            if self._composed:
                step = await self._composed_batch(room, island)
            else:
                step = await self._proposed_batch(room, island)
            if step:
                self._idle = 0
                batch.extend(step)
            else:
                self._idle += 1
                if batch:
                    break  # evaluate what there is rather than spend more mutator calls
        return batch

    async def _proposed_batch(self, room: int, island: int) -> list[SearchCandidate]:
        """One mutator call's proposals that survive the cheap filters."""
        mutator = self._pick_mutator()
        parent = self._parent(island, mutator)
        if parent is None:
            # The model's answers about every parent worth asking are being wasted: save the
            # call, and let a mutator that costs nothing take the step, if there is one.
            free = [m for m in self.mutators if not self._calls_model(m)]
            if not free:
                return []
            mutator = free[0] if len(free) == 1 else self._rng_select.choice(free)
            parent = self._parent(island, mutator)
            if parent is None:
                return []
        costly = self._calls_model(mutator)
        level = self._waste.exploration(mutator.name, parent.code) if (
            costly and self.config.waste_control) else 0
        context = MutationContext(
            rng=self._rng_mutate,
            failing_cases=self._failing_cases(parent, level),
            inspirations=self.population.inspirations(parent, self.config.n_inspirations),
            max_proposals=room,
            tenant_id=self.tenant_id,
            run_id=self.run_id,
            exploration=level,
            helpful_edits=(self._composer.helpful_edits(parent)
                           if self._composer is not None and costly else []),
        )
        report = getattr(mutator, "mutate_with_report", None)
        try:
            if costly and callable(report):
                answer = await report(parent, context)
                proposals = list(answer.proposals)[:room]
                for rejection in answer.rejections:
                    if rejection.reason != "llm_error":  # a failed call is no answer
                        self._waste.record(mutator.name, parent.code, wasted=True)
            else:
                proposals = list(await mutator.mutate(parent, context))[:room]
        except AutoDevError as exc:
            log.warning("search.mutator_failed", mutator=mutator.name, error=str(exc))
            proposals = []
        batch: list[SearchCandidate] = []
        for proposal in proposals:
            candidate = await self._filter(proposal, parent, mutator.name, island)
            if costly:
                self._waste.record(mutator.name, parent.code, wasted=candidate is None,
                                   digest=normalized_hash(proposal.code))
                if candidate is not None:
                    candidate.model_call = True
            if candidate is not None:
                batch.append(candidate)
        return batch

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
        if self._composer is not None:
            self._composer.remember(seed, None)
        if self._deadlines is not None:
            self._deadlines.observe(result, passed_only=False)
        else:
            self._cascade.limits = self._adapt_limits(result)
        if self.hooks.on_seed is not None:
            await self.hooks.on_seed(seed, result)
        log.info("search.seed", passed=len(passed), total=len(self.cases),
                 timeout_s=self._timeout_s())
        return seed

    def _timeout_s(self) -> float:
        if self._deadlines is not None:
            return self._deadlines.max_deadline(len(self.cases))
        return self._cascade.limits.timeout_s

    def _adapt_limits(self, seed_result: SandboxResult) -> Limits:
        """``deadline_mode="seed"``: tighten the per-case timeout to a generous multiple of the
        seed's slowest passing case (one timeout for every case, never re-checked)."""
        if not self.config.adaptive_timeout:
            return self.limits
        ok = [c.duration_s for c in seed_result.cases if c.passed]
        if not ok:
            return self.limits
        timeout = min(self.limits.timeout_s, max(0.5, 20 * max(ok) + 0.25))
        return dataclasses.replace(self.limits, timeout_s=timeout)

    # --- evaluation -----------------------------------------------------------------------------

    async def _evaluate_batch(self, batch: list[SearchCandidate], window: int) -> None:
        """Evaluate a round with at most ``window`` candidates in the sandbox at once, then
        settle them in proposal order (so the order of acceptance never depends on timing)."""
        for candidate in batch:  # chosen up front so concurrency cannot change the choice
            candidate.quick = self._cascade.quick_cases(candidate.parent.passed_cases)
        semaphore = asyncio.Semaphore(window)

        async def one(candidate: SearchCandidate) -> None:
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
            await self._settle(candidate)

    async def _evaluate(self, candidate: SearchCandidate) -> None:
        self._evaluations += 1
        self._since_best += 1
        number = self._evaluations
        parent = candidate.parent
        # No case the parent passed may break, nor any the seed passed (a stepping stone's
        # children must win those back before they count).
        required = parent.passed_cases | self._seed_passed
        outcome = await self._cascade.evaluate(candidate.proposal.code, parent.passed_cases,
                                               required, candidate.quick)
        candidate.outcome = outcome
        candidate.record = self._record(
            candidate, outcome.status, outcome.stage, outcome.reason, result=outcome.result,
            scores=self._scores(candidate, outcome.result, required), passed=outcome.passed,
            evaluation=number, seconds=outcome.seconds, stone=outcome.stepping_stone,
            cut=outcome.cut,
        )

    def _scores(
        self, candidate: SearchCandidate, result: SandboxResult, required: frozenset[int]
    ) -> dict[str, float]:
        ran = {c.index for c in result.cases}
        return self.fitness.score(result, candidate.proposal.code,
                                  llm_cost_usd=proposal_cost(candidate.proposal),
                                  baseline_passed=required & ran, size=candidate.size)

    async def _accept(self, candidate: SearchCandidate, record: CandidateRecord) -> None:
        stats = self._operator_stats[record.operator]
        stats.evaluated += 1
        if self.hooks.on_evaluated is not None:
            storage_id = await self.hooks.on_evaluated(record)
            if storage_id:
                record = dataclasses.replace(record, id=str(storage_id))
        candidate.record = record
        self._count(record)
        if record.status is SearchStatus.IMPROVED:
            stats.improved += 1
        if record.status is SearchStatus.PASSED:
            stats.passed += 1
        for fix in candidate.parents:  # a merge: its two parents join the lineage
            self._parents.setdefault(fix.program.id or "", fix.parent_id)
        program = self._program(record)
        if record.stepping_stone:
            if self.population.add_stone(program) and record.result is not None:
                self._parents[record.id] = record.parent_ids[0] if record.parent_ids else ""
                self._remember_feedback(program, record.result)
                if self._composer is not None and program.passed_cases - (
                        self.population.best().passed_cases):
                    # It passes cases no feasible program does: explore it next.
                    self._focus.extend([program] * 2)
            self._compose(candidate, record, program)
            return
        keep = record.status.accepted or (
            self.config.continue_after_solved and record.status is SearchStatus.NO_GAIN
            and record.stage == "full"
        )
        if not keep:
            self._neutral(candidate, record, program)
            self._compose(candidate, record, program)
            return
        previous = self.population.best()
        self.population.add(program)
        candidate.program = program
        self._parents[record.id] = record.parent_ids[0] if record.parent_ids else ""
        if record.result is not None:
            self._remember_feedback(program, record.result)
        new_best = self.population.best()
        if self._solved(previous) and self._solved(program) and is_promotable(program, previous):
            # Secondary objectives: a faster or smaller full solution replaces the best.
            self.population.set_best(program)
            new_best = program
        self._compose(candidate, record, program)
        if new_best is not previous and new_best is program:
            self._best_record = record
            self._since_best = 0
            if self._deadlines is not None and record.result is not None:
                self._deadlines.observe(record.result, passed_only=True)
            log.info("search.new_best", id=record.id, operator=record.operator,
                     passed=len(program.passed_cases), total=len(self.cases))
            if self.hooks.on_new_best is not None:
                await self.hooks.on_new_best(record)

    def _program(self, record: CandidateRecord) -> Program:
        return Program(code=record.proposal.code, entrypoint=self.seed.entrypoint, id=record.id,
                       scores=record.objectives, passed_cases=record.passed_cases,
                       generation=record.generation, island=record.island)

    # --- bookkeeping ----------------------------------------------------------------------------

    def _record(
        self, candidate: SearchCandidate, status: SearchStatus, stage: str, reason: str, *,
        result: SandboxResult | None = None, scores: dict[str, float] | None = None,
        passed: frozenset[int] = frozenset(), evaluation: int = 0, seconds: float = 0.0,
        stone: bool = False, cut: frozenset[int] = frozenset(),
    ) -> CandidateRecord:
        parent = candidate.parent
        parent_ids = candidate.proposal.parent_ids or ((parent.id,) if parent.id else ())
        return CandidateRecord(
            id=candidate.id, proposal=candidate.proposal, parent_ids=parent_ids,
            mutator=candidate.mutator, island=candidate.island,
            generation=parent.generation + 1,
            status=status, stage=stage, reason=reason, result=result, objectives=scores or {},
            passed_cases=passed, evaluation=evaluation, seconds=seconds, stepping_stone=stone,
            cut_cases=cut,
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
        # Three times the cases a mutator normally sees: more are shown when it keeps wasting.
        self._feedback[program.code] = case_feedback(
            self.cases, result, program.passed_cases, 3 * self.config.feedback_cases)
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
            candidate_timeout_s=self._timeout_s(),
            best_record=self._best_record if best.id != seed.id else None,
            lineage=lineage(self._parents, best.id), status_counts=dict(self._status_counts),
            operator_stats=dict(self._operator_stats), candidates=self._stats,
            llm=self._llm_watch.report(),
            llm_calls=self._waste.calls, llm_calls_wasted=self._waste.wasted,
            composed=self._composed_count,
        )
        deadlines = self._deadlines
        if deadlines is not None:
            result.deadline_cuts, result.deadline_saved_s = deadlines.cuts, deadlines.saved_s
            result.deadline_rechecks = deadlines.rechecks
            result.deadline_recheck_s = deadlines.recheck_s
        log.info("search.done", stop=stop, evaluations=result.evaluations,
                 passed=result.passed, total=result.total, seconds=round(result.seconds, 3))
        return result
