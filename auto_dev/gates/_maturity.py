"""Maturity levels and the statistics graduation reads (no database access here)."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import Any

from auto_dev._exceptions import ValidationError


class Maturity(enum.StrEnum):
    """How far an agent is trusted with a capability: student < intern < supervised < autonomous.

    Comparisons follow that order (not the alphabetical order a plain string enum would use).
    """

    STUDENT = "student"
    INTERN = "intern"
    SUPERVISED = "supervised"
    AUTONOMOUS = "autonomous"

    @property
    def rank(self) -> int:
        return _RANK[self.value]

    def _cmp(self, other: Any) -> int | None:
        if not isinstance(other, Maturity):
            return None
        return self.rank - other.rank

    def __lt__(self, other: object) -> bool:
        diff = self._cmp(other)
        return NotImplemented if diff is None else diff < 0

    def __le__(self, other: object) -> bool:
        diff = self._cmp(other)
        return NotImplemented if diff is None else diff <= 0

    def __gt__(self, other: object) -> bool:
        diff = self._cmp(other)
        return NotImplemented if diff is None else diff > 0

    def __ge__(self, other: object) -> bool:
        diff = self._cmp(other)
        return NotImplemented if diff is None else diff >= 0

    @classmethod
    def parse(cls, value: object, *, field: str = "maturity") -> Maturity:
        """Accept a :class:`Maturity` or its name in any case (the seed wrote ``"SUPERVISED"``)."""
        if isinstance(value, Maturity):
            return value
        if isinstance(value, str):
            try:
                return cls(value.strip().lower())
            except ValueError:
                pass
        allowed = ", ".join(m.value for m in cls)
        raise ValidationError(field, f"must be one of {allowed}, got {value!r}")

    def next_up(self) -> Maturity:
        members = list(Maturity)
        return members[min(self.rank + 1, len(members) - 1)]

    def next_down(self) -> Maturity:
        return list(Maturity)[max(self.rank - 1, 0)]


_RANK = {"student": 0, "intern": 1, "supervised": 2, "autonomous": 3}


def is_at_least(maturity: Maturity | str, required: Maturity | str) -> bool:
    """``maturity >= required`` (seed-compatible helper; accepts names in any case)."""
    return Maturity.parse(maturity) >= Maturity.parse(required, field="required")


@lru_cache(maxsize=64)
def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)


def wilson_lower_bound(successes: int, total: int, confidence: float = 0.95) -> float:
    """The lower end of the Wilson score interval for ``successes`` out of ``total``.

    Unlike the raw rate it rewards evidence: 3/3 scores well below 30/30. Zero trials give 0.
    """
    if not isinstance(total, int) or total < 0:
        raise ValidationError("total", f"must be a non-negative integer, got {total!r}")
    if not isinstance(successes, int) or not 0 <= successes <= total:
        raise ValidationError("successes", f"must be an integer in [0, {total}]")
    if not 0.0 < confidence < 1.0:
        raise ValidationError("confidence", "must be in (0, 1)")
    if total == 0:
        return 0.0
    z = _z(confidence)
    p = successes / total
    z2n = z * z / total
    centre = p + z2n / 2.0
    margin = z * math.sqrt(p * (1.0 - p) / total + z2n / (4.0 * total))
    # Clamp away float dust so that the bound stays within [0, p].
    return min(p, max(0.0, (centre - margin) / (1.0 + z2n)))


@dataclass(frozen=True, slots=True)
class Evidence:
    """Usage since the last maturity change: what graduation decides on."""

    successes: int  # verified successes
    samples: int  # verified successes + every failure
    lower_bound: float


def evidence_of(history: list[tuple[bool, bool]], confidence: float) -> Evidence:
    """The evidence in ``history``, a list of (success, verified) uses.

    An unverified success is the agent's own claim: it is not evidence. Failures count whether
    anyone verified them or not.
    """
    successes = sum(1 for ok, checked in history if ok and checked)
    samples = sum(1 for ok, checked in history if checked or not ok)
    return Evidence(successes, samples, wilson_lower_bound(successes, samples, confidence))


@dataclass(frozen=True, slots=True)
class GraduationResult:
    """What :meth:`Gatekeeper.record_usage` concluded."""

    before: Maturity
    after: Maturity
    evidence: Evidence
    reason: str

    @property
    def changed(self) -> bool:
        return self.before is not self.after
