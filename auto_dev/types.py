"""Leaf value types shared by the contracts (:mod:`auto_dev.abc`) and the framework.

Nothing here touches the database or imports the rest of auto-dev (only the error tree, itself a
leaf), so the interfaces can name these types without pulling storage code into a plugin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from auto_dev._exceptions import ValidationError

#: Why a cycle runs: asked for by a person or program, caused by an event, or fired by a schedule.
TRIGGERS = ("manual", "event", "schedule")
#: The most evaluations one cycle may ask for; a larger budget is a mistake, not a wish.
MAX_CYCLE_BUDGET = 1_000_000
#: The longest deadline one cycle may have (a day).
MAX_CYCLE_DEADLINE_S = 86_400.0


@dataclass(frozen=True, slots=True)
class CycleRequest:
    """One cycle to run: which engine, on what, for whom, within which budget and deadline.

    ``agent`` is the agent the cycle acts for (its maturity is what the gate checks); ``None``
    lets the engine name the agent whose failures the cycle answers. Every field is validated on
    construction, so a request that exists is one the pipeline can run.
    """

    tenant_id: str
    engine: str
    target: str
    budget: int
    trigger: str = "manual"
    agent: str | None = None
    deadline_s: float | None = None
    job_id: str | None = None

    def __post_init__(self) -> None:
        for name in ("tenant_id", "engine", "target"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValidationError(name, "must be a non-empty string")
            if len(value) > 200:
                raise ValidationError(name, "must be at most 200 characters")
        if isinstance(self.budget, bool) or not isinstance(self.budget, int):
            raise ValidationError("budget", f"must be an integer, got {self.budget!r}")
        if not 1 <= self.budget <= MAX_CYCLE_BUDGET:
            raise ValidationError(
                "budget", f"must be between 1 and {MAX_CYCLE_BUDGET:,} evaluations, "
                f"got {self.budget}")
        if self.trigger not in TRIGGERS:
            raise ValidationError("trigger", f"must be one of {', '.join(TRIGGERS)}")
        if self.agent is not None and (not isinstance(self.agent, str) or not self.agent):
            raise ValidationError("agent", "must be a non-empty string or None")
        if self.deadline_s is not None and (
            isinstance(self.deadline_s, bool)
            or not isinstance(self.deadline_s, int | float)
            or not math.isfinite(self.deadline_s)
            or not 0 < self.deadline_s <= MAX_CYCLE_DEADLINE_S
        ):
            raise ValidationError(
                "deadline_s", f"must be a number of seconds in (0, {MAX_CYCLE_DEADLINE_S:g}]")


@dataclass(slots=True)
class EvolutionRunResult:
    """What one cycle did. ``status``: completed, skipped, denied, failed or interrupted."""

    engine: str
    target: str
    status: str
    reason: str = ""
    run_id: str | None = None
    evaluations: int = 0
    candidate_ids: list[str] = field(default_factory=list)
    offered_ids: list[str] = field(default_factory=list)
    promoted_ids: list[str] = field(default_factory=list)
    pass_rate_before: float = 0.0
    pass_rate_after: float = 0.0
    strategy: str = ""
    seconds: float = 0.0
    tenant_id: str = ""
    stats: dict[str, object] = field(default_factory=dict)

    @property
    def improved(self) -> bool:
        return self.pass_rate_after > self.pass_rate_before

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> EvolutionRunResult:
        """The inverse of :meth:`to_dict` (a cycle job's stored outcome)."""
        known = {k: v for k, v in data.items() if k in _RESULT_FIELDS}
        return cls(**known)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready summary (stored on the cycle job, printed by ``--json`` commands)."""
        return {
            "engine": self.engine, "target": self.target, "tenant_id": self.tenant_id,
            "status": self.status, "reason": self.reason, "run_id": self.run_id,
            "evaluations": self.evaluations, "candidate_ids": list(self.candidate_ids),
            "offered_ids": list(self.offered_ids), "promoted_ids": list(self.promoted_ids),
            "pass_rate_before": self.pass_rate_before, "pass_rate_after": self.pass_rate_after,
            "strategy": self.strategy, "seconds": round(self.seconds, 3),
        }


_RESULT_FIELDS = frozenset(
    ("engine", "target", "tenant_id", "status", "reason", "run_id", "evaluations",
     "candidate_ids", "offered_ids", "promoted_ids", "pass_rate_before", "pass_rate_after",
     "strategy", "seconds"))
