"""Multi-objective selection in numpy: constraint-domination, non-dominated sorting, crowding.

Everything works on a *minimisation matrix* ``F`` (one row per candidate, one column per
objective, "max" objectives negated) and a *violation vector* ``v`` (0 = feasible). Deb's
constraint-domination decides who dominates whom: a lower violation always wins; equal violations
fall back to Pareto dominance. So a candidate that breaks a case its parent passed never ranks
above one that breaks none, however fast it is.

The functions are order-invariant: permuting the rows permutes ranks and crowding distances the
same way (crowding treats tied values symmetrically, unlike the textbook sort-based version).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from auto_dev._exceptions import ValidationError
from auto_dev.abc import Objective
from auto_dev.fitness.objectives import DEFAULT_OBJECTIVES, VIOLATION

#: Relative margins below which two values count as equal when deciding "strictly better":
#: latency and memory are measured, so a 2 % difference is noise, not an improvement.
DEFAULT_TOLERANCES: Mapping[str, float] = {"latency_s": 0.10, "peak_memory_kb": 0.05}

_CHUNK = 256  # rows per block of the n x n dominance matrix, to bound peak memory


class Scored(Protocol):
    """Anything with an objective vector and the set of cases it passes (e.g. a Program)."""

    @property
    def scores(self) -> Mapping[str, float]: ...

    @property
    def passed_cases(self) -> frozenset[int]: ...


def to_minimisation(
    vectors: Sequence[Mapping[str, float]], objectives: Sequence[Objective] = DEFAULT_OBJECTIVES
) -> tuple[np.ndarray, np.ndarray]:
    """``(F, v)`` from objective vectors (dicts keyed by objective name plus ``VIOLATION``)."""
    F = np.empty((len(vectors), len(objectives)), dtype=float)
    v = np.zeros(len(vectors), dtype=float)
    for i, vector in enumerate(vectors):
        for j, obj in enumerate(objectives):
            try:
                value = float(vector[obj.name])
            except KeyError as exc:
                raise ValidationError(f"vectors[{i}].{obj.name}", "is missing") from exc
            F[i, j] = -value if obj.direction == "max" else value
        v[i] = float(vector.get(VIOLATION, 0.0) or 0.0)
    _check(F, v)
    return F, v


def _check(F: np.ndarray, v: np.ndarray | None) -> None:
    if F.ndim != 2:
        raise ValidationError("F", f"must be a 2-D matrix, got {F.ndim} dimensions")
    if np.isnan(F).any():
        raise ValidationError("F", "must not contain NaN")
    if v is not None:
        if v.shape != (F.shape[0],):
            raise ValidationError("violation", "must have one entry per row of F")
        if np.isnan(v).any() or (v < 0).any():
            raise ValidationError("violation", "must be non-negative numbers")


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """Pareto dominance for minimisation: ``a`` no worse everywhere and better somewhere."""
    return bool(np.all(a <= b) and np.any(a < b))


def dominance_matrix(F: np.ndarray, violation: np.ndarray | None = None) -> np.ndarray:
    """``D[i, j]`` is True when row ``i`` constraint-dominates row ``j``."""
    F = np.asarray(F, dtype=float)
    n = F.shape[0]
    v = np.zeros(n) if violation is None else np.asarray(violation, dtype=float)
    _check(F, v)
    D = np.empty((n, n), dtype=bool)
    for start in range(0, n, _CHUNK):
        block = F[start : start + _CHUNK, None, :]
        le = np.all(block <= F[None, :, :], axis=2)
        lt = np.any(block < F[None, :, :], axis=2)
        vb = v[start : start + _CHUNK, None]
        D[start : start + _CHUNK] = (vb < v[None, :]) | ((vb == v[None, :]) & le & lt)
    return D


def non_dominated_ranks(F: np.ndarray, violation: np.ndarray | None = None) -> np.ndarray:
    """Front index of each row (0 = non-dominated) by fast non-dominated sorting."""
    D = dominance_matrix(F, violation)
    n = D.shape[0]
    ranks = np.full(n, -1, dtype=int)
    remaining = D.sum(axis=0)  # how many rows dominate each row
    current = np.flatnonzero(remaining == 0)
    rank = 0
    while current.size:
        ranks[current] = rank
        remaining = remaining - D[current].sum(axis=0)
        current = np.flatnonzero((remaining == 0) & (ranks == -1))
        rank += 1
    return ranks


def fronts(F: np.ndarray, violation: np.ndarray | None = None) -> list[np.ndarray]:
    """Row indices of each front, best first."""
    ranks = non_dominated_ranks(F, violation)
    return [np.flatnonzero(ranks == r) for r in range(int(ranks.max()) + 1)] if ranks.size else []


def crowding_distance(F: np.ndarray) -> np.ndarray:
    """Crowding distance of each row of one front; boundary rows get ``inf``.

    A row is a boundary row when it attains the minimum or maximum of an objective that varies.
    Interior rows sum, per objective, the normalised gap between the nearest strictly smaller and
    strictly larger values, so tied rows get equal distances whatever their order.
    """
    F = np.asarray(F, dtype=float)
    _check(F, None)
    n, m = F.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        col = F[:, j]
        uniq = np.unique(col)
        if uniq.size < 2:
            continue
        pos = np.searchsorted(uniq, col)
        span = uniq[-1] - uniq[0]
        if not np.isfinite(span):
            uniq, col, span = np.arange(uniq.size, dtype=float), pos.astype(float), uniq.size - 1.0
        below = uniq[np.maximum(pos - 1, 0)]
        above = uniq[np.minimum(pos + 1, uniq.size - 1)]
        distance += (above - below) / span
        distance[(pos == 0) | (pos == uniq.size - 1)] = np.inf
    return distance


def select(F: np.ndarray, violation: np.ndarray | None, k: int) -> np.ndarray:
    """Indices of the ``k`` best rows: by front, then by crowding distance (NSGA-II)."""
    F = np.asarray(F, dtype=float)
    n = F.shape[0]
    if k < 0:
        raise ValidationError("k", "must be non-negative")
    if n == 0 or k == 0:
        return np.empty(0, dtype=int)
    ranks = non_dominated_ranks(F, violation)
    crowd = np.zeros(n)
    for r in range(int(ranks.max()) + 1):
        members = np.flatnonzero(ranks == r)
        crowd[members] = crowding_distance(F[members])
    order = np.lexsort((np.arange(n), -crowd, ranks))
    return order[:k]


def pareto_front(
    vectors: Sequence[Mapping[str, float]], objectives: Sequence[Objective] = DEFAULT_OBJECTIVES
) -> list[int]:
    """Indices of the non-dominated vectors (constraint-domination applied)."""
    if not vectors:
        return []
    F, v = to_minimisation(vectors, objectives)
    return [int(i) for i in np.flatnonzero(non_dominated_ranks(F, v) == 0)]


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a candidate may be offered for promotion, and why (or why not)."""

    promotable: bool
    reason: str
    better_on: tuple[str, ...] = ()


def promotion_verdict(
    candidate: Scored,
    active: Scored,
    *,
    population: Sequence[Scored] = (),
    objectives: Sequence[Objective] = DEFAULT_OBJECTIVES,
    tolerances: Mapping[str, float] = DEFAULT_TOLERANCES,
) -> Verdict:
    """Decide promotion: no case of the active version broken, feasible, not dominated by the
    active version or any of ``population``, and strictly better than the active version on at
    least one objective (by more than its tolerance)."""
    broken = sorted(set(active.passed_cases) - set(candidate.passed_cases))
    if broken:
        shown = ", ".join(str(i) for i in broken[:5])
        return Verdict(False, f"breaks {len(broken)} case(s) the active version passes ({shown})")
    cand = _vector(candidate, objectives, "candidate")
    act = _vector(active, objectives, "active")
    if cand[VIOLATION] > 0:
        return Verdict(False, f"violates a hard constraint (violation {cand[VIOLATION]:g})")
    rows = [cand, act] + [_vector(p, objectives, f"population[{i}]")
                          for i, p in enumerate(population)]
    F, v = to_minimisation(rows, objectives)
    D = dominance_matrix(F, v)
    dominators = np.flatnonzero(D[:, 0])
    if dominators.size:
        who = "the active version" if 1 in dominators else "another candidate"
        return Verdict(False, f"dominated by {who}")
    better = []
    for obj in objectives:
        c, a = cand[obj.name], act[obj.name]
        gain = (c - a) if obj.direction == "max" else (a - c)
        margin = tolerances.get(obj.name, 0.0) * (abs(a) if math.isfinite(a) else 0.0)
        if gain > margin:
            better.append(obj.name)
    if not better:
        return Verdict(False, "not strictly better than the active version on any objective")
    return Verdict(True, "better on " + ", ".join(better), tuple(better))


def is_promotable(
    candidate: Scored,
    active: Scored,
    *,
    population: Sequence[Scored] = (),
    objectives: Sequence[Objective] = DEFAULT_OBJECTIVES,
    tolerances: Mapping[str, float] = DEFAULT_TOLERANCES,
) -> bool:
    """True when :func:`promotion_verdict` says the candidate may be offered for promotion."""
    return promotion_verdict(candidate, active, population=population, objectives=objectives,
                             tolerances=tolerances).promotable


def _vector(item: Scored, objectives: Sequence[Objective], where: str) -> dict[str, float]:
    scores: Mapping[str, Any] = item.scores
    out: dict[str, float] = {}
    for obj in objectives:
        if obj.name not in scores:
            raise ValidationError(f"{where}.scores.{obj.name}", "is missing")
        out[obj.name] = float(scores[obj.name])
    out[VIOLATION] = float(scores.get(VIOLATION, 0.0) or 0.0)
    return out
