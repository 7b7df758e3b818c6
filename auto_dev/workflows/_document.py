"""The shape of a workflow document: step kinds, nested blocks, walking and hashing.

A workflow is plain JSON data (see ``schema.json``). Everything that reads or rewrites one (the
validator, the interpreter, the structural diff, the operators) walks it through these helpers, so
the rules about where steps nest live in one place:

- a ``switch`` step holds branches ``{"when": expr, "steps": [...]}`` and at most one
  ``{"otherwise": [...]}``;
- a ``map`` step holds ``map.steps``;
- any step may hold ``catch``: steps run when the step fails.

A *path* names a step list inside a document as a tuple of keys and indexes from the root, e.g.
``("steps",)`` or ``("steps", 1, "switch", 0, "steps")``; a step sits at ``(list_path, index)``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

BUILTIN_STEP_KINDS = ("tool", "llm", "switch", "map", "set", "fail")
CUSTOM_STEP_KEY = "custom"  # {"id": ..., "custom": "<registered kind>", "args": {...}}

ListPath = tuple[str | int, ...]


def step_kind(step: dict[str, Any]) -> str:
    """The step's kind: a built-in key it carries, or the name of its registered custom kind."""
    for kind in BUILTIN_STEP_KINDS:
        if kind in step:
            return kind
    custom = step.get(CUSTOM_STEP_KEY)
    if isinstance(custom, str):
        return custom
    return ""


def child_blocks(step: dict[str, Any]) -> Iterator[tuple[tuple[str | int, ...], list[Any]]]:
    """Each step list nested directly in ``step``, with its key path relative to the step."""
    switch = step.get("switch")
    if isinstance(switch, list):
        for i, branch in enumerate(switch):
            if not isinstance(branch, dict):
                continue
            if isinstance(branch.get("steps"), list):
                yield ("switch", i, "steps"), branch["steps"]
            if isinstance(branch.get("otherwise"), list):
                yield ("switch", i, "otherwise"), branch["otherwise"]
    body = step.get("map")
    if isinstance(body, dict) and isinstance(body.get("steps"), list):
        yield ("map", "steps"), body["steps"]
    if isinstance(step.get("catch"), list):
        yield ("catch",), step["catch"]


@dataclass(frozen=True)
class StepLocation:
    """Where a step sits: the path of its list, its index there, and its nesting depth (0 = top)."""

    list_path: ListPath
    index: int
    depth: int
    step: dict[str, Any]

    @property
    def path(self) -> ListPath:
        return (*self.list_path, self.index)


def walk_steps(doc: dict[str, Any]) -> Iterator[StepLocation]:
    """Every step of ``doc`` in document order (a step before the steps nested in it)."""

    def walk(steps: Any, list_path: ListPath, depth: int) -> Iterator[StepLocation]:
        if not isinstance(steps, list):
            return
        for index, step in enumerate(steps):
            if not isinstance(step, dict):
                continue
            yield StepLocation(list_path, index, depth, step)
            for rel, block in child_blocks(step):
                yield from walk(block, (*list_path, index, *rel), depth + 1)

    yield from walk(doc.get("steps"), ("steps",), 0)


def step_list(doc: dict[str, Any], list_path: ListPath) -> list[Any]:
    """The step list at ``list_path`` (a ``KeyError``/``IndexError`` names a missing part)."""
    node: Any = doc
    for key in list_path:
        node = node[key]
    if not isinstance(node, list):
        raise TypeError(f"{format_path(list_path)} is not a list of steps")
    return node


def find_step(doc: dict[str, Any], step_id: str) -> StepLocation | None:
    """The first step whose ``id`` is ``step_id``, or ``None``."""
    for location in walk_steps(doc):
        if location.step.get("id") == step_id:
            return location
    return None


def format_path(path: tuple[str | int, ...], root: str = "workflow") -> str:
    """``("steps", 1, "retry")`` as ``workflow.steps[1].retry``: the field named in errors."""
    text = root
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else f".{key}"
    return text


def canonical_json(doc: Any) -> str:
    """One text per meaning: sorted keys, no spaces; equal documents give equal text."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def workflow_hash(doc: dict[str, Any]) -> str:
    """The identity of a definition for dedup: sha256 of its canonical JSON, ignoring prose
    (``description``) that does not change what the workflow does."""
    stripped = copy.deepcopy(doc)
    stripped.pop("description", None)
    return hashlib.sha256(canonical_json(stripped).encode()).hexdigest()
