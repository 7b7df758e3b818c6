"""The per-tenant daily budget: reserve the worst case, then settle the real cost.

Before every attempt, :meth:`BudgetGuard.reserve` takes the worst-case cost (an upper bound of
the prompt's tokens plus ``max_tokens``, at the deployment's price; see
:mod:`auto_dev.llm.pricing`) and, in one transaction, sums what the tenant spent today (rows
still ``reserved`` count at their estimate) and inserts a ``reserved`` row only if the sum plus
the estimate stays within the budget. :meth:`BudgetGuard.settle` then replaces the estimate with
the real cost. Concurrent reservations are serialised by a process-wide lock per tenant plus the
transaction's own lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: ``SELECT ... FOR UPDATE`` on the
tenant row), so together they can never overshoot.

The budget that applies to a tenant is the stricter of the tenant's own
``Tenant.settings["daily_budget_usd"]`` and the configuration (``llm.tenant_budgets_usd[tenant]``,
else ``llm.daily_budget_usd``). No budget anywhere means no limit (the ledger still records).
Days are UTC days.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import bindparam, select

from auto_dev._exceptions import BudgetExceededError, NotFoundError, StorageError
from auto_dev.config import LLMSettings
from auto_dev.llm import ledger
from auto_dev.llm._ledger_io import LedgerIO, StaleConnection
from auto_dev.llm._sqlite_fast import FastLedgerConnection, is_busy, is_missing
from auto_dev.llm.ledger import SessionSource
from auto_dev.models import Tenant

T = TypeVar("T")

_LOCK_TENANT = (
    select(Tenant.settings).where(Tenant.id == bindparam("tenant_id")).with_for_update()
)

_locks_guard = threading.Lock()
_tenant_locks: dict[str, threading.Lock] = {}


def _tenant_lock(tenant_id: str) -> threading.Lock:
    """The process-wide lock serialising reservations of one tenant."""
    with _locks_guard:
        lock = _tenant_locks.get(tenant_id)
        if lock is None:
            lock = _tenant_locks[tenant_id] = threading.Lock()
        return lock


class BudgetGuard:
    """Reserve-then-settle accounting over the ledger (see the module docstring).

    With ``hold_connection`` each thread keeps its own connection(s) instead of a pool
    checkout per transaction, and SQLite files use raw driver statements (see
    :mod:`auto_dev.llm._ledger_io`); call :meth:`release_connection` from a thread when it is
    done. :class:`~auto_dev.llm.client.LLMClient` uses it on its own ledger thread.
    """

    def __init__(
        self,
        database: SessionSource,
        settings: LLMSettings,
        *,
        now: Callable[[], datetime] | None = None,
        hold_connection: bool = False,
    ) -> None:
        self.database = database
        self.settings = settings
        self._now = now or (lambda: datetime.now(UTC))
        self._io = LedgerIO(database, hold=hold_connection)

    def release_connection(self) -> None:
        """Close the connection(s) the calling thread holds."""
        self._io.release()

    # -- limits -------------------------------------------------------------------------------

    def configured_limit(self, tenant_id: str) -> float | None:
        return self.settings.tenant_budgets_usd.get(tenant_id, self.settings.daily_budget_usd)

    def limit_for(self, tenant_id: str, tenant_settings: Mapping[str, Any] | None) -> float | None:
        """The stricter of the configured budget and the tenant's own setting."""
        limits = [self.configured_limit(tenant_id)]
        raw = (tenant_settings or {}).get("daily_budget_usd")
        if raw is not None:
            if (
                isinstance(raw, bool)
                or not isinstance(raw, int | float)
                or not math.isfinite(raw)
                or raw < 0
            ):
                # Fail closed: a budget we cannot read is not "no budget".
                raise BudgetExceededError(
                    f"tenant {tenant_id!r}: settings.daily_budget_usd is {raw!r}, not a number "
                    ">= 0; refusing model calls until it is fixed"
                )
            limits.append(float(raw))
        present = [limit for limit in limits if limit is not None]
        return min(present) if present else None

    def limit_for_stored(self, tenant_id: str) -> float | None:
        """The budget applying to ``tenant_id`` now, reading its stored settings.

        An unreadable tenant setting counts as a budget of 0 (fail closed).
        """
        with self._io.session(readonly=True) as session:
            settings = session.execute(
                select(Tenant.settings).where(Tenant.id == tenant_id)
            ).scalar_one_or_none()
        try:
            return self.limit_for(tenant_id, settings)
        except BudgetExceededError:
            return 0.0

    def spent_today(self, tenant_id: str) -> float:
        with self._io.session(readonly=True) as session:
            return ledger.spent_since(session, tenant_id, ledger.utc_day_start(self._now()))

    def remaining_today(self, tenant_id: str) -> float | None:
        """USD left today for ``tenant_id`` (None: no budget applies)."""
        limit = self.limit_for_stored(tenant_id)
        if limit is None:
            return None
        return max(0.0, limit - self.spent_today(tenant_id))

    # -- reserve / settle ---------------------------------------------------------------------

    def reserve(self, *, tenant_id: str, estimate_usd: float, **row: Any) -> str:
        """Insert a ``reserved`` row for ``estimate_usd`` or raise :class:`BudgetExceededError`.

        ``row`` holds the other ledger columns (model, deployment, run_id, engine, purpose,
        prompt_tokens). Returns the row id to :meth:`settle`.
        """
        _check_estimate(estimate_usd)
        for _ in range(2):
            with _tenant_lock(tenant_id):
                call_id = self._reserve_locked(tenant_id, estimate_usd, row)
            if call_id is not None:
                return call_id
            self._create_tenant(tenant_id)
        raise StorageError(f"tenant {tenant_id!r} vanished while reserving a model call")

    def _reserve_locked(
        self, tenant_id: str, estimate_usd: float, row: dict[str, Any]
    ) -> str | None:
        fast = self._io.fast()
        if fast is not None:
            with self._io.mapping_errors(fast):
                return self._reserve_fast(fast, tenant_id, estimate_usd, row)
        try:
            return self._reserve_core(tenant_id, estimate_usd, row)
        except StaleConnection:
            return self._reserve_core(tenant_id, estimate_usd, row)

    def _reserve_core(
        self, tenant_id: str, estimate_usd: float, row: dict[str, Any]
    ) -> str | None:
        with self._io.write() as connection:
            # FOR UPDATE serialises reservations across processes on PostgreSQL; SQLite
            # renders none, but its write transactions (BEGIN IMMEDIATE) are exclusive.
            found = connection.execute(_LOCK_TENANT, {"tenant_id": tenant_id}).first()
            if found is None:
                return None
            # The sum is a separate statement, after the lock: on PostgreSQL (READ COMMITTED)
            # each statement sees what committed before it started, so it includes the
            # reservations of every transaction that held the lock before us.
            self._check(
                tenant_id,
                found[0],
                estimate_usd,
                lambda since: ledger.spent_since(connection, tenant_id, since),
            )
            return ledger.insert_call(
                connection,
                tenant_id=tenant_id,
                cost_usd=float(estimate_usd),
                status=ledger.RESERVED,
                created_at=self._now(),
                **row,
            )

    def _reserve_fast(
        self, fast: FastLedgerConnection, tenant_id: str, estimate_usd: float, row: dict[str, Any]
    ) -> str | None:
        with fast.transaction():
            settings = fast.tenant_settings(tenant_id)
            if is_missing(settings):
                return None
            self._check(
                tenant_id, settings, estimate_usd, lambda since: fast.spent_since(tenant_id, since)
            )
            values = ledger.call_row(
                tenant_id=tenant_id,
                cost_usd=float(estimate_usd),
                status=ledger.RESERVED,
                created_at=self._now(),
                **row,
            )
            fast.insert(values)
            return str(values["id"])

    def _check(
        self,
        tenant_id: str,
        tenant_settings: Mapping[str, Any] | None,
        estimate_usd: float,
        spent_since: Callable[[datetime], float],
    ) -> None:
        """Raise :class:`BudgetExceededError` unless the estimate fits today's budget."""
        limit = self.limit_for(tenant_id, tenant_settings)
        if limit is None:
            return
        spent = spent_since(ledger.utc_day_start(self._now()))
        if spent + estimate_usd > limit + 1e-12:
            raise BudgetExceededError(
                f"tenant {tenant_id!r}: a call estimated at up to ${estimate_usd:.6f} "
                f"would exceed the daily budget of ${limit:.6f} "
                f"(${spent:.6f} spent or reserved today, UTC)"
            )

    def settle(
        self,
        call_id: str,
        *,
        status: str,
        cost_usd: float,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        latency_s: float = 0.0,
        error: str | None = None,
    ) -> None:
        """Record the real outcome of a reserved call."""
        values = ledger.settle_values(
            status=status,
            cost_usd=cost_usd,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=latency_s,
            error=error,
        )
        fast = self._io.fast()
        if fast is not None:
            with self._io.mapping_errors(fast):
                self._settle_fast(fast, call_id, values)
            return
        for attempt in range(2):
            try:
                with self._io.write() as connection:
                    ledger.settle_call(connection, call_id, **values)
                return
            except StaleConnection as exc:
                if attempt:
                    raise StorageError(str(exc)) from exc

    @staticmethod
    def _settle_fast(fast: FastLedgerConnection, call_id: str, values: dict[str, Any]) -> None:
        with fast.transaction():
            settled = fast.settle(call_id, values)
        if settled != 1:
            raise NotFoundError(f"no reserved ledger row {call_id!r} to settle")

    def record(self, *, tenant_id: str, status: str, **row: Any) -> str:
        """Insert a final row directly (a cache hit: nothing to reserve, nothing spent)."""
        self._create_tenant(tenant_id)
        with self._io.write() as connection:
            return ledger.insert_call(
                connection, tenant_id=tenant_id, status=status, created_at=self._now(), **row
            )

    # -- without waiting (SQLite files) -------------------------------------------------------

    def reserve_nowait(self, *, tenant_id: str, estimate_usd: float, **row: Any) -> str | None:
        """:meth:`reserve` if it can be done without waiting, else ``None``.

        ``None`` when another writer holds the database or this tenant's lock, the tenant row
        does not exist yet, or the fast path does not apply. This lets the client write the
        ledger on the event loop's thread in the common, uncontended case, and hand the rest
        to a worker thread.
        """
        _check_estimate(estimate_usd)
        fast = self._io.fast(nowait=True)
        if fast is None:
            return None
        lock = _tenant_lock(tenant_id)
        if not lock.acquire(blocking=False):
            return None
        try:
            return self._nowait(
                fast, lambda: self._reserve_fast(fast, tenant_id, estimate_usd, row)
            )
        finally:
            lock.release()

    def settle_nowait(self, call_id: str, **values: Any) -> bool:
        """:meth:`settle` if it can be done without waiting; False when the caller must use
        :meth:`settle`."""
        fast = self._io.fast(nowait=True)
        if fast is None:
            return False
        checked = ledger.settle_values(**values)

        def settle() -> bool:
            self._settle_fast(fast, call_id, checked)
            return True

        return bool(self._nowait(fast, settle))

    def _nowait(self, fast: FastLedgerConnection, work: Callable[[], T]) -> T | None:
        try:
            return work()
        except sqlite3.Error as exc:
            if is_busy(exc):
                return None
            with self._io.mapping_errors(fast):
                raise

    # -- internals ----------------------------------------------------------------------------

    def _create_tenant(self, tenant_id: str) -> None:
        """Create the tenant row if it does not exist (settings all off)."""
        with self._io.session() as session:
            ensure = getattr(self.database, "ensure_tenant", None)
            if ensure is not None:
                ensure(session, tenant_id)
            elif session.get(Tenant, tenant_id) is None:
                session.add(Tenant(id=tenant_id, name=tenant_id, settings={}))


def _check_estimate(estimate_usd: float) -> None:
    if not math.isfinite(estimate_usd) or estimate_usd < 0:
        raise BudgetExceededError(f"invalid cost estimate {estimate_usd!r}")
