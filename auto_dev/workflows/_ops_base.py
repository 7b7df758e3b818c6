"""What every workflow operator shares: its context, its proposals, and the evidence of failures.

An operator enumerates :class:`Candidate` edits (cheap: a note and a function that builds the
edited copy), and :meth:`WorkflowOperator.propose` picks a few: edits of steps that failed (or
of the steps around them) first, then the rest, shuffled with ``context.rng`` inside each tier
so that a seed gives the same proposals every time. The input document is never touched: every
proposal is built on a fresh deep copy.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from auto_dev.workflows._document import canonical_json, step_list, walk_steps

Doc = dict[str, Any]
Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class WorkflowProposal:
    """A variant of a workflow: the operator that made it, the new definition, and why.

    ``step_id`` names the step the edit is about (``None`` for a whole-document edit);
    ``meta`` says what a model call cost (``llm_cost_usd``, ``llm_call_id``...; empty offline).
    """

    operator: str
    definition: Doc
    note: str
    step_id: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def cost_usd(self) -> float:
        return float(self.meta.get("llm_cost_usd", 0.0))

    def to_dict(self) -> dict[str, Any]:
        return {"operator": self.operator, "definition": self.definition, "note": self.note,
                "step_id": self.step_id, "meta": dict(self.meta)}


@dataclass(frozen=True)
class WorkflowMutationContext:
    """What operators may use besides the document.

    ``tools``: the registered tool names a step may call. ``failures``: failed runs as
    ``WorkflowRun.to_dict()`` (their trace entries with ``error`` name the failing steps, their
    outputs show the fields a path may point to). ``rng``: the only source of randomness.
    ``state_paths``: JMESPath paths seen in traces (``steps.order.state``, ``input.id``).
    """

    tools: Sequence[str] = ()
    failures: Sequence[Mapping[str, Any]] = ()
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    state_paths: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Candidate:
    """One possible edit: the step it is about, a note, and a builder of the edited copy.

    ``rank`` orders candidates of equal focus (lower is more plausible); ``build`` returns
    ``None`` when the edit turns out not to apply.
    """

    step_id: str | None
    note: str
    build: Callable[[], Doc | None]
    rank: int = 0


class FailureEvidence:
    """What the failed runs say: which steps failed and what each step output."""

    def __init__(self, doc: Doc, context: WorkflowMutationContext) -> None:
        failing: Counter[str] = Counter()
        self.outputs: dict[str, list[Any]] = {}
        self.errors: dict[str, list[str]] = {}
        self.inputs: list[Any] = []
        self.items: dict[str, list[Any]] = {}
        for run in context.failures:
            if not isinstance(run, Mapping):
                continue
            if isinstance(run.get("error_step"), str):
                failing[run["error_step"]] += 1
            if "input" in run:
                self.inputs.append(run["input"])
            for entry in _trace_entries(run.get("trace")):
                step_id = entry.get("id")
                if not isinstance(step_id, str):
                    continue
                if entry.get("kind") == "item":  # one item of a map: "<map id>[<index>]"
                    self.items.setdefault(step_id.split("[")[0], []).append(entry.get("input"))
                    continue
                if entry.get("error"):
                    failing[step_id] += 1
                    self.errors.setdefault(step_id, []).append(str(entry["error"]))
                if not entry.get("skipped") and entry.get("output") is not None:
                    self.outputs.setdefault(step_id, []).append(entry["output"])
        self.failing: list[str] = [step_id for step_id, _ in failing.most_common()]
        # A failure inside a block is often caused by the step holding it (a switch on the
        # wrong field, a map over the wrong list): those steps are in focus too, after the
        # innermost failing steps (a failure propagates to every step holding it).
        holders: set[str] = set()
        for step_id, ancestors in ancestor_ids(doc).items():
            if step_id in failing:
                holders.update(ancestors)
        self.culprits: set[str] = {s for s in self.failing if s not in holders}
        self.focus: set[str] = set(self.failing) | holders

    def tier(self, step_id: str | None) -> int:
        """0 for a step that failed itself, 1 for one holding a failure, 2 for the rest."""
        if step_id in self.culprits:
            return 0
        return 1 if step_id in self.focus else 2

    def samples(self) -> list[dict[str, Any]]:
        """Partial run states built from the traces, to look up what a path held."""
        states: list[dict[str, Any]] = []
        runs = max([len(v) for v in self.outputs.values()] + [len(self.inputs), 0])
        for i in range(runs):
            steps = {k: v[i] for k, v in self.outputs.items() if i < len(v)}
            state: dict[str, Any] = {"steps": steps}
            if i < len(self.inputs):
                state["input"] = self.inputs[i]
            states.append(state)
        return states


def _trace_entries(trace: Any) -> Iterator[Mapping[str, Any]]:
    if not isinstance(trace, list | tuple):
        return
    for entry in trace:
        if isinstance(entry, Mapping):
            yield entry
            yield from _trace_entries(entry.get("children"))


class WorkflowOperator(ABC):
    """An edit of workflow documents that needs no model.

    ``propose(doc, context)`` returns at most ``max_proposals`` proposals, each a fresh deep
    copy of ``doc`` with one edit, every step id still unique, never ``doc`` itself unchanged;
    an empty list when the operator does not apply to ``doc``.
    """

    name: ClassVar[str]
    max_proposals: int = 3

    def propose(self, doc: Doc, context: WorkflowMutationContext) -> list[WorkflowProposal]:
        evidence = FailureEvidence(doc, context)
        candidates = list(self.candidates(doc, context, evidence))
        return choose_candidates(self.name, doc, candidates, evidence, context.rng,
                                 self.max_proposals)

    @abstractmethod
    def candidates(
        self, doc: Doc, context: WorkflowMutationContext, evidence: FailureEvidence
    ) -> Iterable[Candidate]:
        """Every edit this operator could make to ``doc`` (built lazily)."""


def choose_candidates(
    operator: str, doc: Doc, candidates: Sequence[Candidate], evidence: FailureEvidence,
    rng: random.Random, limit: int,
) -> list[WorkflowProposal]:
    """Up to ``limit`` proposals: focus steps first, then by rank, shuffled within a tier."""
    tiers: dict[tuple[int, int], list[Candidate]] = {}
    for candidate in candidates:
        tiers.setdefault((evidence.tier(candidate.step_id), candidate.rank), []).append(candidate)
    seen = {canonical_json(doc)}
    out: list[WorkflowProposal] = []
    for key in sorted(tiers):
        tier = tiers[key]
        rng.shuffle(tier)
        for candidate in tier:
            if len(out) >= limit:
                return out
            built = candidate.build()
            if built is None or not ids_unique(built):
                continue
            text = canonical_json(built)
            if text in seen:
                continue
            seen.add(text)
            out.append(WorkflowProposal(operator, built, candidate.note, candidate.step_id))
    return out


# --- document helpers shared by the operators ----------------------------------------------


def all_ids(doc: Doc) -> list[str]:
    return [loc.step["id"] for loc in walk_steps(doc) if isinstance(loc.step.get("id"), str)]


def ids_unique(doc: Doc) -> bool:
    ids = all_ids(doc)
    return len(ids) == len(set(ids))


def fresh_id(taken: set[str], base: str) -> str:
    """``base`` made unique against ``taken`` (``base_2``, ``base_3``...); adds it to ``taken``."""
    stem = base.rstrip("0123456789").rstrip("_") or "step"
    candidate, n = base, 2
    while candidate in taken:
        candidate = f"{stem}_{n}"
        n += 1
    taken.add(candidate)
    return candidate


def renumber(step: dict[str, Any], taken: set[str]) -> dict[str, Any]:
    """A deep copy of ``step`` whose id and nested ids are fresh against ``taken``."""
    clone: dict[str, Any] = clone_json(step)
    for loc in walk_steps({"steps": [clone]}):
        raw = loc.step.get("id")
        loc.step["id"] = fresh_id(taken, raw if isinstance(raw, str) and raw else "step")
    return clone


def clone_json(value: Any) -> Any:
    """A deep copy of JSON data (dicts, lists, scalars): several times faster than
    ``copy.deepcopy``, which matters because every candidate edit starts from one."""
    if isinstance(value, dict):
        return {key: clone_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [clone_json(item) for item in value]
    return value


def step_at(doc: Doc, path: Path) -> dict[str, Any]:
    step: dict[str, Any] = step_list(doc, path[:-1])[int(path[-1])]
    return step


def edit_copy(doc: Doc, path: Path, edit: Callable[[Doc, dict[str, Any]], bool | None]) -> (
        Callable[[], Doc | None]):
    """A builder: deep-copy ``doc`` and apply ``edit(copy, step at path)``; ``False`` = no-op."""

    def build() -> Doc | None:
        clone: Doc = clone_json(doc)
        if edit(clone, step_at(clone, path)) is False:
            return None
        return clone

    return build


def ancestor_ids(doc: Doc) -> dict[str, list[str]]:
    """For each step id, the ids of the steps it is nested in (outermost first)."""
    by_path: dict[Path, str] = {}
    out: dict[str, list[str]] = {}
    for loc in walk_steps(doc):
        step_id = loc.step.get("id")
        if not isinstance(step_id, str):
            continue
        by_path[loc.path] = step_id
        out[step_id] = [by_path[loc.list_path[:k]] for k in range(1, len(loc.list_path))
                        if loc.list_path[:k] in by_path]
    return out


def step_id_of(step: dict[str, Any]) -> str | None:
    raw = step.get("id")
    return raw if isinstance(raw, str) else None
