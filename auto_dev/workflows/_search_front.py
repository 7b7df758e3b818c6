"""Selection in the workflow search: objectives, the per-task Pareto front, parent tournaments.

Every variant kept by the search ran every task. Variant ``a`` *dominates* ``b`` when ``a``
solves every task ``b`` solves and is no worse on any objective, and is strictly better
somewhere (one more task solved, or a real gain on an objective). The front is the set of
kept variants nothing dominates; because success is compared task by task, a variant that alone
solves some task is never dominated, however costly it is.

Objectives are measured over a variant's task results and minimised. The defaults are the LLM
cost of the runs (``cost_usd``), the steps they executed and their latency (``latency_s``).
Latency is wall-clock time and noisy, so it only counts when the difference is real (more than
20% and 5 ms): otherwise two equal variants would take turns dominating each other and a seed
would not give the same search twice.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from auto_dev._exceptions import ValidationError
from auto_dev.workflows._search_tasks import TaskResult

Measure = Callable[[Sequence[TaskResult]], float]


@dataclass(frozen=True)
class WorkflowObjective:
    """One thing to minimise over a variant's task results (all tasks, in task order).

    Two values count as different only when they differ by more than ``absolute`` and by more
    than ``relative`` times the larger one.
    """

    name: str
    measure: Measure
    absolute: float = 0.0
    relative: float = 0.0

    def rank_value(self, value: float) -> float:
        """``value`` for ranking: on a grid of ``absolute`` when that is set, so that noise
        below it cannot reorder two variants."""
        return math.floor(value / self.absolute) if self.absolute > 0 else value

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` is really lower than ``b``."""
        gap = b - a
        return gap > self.absolute and gap > self.relative * max(abs(a), abs(b))


def _cost(results: Sequence[TaskResult]) -> float:
    return sum(r.cost_usd for r in results)


def _steps(results: Sequence[TaskResult]) -> float:
    return float(sum(r.steps_executed for r in results))


def _latency(results: Sequence[TaskResult]) -> float:
    return sum(r.seconds for r in results)


#: The objectives used when the caller gives none, in the order ties are broken.
DEFAULT_OBJECTIVES: tuple[WorkflowObjective, ...] = (
    WorkflowObjective("cost_usd", _cost, absolute=1e-9),
    WorkflowObjective("steps", _steps),
    WorkflowObjective("latency_s", _latency, absolute=0.005, relative=0.2),
)


def resolve_objectives(
    objectives: Sequence[WorkflowObjective] | Mapping[str, Measure] | None,
) -> tuple[WorkflowObjective, ...]:
    """The objectives a search uses: the defaults, or the caller's (a sequence of
    :class:`WorkflowObjective`, or a mapping of name to a callable over the task results)."""
    if objectives is None:
        return DEFAULT_OBJECTIVES
    if isinstance(objectives, Mapping):
        items = [WorkflowObjective(str(name), fn) for name, fn in objectives.items()]
    else:
        items = list(objectives)
    names: set[str] = set()
    for i, objective in enumerate(items):
        if not isinstance(objective, WorkflowObjective):
            raise ValidationError(f"objectives[{i}]", f"must be a WorkflowObjective, got "
                                                      f"{type(objective).__name__}")
        if not callable(objective.measure):
            raise ValidationError(f"objectives.{objective.name}", "must be callable")
        if objective.name in names:
            raise ValidationError(f"objectives.{objective.name}", "is given twice")
        names.add(objective.name)
    return tuple(items)


@dataclass(eq=False)
class Variant:
    """A workflow definition the search evaluated on every task."""

    id: str
    definition: dict[str, Any]
    digest: str
    results: tuple[TaskResult, ...]
    scores: dict[str, float]
    parent: Variant | None = None
    operator: str = "original"
    note: str = ""
    evaluation: int = 0
    #: Rounds of proposals from this parent that brought nothing new.
    dry_rounds: int = 0
    exhausted: bool = False
    pending: list[Any] = field(default_factory=list)

    @property
    def passed(self) -> frozenset[int]:
        return frozenset(r.index for r in self.results if r.passed)

    @property
    def solved(self) -> int:
        return sum(1 for r in self.results if r.passed)

    def lineage(self) -> list[Variant]:
        chain: list[Variant] = []
        node: Variant | None = self
        while node is not None:
            chain.append(node)
            node = node.parent
        return chain[::-1]


def score(results: Sequence[TaskResult], objectives: Sequence[WorkflowObjective]
          ) -> dict[str, float]:
    """Every objective measured over ``results``."""
    return {o.name: float(o.measure(results)) for o in objectives}


def variant_dominates(a: Variant, b: Variant, objectives: Sequence[WorkflowObjective]) -> bool:
    """Whether ``a`` dominates ``b`` (see the module docstring)."""
    if not a.passed >= b.passed:
        return False
    strictly = a.passed > b.passed
    for objective in objectives:
        va, vb = a.scores[objective.name], b.scores[objective.name]
        if objective.better(vb, va):
            return False
        if objective.better(va, vb):
            strictly = True
    return strictly


def variant_front(variants: Sequence[Variant], objectives: Sequence[WorkflowObjective]
                 ) -> list[Variant]:
    """The variants nothing else dominates, in the order given."""
    return [v for v in variants
            if not any(o is not v and variant_dominates(o, v, objectives) for o in variants)]


def rank_key(variant: Variant, objectives: Sequence[WorkflowObjective]) -> tuple[Any, ...]:
    """Sort key, best first: most tasks solved, then each objective in order, then the
    earliest evaluated (so that ties never depend on anything but the run)."""
    return (-variant.solved, *(o.rank_value(variant.scores[o.name]) for o in objectives),
            variant.evaluation)


def best_of(variants: Sequence[Variant], objectives: Sequence[WorkflowObjective]) -> Variant:
    return min(variants, key=lambda v: rank_key(v, objectives))


def tournament(
    pool: Sequence[Variant], rng: random.Random, objectives: Sequence[WorkflowObjective],
    size: int = 2,
) -> Variant | None:
    """A parent: the best (tasks solved, then the objectives) of ``size`` drawn from ``pool``."""
    if not pool:
        return None
    entrants = rng.sample(list(pool), min(size, len(pool)))
    return best_of(entrants, objectives)
