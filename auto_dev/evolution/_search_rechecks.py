"""The search's re-checks at the full limit (a mixin of :class:`EvolutionSearch`).

A candidate that only adaptive-deadline cuts kept from passing every case is held in a
:class:`~auto_dev.evolution.deadlines.RecheckQueue` rather than settled: one is re-checked at the
full limit when the search stalls (the wait doubling after each fruitless one, since looping
mutants look the same), and all of them before a run that found no repair gives up. The best
about to be reported has its cut cases re-run at the full limit too, so the count it reports
is what the user's limit allows.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

import structlog

from auto_dev.evolution._search_candidate import SearchCandidate, proposal_cost
from auto_dev.evolution.deadlines import CaseDeadlines, PendingRecheck, RecheckQueue
from auto_dev.evolution.program import Program
from auto_dev.evolution.records import CandidateRecord, SearchHooks, SearchStatus
from auto_dev.sandbox.base import SandboxResult

if TYPE_CHECKING:
    from auto_dev.evolution.cascade import CascadeEvaluator
    from auto_dev.evolution.population import Population
    from auto_dev.evolution.search_config import SearchConfig
    from auto_dev.evolution.waste import WasteLedger
    from auto_dev.fitness.service import FitnessService
    from auto_dev.sandbox.base import Case, Limits

log = structlog.get_logger("auto_dev.evolution.search")


class RecheckMixin:
    """Holding, re-checking and upgrading candidates cut by adaptive deadlines."""

    if TYPE_CHECKING:
        config: SearchConfig
        cases: tuple[Case, ...]
        limits: Limits
        hooks: SearchHooks
        fitness: FitnessService
        population: Population
        _cascade: CascadeEvaluator
        _deadlines: CaseDeadlines | None
        _rechecks: RecheckQueue
        _waste: WasteLedger
        _evaluations: int
        _since_best: int
        _recheck_backoff: int
        _best_record: CandidateRecord | None
        _seed_passed: frozenset[int]
        _seed_program: Program | None

        async def _accept(self, candidate: SearchCandidate, record: CandidateRecord) -> None: ...
        def _solved(self, program: Program) -> bool: ...
        def _remember_feedback(self, program: Program, result: SandboxResult) -> None: ...

    async def _settle(self, candidate: SearchCandidate) -> None:
        """Accept or reject an evaluated candidate, or hold it for a re-check when only deadline
        cuts kept it from passing every case."""
        record, outcome = candidate.record, candidate.outcome
        assert record is not None and outcome is not None
        if candidate.model_call:
            self._waste.settle(candidate.mutator, candidate.parent.code,
                               helped=record.status.accepted or record.stepping_stone)
        # Once a repair is known a slower one cannot replace it: no hold, no re-check.
        if not (outcome.cut and outcome.optimistic is SearchStatus.PASSED
                and not self._solved(self.population.best())
                and self.config.recheck_capacity > 0):
            await self._accept(candidate, record)
            return
        if record.status.accepted:
            await self._accept(candidate, record)  # a partial fix now; maybe more after all
        entry = PendingRecheck(candidate, candidate.record, self._by_reference(outcome.cut),
                               accepted=record.status.accepted, enqueued=self._evaluations)
        dropped = self._rechecks.push(entry)
        if dropped is not None and not dropped.accepted:
            await self._accept(_item(dropped), _entry_record(dropped))

    def _by_reference(self, cases: frozenset[int]) -> tuple[int, ...]:
        # The quickest cases on the reference program first: a probe fails fastest there.
        deadlines = self._deadlines
        if deadlines is None:
            return tuple(sorted(cases))
        return tuple(sorted(cases, key=lambda i: (deadlines.references.get(i, 1e9), i)))

    async def _maybe_recheck(self) -> None:
        """After ``recheck_patience`` evaluations without a new best, re-check one held
        candidate at the full limit (a stalled search may be missing a slow repair)."""
        # Each fruitless re-check doubles the wait: looping mutants also pass for slow ones.
        patience = self.config.recheck_patience * self._recheck_backoff
        if (self._rechecks and not self._solved(self.population.best())
                and self._since_best >= patience
                and self._rechecks.oldest_wait(self._evaluations) >= patience):
            entry = self._rechecks.pop()
            self._since_best = 0
            if entry is not None and not await self._recheck(entry):
                self._recheck_backoff *= 2

    async def _finish(self) -> None:
        """Before reporting: re-check every held candidate (unless solved) and the best."""
        for entry in self._rechecks.drain():
            if self._solved(self.population.best()):
                if not entry.accepted:
                    await self._accept(_item(entry), _entry_record(entry))
            else:
                await self._recheck(entry)
        await self._recheck_best()

    async def _recheck(self, entry: PendingRecheck) -> bool:
        """Run the cut cases at the full limit, stopping at the first that fails; True when
        they all passed."""
        candidate, record = _item(entry), _entry_record(entry)
        probe = await self._full_limit(candidate.proposal.code, entry.cut, stop=True)
        passed = probe.passed_indices() if probe.error is None else frozenset()
        if not set(entry.cut) <= passed:
            if not entry.accepted:
                await self._accept(candidate, record)
            return False
        upgraded = self._rechecked(candidate.parent, record, probe, candidate)
        if entry.accepted and candidate.program is not None:
            await self._upgrade(candidate.program, upgraded)
        else:
            await self._accept(candidate, upgraded)
        self._recheck_backoff = 1
        return True

    async def _recheck_best(self) -> None:
        """The best about to be reported: its cut cases at the full limit, for an honest count."""
        best, record = self.population.best(), self._best_record
        if (record is None or record.id != best.id or not record.cut_cases
                or self._solved(best)):
            return
        probe = await self._full_limit(record.proposal.code, tuple(sorted(record.cut_cases)),
                                       stop=False)
        if probe.error is None and probe.passed_indices():
            parent = self._seed_program or best
            await self._upgrade(best, self._rechecked(parent, record, probe, None))

    async def _full_limit(self, code: str, cases: tuple[int, ...], *, stop: bool) -> SandboxResult:
        started = time.perf_counter()
        result = await self._cascade.run(code, cases, self.limits, stop_on_first_failure=stop)
        if self._deadlines is not None:
            self._deadlines.rechecks += 1
            self._deadlines.recheck_s += time.perf_counter() - started
        return result

    def _rechecked(
        self, parent: Program, record: CandidateRecord, probe: SandboxResult,
        candidate: SearchCandidate | None,
    ) -> CandidateRecord:
        """``record`` with the probed cases' results in place of their cuts."""
        assert record.result is not None
        fresh = {c.index: c for c in probe.cases}
        cases = tuple(fresh.get(c.index, c) for c in record.result.cases)
        result = dataclasses.replace(record.result, cases=cases)
        passed = record.passed_cases | probe.passed_indices()
        required = parent.passed_cases | self._seed_passed
        status, reason, stone = self._cascade.judge(passed, parent.passed_cases, required)
        if candidate is None:  # the reported best: its status stands, its count grows
            status, reason, stone = record.status, record.reason, record.stepping_stone
        scores = self.fitness.score(result, record.proposal.code,
                                    llm_cost_usd=proposal_cost(record.proposal),
                                    baseline_passed=required & {c.index for c in cases},
                                    size=candidate.size if candidate else None)
        return dataclasses.replace(
            record, status=status, reason=f"{reason} (re-checked at the full limit)",
            result=result, objectives=scores, passed_cases=passed, stepping_stone=stone,
            cut_cases=record.cut_cases - probe.passed_indices(),
        )

    async def _upgrade(self, old: Program, record: CandidateRecord) -> None:
        """A population member passes more cases than first measured: put the truth in."""
        program = dataclasses.replace(old, scores=record.objectives,
                                      passed_cases=record.passed_cases)
        self.population.replace(old, program)
        if self.hooks.on_rechecked is not None:  # what was stored must say the same
            await self.hooks.on_rechecked(record)
        if record.result is not None:
            self._remember_feedback(program, record.result)
        if self.population.best() is program:
            self._best_record = record
            self._since_best = 0
            log.info("search.new_best", id=record.id, operator=record.operator,
                     passed=len(program.passed_cases), total=len(self.cases), rechecked=True)
            if self.hooks.on_new_best is not None:
                await self.hooks.on_new_best(record)



def _item(entry: PendingRecheck) -> SearchCandidate:
    assert isinstance(entry.item, SearchCandidate)
    return entry.item


def _entry_record(entry: PendingRecheck) -> CandidateRecord:
    assert isinstance(entry.record, CandidateRecord)
    return entry.record
