"""The default objectives and the evaluation record they read.

An *evaluation* is a plain dict built by :class:`auto_dev.fitness.service.FitnessService` from a
sandbox result; every objective maps it to one float. The pass-rate objective carries the hard
constraint of the system: a candidate may not fail a case its parent passed. Its violation is the
number of such regressions, so constraint-domination (see :mod:`auto_dev.fitness.pareto`) ranks
a candidate that breaks one case above one that breaks three, and both below any that breaks none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from auto_dev._exceptions import ValidationError
from auto_dev.abc import Objective

#: Key under which an objective vector stores its total constraint violation.
VIOLATION = "constraint_violation"

#: Fields every evaluation dict carries.
EVALUATION_FIELDS = (
    "pass_rate", "passed", "total", "latency_s", "peak_memory_kb", "code_size", "llm_cost_usd",
    "regressions",
)


def _field(name: str) -> Any:
    def read(evaluation: Mapping[str, Any]) -> float:
        try:
            value = float(evaluation[name])
        except KeyError as exc:
            raise ValidationError(f"evaluation.{name}", "is missing") from exc
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"evaluation.{name}", "must be a number") from exc
        if math.isnan(value):
            raise ValidationError(f"evaluation.{name}", "must not be NaN")
        return value

    read.__name__ = f"read_{name}"
    return read


def regressions(evaluation: Mapping[str, Any]) -> float:
    """Cases the parent (or active version) passed that this candidate fails."""
    return float(evaluation.get("regressions", 0) or 0)


PASS_RATE = Objective("pass_rate", "max", _field("pass_rate"), constraint=regressions)
LATENCY = Objective("latency_s", "min", _field("latency_s"))
PEAK_MEMORY = Objective("peak_memory_kb", "min", _field("peak_memory_kb"))
CODE_SIZE = Objective("code_size", "min", _field("code_size"))
LLM_COST = Objective("llm_cost_usd", "min", _field("llm_cost_usd"))

#: pass rate (max, no regressions), latency (min), peak memory (min), code size (min), LLM cost.
DEFAULT_OBJECTIVES: tuple[Objective, ...] = (PASS_RATE, LATENCY, PEAK_MEMORY, CODE_SIZE, LLM_COST)


def objective_vector(
    evaluation: Mapping[str, Any], objectives: Sequence[Objective] = DEFAULT_OBJECTIVES
) -> dict[str, float]:
    """``{objective name: value, ..., VIOLATION: total constraint violation}``."""
    vector = {obj.name: float(obj.fn(dict(evaluation))) for obj in objectives}
    violation = 0.0
    for obj in objectives:
        if obj.constraint is not None:
            amount = float(obj.constraint(dict(evaluation)))
            if amount < 0 or math.isnan(amount):
                raise ValidationError(f"objectives.{obj.name}.constraint",
                                      "must return a non-negative violation")
            violation += amount
    vector[VIOLATION] = violation
    return vector


def check_objectives(objectives: Sequence[Objective]) -> None:
    """Refuse an empty list, duplicate names, a bad direction or the reserved violation name."""
    if not objectives:
        raise ValidationError("objectives", "must not be empty")
    names = [o.name for o in objectives]
    for obj in objectives:
        if obj.direction not in ("max", "min"):
            raise ValidationError(f"objectives.{obj.name}.direction", "must be 'max' or 'min'")
        if obj.name == VIOLATION:
            raise ValidationError(f"objectives.{obj.name}", "is a reserved name")
        if names.count(obj.name) > 1:
            raise ValidationError(f"objectives.{obj.name}", "is listed twice")
