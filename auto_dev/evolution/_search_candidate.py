"""One proposal on its way through the search: filtered, evaluated, settled."""

from __future__ import annotations

from dataclasses import dataclass, field

from auto_dev.evolution.cascade import CascadeOutcome
from auto_dev.evolution.compose import PartialFix
from auto_dev.evolution.program import Program, Proposal
from auto_dev.evolution.records import CandidateRecord

#: The mutator name recorded for merges of partial fixes (no mutator call made them).
COMPOSER = "compose"


@dataclass(slots=True)
class SearchCandidate:
    """A proposal being judged, and what became of it."""

    proposal: Proposal
    parent: Program
    mutator: str
    id: str
    island: int  # the island of the step: children of the seed or a stone spread out
    quick: tuple[int, ...] = ()
    size: int | None = None
    record: CandidateRecord | None = None
    outcome: CascadeOutcome | None = None
    program: Program | None = None  # the population member it became, once accepted
    parents: tuple[PartialFix, ...] = field(default_factory=tuple)  # for a merge
    model_call: bool = False  # a model call's answer: its outcome feeds the waste ledger


def proposal_cost(proposal: Proposal) -> float:
    """The model cost a proposal carries in its meta (0 when none or malformed)."""
    value = proposal.meta.get("llm_cost_usd", 0.0) if proposal.meta else 0.0
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return 0.0
