"""Composed edits: combine the partial fixes a search has found into candidates of their own.

Most programs a single edit cannot repair need two edits that each fix some of the failing cases
(or whose first half alone breaks a case). A search that explores one lineage at a time finds the
second edit only by luck; but it often has both already, in two different candidates: two
children of one parent that fixed different cases, or a feasible partial fix and a stepping stone.
:class:`Composer` remembers every candidate that fixed a case its parent failed (a
:class:`PartialFix`, feasible or not) and, when a new one arrives, merges it with the earlier ones
that fixed something it does not: a three-way merge of syntax trees against their nearest common
ancestor (:func:`~auto_dev.evolution._crossover.merge`). A fix is also merged with its *neutral*
siblings (children of the same parent that fixed nothing but changed how the failing cases
fail): the second edit of a two-edit repair often shows no gain on its own. Each merge is an
ordinary proposal for the search to filter and evaluate; none costs a model call.

For model mutators the same memory answers "which edits helped elsewhere?": the diffs of partial
fixes of cases the current parent still fails (:meth:`Composer.helpful_edits`).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

from auto_dev.evolution._crossover import merge
from auto_dev.evolution._layout import preserve_layout
from auto_dev.evolution.diff import unified_diff
from auto_dev.evolution.program import Program

#: How far up the lineage the common ancestor is looked for.
_MAX_DEPTH = 64


@dataclass(frozen=True, slots=True)
class PartialFix:
    """A candidate that passed a case its parent failed (``gained``), or a neutral one
    (``gained`` empty) that broke nothing and changed how failing cases fail.

    ``program.passed_cases`` holds the cases it passed among those that ran; ``feasible`` says
    whether it broke nothing (it joined the population).
    """

    program: Program
    parent_id: str
    gained: frozenset[int]
    feasible: bool
    #: For a neutral one: the parent's failing cases whose outcome it changed.
    changed: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class Composition:
    """A merge of two partial fixes over their common ancestor ``base``."""

    code: str
    base: Program
    first: PartialFix
    second: PartialFix

    @property
    def description(self) -> str:
        return (f"merge of {self.first.program.id} (fixes case(s) {sorted(self.first.gained)[:6]})"
                f" and {self.second.program.id} (fixes case(s) "
                f"{sorted(self.second.gained)[:6]}) over {self.base.id}")


class Composer:
    """Remembers partial fixes and the lineage around them; proposes merges.

    ``capacity`` bounds the partial fixes kept (the oldest go first), ``partners`` the merges
    proposed per new fix, ``memory`` the programs remembered as possible common ancestors.
    """

    def __init__(self, *, capacity: int = 32, partners: int = 4, memory: int = 1024) -> None:
        self.capacity = capacity
        self.partners = partners
        self.memory = memory
        self._fixes: deque[PartialFix] = deque(maxlen=capacity)
        self._neutrals: deque[PartialFix] = deque(maxlen=capacity // 2)
        self._programs: OrderedDict[str, Program] = OrderedDict()
        self._parent: OrderedDict[str, str] = OrderedDict()
        self._diffs: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._fixes)

    def remember(self, program: Program, parent_id: str | None) -> None:
        """Note ``program`` (with an id) and its parent, for finding common ancestors."""
        if not program.id:
            return
        self._programs[program.id] = program
        self._programs.move_to_end(program.id)
        if parent_id:
            self._parent[program.id] = parent_id
            self._parent.move_to_end(program.id)
        for table in (self._programs, self._parent):
            while len(table) > self.memory:
                table.popitem(last=False)

    def add(self, fix: PartialFix) -> list[Composition]:
        """Remember ``fix``; its merges with earlier fixes of other cases (and with neutral
        siblings, for a fix) or, for a neutral child (no gain), with its sibling fixes."""
        self.remember(fix.program, fix.parent_id)
        passed = fix.program.passed_cases
        if fix.gained:
            partners = [o for o in reversed(self._fixes) if o.gained - passed]
            # Partners that add the most cases this fix does not pass first, newest on ties.
            partners.sort(key=lambda o: -len(o.gained - passed))
            # Neutral siblings that changed a case this fix still fails.
            partners = partners[: self.partners] + [
                o for o in reversed(self._neutrals)
                if o.parent_id == fix.parent_id and o.changed - passed
            ][: self.partners // 2]
            self._fixes.append(fix)
        else:
            siblings = [o for o in reversed(self._fixes)
                        if o.parent_id == fix.parent_id and fix.changed - o.program.passed_cases]
            siblings.sort(key=lambda o: -len(o.program.passed_cases))
            partners = siblings[: self.partners // 2]
            self._neutrals.append(fix)
        out: list[Composition] = []
        for other in partners:
            if other.program.code == fix.program.code:
                continue
            base = self._ancestor(fix, other)
            if base is None:
                continue
            code = merge(base.code, fix.program.code, other.program.code)
            if code is not None:
                out.append(Composition(preserve_layout(fix.program.code, code), base, fix, other))
        return out

    def helpful_edits(self, parent: Program, limit: int = 3) -> list[str]:
        """Diffs of partial fixes of cases ``parent`` fails, newest first, outside its lineage."""
        if limit <= 0:
            return []
        ancestry = set(self._lineage(parent.id)) if parent.id else set()
        out: list[str] = []
        seen: set[str] = set()
        for fix in reversed(self._fixes):
            if len(out) >= limit:
                break
            if fix.program.id in ancestry or not fix.gained - parent.passed_cases:
                continue
            diff = self._diff(fix)
            if diff and diff not in seen:
                seen.add(diff)
                out.append(diff)
        return out

    def _diff(self, fix: PartialFix) -> str:
        key = fix.program.id or fix.program.code
        diff = self._diffs.get(key)
        if diff is None:
            base = self._programs.get(fix.parent_id)
            diff = "" if base is None else unified_diff(base.code, fix.program.code)
            self._diffs[key] = diff
            while len(self._diffs) > self.capacity * 2:
                self._diffs.popitem(last=False)
        return diff

    def _lineage(self, program_id: str | None) -> list[str]:
        chain: list[str] = []
        current = program_id
        while current and len(chain) < _MAX_DEPTH:
            chain.append(current)
            current = self._parent.get(current)
        return chain

    def _ancestor(self, a: PartialFix, b: PartialFix) -> Program | None:
        """The nearest remembered common ancestor of two fixes (their parent, for siblings)."""
        above_a = self._lineage(a.parent_id)
        above_b = set(self._lineage(b.parent_id))
        for ancestor in above_a:
            if ancestor in above_b:
                return self._programs.get(ancestor)
        return None
