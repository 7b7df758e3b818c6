"""FitnessService: from a sandbox result, the code and its LLM cost to an objective vector."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from auto_dev._exceptions import ValidationError
from auto_dev.abc import Objective
from auto_dev.evolution.dedup import code_size
from auto_dev.fitness.objectives import (
    DEFAULT_OBJECTIVES,
    VIOLATION,
    check_objectives,
    objective_vector,
)
from auto_dev.sandbox.base import SandboxResult


class FitnessService:
    """Scores evaluations on a fixed list of objectives.

    ``evaluation()`` builds the raw record (pass rate, latency, memory, size, cost, regressions)
    that objectives read; ``score()`` returns the objective vector with the total constraint
    violation under :data:`~auto_dev.fitness.objectives.VIOLATION`.
    """

    def __init__(self, objectives: Sequence[Objective] = DEFAULT_OBJECTIVES) -> None:
        check_objectives(objectives)
        self.objectives = tuple(objectives)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.objectives)

    def evaluation(
        self,
        result: SandboxResult,
        code: str,
        *,
        llm_cost_usd: float = 0.0,
        baseline_passed: Iterable[int] | None = None,
        size: int | None = None,
    ) -> dict[str, Any]:
        """The evaluation record of ``result``.

        ``latency_s`` is the mean duration of the cases that ran; ``regressions`` counts the
        cases in ``baseline_passed`` (the parent's or active version's passes) not passed now.
        A job-level sandbox error scores pass rate 0 whatever the cases say. ``size`` is the
        code size when the caller already measured it (saves a parse).
        """
        if llm_cost_usd < 0:
            raise ValidationError("llm_cost_usd", "must not be negative")
        passed_set = result.passed_indices() if result.error is None else frozenset()
        ran = len(result.cases)
        regressions = 0
        if baseline_passed is not None:
            regressions = len(set(baseline_passed) - passed_set)
        return {
            "pass_rate": len(passed_set) / result.total if result.total else 0.0,
            "passed": len(passed_set),
            "total": result.total,
            "latency_s": result.case_seconds / ran if ran else 0.0,
            "peak_memory_kb": float(result.peak_memory_kb),
            "code_size": float(code_size(code) if size is None else size),
            "llm_cost_usd": float(llm_cost_usd),
            "regressions": regressions,
        }

    def vector(self, evaluation: Mapping[str, Any]) -> dict[str, float]:
        """Objective vector of an evaluation record."""
        return objective_vector(evaluation, self.objectives)

    def score(
        self,
        result: SandboxResult,
        code: str,
        *,
        llm_cost_usd: float = 0.0,
        baseline_passed: Iterable[int] | None = None,
        size: int | None = None,
    ) -> dict[str, float]:
        """``SandboxResult`` + code + cost -> ``{objective: value, ..., VIOLATION: amount}``."""
        return self.vector(self.evaluation(result, code, llm_cost_usd=llm_cost_usd,
                                           baseline_passed=baseline_passed, size=size))


__all__ = ["VIOLATION", "FitnessService"]
