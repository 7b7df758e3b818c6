"""What the workflow search reports: its progress while it runs and its result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from auto_dev.workflows._search_tasks import TaskResult


@dataclass(frozen=True)
class WorkflowSearchProgress:
    """Where a running search is (for progress bars)."""

    evaluations: int
    budget: int
    best_passed: int
    total: int
    elapsed_s: float


@dataclass(frozen=True)
class FrontMember:
    """A variant on the final front: what it solves and its objectives."""

    id: str
    digest: str
    passed: tuple[int, ...]
    scores: dict[str, float]
    operator: str
    note: str
    definition: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "hash": self.digest, "passed": list(self.passed),
                "objectives": self.scores, "operator": self.operator, "note": self.note,
                "definition": self.definition}


@dataclass(frozen=True)
class WorkflowSearchResult:
    """What :func:`evolve_workflow` found. ``tasks`` are the best definition's results;
    ``cost_usd`` is the LLM cost of every run the search made plus the model operators' calls."""

    best: dict[str, Any]
    original: dict[str, Any]
    passed: int
    total: int
    original_passed: int
    evaluations: int
    improved: bool
    seconds: float
    cost_usd: float
    stop_reason: str  # "solved", "already_passing", "budget" or "exhausted"
    tasks: tuple[TaskResult, ...]
    original_tasks: tuple[TaskResult, ...]
    front: tuple[FrontMember, ...]
    lineage: tuple[str, ...]
    scores: dict[str, float]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def pass_rate(self) -> float:
        return self.passed / self.total if self.total else 0.0

    @property
    def solved(self) -> bool:
        return self.passed == self.total

    def to_dict(self) -> dict[str, Any]:
        return {
            "best_workflow": self.best, "pass_rate": self.pass_rate, "passed": self.passed,
            "total": self.total, "original_passed": self.original_passed,
            "evaluations": self.evaluations, "improved": self.improved,
            "seconds": self.seconds, "cost_usd": self.cost_usd, "stop_reason": self.stop_reason,
            "tasks": [r.summary() for r in self.tasks],
            "original_tasks": [r.summary() for r in self.original_tasks],
            "front": [m.to_dict() for m in self.front], "lineage": list(self.lineage),
            "objectives": self.scores, "counts": dict(self.counts),
        }
