"""Model-call waste per parent: when to sample hotter, and when to stop asking about a parent.

A model that proposes one edit at a time keeps answering with edits the search has already seen
once a parent's neighbourhood is used up (558 calls for 105 evaluations on one program). Every
such answer is filtered before any evaluation, but the call is paid for. :class:`WasteLedger`
counts, per (mutator, parent), the answers and the wasted ones (unusable, a no-op, or a program
already seen) and turns a run of waste into a decision *before* the next call: after two wasted
answers in a row the mutator is asked to explore (hotter sampling, more failing cases shown),
after four to explore more, and once ``patience`` answers in a row (or ``max_rate`` of at least
``min_calls``) were wasted the parent is *saturated*: the search moves on to another parent.

Before a parent saturates, :meth:`WasteLedger.promise` says how much one more call about it is
worth compared with a call about another parent: the chance that the answer is a program not
seen before (a Good-Turing estimate: the share of this parent's answers that were new and never
answered again) times the chance that a new answer helps (passes more cases than the parent, or
is a stepping stone; estimated from its evaluated answers, shrunk towards the rate over every
parent, so that a parent never asked about starts at what answers usually achieve). A parent
that keeps getting the same answers, or new answers that never help, loses the calls to one
whose neighbourhood is less explored, whatever the model: a model that repeats itself says so
through its duplicates.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from auto_dev._exceptions import ValidationError


@dataclass(slots=True)
class ParentWaste:
    """Answers one mutator gave for one parent."""

    calls: int = 0
    wasted: int = 0
    streak: int = 0  # consecutive wasted answers, the latest included
    evaluated: int = 0  # answers evaluated (their outcome settled)
    helped: int = 0  # of those, answers that passed more cases than the parent, or stones
    #: Programs this parent's answers introduced and that it has not answered again (the
    #: Good-Turing singletons).
    once: set[bytes] = field(default_factory=set)

    @property
    def new_chance(self) -> float:
        """Good-Turing estimate of the chance that the next answer is a program not seen yet
        (smoothed: 1 before any answer)."""
        return (len(self.once) + 1) / (self.calls + 1)

    def help_chance(self, prior: float = 0.5, weight: float = 2.0) -> float:
        """Estimate of the chance that a new answer helps: the answers evaluated so far,
        shrunk towards ``prior`` as if ``weight`` answers had helped at that rate."""
        return (self.helped + weight * prior) / (self.evaluated + weight)


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
        self.evaluated = 0
        self.helped = 0
        self._parents: OrderedDict[tuple[str, str], ParentWaste] = OrderedDict()

    def _entry(self, mutator: str, parent_code: str) -> ParentWaste:
        key = (mutator, parent_code)
        entry = self._parents.get(key)
        if entry is None:
            entry = self._parents[key] = ParentWaste()
            while len(self._parents) > self.capacity:
                self._parents.popitem(last=False)
        else:
            self._parents.move_to_end(key)
        return entry

    def record(
        self, mutator: str, parent_code: str, *, wasted: bool, digest: bytes | None = None
    ) -> None:
        """Count one answered call of ``mutator`` for the parent with ``parent_code``.

        ``digest`` (the answer's normalised program hash, when it parses) tells a program this
        parent's answers introduced (not ``wasted``) from one it answered again.
        """
        entry = self._entry(mutator, parent_code)
        if digest is not None:
            if not wasted:
                entry.once.add(digest)
            else:
                entry.once.discard(digest)
        entry.calls += 1
        self.calls += 1
        if wasted:
            entry.wasted += 1
            entry.streak += 1
            self.wasted += 1
        else:
            entry.streak = 0

    def settle(self, mutator: str, parent_code: str, *, helped: bool) -> None:
        """Count the outcome of one evaluated answer of ``mutator`` for that parent."""
        entry = self._entry(mutator, parent_code)
        entry.evaluated += 1
        entry.helped += int(helped)
        self.evaluated += 1
        self.helped += int(helped)

    def promise(self, mutator: str, parent_code: str) -> float:
        """The expected number of new, helpful answers per call about that parent (in (0, 1];
        a parent never asked about scores the share of all evaluated answers that helped,
        Laplace-smoothed: 0.5 before any)."""
        entry = self.get(mutator, parent_code)
        return entry.new_chance * entry.help_chance(self.help_rate)

    @property
    def help_rate(self) -> float:
        """The share of evaluated answers that helped, over every parent (Laplace)."""
        return (self.helped + 1) / (self.evaluated + 2)

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
