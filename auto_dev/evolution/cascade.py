"""Cascade evaluation of one candidate: quick cases first, the full suite only for survivors.

The quick stage runs some of the parent's failing cases and the passing cases that most often
caught regressions so far. A candidate that breaks one of those (and gains no more than it
breaks), or fixes none of them, stops there: most candidates do, so most cost one small job.
Survivors run the remaining cases; the two results are merged with the original case indices.

The hard constraint is checked against ``required``: the cases the parent passed (plus, in the
search, the cases the seed passed). A candidate that breaks some of them but passes more cases
than its parent overall is flagged a *stepping stone*: never accepted, but worth exploring from.
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
from auto_dev.evolution.records import CandidateStatus
from auto_dev.sandbox.base import Case, Limits, SandboxJob, SandboxResult

if TYPE_CHECKING:
    from auto_dev.abc import Sandbox


@dataclass(frozen=True, slots=True)
class CascadeOutcome:
    """What the cascade decided for one candidate (``result`` uses original case indices)."""

    status: CandidateStatus
    stage: str  # "quick" or "full"
    reason: str
    result: SandboxResult
    passed: frozenset[int]
    stepping_stone: bool
    seconds: float


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
        self, code: str, indices: Sequence[int], limits: Limits | None = None
    ) -> SandboxResult:
        """Run ``code`` on the cases at ``indices``; the result carries those indices."""
        indices = tuple(indices)
        job = SandboxJob(code=code, entrypoint=self.entrypoint,
                         cases=tuple(self.cases[i] for i in indices),
                         limits=limits or self.limits, float_tolerance=self.float_tolerance)
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
            first = await self.run(code, quick)
            passed_quick = _passed(first)
            broken = [i for i in quick if i in required and i not in passed_quick]
            gained = [i for i in quick if i not in parent_passed and i in passed_quick]
            if broken and len(gained) <= len(broken):
                self._caught(broken)
                return CascadeOutcome(
                    CandidateStatus.REGRESSED, "quick",
                    f"breaks case(s) {broken} the parent passed (quick stage)", first,
                    passed_quick, False, time.perf_counter() - started)
            if not gained and self.require_gain:
                return CascadeOutcome(
                    CandidateStatus.NO_GAIN, "quick",
                    "fixes none of the parent's failing quick cases", first, passed_quick,
                    False, time.perf_counter() - started)
            rest = tuple(i for i in self.all_cases if i not in quick)
            result = _merge(first, await self.run(code, rest), len(self.cases))
        else:
            result = await self.run(code, self.all_cases)
        passed = _passed(result)
        seconds = time.perf_counter() - started
        broken_set = required - passed
        if broken_set:
            self._caught(broken_set)
            reason = f"breaks case(s) {sorted(broken_set)[:8]} the parent passed"
            stone = len(passed) > len(parent_passed) and len(passed) > len(required)
            if stone:
                reason += "; kept as a stepping stone (passes more cases overall)"
            return CascadeOutcome(CandidateStatus.REGRESSED, "full", reason, result, passed,
                                  stone, seconds)
        if len(passed) == len(self.cases):
            return CascadeOutcome(CandidateStatus.PASSED, "full", "passes every case", result,
                                  passed, False, seconds)
        if passed > parent_passed:
            return CascadeOutcome(
                CandidateStatus.IMPROVED, "full",
                f"fixes case(s) {sorted(passed - parent_passed)[:8]}", result, passed, False,
                seconds)
        return CascadeOutcome(CandidateStatus.NO_GAIN, "full",
                              "passes the same cases as its parent", result, passed, False,
                              seconds)

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
