"""Model-call waste per parent: when to sample hotter, and when to stop asking about a parent.

A model that proposes one edit at a time keeps answering with edits the search has already seen
once a parent's neighbourhood is used up (558 calls for 105 evaluations on one program). Every
such answer is filtered before any evaluation, but the call is paid for. :class:`WasteLedger`
counts, per (mutator, parent), the answers and the wasted ones (unusable, a no-op, or a program
already seen) and turns a run of waste into a decision *before* the next call: after two wasted
answers in a row the mutator is asked to explore (hotter sampling, more failing cases shown),
after four to explore more, and once ``patience`` answers in a row (or ``max_rate`` of at least
``min_calls``) were wasted the parent is *saturated*: the search moves on to another parent.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from auto_dev._exceptions import ValidationError


@dataclass(slots=True)
class ParentWaste:
    """Answers one mutator gave for one parent."""

    calls: int = 0
    wasted: int = 0
    streak: int = 0  # consecutive wasted answers, the latest included


class WasteLedger:
    """Counts model answers per (mutator, parent code); bounded to ``capacity`` parents."""

    def __init__(
        self, *, patience: int = 6, max_rate: float = 0.75, min_calls: int = 8,
        capacity: int = 512,
    ) -> None:
        if patience < 1:
            raise ValidationError("waste_patience", "must be at least 1")
        if not 0 < max_rate <= 1:
            raise ValidationError("waste_max_rate", "must be in (0, 1]")
        self.patience = patience
        self.max_rate = max_rate
        self.min_calls = max(1, min_calls)
        self.capacity = capacity
        self.calls = 0
        self.wasted = 0
        self._parents: OrderedDict[tuple[str, str], ParentWaste] = OrderedDict()

    def record(self, mutator: str, parent_code: str, *, wasted: bool) -> None:
        """Count one answered call of ``mutator`` for the parent with ``parent_code``."""
        key = (mutator, parent_code)
        entry = self._parents.get(key)
        if entry is None:
            entry = self._parents[key] = ParentWaste()
            while len(self._parents) > self.capacity:
                self._parents.popitem(last=False)
        else:
            self._parents.move_to_end(key)
        entry.calls += 1
        self.calls += 1
        if wasted:
            entry.wasted += 1
            entry.streak += 1
            self.wasted += 1
        else:
            entry.streak = 0

    def get(self, mutator: str, parent_code: str) -> ParentWaste:
        return self._parents.get((mutator, parent_code)) or ParentWaste()

    def exploration(self, mutator: str, parent_code: str) -> int:
        """0 normally, 1 after two wasted answers in a row, 2 after four."""
        streak = self.get(mutator, parent_code).streak
        return 0 if streak < 2 else 1 if streak < 4 else 2

    def saturated(self, mutator: str, parent_code: str) -> bool:
        """True once asking ``mutator`` about this parent mostly wastes the call."""
        entry = self.get(mutator, parent_code)
        if entry.streak >= self.patience:
            return True
        return entry.calls >= self.min_calls and entry.wasted >= self.max_rate * entry.calls
