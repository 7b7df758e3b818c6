"""The LLM cost ledger: one :class:`~auto_dev.models.LLMCall` row per model call attempt.

A row is written ``reserved`` before the call (holding the worst-case cost, see
:mod:`auto_dev.llm.budget`) and settled to ``ok``, ``error`` or ``cache_hit`` with the real cost
after it. Days are UTC days. The queries here back ``auto-dev llm spend`` and ``llm status``.

The ledger rows are the record. :class:`~auto_dev.models.LLMBudgetDay` holds each tenant's
totals per day, derived from them by database triggers (see the initial migration) so that a
budget check reads one row; :func:`reconcile_day` recomputes such a row from the ledger.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection, bindparam, case, func, insert, select, update
from sqlalchemy.orm import Session

from auto_dev._exceptions import NotFoundError, StorageError, ValidationError
from auto_dev.llm._attempts import BREAKER_ERRORS
from auto_dev.llm.types import new_call_id
from auto_dev.models import LLMBudgetDay, LLMCall

#: Statuses a settled row may have.
SETTLED_STATUSES = frozenset({"ok", "error", "cache_hit"})
RESERVED = "reserved"
#: The error kind of a reservation nobody settled in time (its process died, most likely): an
#: ``error`` row charged at its estimate, which a late settlement may still replace.
ABANDONED = "AbandonedReservation"
ABANDONED_ERROR = (
    f"{ABANDONED}: never settled (the process making the call stopped?); charged at its "
    "worst-case estimate"
)



def _class_names(classes: tuple[type, ...]) -> frozenset[str]:
    names: set[str] = set()
    todo = list(classes)
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return frozenset(names)


#: Error kinds (the class name stored as the error's prefix) that count against a deployment's
#: circuit breaker, as the live breaker counts them (subclasses included); the others are the
#: caller's problem (a prompt too long, a bad request).
BREAKER_ERROR_NAMES = _class_names(BREAKER_ERRORS)


class SessionSource(Protocol):
    """What the ledger needs from :class:`auto_dev.db.Database`."""

    def session(self, *, readonly: bool = False) -> AbstractContextManager[Session]: ...


def utc_day_start(now: datetime | None = None) -> datetime:
    """Midnight UTC of the day ``now`` falls in (default: today)."""
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    now = now.astimezone(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def utc_day(now: datetime | None = None) -> date:
    """The UTC day ``now`` falls in: the key of its :class:`~auto_dev.models.LLMBudgetDay`."""
    return utc_day_start(now).date()


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """``[start, end)`` of a UTC day."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


@dataclass(frozen=True, slots=True)
class DayTotals:
    """A tenant's ledger for one UTC day: settled cost, and reservations still in flight."""

    committed_usd: float = 0.0
    reserved_usd: float = 0.0
    reserved_calls: int = 0

    @property
    def spent_usd(self) -> float:
        """What counts against the budget: settled costs plus in-flight worst cases."""
        return self.committed_usd + self.reserved_usd


# Statements are built once: on the hot path (two per model call) SQLAlchemy then only looks the
# compiled form up in its cache, and the Core connection skips the ORM's unit of work.
_SPENT_SINCE = select(func.coalesce(func.sum(LLMCall.cost_usd), 0.0)).where(
    LLMCall.tenant_id == bindparam("tenant_id"), LLMCall.created_at >= bindparam("since")
)
_INSERT = insert(LLMCall)
# A row is settled once: while reserved, or after it was written off as abandoned.
_SETTLEABLE = (LLMCall.status == RESERVED) | (
    (LLMCall.status == "error") & LLMCall.error.startswith(f"{ABANDONED}:", autoescape=True)
)
_SETTLE = (
    update(LLMCall)
    .where(LLMCall.id == bindparam("call_id"), _SETTLEABLE)
    .values(
        status=bindparam("status"),
        cost_usd=bindparam("cost_usd"),
        prompt_tokens=bindparam("prompt_tokens"),
        completion_tokens=bindparam("completion_tokens"),
        latency_s=bindparam("latency_s"),
        error=bindparam("error"),
    )
)


_RESERVED_ROW = LLMCall.status == RESERVED
_ABANDON = (
    update(LLMCall)
    .where(
        LLMCall.tenant_id == bindparam("key_tenant"),
        LLMCall.status == RESERVED,
        LLMCall.created_at >= bindparam("since"),
        LLMCall.created_at < bindparam("before"),
    )
    .values(status="error", error=ABANDONED_ERROR)
)
_LEDGER_DAY = select(
    func.coalesce(func.sum(case((_RESERVED_ROW, 0.0), else_=LLMCall.cost_usd)), 0.0),
    func.coalesce(func.sum(case((_RESERVED_ROW, LLMCall.cost_usd), else_=0.0)), 0.0),
    func.coalesce(func.sum(case((_RESERVED_ROW, 1), else_=0)), 0),
).where(
    LLMCall.tenant_id == bindparam("tenant_id"),
    LLMCall.created_at >= bindparam("since"),
    LLMCall.created_at < bindparam("until"),
)
# (Bound names differ from the columns': an UPDATE reserves those for its SET values.)
_DAY_KEY = (LLMBudgetDay.tenant_id == bindparam("key_tenant")) & (
    LLMBudgetDay.day == bindparam("key_day")
)
_DAY_COLUMNS = (LLMBudgetDay.committed_usd, LLMBudgetDay.reserved_usd, LLMBudgetDay.reserved_calls)
_READ_DAY = select(*_DAY_COLUMNS).where(_DAY_KEY)
_LOCK_DAY = _READ_DAY.with_for_update()
_SET_DAY = (
    update(LLMBudgetDay)
    .where(_DAY_KEY)
    .values(
        committed_usd=bindparam("committed_usd"),
        reserved_usd=bindparam("reserved_usd"),
        reserved_calls=bindparam("reserved_calls"),
    )
)


def _connection(where: Session | Connection) -> Connection:
    return where.connection() if isinstance(where, Session) else where


def spent_since(where: Session | Connection, tenant_id: str, since: datetime) -> float:
    """What ``tenant_id`` spent (reserved rows at their estimate) since ``since``."""
    total = _connection(where).execute(
        _SPENT_SINCE, {"tenant_id": tenant_id, "since": since}
    ).scalar_one()
    return float(total)


def day_totals(
    where: Session | Connection, tenant_id: str, day: date, *, lock: bool = False
) -> DayTotals | None:
    """The stored day row of ``tenant_id`` (None: no ledger row that day).

    With ``lock``, the row is locked until the transaction ends (``FOR UPDATE`` on PostgreSQL;
    SQLite's write transactions are exclusive anyway); a missing row is created first, so that
    there is something to lock, and zeros are returned.
    """
    connection = _connection(where)
    params = {"key_tenant": tenant_id, "key_day": day}
    row = connection.execute(_LOCK_DAY if lock else _READ_DAY, params).first()
    if row is None and lock:
        _ensure_day(connection, tenant_id, day)
        row = connection.execute(_LOCK_DAY, params).first()
    if row is None:
        return None
    return DayTotals(float(row[0]), float(row[1]), int(row[2]))


def ledger_day(where: Session | Connection, tenant_id: str, day: date) -> DayTotals:
    """The day's totals summed from the ledger rows themselves (the record)."""
    since, until = day_bounds(day)
    row = _connection(where).execute(
        _LEDGER_DAY, {"tenant_id": tenant_id, "since": since, "until": until}
    ).one()
    return DayTotals(float(row[0]), float(row[1]), int(row[2]))


def reconcile_day(
    where: Session | Connection, tenant_id: str, day: date, *, stale_before: datetime
) -> DayTotals:
    """Recompute the day row of ``tenant_id`` from the ledger rows; returns the totals.

    First, that day's reservations made before ``stale_before`` are written off as abandoned
    (see :data:`ABANDONED`): the same cost, no longer "in flight". Run it inside a write
    transaction. The row is locked before the ledger is summed, and every ledger write updates
    the row through its trigger (waiting for that lock), so the sum sees every write that
    committed before and none of those that will apply after. (Ledger rows are locked before
    the day row, as a settlement does, so that neither can wait for the other.)
    """
    connection = _connection(where)
    since, until = day_bounds(day)
    connection.execute(
        _ABANDON,
        {"key_tenant": tenant_id, "since": since, "before": min(until, stale_before)},
    )
    day_totals(connection, tenant_id, day, lock=True)
    totals = ledger_day(connection, tenant_id, day)
    connection.execute(
        _SET_DAY,
        {
            "key_tenant": tenant_id,
            "key_day": day,
            "committed_usd": totals.committed_usd,
            "reserved_usd": totals.reserved_usd,
            "reserved_calls": totals.reserved_calls,
        },
    )
    return totals


def _ensure_day(connection: Connection, tenant_id: str, day: date) -> None:
    """Insert a zero day row unless one exists (a concurrent insert waits, then yields)."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = connection.dialect.name
    values = {
        "tenant_id": tenant_id,
        "day": day,
        "committed_usd": 0.0,
        "reserved_usd": 0.0,
        "reserved_calls": 0,
    }
    if dialect == "postgresql":
        statement: Any = postgresql.insert(LLMBudgetDay).values(**values)
    elif dialect == "sqlite":
        statement = sqlite.insert(LLMBudgetDay).values(**values)
    else:  # pragma: no cover - the migration only knows these two
        raise StorageError(f"the LLM budget does not support the {dialect!r} database")
    connection.execute(statement.on_conflict_do_nothing())


def call_row(**values: Any) -> dict[str, Any]:
    """A complete ledger row from ``values`` (LLMCall columns), with defaults and a new id."""
    call_id = values.pop("id", None) or new_call_id()
    return {
        "id": call_id,
        "run_id": None,
        "engine": None,
        "purpose": None,
        "deployment": None,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost_usd": 0.0,
        "latency_s": 0.0,
        "cache_hit": False,
        "status": RESERVED,
        "error": None,
        "created_at": datetime.now(UTC),
        **values,
    }


def insert_call(where: Session | Connection, **values: Any) -> str:
    """Insert one ledger row; ``values`` are LLMCall columns. Returns the row id."""
    row = call_row(**values)
    _connection(where).execute(_INSERT, row)
    return str(row["id"])


def settle_values(
    *,
    status: str,
    cost_usd: float,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    latency_s: float = 0.0,
    error: str | None = None,
) -> dict[str, Any]:
    """The checked final values of a settled row."""
    if status not in SETTLED_STATUSES:
        raise ValidationError("status", f"must be one of {sorted(SETTLED_STATUSES)}")
    return {
        "status": status,
        "cost_usd": float(cost_usd),
        "prompt_tokens": int(prompt_tokens),
        "completion_tokens": int(completion_tokens),
        "latency_s": float(latency_s),
        "error": error[:4000] if error else None,
    }


def settle_call(where: Session | Connection, call_id: str, **values: Any) -> None:
    """Turn a ``reserved`` row into its final state with the real figures."""
    params = settle_values(**values)
    result = _connection(where).execute(_SETTLE, {"call_id": call_id, **params})
    if result.rowcount != 1:
        raise NotFoundError(f"no reserved ledger row {call_id!r} to settle")


@dataclass(frozen=True, slots=True)
class SpendRow:
    """Spend of one (tenant, model, engine) over a period."""

    tenant_id: str
    model: str
    engine: str | None
    calls: int
    errors: int
    cache_hits: int
    in_flight: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "model": self.model,
            "engine": self.engine,
            "calls": self.calls,
            "errors": self.errors,
            "cache_hits": self.cache_hits,
            "in_flight": self.in_flight,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
        }


def spend(
    database: SessionSource,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    tenant_id: str | None = None,
) -> list[SpendRow]:
    """Spend grouped by tenant, model and engine (default period: today, UTC), largest first."""
    since = since or utc_day_start()
    until = until or since + timedelta(days=1)
    status_is = LLMCall.status.__eq__
    query = (
        select(
            LLMCall.tenant_id,
            LLMCall.model,
            LLMCall.engine,
            func.count(),
            func.sum(case((status_is("error"), 1), else_=0)),
            func.sum(case((status_is("cache_hit"), 1), else_=0)),
            func.sum(case((status_is(RESERVED), 1), else_=0)),
            func.coalesce(func.sum(LLMCall.prompt_tokens), 0),
            func.coalesce(func.sum(LLMCall.completion_tokens), 0),
            func.coalesce(func.sum(LLMCall.cost_usd), 0.0),
        )
        .where(LLMCall.created_at >= since, LLMCall.created_at < until)
        .group_by(LLMCall.tenant_id, LLMCall.model, LLMCall.engine)
    )
    if tenant_id is not None:
        query = query.where(LLMCall.tenant_id == tenant_id)
    with database.session(readonly=True) as session:
        rows = session.execute(query).all()
    out = [
        SpendRow(
            tenant_id=r[0],
            model=r[1],
            engine=r[2],
            calls=int(r[3]),
            errors=int(r[4] or 0),
            cache_hits=int(r[5] or 0),
            in_flight=int(r[6] or 0),
            prompt_tokens=int(r[7]),
            completion_tokens=int(r[8]),
            cost_usd=float(r[9]),
        )
        for r in rows
    ]
    out.sort(key=lambda s: (-s.cost_usd, s.tenant_id, s.model, s.engine or ""))
    return out


def deployment_outcomes(
    database: SessionSource, deployments: list[str], *, limit: int = 50
) -> dict[str, list[tuple[float, bool]]]:
    """The latest settled outcomes per deployment as ``(unix time, counts_as_success)``.

    Errors that are not the deployment's fault (see :data:`BREAKER_ERROR_NAMES`) are left out, as
    the live breaker ignores them.
    """
    out: dict[str, list[tuple[float, bool]]] = {d: [] for d in deployments}
    if not deployments:
        return out
    with database.session(readonly=True) as session:
        for deployment in deployments:
            rows = session.execute(
                select(LLMCall.created_at, LLMCall.latency_s, LLMCall.status, LLMCall.error)
                .where(LLMCall.deployment == deployment, LLMCall.status.in_(("ok", "error")))
                .order_by(LLMCall.created_at.desc())
                .limit(limit)
            ).all()
            for created_at, latency_s, status, error in rows:
                if status == "error" and _error_kind(error) not in BREAKER_ERROR_NAMES:
                    continue
                at = _as_utc(created_at).timestamp() + float(latency_s or 0.0)
                out[deployment].append((at, status == "ok"))
    return out


def latest_failures(database: SessionSource, deployments: list[str]) -> dict[str, str]:
    """Per deployment whose latest settled call failed, that call's stored error text
    (``"LLMAuthError: ..."``): what ``auto-dev llm status`` shows as the last error."""
    out: dict[str, str] = {}
    with database.session(readonly=True) as session:
        for deployment in deployments:
            row = session.execute(
                select(LLMCall.status, LLMCall.error)
                .where(LLMCall.deployment == deployment, LLMCall.status.in_(("ok", "error")))
                .order_by(LLMCall.created_at.desc())
                .limit(1)
            ).first()
            if row is not None and row.status == "error" and row.error:
                out[deployment] = str(row.error)
    return out


def calls(
    database: SessionSource, *, tenant_id: str | None = None, limit: int = 100
) -> Iterator[LLMCall]:
    """The latest ledger rows (newest first)."""
    query = select(LLMCall).order_by(LLMCall.created_at.desc()).limit(limit)
    if tenant_id is not None:
        query = query.where(LLMCall.tenant_id == tenant_id)
    with database.session(readonly=True) as session:
        rows = list(session.scalars(query))
        # Detach before the read-only session rolls back, which would expire the loaded values.
        session.expunge_all()
    return iter(rows)


def error_text(exc: BaseException) -> str:
    """How an error is stored: its class name first, so its kind can be read back."""
    return f"{type(exc).__name__}: {exc}"


def _error_kind(error: str | None) -> str:
    return (error or "").split(":", 1)[0].strip()


def _as_utc(value: datetime) -> datetime:
    # SQLite gives naive datetimes back; every stored time is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
