"""Value types that flow between populations, mutators and evaluators."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Program:
    """A candidate program: source code plus the function to call.

    ``id`` is the storage id (a ToolVersion or ToolMutation id) when the program has one.
    ``scores`` holds the objective vector once evaluated (objective name -> value).
    """

    code: str
    entrypoint: str
    id: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    passed_cases: frozenset[int] = frozenset()
    generation: int = 0
    island: int = 0


@dataclass(frozen=True, slots=True)
class CaseFeedback:
    """A failing case shown to a mutator: inputs, what was expected, what happened."""

    index: int
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    expected: Any
    actual: Any
    status: str
    error: str | None = None


@dataclass(slots=True)
class MutationContext:
    """Everything a mutator may use besides the parent itself."""

    rng: random.Random
    failing_cases: list[CaseFeedback] = field(default_factory=list)
    inspirations: list[Program] = field(default_factory=list)
    max_proposals: int = 8
    tenant_id: str | None = None
    run_id: str | None = None
    description: str = ""
    #: 0 normally; 1 or 2 once a mutator's recent answers for this parent were wasted
    #: (duplicates, no-ops): a model mutator then samples hotter and shows more failing cases.
    exploration: int = 0
    #: Unified diffs of edits that fixed cases elsewhere in the search, which this parent
    #: still fails (for model mutators: a fix may combine with them).
    helpful_edits: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Proposal:
    """A proposed new program, with how it was made.

    ``operator`` names the mutation operator (e.g. ``"ast.compare_swap"``, ``"llm.diff"``);
    ``parent_ids`` lists the parents it came from (two for crossover).
    """

    code: str
    entrypoint: str
    operator: str
    parent_ids: tuple[str, ...] = ()
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
