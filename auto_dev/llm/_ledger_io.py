"""How the budget guard reaches the database: sessions, held connections, the raw SQLite path.

Three ways, cheapest first, chosen per database:

* SQLite file, ``hold=True``: a raw sqlite3 connection per thread (:mod:`._sqlite_fast`), plus,
  for the event loop's thread, one that never waits for the write lock (``nowait``);
* any database with an engine: one SQLAlchemy Core connection per thread (``hold=True``) or a
  pooled one per transaction; a held connection found dead is reported as
  :class:`StaleConnection` so the caller can retry once;
* anything else with ``session()``: an ORM session per transaction.

An in-memory SQLite database is one connection shared by every thread, so its transactions
take turns on a lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from auto_dev._exceptions import StorageError
from auto_dev.llm._sqlite_fast import FastLedgerConnection
from auto_dev.llm.ledger import SessionSource


class StaleConnection(StorageError):
    """A held connection turned out dead before its transaction did anything: retry once."""


class LedgerIO:
    """Transactions on ``database`` for the ledger (see the module docstring)."""

    def __init__(self, database: SessionSource, *, hold: bool = False) -> None:
        self.database = database
        self.hold = hold
        self._engine: Any = getattr(database, "engine", None)
        self._translate: Any = getattr(database, "translate_error", None)
        self._memory = bool(getattr(database, "is_memory", False))
        self._serial = threading.Lock() if self._memory else None
        self._local = threading.local()
        self.fast_path = (
            hold
            and self._engine is not None
            and self._translate is not None
            and bool(getattr(database, "is_sqlite", False))
            and not self._memory
        )

    def translate(self, exc: BaseException) -> Exception:
        if self._translate is not None:
            return self._translate(exc)
        return StorageError(f"database error: {exc}")

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        with self._serial or nullcontext(), self.database.session(readonly=readonly) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction on a Core connection."""
        if self._engine is None or self._translate is None:
            with self.session() as session:
                yield session.connection()
            return
        with self._serial or nullcontext():
            if not self.hold:
                try:
                    with self._engine.begin() as connection:
                        yield connection
                except SQLAlchemyError as exc:
                    raise self.translate(exc) from exc
                return
            connection = getattr(self._local, "connection", None)
            reused = connection is not None
            try:
                if connection is None:
                    connection = self._local.connection = self._engine.connect()
                with connection.begin():
                    yield connection
            except SQLAlchemyError as exc:
                # The connection may be unusable now (a server restart, a dropped socket):
                # start afresh, and let the caller retry once if it was a stale one.
                self._close_slot("connection")
                if reused and isinstance(exc, DBAPIError) and exc.connection_invalidated:
                    raise StaleConnection(str(exc)) from exc
                raise self.translate(exc) from exc

    def fast(self, *, nowait: bool = False) -> FastLedgerConnection | None:
        """This thread's raw SQLite connection, or None when the fast path does not apply."""
        if not self.fast_path:
            return None
        slot = "nowait" if nowait else "fast"
        fast: FastLedgerConnection | None = getattr(self._local, slot, None)
        if fast is None:
            try:
                fast = FastLedgerConnection(self._engine, nowait=nowait)
            except SQLAlchemyError as exc:
                raise self.translate(exc) from exc
            setattr(self._local, slot, fast)
        return fast

    @contextmanager
    def mapping_errors(self, fast: FastLedgerConnection) -> Iterator[None]:
        """Map the driver's errors into auto-dev's tree; a failed connection is dropped."""
        try:
            yield
        except sqlite3.Error as exc:
            self._close_slot("nowait" if fast.nowait else "fast")
            raise self.translate(exc) from exc

    def release(self) -> None:
        """Close every connection this thread holds."""
        for slot in ("connection", "fast", "nowait"):
            self._close_slot(slot)

    def _close_slot(self, slot: str) -> None:
        held = getattr(self._local, slot, None)
        setattr(self._local, slot, None)
        if held is not None:
            with suppress(SQLAlchemyError, sqlite3.Error):
                held.close()
