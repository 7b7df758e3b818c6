"""The two hot ledger transactions (reserve, settle) in raw sqlite3, for SQLite files.

Every model call runs two small write transactions. Through SQLAlchemy each costs ~0.2 ms of
CPU (more once litellm has chilled the CPU caches), about a tenth of a whole call to a local
model server; the same statements straight on the driver cost a fifth of that. The connection
still comes from the engine's pool (so auto_dev.db's connect hooks applied: WAL, busy timeout,
foreign keys, no implicit transactions), values are converted by the columns' own SQLAlchemy
bind processors (the stored format is identical), and errors are mapped by the database's own
``translate_error``. PostgreSQL and in-memory databases keep the SQLAlchemy path.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from auto_dev.models import LLMCall, Tenant

_CALLS = LLMCall.__table__
_NAME = LLMCall.__tablename__
_COLUMNS = [c.name for c in _CALLS.columns]
_INSERT = (
    f"INSERT INTO {_NAME} ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
)
_TENANT = f"SELECT settings FROM {Tenant.__tablename__} WHERE id = ?"
_SPENT = (
    f"SELECT coalesce(sum(cost_usd), 0.0) FROM {_NAME} "
    "WHERE tenant_id = ? AND created_at >= ?"
)
_SETTLE = (
    f"UPDATE {_NAME} SET status = ?, cost_usd = ?, prompt_tokens = ?, "
    "completion_tokens = ?, latency_s = ?, error = ? WHERE id = ? AND status = 'reserved'"
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
        """The tenant's settings (a dict or None), or ``_MISSING`` when there is no tenant."""
        row = self._db.execute(_TENANT, (tenant_id,)).fetchone()
        if row is None:
            return _MISSING
        raw = row[0]
        return json.loads(raw) if isinstance(raw, str | bytes) else raw

    def spent_since(self, tenant_id: str, since: datetime) -> float:
        row = self._db.execute(_SPENT, (tenant_id, self._time(since))).fetchone()
        return float(row[0])

    def insert(self, values: dict[str, Any]) -> None:
        params = dict(values)
        params["created_at"] = self._time(params["created_at"])
        params["cache_hit"] = int(bool(params["cache_hit"]))
        self._db.execute(_INSERT, [params[name] for name in _COLUMNS])

    def settle(self, call_id: str, values: dict[str, Any]) -> int:
        cursor = self._db.execute(
            _SETTLE,
            (
                values["status"],
                values["cost_usd"],
                values["prompt_tokens"],
                values["completion_tokens"],
                values["latency_s"],
                values["error"],
                call_id,
            ),
        )
        return cursor.rowcount


def is_missing(value: Any) -> bool:
    return value is _MISSING


def is_busy(exc: BaseException) -> bool:
    """SQLite said the database is locked (another writer holds it)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    message = str(exc).lower()
    return "locked" in message or "busy" in message
