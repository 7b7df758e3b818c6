"""The knobs of :class:`~auto_dev.evolution.search.EvolutionSearch` besides budget, seed and
limits (also importable from :mod:`auto_dev.evolution.search`)."""

from __future__ import annotations

from dataclasses import dataclass

from auto_dev._exceptions import ValidationError


@dataclass(frozen=True, slots=True)
class SearchConfig:
    """Knobs of the loop besides budget, seed and limits (validated on construction)."""

    n_islands: int = 4
    island_capacity: int = 24
    migration_interval: int = 25
    batch_size: int = 4
    #: Candidate evaluations in flight at once. ``None`` (the default): as many as the
    #: sandbox runs at once (:attr:`auto_dev.abc.Sandbox.slots`: the process or Docker pool
    #: size, a Ray cluster's slots); a number overrides the sandbox's figure.
    concurrency: int | None = None
    quick_failing: int = 6
    quick_passing: int = 2
    cascade_min_cases: int = 5
    n_inspirations: int = 2
    max_idle_steps: int = 60
    continue_after_solved: bool = False
    adaptive_timeout: bool = True
    stone_rate: float = 0.15
    seed_rate: float = 0.4
    float_tolerance: float = 1e-6
    keep_candidate_stats: bool = True
    feedback_cases: int = 4
    #: "case": a deadline per case from measured time (``deadline_multiplier`` x the
    #: reference time, at least ``deadline_floor_s``); "seed": one timeout for every case from
    #: the seed's slowest passing case (the search before issue 11). Either way the limit the
    #: caller gives is the ceiling, and ``adaptive_timeout=False`` turns both off.
    deadline_mode: str = "case"
    deadline_multiplier: float = 10.0
    deadline_floor_s: float = 0.1
    #: Candidates only deadline cuts kept from passing, kept for a re-check at the full limit;
    #: one is re-checked after ``recheck_patience`` evaluations without a new best.
    recheck_capacity: int = 8
    recheck_patience: int = 32
    #: Merge partial fixes, promote stepping stones that pass new cases, show model mutators
    #: the edits that helped elsewhere.
    compose: bool = True
    #: Move a model mutator on from parents whose answers keep being wasted.
    waste_control: bool = True
    waste_patience: int = 6

    @classmethod
    def legacy(cls, **changes: object) -> SearchConfig:
        """The search before adaptive per-case deadlines, composed edits and waste control."""
        base: dict[str, object] = {"deadline_mode": "seed", "compose": False,
                                   "waste_control": False}
        return cls(**{**base, **changes})  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        for name in ("n_islands", "island_capacity", "migration_interval", "batch_size",
                     "max_idle_steps"):
            if int(getattr(self, name)) < 1:
                raise ValidationError(f"config.{name}", "must be at least 1")
        if self.concurrency is not None and (
                isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int)
                or self.concurrency < 1):
            raise ValidationError("config.concurrency",
                                  "must be an integer of at least 1 (or None: the sandbox's slots)")
        for name in ("quick_failing", "quick_passing", "cascade_min_cases", "n_inspirations",
                     "feedback_cases"):
            if int(getattr(self, name)) < 0:
                raise ValidationError(f"config.{name}", "must not be negative")
        for name in ("stone_rate", "seed_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValidationError(f"config.{name}", "must be between 0 and 1")
        if self.stone_rate + self.seed_rate > 1:
            raise ValidationError("config.seed_rate", "stone_rate + seed_rate must not exceed 1")
        if not 0 <= self.float_tolerance < 1:
            raise ValidationError("config.float_tolerance", "must be in [0, 1)")
        if self.deadline_mode not in ("case", "seed"):
            raise ValidationError("config.deadline_mode", "must be 'case' or 'seed'")
        if not self.deadline_multiplier >= 1:
            raise ValidationError("config.deadline_multiplier", "must be at least 1")
        if not self.deadline_floor_s > 0:
            raise ValidationError("config.deadline_floor_s", "must be a positive number")
        for name in ("recheck_capacity", "recheck_patience"):
            if int(getattr(self, name)) < 0:
                raise ValidationError(f"config.{name}", "must not be negative")
        if int(self.waste_patience) < 1:
            raise ValidationError("config.waste_patience", "must be at least 1")
