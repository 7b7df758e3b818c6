"""The hot ledger statements (reserve, settle) in raw sqlite3, for SQLite files.

Every model call writes the ledger twice. On the event loop's thread each driver call costs far
more than its own few microseconds: sqlite3 releases the GIL for every step, and litellm keeps
threads of its own waiting for it, so each statement can hand the interpreter away. So the
common case is one statement per write, in SQLite's autocommit mode (a single statement is its
own transaction, and a writing statement takes the write lock before it reads anything):

* reserve: one ``INSERT ... SELECT`` that inserts the ``reserved`` row only if the tenant's
  settings are still the ones the budget was computed from and its day row
  (``llm_budget_days``, kept by triggers) plus the estimate stays within the budget;
* settle: one ``UPDATE`` of the row (its trigger moves the estimate to the real cost).

Both go through ``executemany`` with one set of parameters: the same statement, minus
``execute``'s read of the last row id, one GIL release fewer.

Anything else (first use of a tenant or a day, a refusal, changed settings) takes the locked,
multi-statement path (:meth:`FastLedgerConnection.transaction`). The connection still comes
from the engine's pool (so auto_dev.db's connect hooks applied: WAL, busy timeout, foreign keys,
no implicit transactions), values are converted by the columns' own SQLAlchemy bind processors
(the stored format is identical), and errors are mapped by the database's own
``translate_error``. PostgreSQL and in-memory databases keep the SQLAlchemy path.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine

from auto_dev.llm.ledger import ABANDONED, ABANDONED_ERROR, DayTotals, day_bounds
from auto_dev.models import LLMBudgetDay, LLMCall, Tenant
from auto_dev.models.base import UnreadableJSON

_CALLS = LLMCall.__table__
_NAME = LLMCall.__tablename__
_DAYS = LLMBudgetDay.__tablename__
_COLUMNS = [c.name for c in _CALLS.columns]
_INSERT = (
    f"INSERT INTO {_NAME} ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
)
# The reservation in one statement. Parameters: the row's values, then day, tenant id, the
# tenant's settings as read when the limit was computed, and (with a budget) estimate and limit.
_RESERVE_ANY = (
    f"INSERT INTO {_NAME} ({', '.join(_COLUMNS)}) "
    f"SELECT {', '.join('?' for _ in _COLUMNS)} "
    f"FROM {Tenant.__tablename__} AS t LEFT JOIN {_DAYS} AS d "
    "ON d.tenant_id = t.id AND d.day = ? "
    "WHERE t.id = ? AND t.settings IS ?"
)
_RESERVE_WITHIN = (
    _RESERVE_ANY + " AND coalesce(d.committed_usd + d.reserved_usd, 0.0) + ? <= ?"
)
_TENANT = f"SELECT settings FROM {Tenant.__tablename__} WHERE id = ?"
_DAY = (
    f"SELECT committed_usd, reserved_usd, reserved_calls FROM {_DAYS} "
    "WHERE tenant_id = ? AND day = ?"
)
_LEDGER_DAY = (
    "SELECT coalesce(sum(CASE WHEN status = 'reserved' THEN 0.0 ELSE cost_usd END), 0.0), "
    "coalesce(sum(CASE WHEN status = 'reserved' THEN cost_usd ELSE 0.0 END), 0.0), "
    "coalesce(sum(CASE WHEN status = 'reserved' THEN 1 ELSE 0 END), 0) "
    f"FROM {_NAME} WHERE tenant_id = ? AND created_at >= ? AND created_at < ?"
)
_SET_DAY = (
    f"INSERT INTO {_DAYS} (tenant_id, day, committed_usd, reserved_usd, reserved_calls) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id, day) DO UPDATE SET "
    "committed_usd = excluded.committed_usd, reserved_usd = excluded.reserved_usd, "
    "reserved_calls = excluded.reserved_calls"
)
_SPENT = (
    f"SELECT coalesce(sum(cost_usd), 0.0) FROM {_NAME} "
    "WHERE tenant_id = ? AND created_at >= ?"
)
_SETTLE = (
    f"UPDATE {_NAME} SET status = ?, cost_usd = ?, prompt_tokens = ?, "
    "completion_tokens = ?, latency_s = ?, error = ? WHERE id = ? AND (status = 'reserved' "
    f"OR (status = 'error' AND substr(error, 1, {len(ABANDONED) + 1}) = '{ABANDONED}:'))"
)
_ABANDON = (
    f"UPDATE {_NAME} SET status = 'error', error = ? WHERE tenant_id = ? "
    "AND status = 'reserved' AND created_at >= ? AND created_at < ?"
)

_MISSING = object()


class FastLedgerConnection:
    """One pooled SQLite connection used through the driver for ledger writes (one thread)."""

    def __init__(self, engine: Engine, *, nowait: bool = False) -> None:
        self._proxy = engine.raw_connection()
        driver = self._proxy.driver_connection
        if not isinstance(driver, sqlite3.Connection):  # pragma: no cover - guarded by caller
            self._proxy.close()
            raise TypeError("FastLedgerConnection needs an sqlite3 connection")
        self._db: sqlite3.Connection = driver
        self.nowait = nowait
        if nowait:
            # A connection that never waits for the write lock (the caller falls back to a
            # thread that does). Detached from the pool, so its setting never leaks to others.
            self._proxy.detach()
            self._db.execute("PRAGMA busy_timeout = 0")
        processor = _CALLS.c.created_at.type.bind_processor(engine.dialect)
        self._time: Callable[[datetime], Any] = processor or (lambda value: value)
        day_processor = LLMBudgetDay.__table__.c.day.type.bind_processor(engine.dialect)
        self._day: Callable[[date], Any] = day_processor or (lambda value: value)

    def close(self) -> None:
        with suppress(Exception):
            self._proxy.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any error)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            with suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise

    def tenant_settings(self, tenant_id: str) -> Any:
        """The tenant's stored settings (raw), or ``_MISSING`` when there is no tenant."""
        row = self._db.execute(_TENANT, (tenant_id,)).fetchone()
        return _MISSING if row is None else row[0]

    def day_totals(self, tenant_id: str, day: date) -> DayTotals | None:
        row = self._db.execute(_DAY, (tenant_id, self._day(day))).fetchone()
        return None if row is None else DayTotals(float(row[0]), float(row[1]), int(row[2]))

    def reconcile_day(self, tenant_id: str, day: date, *, stale_before: datetime) -> DayTotals:
        """Recompute the day row from the ledger, after writing off the day's reservations
        made before ``stale_before`` (inside :meth:`transaction`; see
        :func:`auto_dev.llm.ledger.reconcile_day`)."""
        since, until = day_bounds(day)
        self._db.execute(
            _ABANDON,
            (ABANDONED_ERROR, tenant_id, self._time(since), self._time(min(until, stale_before))),
        )
        row = self._db.execute(
            _LEDGER_DAY, (tenant_id, self._time(since), self._time(until))
        ).fetchone()
        totals = DayTotals(float(row[0]), float(row[1]), int(row[2]))
        self._db.execute(
            _SET_DAY,
            (tenant_id, self._day(day), totals.committed_usd, totals.reserved_usd,
             totals.reserved_calls),
        )
        return totals

    def spent_since(self, tenant_id: str, since: datetime) -> float:
        row = self._db.execute(_SPENT, (tenant_id, self._time(since))).fetchone()
        return float(row[0])

    def insert(self, values: dict[str, Any]) -> None:
        self._db.execute(_INSERT, self._row(values))

    def reserve(
        self, values: dict[str, Any], day: date, settings: Any, within: float | None
    ) -> bool:
        """Insert the ``reserved`` row ``values`` in one statement, if the tenant's settings are
        still ``settings`` and (``within`` given) its day's spend plus the row's cost stays
        within ``within``. False when nothing was inserted: take the locked path."""
        params = self._row(values)
        params += [self._day(day), values["tenant_id"], settings]
        if within is None:
            cursor = self._db.executemany(_RESERVE_ANY, (params,))
        else:
            params += [values["cost_usd"], within]
            cursor = self._db.executemany(_RESERVE_WITHIN, (params,))
        return cursor.rowcount == 1

    def settle(self, call_id: str, values: dict[str, Any]) -> int:
        """Settle one reserved row (a statement of its own, or part of a transaction)."""
        params = (
            values["status"],
            values["cost_usd"],
            values["prompt_tokens"],
            values["completion_tokens"],
            values["latency_s"],
            values["error"],
            call_id,
        )
        return self._db.executemany(_SETTLE, (params,)).rowcount

    def _row(self, values: dict[str, Any]) -> list[Any]:
        params = dict(values)
        params["created_at"] = self._time(params["created_at"])
        params["cache_hit"] = int(bool(params["cache_hit"]))
        return [params[name] for name in _COLUMNS]


def is_missing(value: Any) -> bool:
    return value is _MISSING


def parse_settings(raw: Any) -> Any:
    """Tenant settings as stored (JSON text) to Python; text that is not JSON becomes an
    :class:`~auto_dev.models.base.UnreadableJSON`, as the ORM column reads it."""
    if not isinstance(raw, str | bytes):
        return raw
    try:
        return json.loads(raw)
    except ValueError as exc:
        text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
        return UnreadableJSON(text, str(exc))


def is_busy(exc: BaseException) -> bool:
    """SQLite said the database is locked (another writer holds it)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    message = str(exc).lower()
    return "locked" in message or "busy" in message
