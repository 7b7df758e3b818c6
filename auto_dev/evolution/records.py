"""What an evolution search reports: per-candidate records, progress, and the final result."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from auto_dev.evolution.program import Program, Proposal
from auto_dev.sandbox.base import SandboxResult

if TYPE_CHECKING:
    from auto_dev.llm.health import LLMHealthReport


class SearchStatus(enum.StrEnum):
    """Outcome of one proposal. Only ``passed`` means every case passed."""

    PASSED = "passed"  # every case passes
    IMPROVED = "improved"  # passes a strict superset of the parent's cases
    NO_GAIN = "no_gain"  # breaks nothing but fixes none of the parent's failing cases
    REGRESSED = "regressed"  # fails a case the parent passed: the hard constraint
    # Filtered before any sandbox run (never counted against the budget):
    SYNTAX_ERROR = "syntax_error"
    TRIVIAL = "trivial"  # empty, comment-only, docstring-only
    NO_ENTRYPOINT = "no_entrypoint"  # does not define the function to call
    UNCHANGED = "unchanged"  # same normalised AST as the parent
    DUPLICATE = "duplicate"  # same normalised AST as a program already seen

    @property
    def filtered(self) -> bool:
        return self in _FILTERED

    @property
    def accepted(self) -> bool:
        """True for outcomes that may enter the population (no regression, some gain)."""
        return self in (SearchStatus.PASSED, SearchStatus.IMPROVED)


_FILTERED = frozenset({
    SearchStatus.SYNTAX_ERROR, SearchStatus.TRIVIAL, SearchStatus.NO_ENTRYPOINT,
    SearchStatus.UNCHANGED, SearchStatus.DUPLICATE,
})


@dataclass(frozen=True, slots=True)
class CandidateRecord:
    """Everything known about one proposal, handed to the search hooks.

    ``stage`` is ``"filter"`` (never ran), ``"quick"`` (stopped after the cascade's quick cases)
    or ``"full"``. ``result`` uses the original case indices; after a quick-stage stop it holds
    only the quick cases. ``objectives`` is the objective vector of ``result`` (over the cases
    that ran) with the regression count as constraint violation; empty for filtered proposals.
    """

    id: str
    proposal: Proposal
    parent_ids: tuple[str, ...]
    mutator: str
    island: int
    generation: int
    status: SearchStatus
    stage: str
    reason: str
    result: SandboxResult | None = None
    objectives: dict[str, float] = field(default_factory=dict)
    passed_cases: frozenset[int] = frozenset()
    evaluation: int = 0  # 1-based sandbox evaluation number; 0 when filtered
    seconds: float = 0.0  # sandbox wall time spent on this candidate
    stepping_stone: bool = False  # regressed, but kept to explore from (never the best)
    #: Cases an adaptive deadline cut (timeouts under a deadline tighter than the limit).
    cut_cases: frozenset[int] = frozenset()

    @property
    def operator(self) -> str:
        return self.proposal.operator


@dataclass(frozen=True, slots=True)
class SearchProgress:
    """A snapshot for progress bars."""

    evaluations: int
    budget: int
    best_passed: int
    total: int
    elapsed_s: float
    proposals: int


@dataclass(slots=True)
class SearchHooks:
    """Optional callbacks. ``on_evaluated`` may return a storage id that then becomes the
    candidate's id (and the parent id of its children), so lineage uses the caller's ids.
    A hook that raises stops the search: persisting candidates is not optional."""

    on_seed: Callable[[Program, SandboxResult], Awaitable[None]] | None = None
    on_evaluated: Callable[[CandidateRecord], Awaitable[str | None]] | None = None
    on_filtered: Callable[[CandidateRecord], Awaitable[None]] | None = None
    on_new_best: Callable[[CandidateRecord], Awaitable[None]] | None = None
    #: A candidate already reported to ``on_evaluated`` passed its deadline-cut cases at the
    #: full limit: the record (same id) now holds the full-limit result and objectives.
    on_rechecked: Callable[[CandidateRecord], Awaitable[None]] | None = None
    on_progress: Callable[[SearchProgress], None] | None = None


@dataclass(slots=True)
class OperatorStats:
    """How one operator fared over a run."""

    proposed: int = 0
    evaluated: int = 0
    improved: int = 0
    passed: int = 0


@dataclass(frozen=True, slots=True)
class CandidateStat:
    """A compact line per proposal (kept when ``keep_candidate_stats``)."""

    id: str
    parent_id: str | None
    operator: str
    status: str
    stage: str
    passed: int
    seconds: float


@dataclass(slots=True)
class SearchResult:
    """The outcome of :meth:`EvolutionSearch.run`."""

    best: Program
    seed: Program
    total: int
    evaluations: int
    seconds: float
    stop_reason: str  # solved | budget | exhausted | seed_passes
    sandbox_seconds: float = 0.0
    candidate_timeout_s: float = 0.0
    best_record: CandidateRecord | None = None
    lineage: list[str] = field(default_factory=list)
    status_counts: dict[str, int] = field(default_factory=dict)
    operator_stats: dict[str, OperatorStats] = field(default_factory=dict)
    candidates: list[CandidateStat] = field(default_factory=list)
    #: The run's LLM calls: answered, failed, failures by kind, breakers (None: no LLM mutator).
    llm: LLMHealthReport | None = None
    #: Model calls answered for this run, and those whose answer was filtered before any
    #: evaluation (unusable, a no-op, or a program already seen).
    llm_calls: int = 0
    llm_calls_wasted: int = 0
    #: Adaptive deadlines: cases cut, the sandbox seconds saved net of re-checks (an estimate:
    #: a cut case counts as if it had run to the limit), and the re-checks at the full limit.
    deadline_cuts: int = 0
    deadline_saved_s: float = 0.0
    deadline_rechecks: int = 0
    deadline_recheck_s: float = 0.0
    #: Proposals composed from partial fixes (merges), evaluated without a mutator call.
    composed: int = 0

    @property
    def passed(self) -> int:
        return len(self.best.passed_cases)

    @property
    def pass_rate(self) -> float:
        return self.passed / self.total if self.total else 0.0

    @property
    def seed_passed(self) -> int:
        return len(self.seed.passed_cases)

    @property
    def seed_pass_rate(self) -> float:
        return self.seed_passed / self.total if self.total else 0.0

    @property
    def solved(self) -> bool:
        return self.total > 0 and self.passed == self.total

    @property
    def improved(self) -> bool:
        """True when the best program passes a strict superset of the seed's cases."""
        return self.best.passed_cases > self.seed.passed_cases

    def to_dict(self) -> dict[str, Any]:
        return {
            "best_code": self.best.code,
            "pass_rate": self.pass_rate,
            "passed": self.passed,
            "total": self.total,
            "evaluations": self.evaluations,
            "improved": self.improved,
            "solved": self.solved,
            "seconds": round(self.seconds, 4),
            "seed_pass_rate": self.seed_pass_rate,
            "seed_passed": self.seed_passed,
            "stop_reason": self.stop_reason,
            "sandbox_seconds": round(self.sandbox_seconds, 4),
            "candidate_timeout_s": self.candidate_timeout_s,
            "llm_calls": self.llm_calls,
            "llm_calls_wasted": self.llm_calls_wasted,
            "deadline_cuts": self.deadline_cuts,
            "deadline_saved_s": round(self.deadline_saved_s, 4),
            "deadline_rechecks": self.deadline_rechecks,
            "deadline_recheck_s": round(self.deadline_recheck_s, 4),
            "composed": self.composed,
            "best_operator": self.best_record.operator if self.best_record else None,
            "best_description": (
                self.best_record.proposal.description if self.best_record else None
            ),
            "lineage": list(self.lineage),
            "objectives": dict(self.best.scores),
            "status_counts": dict(self.status_counts),
            "operator_stats": {
                name: {"proposed": s.proposed, "evaluated": s.evaluated,
                       "improved": s.improved, "passed": s.passed}
                for name, s in sorted(self.operator_stats.items())
            },
            "llm_errors": [e.to_dict() for e in self.llm.errors] if self.llm else [],
            "llm_health": self.llm.to_dict(errors=False) if self.llm else None,
        }


def lineage(parents: dict[str, str], last: str | None, limit: int = 1000) -> list[str]:
    """The chain of ids from the seed to ``last``, following ``parents`` (child -> parent)."""
    chain: list[str] = []
    current = last
    while current and current in parents and len(chain) < limit:
        chain.append(current)
        current = parents[current]
    if current:
        chain.append(current)
    return list(reversed(chain))
