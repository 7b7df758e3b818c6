"""Properties and examples for constraint-domination, non-dominated sorting and crowding."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from auto_dev._exceptions import ValidationError
from auto_dev.evolution.program import Program
from auto_dev.fitness.objectives import VIOLATION
from auto_dev.fitness.pareto import (
    crowding_distance,
    dominance_matrix,
    dominates,
    fronts,
    is_promotable,
    non_dominated_ranks,
    pareto_front,
    promotion_verdict,
    select,
    to_minimisation,
)

# Small integer grids make ties and duplicates common, which is where sorting bugs hide.
values = st.integers(min_value=0, max_value=6).map(float)


@st.composite
def problems(draw: st.DrawFn, max_rows: int = 24) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(min_value=1, max_value=max_rows))
    m = draw(st.integers(min_value=1, max_value=4))
    F = draw(arrays(float, (n, m), elements=values))
    v = draw(arrays(float, (n,), elements=st.sampled_from([0.0, 0.0, 0.0, 1.0, 2.0])))
    return F, v


class TestSortingProperties:
    """Hypothesis properties of non-dominated sorting."""

    @given(problems())
    @settings(max_examples=150, deadline=None)
    def test_no_front_member_is_dominated(self, problem: tuple[np.ndarray, np.ndarray]) -> None:
        """No member of the first front is constraint-dominated by any row."""
        F, v = problem
        D = dominance_matrix(F, v)
        first = np.flatnonzero(non_dominated_ranks(F, v) == 0)
        assert first.size > 0
        assert not D[:, first].any()

    @given(problems(), st.randoms(use_true_random=False))
    @settings(max_examples=150, deadline=None)
    def test_ranking_is_invariant_to_order(
        self, problem: tuple[np.ndarray, np.ndarray], rnd: object
    ) -> None:
        """Permuting the rows permutes the ranks the same way."""
        F, v = problem
        perm = np.array(rnd.sample(range(len(F)), len(F)))  # type: ignore[attr-defined]
        ranks = non_dominated_ranks(F, v)
        assert np.array_equal(non_dominated_ranks(F[perm], v[perm]), ranks[perm])
        crowd = crowding_distance(F)
        assert np.array_equal(crowding_distance(F[perm]), crowd[perm])

    @given(problems())
    @settings(max_examples=150, deadline=None)
    def test_violators_never_rank_above_feasible(
        self, problem: tuple[np.ndarray, np.ndarray]
    ) -> None:
        """Every feasible row has a better (smaller) rank than every infeasible row."""
        F, v = problem
        ranks = non_dominated_ranks(F, v)
        feasible, infeasible = ranks[v == 0], ranks[v > 0]
        if feasible.size and infeasible.size:
            assert feasible.max() < infeasible.min()

    @given(problems())
    @settings(max_examples=150, deadline=None)
    def test_later_fronts_are_dominated_by_earlier(
        self, problem: tuple[np.ndarray, np.ndarray]
    ) -> None:
        """Each row of front k > 0 is dominated by some row of front k - 1."""
        F, v = problem
        D = dominance_matrix(F, v)
        parts = fronts(F, v)
        assert sum(len(p) for p in parts) == len(F)
        for previous, current in itertools.pairwise(parts):
            assert D[np.ix_(previous, current)].any(axis=0).all()

    @given(problems())
    @settings(max_examples=100, deadline=None)
    def test_boundary_points_have_infinite_crowding(
        self, problem: tuple[np.ndarray, np.ndarray]
    ) -> None:
        """Rows attaining the min or max of a varying objective get an infinite distance."""
        F, _ = problem
        d = crowding_distance(F)
        if len(F) <= 2:
            assert np.isinf(d).all()
            return
        for j in range(F.shape[1]):
            col = F[:, j]
            if col.min() < col.max():
                assert np.isinf(d[(col == col.min()) | (col == col.max())]).all()
        assert (d >= 0).all()

    @given(problems(), st.integers(min_value=0, max_value=30))
    @settings(max_examples=100, deadline=None)
    def test_select_takes_whole_better_fronts_first(
        self, problem: tuple[np.ndarray, np.ndarray], k: int
    ) -> None:
        """Selected rows never have a worse rank than an unselected row."""
        F, v = problem
        chosen = select(F, v, k)
        assert len(chosen) == min(k, len(F)) and len(set(chosen.tolist())) == len(chosen)
        ranks = non_dominated_ranks(F, v)
        rest = np.setdiff1d(np.arange(len(F)), chosen)
        if len(chosen) and len(rest):
            assert ranks[chosen].max() <= ranks[rest].min()


class TestExamples:
    """Hand-checked cases."""

    def test_dominates(self) -> None:
        """Pareto dominance needs no-worse everywhere and better somewhere."""
        assert dominates(np.array([1.0, 2.0]), np.array([1.0, 3.0]))
        assert not dominates(np.array([1.0, 2.0]), np.array([1.0, 2.0]))
        assert not dominates(np.array([0.0, 3.0]), np.array([1.0, 2.0]))

    def test_lower_violation_wins_regardless_of_objectives(self) -> None:
        """A slightly violating row is dominated by a feasible but worse row."""
        F = np.array([[0.0, 0.0], [5.0, 5.0]])
        v = np.array([1.0, 0.0])
        assert non_dominated_ranks(F, v).tolist() == [1, 0]

    def test_max_objectives_are_negated(self) -> None:
        """to_minimisation flips pass_rate (max) and keeps latency (min)."""
        vectors = [
            {"pass_rate": 1.0, "latency_s": 0.2, "peak_memory_kb": 1, "code_size": 10,
             "llm_cost_usd": 0, VIOLATION: 0.0},
            {"pass_rate": 0.5, "latency_s": 0.1, "peak_memory_kb": 1, "code_size": 10,
             "llm_cost_usd": 0, VIOLATION: 2.0},
        ]
        F, v = to_minimisation(vectors)
        assert F[0, 0] == -1.0 and F[1, 1] == 0.1 and v.tolist() == [0.0, 2.0]
        assert pareto_front(vectors) == [0]

    def test_missing_objective_names_the_field(self) -> None:
        """A vector without an objective is refused with the field named."""
        with pytest.raises(ValidationError) as info:
            to_minimisation([{"pass_rate": 1.0}])
        assert info.value.field == "vectors[0].latency_s"

    def test_nan_is_refused(self) -> None:
        """NaN objective values are refused."""
        with pytest.raises(ValidationError):
            non_dominated_ranks(np.array([[np.nan, 1.0]]))

    def test_infinite_values_do_not_break_crowding(self) -> None:
        """An infinite latency still yields finite interior distances."""
        F = np.array([[0.0, 1.0], [1.0, np.inf], [2.0, 3.0], [3.0, 2.0]])
        d = crowding_distance(F)
        assert not np.isnan(d).any()


def _program(passed: set[int], **scores: float) -> Program:
    base = {"pass_rate": len(passed) / 4, "latency_s": 0.01, "peak_memory_kb": 1000.0,
            "code_size": 40.0, "llm_cost_usd": 0.0, VIOLATION: 0.0}
    base.update(scores)
    return Program(code="", entrypoint="f", scores=base, passed_cases=frozenset(passed))


class TestPromotion:
    """is_promotable: non-dominated, strictly better somewhere, nothing broken."""

    def test_more_cases_is_promotable(self) -> None:
        """Passing an extra case without breaking any is promotable."""
        assert is_promotable(_program({0, 1, 2}), _program({0, 1}))

    def test_breaking_a_case_is_not(self) -> None:
        """Breaking a case the active version passes blocks promotion even with a higher rate."""
        verdict = promotion_verdict(_program({0, 2, 3}), _program({0, 1}))
        assert not verdict.promotable and "breaks 1 case" in verdict.reason

    def test_equal_is_not(self) -> None:
        """An equal candidate is not strictly better on anything."""
        assert not is_promotable(_program({0, 1}), _program({0, 1}))

    def test_latency_noise_is_not_an_improvement(self) -> None:
        """A 2 % latency gain is within tolerance; a 50 % gain is real."""
        active = _program({0, 1, 2, 3}, latency_s=0.010)
        assert not is_promotable(_program({0, 1, 2, 3}, latency_s=0.0098), active)
        assert is_promotable(_program({0, 1, 2, 3}, latency_s=0.005), active)

    def test_trade_off_is_promotable_unless_dominated_by_population(self) -> None:
        """Faster but bigger is promotable, unless another candidate dominates it."""
        active = _program({0, 1}, latency_s=0.02, code_size=30.0)
        candidate = _program({0, 1}, latency_s=0.01, code_size=50.0)
        assert is_promotable(candidate, active)
        better = _program({0, 1}, latency_s=0.005, code_size=40.0)
        verdict = promotion_verdict(candidate, active, population=[better])
        assert not verdict.promotable and "another candidate" in verdict.reason

    def test_violation_blocks_promotion(self) -> None:
        """A candidate with a constraint violation is never promotable."""
        assert not is_promotable(_program({0, 1, 2}, **{VIOLATION: 1.0}), _program({0, 1}))

    def test_missing_scores_name_the_field(self) -> None:
        """A candidate without scores is refused with the field named."""
        bare = Program(code="", entrypoint="f")
        with pytest.raises(ValidationError) as info:
            is_promotable(bare, _program(set()))
        assert info.value.field == "candidate.scores.pass_rate"
