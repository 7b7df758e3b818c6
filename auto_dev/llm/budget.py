"""The per-tenant daily budget: reserve the worst case, then settle the real cost.

Before every attempt, :meth:`BudgetGuard.reserve` takes the worst-case cost (an upper bound of
the prompt's tokens plus ``max_tokens``, at the deployment's price; see
:mod:`auto_dev.llm.pricing`) and inserts a ``reserved`` ledger row only if the tenant's spend
today (settled costs, plus in-flight reservations at their estimate) plus the estimate stays
within the budget. :meth:`BudgetGuard.settle` then replaces the estimate with the real cost.

The check reads one row, whatever the ledger's size: ``llm_budget_days`` holds each tenant's
totals per UTC day, and triggers on ``llm_calls`` update it in the same statement as every ledger
write (see the initial migration), so it can never disagree with the ledger, whoever writes it
and whenever a process dies. Each guard recomputes a day row from the ledger the first time it
uses it (:meth:`BudgetGuard.reconcile`), so that even a row edited by hand heals; it first
writes off that day's reservations older than any call can last (:data:`STALE_AFTER_S`, or
twice the call timeout): their process died, so they become ``error`` rows charged at their
estimate, as a timed-out call is (the provider may have billed it). Such a reservation never
blocks another day, and a late settlement (a process that was only suspended) still replaces
it with the real cost.

Concurrent reservations cannot together overshoot: the check and the insert are one transaction
holding the day row's lock (PostgreSQL: ``SELECT ... FOR UPDATE``; SQLite: an exclusive write
transaction, or on the raw path a single ``INSERT ... SELECT`` statement, which SQLite runs
under its write lock), plus a process-wide lock per tenant on the locked path.

The budget that applies to a tenant is the stricter of the tenant's own
``Tenant.settings["daily_budget_usd"]`` and the configuration (``llm.tenant_budgets_usd[tenant]``,
else ``llm.daily_budget_usd``). No budget anywhere means no limit (the ledger still records).
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import bindparam, select

from auto_dev._exceptions import BudgetExceededError, NotFoundError, StorageError
from auto_dev.config import LLMSettings
from auto_dev.llm import ledger
from auto_dev.llm._ledger_io import LedgerIO, StaleConnection
from auto_dev.llm._sqlite_fast import FastLedgerConnection, is_busy, is_missing, parse_settings
from auto_dev.llm.ledger import DayTotals, SessionSource
from auto_dev.models import Tenant

T = TypeVar("T")

#: Slack of the comparison (float sums of many small costs).
_EPSILON_USD = 1e-12
#: A reservation older than this (or than twice the call timeout, if longer) was abandoned.
STALE_AFTER_S = 3600.0

_TENANT_SETTINGS = select(Tenant.settings).where(Tenant.id == bindparam("tenant_id"))

_locks_guard = threading.Lock()
_tenant_locks: dict[str, threading.Lock] = {}


def _tenant_lock(tenant_id: str) -> threading.Lock:
    """The process-wide lock serialising locked-path reservations of one tenant."""
    with _locks_guard:
        lock = _tenant_locks.get(tenant_id)
        if lock is None:
            lock = _tenant_locks[tenant_id] = threading.Lock()
        return lock


class BudgetGuard:
    """Reserve-then-settle accounting over the ledger (see the module docstring).

    With ``hold_connection`` each thread keeps its own connection(s) instead of a pool
    checkout per transaction, and SQLite files use raw driver statements (see
    :mod:`auto_dev.llm._sqlite_fast`); call :meth:`release_connection` from a thread when it is
    done. :class:`~auto_dev.llm.client.LLMClient` uses it.
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
        self._stale_after = timedelta(seconds=max(STALE_AFTER_S, 2 * settings.timeout_s + 60))
        # Day rows this guard has recomputed from the ledger (once each, at first use).
        self._reconciled: set[tuple[str, date]] = set()
        # Per tenant: its settings as stored, and the limit they give. The one-statement
        # reservation only applies while the stored settings are still exactly these.
        self._limits: dict[str, tuple[Any, float | None]] = {}

    def release_connection(self) -> None:
        """Close the connection(s) the calling thread holds."""
        self._io.release()

    # -- limits -------------------------------------------------------------------------------

    def configured_limit(self, tenant_id: str) -> float | None:
        return self.settings.tenant_budgets_usd.get(tenant_id, self.settings.daily_budget_usd)

    def limit_for(self, tenant_id: str, tenant_settings: Mapping[str, Any] | None) -> float | None:
        """The stricter of the configured budget and the tenant's own setting."""
        limits = [self.configured_limit(tenant_id)]
        if tenant_settings is not None and not isinstance(tenant_settings, Mapping):
            # Fail closed: settings we cannot read (a corrupt row) may hold a budget.
            raise BudgetExceededError(
                f"tenant {tenant_id!r}: stored settings are unreadable ({tenant_settings!r}); "
                "refusing model calls until they are fixed"
            )
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
                _TENANT_SETTINGS, {"tenant_id": tenant_id}
            ).scalar_one_or_none()
        try:
            return self.limit_for(tenant_id, settings)
        except BudgetExceededError:
            return 0.0

    # -- what was spent -----------------------------------------------------------------------

    def spent_today(self, tenant_id: str) -> float:
        """Today's spend per the ledger rows themselves (reserved rows at their estimate)."""
        with self._io.session(readonly=True) as session:
            return ledger.spent_since(session, tenant_id, ledger.utc_day_start(self._now()))

    def day_totals(self, tenant_id: str, day: date | None = None) -> DayTotals:
        """The day row the budget checks against (default: today, UTC); zeros if none."""
        with self._io.session(readonly=True) as session:
            found = ledger.day_totals(session, tenant_id, day or ledger.utc_day(self._now()))
        return found or DayTotals()

    def remaining_today(self, tenant_id: str) -> float | None:
        """USD left today for ``tenant_id`` (None: no budget applies)."""
        limit = self.limit_for_stored(tenant_id)
        if limit is None:
            return None
        return max(0.0, limit - self.day_totals(tenant_id).spent_usd)

    def reconcile(self, tenant_id: str, day: date | None = None) -> DayTotals:
        """Recompute the day row of ``tenant_id`` (default: today) from the ledger rows, after
        writing off that day's abandoned reservations (see the module docstring)."""
        now = self._now()
        day = day or ledger.utc_day(now)
        stale = now - self._stale_after
        with _tenant_lock(tenant_id):
            fast = self._io.fast()
            if fast is not None:
                with self._io.mapping_errors(fast), fast.transaction():
                    totals = fast.reconcile_day(tenant_id, day, stale_before=stale)
            else:
                with self._io.write() as connection:
                    totals = ledger.reconcile_day(connection, tenant_id, day, stale_before=stale)
        self._reconciled.add((tenant_id, day))
        return totals

    # -- reserve / settle ---------------------------------------------------------------------

    def reserve(self, *, tenant_id: str, estimate_usd: float, **row: Any) -> str:
        """Insert a ``reserved`` row for ``estimate_usd`` or raise :class:`BudgetExceededError`.

        ``row`` holds the other ledger columns (model, deployment, run_id, engine, purpose,
        prompt_tokens). Returns the row id to :meth:`settle`.
        """
        _check_estimate(estimate_usd)
        fast = self._io.fast()
        if fast is not None:
            with self._io.mapping_errors(fast):
                call_id = self._reserve_one_statement(fast, tenant_id, estimate_usd, row)
            if call_id is not None:
                return call_id
        for _ in range(2):
            with _tenant_lock(tenant_id):
                call_id = self._reserve_locked(tenant_id, estimate_usd, row)
            if call_id is not None:
                return call_id
            self._create_tenant(tenant_id)
        raise StorageError(f"tenant {tenant_id!r} vanished while reserving a model call")

    def _reserve_one_statement(
        self, fast: FastLedgerConnection, tenant_id: str, estimate_usd: float, row: dict[str, Any]
    ) -> str | None:
        """The reservation as one ``INSERT ... SELECT``; None to take the locked path."""
        known = self._limits.get(tenant_id)
        if known is None:
            return None
        now = self._now()
        day = ledger.utc_day(now)
        if (tenant_id, day) not in self._reconciled:
            return None
        settings, limit = known
        values = ledger.call_row(
            tenant_id=tenant_id,
            cost_usd=float(estimate_usd),
            status=ledger.RESERVED,
            created_at=now,
            **row,
        )
        within = None if limit is None else limit + _EPSILON_USD
        if fast.reserve(values, day, settings, within):
            return str(values["id"])
        return None

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
        now = self._now()
        day = ledger.utc_day(now)
        first_use = (tenant_id, day) not in self._reconciled
        with self._io.write() as connection:
            found = connection.execute(_TENANT_SETTINGS, {"tenant_id": tenant_id}).first()
            if found is None:
                return None
            limit = self.limit_for(tenant_id, found[0])
            # Locks the day row (FOR UPDATE on PostgreSQL; SQLite's write transactions
            # (BEGIN IMMEDIATE) are exclusive anyway), so that concurrent reservations of the
            # tenant, in any process, take turns from here to the commit.
            totals = (
                ledger.reconcile_day(
                    connection, tenant_id, day, stale_before=now - self._stale_after
                )
                if first_use
                else ledger.day_totals(connection, tenant_id, day, lock=True)
            )
            assert totals is not None  # lock=True creates a missing row
            refusal = self._refusal(tenant_id, limit, totals, estimate_usd)
            call_id = None
            if refusal is None:
                call_id = ledger.insert_call(
                    connection,
                    tenant_id=tenant_id,
                    cost_usd=float(estimate_usd),
                    status=ledger.RESERVED,
                    created_at=now,
                    **row,
                )
        # Committed (a refusal too: the recomputed day row is kept).
        if first_use:
            self._reconciled.add((tenant_id, day))
        if refusal is not None:
            raise refusal
        return call_id

    def _reserve_fast(
        self, fast: FastLedgerConnection, tenant_id: str, estimate_usd: float, row: dict[str, Any]
    ) -> str | None:
        now = self._now()
        day = ledger.utc_day(now)
        first_use = (tenant_id, day) not in self._reconciled
        with fast.transaction():
            raw = fast.tenant_settings(tenant_id)
            if is_missing(raw):
                return None
            limit = self.limit_for(tenant_id, parse_settings(raw))
            totals = (
                fast.reconcile_day(tenant_id, day, stale_before=now - self._stale_after)
                if first_use
                else fast.day_totals(tenant_id, day)
            ) or DayTotals()
            refusal = self._refusal(tenant_id, limit, totals, estimate_usd)
            values = None
            if refusal is None:
                values = ledger.call_row(
                    tenant_id=tenant_id,
                    cost_usd=float(estimate_usd),
                    status=ledger.RESERVED,
                    created_at=now,
                    **row,
                )
                fast.insert(values)
        if first_use:
            self._reconciled.add((tenant_id, day))
        self._limits[tenant_id] = (raw, limit)
        if refusal is not None:
            raise refusal
        assert values is not None
        return str(values["id"])

    @staticmethod
    def _refusal(
        tenant_id: str, limit: float | None, totals: DayTotals, estimate_usd: float
    ) -> BudgetExceededError | None:
        """The error refusing the estimate, or None when it fits today's budget."""
        if limit is None:
            return None
        spent = totals.spent_usd
        if spent + estimate_usd <= limit + _EPSILON_USD:
            return None
        return BudgetExceededError(
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
        """Record the real outcome of a reserved call (its day row follows by trigger)."""
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
        # One statement: SQLite makes it (and its trigger) a transaction of its own.
        if fast.settle(call_id, values) != 1:
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
        does not exist yet, this guard has not used the tenant's day yet, or the fast path
        does not apply. This lets the client write the ledger on the event loop's thread in the
        common, uncontended case, and hand the rest to a worker thread.
        """
        _check_estimate(estimate_usd)
        fast = self._io.fast(nowait=True)
        if fast is None:
            return None
        busy = False

        def one_statement() -> str | None:
            nonlocal busy
            call_id = self._reserve_one_statement(fast, tenant_id, estimate_usd, row)
            busy = False
            return call_id

        busy = True
        call_id = self._nowait(fast, one_statement)
        if call_id is not None or busy:
            return call_id
        if (tenant_id, ledger.utc_day(self._now())) not in self._reconciled:
            return None  # recomputing a day row sums its ledger: not on the caller's thread
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
