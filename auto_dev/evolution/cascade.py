"""Cascade evaluation of one candidate: quick cases first, the full suite only for survivors.

The quick stage runs some of the parent's failing cases and the passing cases that most often
caught regressions so far. A candidate that breaks one of those (and gains no more than it
breaks), or fixes none of them, stops there: most candidates do, so most cost one small job.
Survivors run the remaining cases; the two results are merged with the original case indices.

The hard constraint is checked against ``required``: the cases the parent passed (plus, in the
search, the cases the seed passed). A candidate that breaks some of them but passes more cases
than its parent overall is flagged a *stepping stone*: never accepted, but worth exploring from.

With :class:`~auto_dev.evolution.deadlines.CaseDeadlines` each case runs under its own deadline
(grouped into one job per deadline). A case cut by a deadline tighter than the limit is a
``timeout`` like any other, but the outcome lists it in ``cut`` together with the status the
candidate would have had if the cut cases had passed (``optimistic``), so that the search can
re-check at the full limit a candidate that only a deadline kept from passing. A candidate the
quick stage would stop only because of a cut goes on to the full stage, so that its optimistic
status is known.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from auto_dev.evolution.program import CaseFeedback
from auto_dev.evolution.records import SearchStatus
from auto_dev.sandbox.base import Case, CaseStatus, Limits, SandboxJob, SandboxResult

if TYPE_CHECKING:
    from auto_dev.abc import Sandbox
    from auto_dev.evolution.deadlines import CaseDeadlines


@dataclass(frozen=True, slots=True)
class CascadeOutcome:
    """What the cascade decided for one candidate (``result`` uses original case indices)."""

    status: SearchStatus
    stage: str  # "quick" or "full"
    reason: str
    result: SandboxResult
    passed: frozenset[int]
    stepping_stone: bool
    seconds: float
    #: Cases cut by an adaptive deadline tighter than the limit (reported as timeouts).
    cut: frozenset[int] = frozenset()
    #: The status had every cut case passed (None when nothing was cut).
    optimistic: SearchStatus | None = None


class CascadeEvaluator:
    """Runs candidates against ``cases`` in ``sandbox`` with the cascade described above."""

    def __init__(
        self,
        sandbox: Sandbox,
        cases: Sequence[Case],
        entrypoint: str,
        *,
        rng: random.Random,
        limits: Limits,
        quick_failing: int = 6,
        quick_passing: int = 2,
        min_cases: int = 5,
        float_tolerance: float = 1e-6,
        require_gain: bool = True,
        deadlines: CaseDeadlines | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.cases = tuple(cases)
        self.entrypoint = entrypoint
        self.rng = rng
        self.limits = limits
        self.quick_failing = quick_failing
        self.quick_passing = quick_passing
        self.min_cases = max(min_cases, 2)
        self.float_tolerance = float_tolerance
        #: When False, survivors need not fix a quick case (secondary-objective mode).
        self.require_gain = require_gain
        #: Per-case deadlines (None: every case runs under ``limits``).
        self.deadlines = deadlines
        self.sandbox_seconds = 0.0
        self.jobs = 0
        self._catches: Counter[int] = Counter()

    @property
    def all_cases(self) -> tuple[int, ...]:
        return tuple(range(len(self.cases)))

    def quick_cases(self, parent_passed: frozenset[int]) -> tuple[int, ...]:
        """The quick stage for a child of a parent passing ``parent_passed`` (() = no cascade).

        Call it before launching concurrent evaluations, in a fixed order, so that the draws
        from the seeded rng do not depend on which evaluation finishes first.
        """
        if len(self.cases) < self.min_cases:
            return ()
        failing = [i for i in self.all_cases if i not in parent_passed]
        if len(failing) > self.quick_failing:
            failing = sorted(self.rng.sample(failing, self.quick_failing))
        passing = sorted(parent_passed)
        self.rng.shuffle(passing)
        passing.sort(key=lambda i: -self._catches[i])  # stable: catchers first, random ties
        quick = tuple(sorted(failing + passing[: self.quick_passing]))
        if len(quick) >= len(self.cases) - 1:
            return ()  # the cascade would save nothing
        return quick

    async def run(
        self, code: str, indices: Sequence[int], limits: Limits | None = None, *,
        stop_on_first_failure: bool = False,
    ) -> SandboxResult:
        """Run ``code`` on the cases at ``indices`` under ``limits`` (default: the evaluator's
        limits) in one job; the result carries those indices."""
        return await self._job(code, tuple(indices), limits or self.limits, stop_on_first_failure)

    async def run_with_deadlines(
        self, code: str, indices: Sequence[int]
    ) -> tuple[SandboxResult, frozenset[int]]:
        """Run the cases at ``indices`` under their deadlines: the result and the cut cases."""
        indices = tuple(indices)
        if self.deadlines is None:
            return await self._job(code, indices, self.limits, False), frozenset()
        limit = self.limits.timeout_s
        parts: list[SandboxResult] = []
        cut: dict[int, float] = {}
        for deadline, group in self.deadlines.groups(indices):
            part = await self._job(code, group, dataclasses.replace(self.limits,
                                                                    timeout_s=deadline), False)
            if deadline < limit:
                cases = []
                for case in part.cases:
                    if case.status is CaseStatus.TIMEOUT:
                        cut[case.index] = deadline
                        case = dataclasses.replace(case, error=(
                            f"cut at the adaptive deadline of {deadline:g} s (the limit is "
                            f"{limit:g} s): far slower than the reference program on this case"))
                    cases.append(case)
                part = dataclasses.replace(part, cases=tuple(cases))
            parts.append(part)
            if part.error is not None:
                break  # the sandbox could not run the job: no point in running the rest
        self.deadlines.count_cuts(cut.values())
        result = parts[0]
        for part in parts[1:]:
            result = _merge(result, part, len(indices))
        return dataclasses.replace(result, total=len(indices)), frozenset(cut)

    async def _job(
        self, code: str, indices: tuple[int, ...], limits: Limits, stop_on_first_failure: bool
    ) -> SandboxResult:
        job = SandboxJob(code=code, entrypoint=self.entrypoint,
                         cases=tuple(self.cases[i] for i in indices), limits=limits,
                         stop_on_first_failure=stop_on_first_failure,
                         float_tolerance=self.float_tolerance)
        started = time.perf_counter()
        raw = await self.sandbox.run(job)
        self.sandbox_seconds += time.perf_counter() - started
        self.jobs += 1
        cases = tuple(dataclasses.replace(c, index=indices[c.index])
                      for c in raw.cases if 0 <= c.index < len(indices))
        return SandboxResult(backend=raw.backend, cases=cases, total=len(indices),
                             duration_s=raw.duration_s, error=raw.error)

    async def evaluate(
        self, code: str, parent_passed: frozenset[int], required: frozenset[int],
        quick: tuple[int, ...],
    ) -> CascadeOutcome:
        """Evaluate one candidate whose parent passed ``parent_passed``."""
        started = time.perf_counter()
        if quick:
            first, cut = await self.run_with_deadlines(code, quick)
            passed_quick = _passed(first)
            stop = self._quick_stop(quick, passed_quick, parent_passed, required)
            if stop is not None and (not cut or self._quick_stop(
                    quick, passed_quick | cut, parent_passed, required) is not None):
                status, reason, broken = stop
                if broken:
                    self._caught(broken)
                return CascadeOutcome(status, "quick", reason, first, passed_quick, False,
                                      time.perf_counter() - started, cut,
                                      status if cut else None)
            rest = tuple(i for i in self.all_cases if i not in quick)
            second, cut_rest = await self.run_with_deadlines(code, rest)
            result = _merge(first, second, len(self.cases))
            cut = cut | cut_rest
        else:
            result, cut = await self.run_with_deadlines(code, self.all_cases)
        passed = _passed(result)
        status, reason, stone = self.judge(passed, parent_passed, required)
        if required - passed:
            self._caught(required - passed)
        optimistic = None
        if cut:
            optimistic, _, optimistic_stone = self.judge(passed | cut, parent_passed, required)
            if optimistic_stone and not stone:
                optimistic = SearchStatus.IMPROVED  # better than a plain regression
        return CascadeOutcome(status, "full", reason, result, passed, stone,
                              time.perf_counter() - started, cut, optimistic)

    def _quick_stop(
        self, quick: tuple[int, ...], passed_quick: frozenset[int], parent_passed: frozenset[int],
        required: frozenset[int],
    ) -> tuple[SearchStatus, str, list[int]] | None:
        """Why the quick stage stops a candidate (status, reason, broken cases), or None."""
        broken = [i for i in quick if i in required and i not in passed_quick]
        gained = [i for i in quick if i not in parent_passed and i in passed_quick]
        if broken and len(gained) <= len(broken):
            return (SearchStatus.REGRESSED,
                    f"breaks case(s) {broken} the parent passed (quick stage)", broken)
        if not gained and self.require_gain:
            return SearchStatus.NO_GAIN, "fixes none of the parent's failing quick cases", []
        return None

    def judge(
        self, passed: frozenset[int], parent_passed: frozenset[int], required: frozenset[int]
    ) -> tuple[SearchStatus, str, bool]:
        """(status, reason, stepping stone) of a candidate that ran every case."""
        broken_set = required - passed
        if broken_set:
            reason = f"breaks case(s) {sorted(broken_set)[:8]} the parent passed"
            stone = len(passed) > len(parent_passed) and len(passed) > len(required)
            if stone:
                reason += "; kept as a stepping stone (passes more cases overall)"
            return SearchStatus.REGRESSED, reason, stone
        if len(passed) == len(self.cases):
            return SearchStatus.PASSED, "passes every case", False
        if passed > parent_passed:
            return (SearchStatus.IMPROVED,
                    f"fixes case(s) {sorted(passed - parent_passed)[:8]}", False)
        return SearchStatus.NO_GAIN, "passes the same cases as its parent", False

    def _caught(self, indices: Sequence[int] | frozenset[int]) -> None:
        for i in indices:
            self._catches[i] += 1


def case_feedback(
    cases: Sequence[Case], result: SandboxResult, passed: frozenset[int], limit: int
) -> list[CaseFeedback]:
    """Up to ``limit`` failing cases of ``result`` as mutator feedback (in case order)."""
    by_index = {c.index: c for c in result.cases}
    feedback: list[CaseFeedback] = []
    for index, case in enumerate(cases):
        if index in passed:
            continue
        if len(feedback) >= limit:
            break
        outcome = by_index.get(index)
        feedback.append(CaseFeedback(
            index=index, args=case.args, kwargs=dict(case.kwargs), expected=case.expected,
            actual=outcome.output if outcome else None,
            status=outcome.status.value if outcome else "skipped",
            error=(outcome.error if outcome else None) or result.error,
        ))
    return feedback


def _passed(result: SandboxResult) -> frozenset[int]:
    return result.passed_indices() if result.error is None else frozenset()


def _merge(first: SandboxResult, second: SandboxResult, total: int) -> SandboxResult:
    cases = tuple(sorted((*first.cases, *second.cases), key=lambda c: c.index))
    return SandboxResult(backend=first.backend, cases=cases, total=total,
                         duration_s=first.duration_s + second.duration_s,
                         error=first.error or second.error)
