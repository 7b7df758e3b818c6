"""Tests for the default objectives and the FitnessService."""

from __future__ import annotations

import pytest

from auto_dev._exceptions import ValidationError
from auto_dev.abc import Objective
from auto_dev.fitness.objectives import (
    DEFAULT_OBJECTIVES,
    VIOLATION,
    check_objectives,
    objective_vector,
)
from auto_dev.fitness.service import FitnessService
from auto_dev.sandbox.base import CaseResult, CaseStatus, SandboxResult


def _result(statuses: list[CaseStatus], *, error: str | None = None) -> SandboxResult:
    cases = tuple(
        CaseResult(index=i, status=s, duration_s=0.01 * (i + 1), peak_memory_kb=100 * (i + 1))
        for i, s in enumerate(statuses)
    )
    return SandboxResult(backend="test", cases=cases, total=len(statuses), error=error)


CODE = 'def f(x):\n    """Doc."""\n    return x + 1\n'


class TestFitnessService:
    """SandboxResult + code + cost -> objective vector."""

    def test_vector_fields(self) -> None:
        """Pass rate, mean latency, peak memory, AST size and cost are all filled."""
        ok, bad = CaseStatus.OK, CaseStatus.WRONG_ANSWER
        vector = FitnessService().score(_result([ok, bad, ok]), CODE, llm_cost_usd=0.25)
        assert vector["pass_rate"] == pytest.approx(2 / 3)
        assert vector["latency_s"] == pytest.approx(0.02)
        assert vector["peak_memory_kb"] == 300
        assert vector["llm_cost_usd"] == 0.25
        assert vector[VIOLATION] == 0.0
        # Docstrings and comments do not count towards code size.
        same = FitnessService().score(_result([ok]), "def f(x):\n    return x + 1  # c\n")
        assert vector["code_size"] == same["code_size"]

    def test_regressions_are_the_violation(self) -> None:
        """Each baseline case no longer passed adds one to the constraint violation."""
        ok, bad = CaseStatus.OK, CaseStatus.ERROR
        vector = FitnessService().score(_result([bad, bad, ok]), CODE, baseline_passed={0, 1, 2})
        assert vector[VIOLATION] == 2.0

    def test_job_error_means_nothing_passed(self) -> None:
        """A job-level sandbox error scores pass rate 0 whatever the cases say."""
        vector = FitnessService().score(_result([CaseStatus.OK], error="boom"), CODE,
                                        baseline_passed={0})
        assert vector["pass_rate"] == 0.0 and vector[VIOLATION] == 1.0

    def test_negative_cost_is_refused(self) -> None:
        """A negative LLM cost is bad input."""
        with pytest.raises(ValidationError) as info:
            FitnessService().score(_result([CaseStatus.OK]), CODE, llm_cost_usd=-1.0)
        assert info.value.field == "llm_cost_usd"


class TestObjectives:
    """Objective definitions and validation."""

    def test_defaults(self) -> None:
        """The five default objectives with their directions; only pass_rate is constrained."""
        assert [(o.name, o.direction) for o in DEFAULT_OBJECTIVES] == [
            ("pass_rate", "max"), ("latency_s", "min"), ("peak_memory_kb", "min"),
            ("code_size", "min"), ("llm_cost_usd", "min"),
        ]
        assert [o.name for o in DEFAULT_OBJECTIVES if o.constraint] == ["pass_rate"]

    def test_missing_field_is_named(self) -> None:
        """An evaluation without latency names evaluation.latency_s."""
        with pytest.raises(ValidationError) as info:
            objective_vector({"pass_rate": 1.0})
        assert info.value.field == "evaluation.latency_s"

    @pytest.mark.parametrize(
        ("objectives", "field"),
        [
            ([], "objectives"),
            ([Objective("a", "up", lambda e: 0.0)], "objectives.a.direction"),  # type: ignore[arg-type]
            ([Objective("a", "max", lambda e: 0.0)] * 2, "objectives.a"),
            ([Objective(VIOLATION, "min", lambda e: 0.0)], f"objectives.{VIOLATION}"),
        ],
    )
    def test_bad_objective_lists(self, objectives: list[Objective], field: str) -> None:
        """Empty lists, bad directions, duplicates and the reserved name are refused."""
        with pytest.raises(ValidationError) as info:
            check_objectives(objectives)
        assert info.value.field == field

    def test_negative_constraint_is_refused(self) -> None:
        """A constraint function returning a negative amount is a programming error."""
        obj = Objective("a", "max", lambda e: 1.0, constraint=lambda e: -1.0)
        with pytest.raises(ValidationError):
            objective_vector({}, [obj])
