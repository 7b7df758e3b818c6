"""Aggregates over every tenant for the service's ``/metrics``: read at scrape time, so every
process serving one database reports the same figures.

This is a read model across aggregates (candidates, runs, the LLM ledger, decisions): counts
and sums only, no tenant ids or names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Float, case, cast, func, select

from auto_dev.candidates._kinds import MODELS
from auto_dev.models import EvolutionRun, LLMCall, ReviewDecision

if TYPE_CHECKING:
    from auto_dev.db import Database

#: Upper bounds (seconds) of the cycle-duration histogram's buckets.
CYCLE_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


@dataclass(frozen=True, slots=True)
class DurationHistogram:
    """Cumulative bucket counts (one per :data:`CYCLE_BUCKETS` bound, then +Inf) and the sum."""

    buckets: list[int]
    count: int
    total_s: float


@dataclass(frozen=True, slots=True)
class LLMFigures:
    calls: int
    cost_usd: float
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class ServiceFigures:
    candidates: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, status)
    decisions: dict[str, int] = field(default_factory=dict)  # promoted, rolled_back, ...
    runs: dict[tuple[str, str], int] = field(default_factory=dict)  # (engine, status)
    cycle_durations: dict[str, DurationHistogram] = field(default_factory=dict)  # by engine
    llm: dict[tuple[str, str], LLMFigures] = field(default_factory=dict)  # (model, status)


def read_figures(database: Database) -> ServiceFigures:
    with database.session(readonly=True) as session:
        candidates: dict[tuple[str, str], int] = {}
        for kind, model in MODELS.items():
            for status, count in session.execute(
                    select(model.status, func.count()).group_by(model.status)):
                candidates[(kind.value, status)] = int(count)
        decisions = {d: int(n) for d, n in session.execute(
            select(ReviewDecision.decision, func.count()).group_by(ReviewDecision.decision))}
        runs = {(e, s): int(n) for e, s, n in session.execute(
            select(EvolutionRun.engine, EvolutionRun.status, func.count())
            .group_by(EvolutionRun.engine, EvolutionRun.status))}
        durations = _cycle_durations(session, database.dialect)
        llm = {(model, status): LLMFigures(int(n), float(cost or 0), int(p or 0), int(c or 0))
               for model, status, n, cost, p, c in session.execute(
                   select(LLMCall.model, LLMCall.status, func.count(), func.sum(LLMCall.cost_usd),
                          func.sum(LLMCall.prompt_tokens), func.sum(LLMCall.completion_tokens))
                   .group_by(LLMCall.model, LLMCall.status))}
    return ServiceFigures(candidates, decisions, runs, durations, llm)


def _cycle_durations(session: Any, dialect: str) -> dict[str, DurationHistogram]:
    started, finished = EvolutionRun.started_at, EvolutionRun.finished_at
    if dialect == "sqlite":
        seconds: Any = (func.julianday(finished) - func.julianday(started)) * 86_400.0
    else:
        seconds = cast(func.extract("epoch", finished - started), Float)
    columns = [func.sum(case((seconds <= bound, 1), else_=0)) for bound in CYCLE_BUCKETS]
    query = (select(EvolutionRun.engine, func.count(), func.sum(seconds), *columns)
             .where(finished.is_not(None)).group_by(EvolutionRun.engine))
    out = {}
    for engine, count, total, *buckets in session.execute(query):
        out[engine] = DurationHistogram([int(b or 0) for b in buckets] + [int(count)],
                                        int(count), float(total or 0.0))
    return out
