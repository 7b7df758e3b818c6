"""Adaptive per-case deadlines: cut a candidate that runs far longer than the program it came from.

A mutant that loops costs the full per-case limit on every case it loops on, which made a budget
of 1000 evaluations cost half an hour on suites of small programs. :class:`CaseDeadlines` gives
each case its own deadline from measured time instead: ``multiplier`` times a *reference* time
(the seed's own time on that case, replaced by the best passing candidate's time once one
passes it), never under ``floor_s`` and never over the user's limit, which stays the hard
ceiling. A case nobody has finished yet gets ``multiplier`` times the slowest reference of the
others (the limit when nothing has been measured at all).

A case that times out under a deadline tighter than the limit is *cut*: it is reported as a
``timeout`` whose error says so, and the search decides whether the cut could have hidden a
better candidate (see :mod:`auto_dev.evolution.search`), in which case the candidate is
re-checked at the full limit. The counters here say what the deadlines saved and what the
re-checks cost.

Deadlines are rounded up to a ladder (``floor_s`` times a power of two) so that the cases of one
candidate fall into a few groups: each group is one sandbox job.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from auto_dev._exceptions import ValidationError
from auto_dev.sandbox.base import CaseStatus, SandboxResult

#: Statuses whose duration says how long the program needs on a case. A timeout or a crash
#: says nothing (the run was stopped), a memory or output overrun neither.
_FINISHED = frozenset({CaseStatus.OK, CaseStatus.WRONG_ANSWER, CaseStatus.ERROR})


@dataclass(slots=True)
class CaseDeadlines:
    """Per-case deadlines for one search (``limit_s`` is the user's per-case limit)."""

    limit_s: float
    multiplier: float = 10.0
    floor_s: float = 0.1
    references: dict[int, float] = field(default_factory=dict)
    #: Cases cut by a deadline tighter than the limit, over the run.
    cuts: int = 0
    #: Sum over cut cases of (limit - deadline): what the cuts would have cost at the limit.
    cut_saved_s: float = 0.0
    #: Re-checks at the full limit and the sandbox seconds they took.
    rechecks: int = 0
    recheck_s: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.limit_s) and self.limit_s > 0):
            raise ValidationError("deadlines.limit_s", "must be a positive number of seconds")
        if not (math.isfinite(self.multiplier) and self.multiplier >= 1):
            raise ValidationError("deadlines.multiplier", "must be a number >= 1")
        if not (math.isfinite(self.floor_s) and self.floor_s > 0):
            raise ValidationError("deadlines.floor_s", "must be a positive number of seconds")

    @property
    def saved_s(self) -> float:
        """Sandbox seconds the deadlines saved, net of the re-checks they caused.

        An estimate: each cut case is counted as if it had run to the limit, which is what a
        looping candidate does; one that would have finished in between saved less.
        """
        return self.cut_saved_s - self.recheck_s

    def observe(self, result: SandboxResult, *, passed_only: bool) -> None:
        """Take reference times from ``result`` (original case indices).

        The seed's result counts for every case it finished (``passed_only=False``); a better
        candidate's only for the cases it passed, where it replaces the earlier reference.
        """
        if result.error is not None:
            return
        for case in result.cases:
            if case.status is CaseStatus.OK or (not passed_only and case.status in _FINISHED):
                if not passed_only and case.index in self.references:
                    continue
                self.references[case.index] = max(0.0, float(case.duration_s))

    def deadline(self, index: int) -> float:
        """The deadline of case ``index`` in seconds (on the ladder, at most the limit)."""
        reference = self.references.get(index)
        if reference is None:
            if not self.references:
                return self.limit_s
            reference = max(self.references.values())
        return self._ladder(max(self.floor_s, self.multiplier * reference))

    def _ladder(self, seconds: float) -> float:
        if seconds >= self.limit_s:
            return self.limit_s
        steps = max(0, math.ceil(math.log2(seconds / self.floor_s) - 1e-9))
        return min(self.limit_s, self.floor_s * 2.0 ** steps)

    def groups(self, indices: Iterable[int]) -> list[tuple[float, tuple[int, ...]]]:
        """``indices`` grouped by deadline, shortest deadline first (each group one job)."""
        by_deadline: dict[float, list[int]] = {}
        for index in indices:
            by_deadline.setdefault(self.deadline(index), []).append(index)
        return [(d, tuple(by_deadline[d])) for d in sorted(by_deadline)]

    def count_cuts(self, deadlines: Iterable[float]) -> None:
        """Account for cases cut by the given deadlines (one per cut case)."""
        for deadline in deadlines:
            self.cuts += 1
            self.cut_saved_s += max(0.0, self.limit_s - deadline)

    def max_deadline(self, n_cases: int) -> float:
        """The longest deadline over ``n_cases`` cases (what a candidate may run per case)."""
        return max((self.deadline(i) for i in range(n_cases)), default=self.limit_s)


@dataclass(slots=True)
class PendingRecheck:
    """A candidate that only deadline cuts kept from passing every case, awaiting a re-check.

    ``item`` is the search's own candidate, ``record`` its evaluation under the deadlines;
    ``accepted`` says whether it already joined the population on its other merits (then only
    its pass count may rise); ``enqueued`` is the evaluation count when it was queued.
    """

    item: object
    record: object
    cut: tuple[int, ...]
    accepted: bool
    enqueued: int


class RecheckQueue:
    """The candidates waiting for a re-check at the full limit, fewest cut cases first.

    A correct program that is merely slow is usually cut on few cases; a looping mutant on many.
    Beyond ``capacity`` the entry with the most cut cases (the newest among equals) is
    returned by :meth:`push` to be settled as evaluated.
    """

    def __init__(self, capacity: int = 16) -> None:
        if capacity < 0:
            raise ValidationError("recheck_capacity", "must not be negative")
        self.capacity = capacity
        self._entries: list[PendingRecheck] = []

    def __len__(self) -> int:
        return len(self._entries)

    def push(self, entry: PendingRecheck) -> PendingRecheck | None:
        """Queue ``entry``; the entry that no longer fits (possibly ``entry``), or None."""
        self._entries.append(entry)
        self._entries.sort(key=lambda e: (len(e.cut), e.enqueued))
        if len(self._entries) > self.capacity:
            return self._entries.pop()
        return None

    def oldest_wait(self, now: int) -> int:
        """Evaluations since the longest-waiting entry was queued (0 when empty)."""
        return max((now - e.enqueued for e in self._entries), default=0)

    def pop(self) -> PendingRecheck | None:
        """The most promising entry (fewest cut cases), or None."""
        return self._entries.pop(0) if self._entries else None

    def drain(self) -> list[PendingRecheck]:
        """Every entry, most promising first; the queue is left empty."""
        entries, self._entries = self._entries, []
        return entries
