"""The structural diff of two workflow documents: steps added, removed, moved and changed.

Reviewers see what a variant does differently, not a text diff of JSON. Steps are matched by id
wherever they sit. A step *moved* when it now sits in another block (another switch branch, a
``catch``, a map body, or under another parent), or when its order relative to the steps it
shares a block with changed: an insertion or a removal before it shifts its index without
moving it, so within one block only the steps outside a longest common subsequence of the
common ids count as moved. A step *changed* when one of its own fields differs (``when``,
``args.order_id``, ``retry``...); the steps nested in it are not fields of it, they are reported
themselves. Top-level fields (``name``, ``input``, ``output``, ``limits``, ``description``)
are compared the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from auto_dev.workflows._document import child_blocks, format_path, step_kind, walk_steps

#: Marks a field that one side does not have (``FieldChange.old`` or ``.new``).
ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "ABSENT"})()
_MAX_SHOWN = 80
_BLOCK_MARK = "<steps>"


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field (a dotted path such as ``retry.max_attempts``) whose value differs."""

    field: str
    old: Any = ABSENT
    new: Any = ABSENT

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field}
        if self.old is not ABSENT:
            out["old"] = self.old
        if self.new is not ABSENT:
            out["new"] = self.new
        return out

    def render(self) -> str:
        if self.old is ABSENT:
            return f"{self.field} added {_show(self.new)}"
        if self.new is ABSENT:
            return f"{self.field} removed (was {_show(self.old)})"
        return f"{self.field} {_show(self.old)} -> {_show(self.new)}"


@dataclass(frozen=True, slots=True)
class AddedStep:
    """A step id present only in the new document, where it sits and what it does."""

    step_id: str
    kind: str
    path: str
    summary: str


@dataclass(frozen=True, slots=True)
class RemovedStep:
    """A step id present only in the old document, and where it sat."""

    step_id: str
    kind: str
    path: str
    summary: str


@dataclass(frozen=True, slots=True)
class MovedStep:
    """A step that sits in another block, or in another order among its block's steps."""

    step_id: str
    from_path: str
    to_path: str


@dataclass(frozen=True, slots=True)
class ChangedStep:
    """A step present in both documents whose own fields differ."""

    step_id: str
    path: str
    changes: tuple[FieldChange, ...]


@dataclass(frozen=True, slots=True)
class WorkflowDiff:
    """Everything that differs between two workflow documents, step by step."""

    added: tuple[AddedStep, ...] = ()
    removed: tuple[RemovedStep, ...] = ()
    moved: tuple[MovedStep, ...] = ()
    changed: tuple[ChangedStep, ...] = ()
    top_level: tuple[FieldChange, ...] = field(default=())

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.removed or self.moved or self.changed or self.top_level)

    def to_dict(self) -> dict[str, Any]:
        """The diff as JSON-ready data (paths formatted like ``steps[1].switch[0].steps[0]``)."""
        return {
            "added": [{"id": a.step_id, "kind": a.kind, "path": a.path, "summary": a.summary}
                      for a in self.added],
            "removed": [{"id": r.step_id, "kind": r.kind, "path": r.path, "summary": r.summary}
                        for r in self.removed],
            "moved": [{"id": m.step_id, "from": m.from_path, "to": m.to_path}
                      for m in self.moved],
            "changed": [{"id": c.step_id, "path": c.path,
                         "fields": [f.to_dict() for f in c.changes]} for c in self.changed],
            "top_level": [f.to_dict() for f in self.top_level],
        }

    def render_lines(self) -> list[str]:
        """One human-readable line per change, e.g. ``~ changed step route: when ...``."""
        lines = [f"~ changed {change.render()}" for change in self.top_level]
        lines += [f"- removed step {r.step_id} ({r.summary}) from {r.path}" for r in self.removed]
        lines += [f"+ added step {a.step_id} ({a.summary}) at {a.path}" for a in self.added]
        lines += [f"> moved step {m.step_id}: {m.from_path} -> {m.to_path}" for m in self.moved]
        for changed in self.changed:
            lines += [f"~ changed step {changed.step_id}: {c.render()}" for c in changed.changes]
        return lines


def structural_diff(old: dict[str, Any], new: dict[str, Any]) -> WorkflowDiff:
    """What changed from ``old`` to ``new``, matched by step id (see the module docstring)."""
    before, after = _index(old), _index(new)
    added = tuple(
        AddedStep(key, step_kind(s.step), _where(s.path), _summary(s.step))
        for key, s in after.items() if key not in before
    )
    removed = tuple(
        RemovedStep(key, step_kind(s.step), _where(s.path), _summary(s.step))
        for key, s in before.items() if key not in after
    )
    moved_keys = _moved(before, after)
    moved = tuple(
        MovedStep(key, _where(before[key].path), _where(s.path))
        for key, s in after.items() if key in moved_keys
    )
    changed = []
    for key, s in after.items():
        if key not in before:
            continue
        changes = _field_changes(_own_fields(before[key].step), _own_fields(s.step), "")
        if changes:
            changed.append(ChangedStep(key, _where(s.path), tuple(changes)))
    top_old = {k: v for k, v in old.items() if k != "steps"}
    top_new = {k: v for k, v in new.items() if k != "steps"}
    return WorkflowDiff(added, removed, moved, tuple(changed),
                        tuple(_field_changes(top_old, top_new, "")))


# --- internals -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Seat:
    """A step, where it sits, and the block holding it: (parent key, path of the block in it)."""

    step: dict[str, Any]
    path: tuple[str | int, ...]
    block: tuple[str | None, tuple[str | int, ...]]


def _index(doc: dict[str, Any]) -> dict[str, _Seat]:
    """Every step by key (its id; a repeated or missing id gets a key that stays distinct)."""
    keys_by_path: dict[tuple[str | int, ...], str] = {}
    seats: dict[str, _Seat] = {}
    for location in walk_steps(doc):
        raw = location.step.get("id")
        key = raw if isinstance(raw, str) and raw else f"<{format_path(location.path)}>"
        n = 2
        base = key
        while key in seats:
            key = f"{base}#{n}"
            n += 1
        keys_by_path[location.path] = key
        block = _block_of(location.list_path, keys_by_path)
        seats[key] = _Seat(location.step, location.path, block)
    return seats


def _block_of(
    list_path: tuple[str | int, ...], keys_by_path: dict[tuple[str | int, ...], str]
) -> tuple[str | None, tuple[str | int, ...]]:
    # The nearest enclosing step is the longest prefix of the list path that is a step's path.
    for cut in range(len(list_path) - 1, 0, -1):
        parent = keys_by_path.get(list_path[:cut])
        if parent is not None:
            return parent, list_path[cut:]
    return None, list_path


def _moved(before: dict[str, _Seat], after: dict[str, _Seat]) -> set[str]:
    common = [key for key in after if key in before]
    moved = {key for key in common if before[key].block != after[key].block}
    stay = [key for key in common if key not in moved]
    blocks: dict[Any, tuple[list[str], list[str]]] = {}
    for key in stay:
        blocks.setdefault(after[key].block, ([], []))
    for key, seat in before.items():  # document order in old
        if key in after and key not in moved:
            blocks[seat.block][0].append(key)
    for key, seat in after.items():  # document order in new
        if key in before and key not in moved:
            blocks[seat.block][1].append(key)
    for old_order, new_order in blocks.values():
        kept = set(_lcs(old_order, new_order))
        moved.update(key for key in new_order if key not in kept)
    return moved


def _lcs(a: list[str], b: list[str]) -> list[str]:
    """A longest common subsequence of two orders of the same keys (blocks are small)."""
    n, m = len(a), len(b)
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            table[i][j] = (table[i + 1][j + 1] + 1 if a[i] == b[j]
                           else max(table[i + 1][j], table[i][j + 1]))
    out, i, j = [], 0, 0
    while i < n and j < m:
        if a[i] == b[j]:
            out.append(a[i])
            i, j = i + 1, j + 1
        elif table[i + 1][j] >= table[i][j + 1]:
            i += 1
        else:
            j += 1
    return out


def _own_fields(step: dict[str, Any]) -> dict[str, Any]:
    """The step without its id and without the steps nested in it (a non-empty block is
    replaced by nothing: its steps speak for themselves; an empty one stays visible)."""
    out = {k: v for k, v in step.items() if k != "id"}
    nested = {rel for rel, _ in child_blocks(step)}
    if ("catch",) in nested and step["catch"]:
        out.pop("catch")
    if ("map", "steps") in nested:
        body = dict(step["map"])
        if body["steps"]:
            body.pop("steps")
        out["map"] = body
    if isinstance(step.get("switch"), list):
        branches = []
        for branch in step["switch"]:
            if isinstance(branch, dict):
                branch = {k: (_BLOCK_MARK if k in ("steps", "otherwise") and isinstance(v, list)
                              and v else v) for k, v in branch.items()}
            branches.append(branch)
        out["switch"] = branches
    return out


def _field_changes(old: Any, new: Any, prefix: str) -> list[FieldChange]:
    if isinstance(old, dict) and isinstance(new, dict):
        changes: list[FieldChange] = []
        for key in [*old, *(k for k in new if k not in old)]:
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in new:
                changes.append(FieldChange(name, old=old[key]))
            elif key not in old:
                changes.append(FieldChange(name, new=new[key]))
            else:
                changes += _field_changes(old[key], new[key], name)
        return changes
    if (isinstance(old, list) and isinstance(new, list) and len(old) == len(new)
            and any(isinstance(v, dict) for v in old)):
        changes = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            changes += _field_changes(a, b, f"{prefix}[{i}]")
        return changes
    if _same(old, new):
        return []
    return [FieldChange(prefix or "value", old, new)]


def _same(a: Any, b: Any) -> bool:
    # JSON equality: key order does not matter, but 1 and True (or 1 and 1.0) are different.
    return (json.dumps(a, sort_keys=True, default=repr)
            == json.dumps(b, sort_keys=True, default=repr))


def _where(path: tuple[str | int, ...]) -> str:
    return format_path(path, root="").lstrip(".")


def _summary(step: dict[str, Any]) -> str:
    kind = step_kind(step)
    if kind == "tool":
        return f"tool {step.get('tool')}"
    if kind == "map" and isinstance(step.get("map"), dict):
        return f"map over {step['map'].get('over')}"
    if kind == "set" and isinstance(step.get("set"), dict):
        return "set " + ", ".join(str(k) for k in step["set"])
    if kind in ("llm", "switch", "fail") or not kind:
        return kind or "unknown kind"
    return f"custom {kind}"


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN - 3] + "..."
