"""Tests for the cascade evaluator: quick stage, full stage, verdicts and stepping stones."""

from __future__ import annotations

import random

from auto_dev.evolution.cascade import CascadeEvaluator
from auto_dev.evolution.deadlines import CaseDeadlines
from auto_dev.evolution.records import SearchStatus
from auto_dev.sandbox.base import Case, Limits
from tests.evolution._fakes import ScriptedSandbox, TimedSandbox

CASES = [Case(args=(i,), expected=i, name=f"c{i}") for i in range(8)]


def _evaluator(judge: object, **kwargs: object) -> tuple[CascadeEvaluator, ScriptedSandbox]:
    sandbox = ScriptedSandbox(judge)  # type: ignore[arg-type]
    evaluator = CascadeEvaluator(sandbox, CASES, "f", rng=random.Random(0), limits=Limits(),
                                 **kwargs)  # type: ignore[arg-type]
    return evaluator, sandbox


def _passes(*indices: int) -> object:
    return lambda code, case: int(case.name[1:]) in indices


class TestQuickCases:
    """Which cases the quick stage runs."""

    def test_failing_cases_and_a_few_passing(self) -> None:
        """The parent's failing cases (capped) plus quick_passing passing ones."""
        evaluator, _ = _evaluator(_passes())
        quick = evaluator.quick_cases(frozenset({0, 1, 2, 3, 4, 5}))
        assert {6, 7} <= set(quick) and len(quick) == 4

    def test_small_suites_skip_the_cascade(self) -> None:
        """Below min_cases, or when the quick stage would be nearly everything, no cascade."""
        evaluator, _ = _evaluator(_passes(), min_cases=20)
        assert evaluator.quick_cases(frozenset({0})) == ()
        evaluator, _ = _evaluator(_passes(), quick_failing=7)
        assert evaluator.quick_cases(frozenset()) == ()  # 7 of 8 cases: nothing saved

    def test_catching_cases_are_preferred(self) -> None:
        """A passing case that caught a regression is chosen for later quick stages."""
        evaluator, _ = _evaluator(_passes())
        evaluator._caught([5])
        for _ in range(5):
            assert 5 in evaluator.quick_cases(frozenset({0, 1, 2, 3, 4, 5}))


class TestVerdicts:
    """Statuses decided by the cascade."""

    async def test_no_gain_stops_after_one_job(self) -> None:
        """Fixing nothing stops at the quick stage."""
        evaluator, sandbox = _evaluator(_passes(0, 1, 2, 3, 4, 5))
        parent = frozenset({0, 1, 2, 3, 4, 5})
        quick = evaluator.quick_cases(parent)
        outcome = await evaluator.evaluate("x = 1\n", parent, parent, quick)
        assert outcome.status is SearchStatus.NO_GAIN and outcome.stage == "quick"
        assert len(sandbox.jobs) == 1

    async def test_fix_runs_the_rest_and_passes(self) -> None:
        """A full fix runs both stages and merges results with original indices."""
        evaluator, sandbox = _evaluator(lambda code, case: True)
        parent = frozenset({0, 1, 2, 3, 4, 5})
        outcome = await evaluator.evaluate("x = 1\n", parent, parent,
                                           evaluator.quick_cases(parent))
        assert outcome.status is SearchStatus.PASSED and outcome.stage == "full"
        assert [c.index for c in outcome.result.cases] == list(range(8))
        assert len(sandbox.jobs) == 2

    async def test_partial_fix_is_improved(self) -> None:
        """Fixing one more case without breaking any is improved."""
        evaluator, _ = _evaluator(_passes(0, 1, 2, 3, 4, 5, 6))
        parent = frozenset({0, 1, 2, 3, 4, 5})
        outcome = await evaluator.evaluate("x\n", parent, parent, ())
        assert outcome.status is SearchStatus.IMPROVED

    async def test_net_gain_with_a_regression_is_a_stone(self) -> None:
        """Breaking one required case but passing more overall flags a stepping stone."""
        evaluator, _ = _evaluator(_passes(1, 2, 3, 4, 5, 6, 7))
        parent = frozenset({0, 1})
        outcome = await evaluator.evaluate("x\n", parent, parent, evaluator.quick_cases(parent))
        assert outcome.status is SearchStatus.REGRESSED and outcome.stepping_stone
        assert outcome.stage == "full"

    async def test_plain_regression_stops_early(self) -> None:
        """Breaking a quick passing case without a larger gain stops at the quick stage."""
        evaluator, sandbox = _evaluator(_passes(1, 2, 3, 4, 5))
        parent = frozenset({0, 1, 2, 3, 4, 5})
        outcome = await evaluator.evaluate("x\n", parent, parent, (0, 6, 7))
        assert outcome.status is SearchStatus.REGRESSED and outcome.stage == "quick"
        assert not outcome.stepping_stone and len(sandbox.jobs) == 1


class TestDeadlines:
    """With per-case deadlines, cut cases are timeouts the outcome names, with what might be."""

    @staticmethod
    def _evaluator(seconds: object) -> tuple[CascadeEvaluator, TimedSandbox]:
        sandbox = TimedSandbox(lambda code, case: True, seconds)  # type: ignore[arg-type]
        deadlines = CaseDeadlines(2.0, multiplier=10, floor_s=0.1)
        deadlines.references.update({i: 0.001 for i in range(8)})
        deadlines.references[7] = 0.05  # a slower case: a longer deadline, its own job
        evaluator = CascadeEvaluator(sandbox, CASES, "f", rng=random.Random(0),
                                     limits=Limits(timeout_s=2.0), deadlines=deadlines)
        return evaluator, sandbox

    async def test_cut_cases_and_their_deadlines(self) -> None:
        """Cases over their deadline are cut, one job per deadline; the error says so."""
        evaluator, sandbox = self._evaluator(lambda code, case: 0.3)
        result, cut = await evaluator.run_with_deadlines("x = 1\n", range(8))
        assert sorted(job.limits.timeout_s for job in sandbox.jobs) == [0.1, 0.8]
        assert cut == frozenset(range(7))  # case 7 has 0.8 s: 0.3 s is fine there
        assert [c.status.value for c in result.cases] == ["timeout"] * 7 + ["ok"]
        assert "adaptive deadline of 0.1 s (the limit is 2 s)" in (result.cases[0].error or "")
        assert evaluator.deadlines is not None and evaluator.deadlines.cuts == 7

    async def test_a_cut_that_hides_a_pass_goes_to_the_full_stage(self) -> None:
        """A candidate the quick stage would stop only because of cuts runs every case; the
        outcome says it would pass them all but for the cuts."""
        evaluator, _ = self._evaluator(lambda code, case: 0.5)
        parent = frozenset({0, 1, 2, 3, 4, 5})
        outcome = await evaluator.evaluate("x = 1\n", parent, parent, (0, 6, 7))
        assert outcome.stage == "full" and outcome.status is SearchStatus.REGRESSED
        assert outcome.cut == frozenset(range(7))
        assert outcome.optimistic is SearchStatus.PASSED

    async def test_fast_programs_are_never_cut(self) -> None:
        """Within the deadline nothing is cut and there is no optimistic status."""
        evaluator, _ = self._evaluator(lambda code, case: 0.01)
        outcome = await evaluator.evaluate("x = 1\n", frozenset(), frozenset(), ())
        assert outcome.status is SearchStatus.PASSED
        assert outcome.cut == frozenset() and outcome.optimistic is None
