"""Prices and the per-tenant daily budget: reserve the worst case, then settle the real cost.

Before every attempt, :meth:`BudgetGuard.reserve` computes the worst-case cost (an upper bound of
the prompt's tokens plus ``max_tokens``, at the deployment's price) and, in one transaction,
sums what the tenant spent today (rows still ``reserved`` count at their estimate) and inserts a
``reserved`` row only if the sum plus the estimate stays within the budget. :meth:`settle` then
replaces the estimate with the real cost. Concurrent reservations are serialised by a
process-wide lock per tenant plus the transaction's own lock (SQLite: ``BEGIN IMMEDIATE``;
PostgreSQL: ``SELECT ... FOR UPDATE`` on the tenant row), so together they can never overshoot.

The budget that applies to a tenant is the stricter of the tenant's own
``Tenant.settings["daily_budget_usd"]`` and the configuration (``llm.tenant_budgets_usd[tenant]``,
else ``llm.daily_budget_usd``). No budget anywhere means no limit (the ledger still records).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import Connection, bindparam, select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from auto_dev._exceptions import (
    BudgetExceededError,
    ConfigurationError,
    NotFoundError,
    StorageError,
)
from auto_dev.config import LLMSettings, ModelPrice
from auto_dev.llm import ledger
from auto_dev.llm._sqlite_fast import FastLedgerConnection, is_missing
from auto_dev.llm.ledger import SessionSource
from auto_dev.llm.types import ChatMessage
from auto_dev.models import Tenant

log = structlog.get_logger(__name__)

# Tokens a chat template adds around each message (role markers, separators) and around the
# whole prompt; generous on purpose, the estimate must never be below the truth.
_PER_MESSAGE_OVERHEAD = 8
_PER_PROMPT_OVERHEAD = 16


@dataclass(frozen=True, slots=True)
class Price:
    """USD per token, and where the figure came from (``configured``, ``litellm``, ``unknown``)."""

    input_per_token: float
    output_per_token: float
    source: str

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens * self.input_per_token + completion_tokens * self.output_per_token


class Pricing:
    """Resolves a deployment's price: configuration first, then litellm's price map, else 0.

    ``prices`` keys may be a deployment id, a model group name or a litellm model string.
    A model nobody prices (a local Ollama or vLLM model, typically) costs 0, with one warning.
    """

    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        self._prices = dict(prices)
        self._cache: dict[tuple[str, ...], Price] = {}
        self._lock = threading.Lock()

    def price(self, model: str, *aliases: str, inline: Mapping[str, Any] | None = None) -> Price:
        key = (model, *aliases)
        cached = self._cache.get(key)
        if cached is not None and inline is None:
            return cached
        price = self._resolve(model, aliases, inline)
        if inline is None:
            with self._lock:
                self._cache[key] = price
        return price

    def _resolve(
        self, model: str, aliases: Sequence[str], inline: Mapping[str, Any] | None
    ) -> Price:
        for name in (*aliases, model):
            configured = self._prices.get(name)
            if configured is not None:
                return Price(
                    configured.input_cost_per_token, configured.output_cost_per_token, "configured"
                )
        if inline and ("input_cost_per_token" in inline or "output_cost_per_token" in inline):
            return Price(
                _non_negative(inline.get("input_cost_per_token", 0.0), "input_cost_per_token"),
                _non_negative(inline.get("output_cost_per_token", 0.0), "output_cost_per_token"),
                "configured",
            )
        from auto_dev.llm import _litellm

        known = _litellm.known_price(model)
        if known is not None:
            return Price(known[0], known[1], "litellm")
        log.warning(
            "llm.price_unknown",
            model=model,
            detail="counted as 0 USD; set llm.prices to budget it",
        )
        return Price(0.0, 0.0, "unknown")


def _non_negative(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if not math.isfinite(number) or number < 0:
        raise ConfigurationError(f"llm.model_list litellm_params.{name}: must be a number >= 0")
    return number


def prompt_token_bound(messages: Sequence[ChatMessage]) -> int:
    """An upper bound of the prompt's token count, without a tokenizer.

    Byte-level BPE and SentencePiece tokens each cover at least one byte of text, so the UTF-8
    byte count bounds the text's tokens; template overhead is added per message.
    """
    total = _PER_PROMPT_OVERHEAD
    for message in messages:
        content = message.get("content")
        text = content if isinstance(content, str) else json.dumps(content, default=str)
        total += len(text.encode("utf-8")) + _PER_MESSAGE_OVERHEAD
        name = message.get("name")
        if isinstance(name, str):
            total += len(name.encode("utf-8"))
    return total


_LOCK_TENANT = (
    select(Tenant.settings).where(Tenant.id == bindparam("tenant_id")).with_for_update()
)

class _StaleConnection(StorageError):
    """A held connection turned out dead before the transaction did anything: retry once."""


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
    """Reserve-then-settle accounting over the ledger (see the module docstring)."""

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
        # An in-memory SQLite database is one connection shared by every thread: writes from
        # several threads must take turns on it.
        self._serial = threading.Lock() if getattr(database, "is_memory", False) else None
        # With hold_connection each thread keeps one connection for its writes instead of a
        # pool checkout per transaction: ~40% of a reservation's cost. LLMClient uses it on its
        # single ledger thread; call release_connection() from that thread when done.
        self._hold = hold_connection
        self._local = threading.local()

    @contextmanager
    def _session(self, *, readonly: bool = False) -> Iterator[Session]:
        if self._serial is None:
            with self.database.session(readonly=readonly) as session:
                yield session
            return
        with self._serial, self.database.session(readonly=readonly) as session:
            yield session

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction on a bare connection.

        The hot path (two of these per model call) skips the ORM session when the database
        exposes its engine: same transaction and locking (auto_dev.db installs BEGIN IMMEDIATE
        on the engine), same error mapping, a fraction of the cost.
        """
        engine = getattr(self.database, "engine", None)
        translate = getattr(self.database, "translate_error", None)
        if engine is None or translate is None:
            with self._session() as session:
                yield session.connection()
            return
        with self._serial or nullcontext():
            if not self._hold:
                try:
                    with engine.begin() as connection:
                        yield connection
                except SQLAlchemyError as exc:
                    raise translate(exc) from exc
                return
            connection = getattr(self._local, "connection", None)
            reused = connection is not None
            try:
                if connection is None:
                    connection = self._local.connection = engine.connect()
                with connection.begin():
                    yield connection
            except SQLAlchemyError as exc:
                # The connection may be unusable now (a server restart, a dropped socket):
                # start afresh, and let the caller retry once if it was a stale one.
                self.release_connection()
                if reused and isinstance(exc, DBAPIError) and exc.connection_invalidated:
                    raise _StaleConnection(str(exc)) from exc
                raise translate(exc) from exc

    def release_connection(self) -> None:
        """Close the connection(s) this thread holds (if any)."""
        connection = getattr(self._local, "connection", None)
        fast = getattr(self._local, "fast", None)
        self._local.connection = self._local.fast = None
        if connection is not None:
            with suppress(SQLAlchemyError):
                connection.close()
        if fast is not None:
            fast.close()

    def _fast(self) -> FastLedgerConnection | None:
        """This thread's raw SQLite connection, when the fast path applies (see
        :mod:`auto_dev.llm._sqlite_fast`): held connections on an SQLite file."""
        if not self._hold or not getattr(self.database, "is_sqlite", False):
            return None
        if getattr(self.database, "is_memory", True):
            return None
        fast = getattr(self._local, "fast", None)
        if fast is None:
            try:
                fast = self._local.fast = FastLedgerConnection(self.database.engine)  # type: ignore[attr-defined]
            except SQLAlchemyError as exc:
                raise self.database.translate_error(exc) from exc  # type: ignore[attr-defined]
        return fast

    @contextmanager
    def _fast_transaction(self, fast: FastLedgerConnection) -> Iterator[None]:
        try:
            with fast.transaction():
                yield
        except sqlite3.Error as exc:
            self.release_connection()
            raise self.database.translate_error(exc) from exc  # type: ignore[attr-defined]

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

    # -- reserve / settle -------------------------------------------------------------------

    def reserve(self, *, tenant_id: str, estimate_usd: float, **row: Any) -> str:
        """Insert a ``reserved`` row for ``estimate_usd`` or raise :class:`BudgetExceededError`.

        ``row`` holds the other ledger columns (model, deployment, run_id, engine, purpose,
        prompt_tokens). Returns the row id to :meth:`settle`.
        """
        if not math.isfinite(estimate_usd) or estimate_usd < 0:
            raise BudgetExceededError(f"invalid cost estimate {estimate_usd!r}")
        try:
            return self._reserve(tenant_id, estimate_usd, row)
        except _StaleConnection:
            return self._reserve(tenant_id, estimate_usd, row)

    def _reserve(self, tenant_id: str, estimate_usd: float, row: dict[str, Any]) -> str:
        for _ in range(2):
            with _tenant_lock(tenant_id):
                fast = self._fast()
                if fast is not None:
                    call_id = self._reserve_fast(fast, tenant_id, estimate_usd, row)
                else:
                    call_id = self._reserve_core(tenant_id, estimate_usd, row)
            if call_id is not None:
                return call_id
            self._create_tenant(tenant_id)
        raise StorageError(f"tenant {tenant_id!r} vanished while reserving a model call")

    def _reserve_core(self, tenant_id: str, estimate_usd: float, row: dict[str, Any]) -> str | None:
        with self._write() as connection:
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
        with self._fast_transaction(fast):
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
        fast = self._fast()
        if fast is not None:
            with self._fast_transaction(fast):
                settled = fast.settle(call_id, values)
            if settled != 1:
                raise NotFoundError(f"no reserved ledger row {call_id!r} to settle")
            return
        for attempt in range(2):
            try:
                with self._write() as connection:
                    ledger.settle_call(connection, call_id, **values)
                return
            except _StaleConnection as exc:
                if attempt:
                    raise StorageError(str(exc)) from exc

    def record(self, *, tenant_id: str, status: str, **row: Any) -> str:
        """Insert a final row directly (a cache hit: nothing to reserve, nothing spent)."""
        self._create_tenant(tenant_id)
        with self._write() as connection:
            return ledger.insert_call(
                connection, tenant_id=tenant_id, status=status, created_at=self._now(), **row
            )

    def spent_today(self, tenant_id: str) -> float:
        with self._session(readonly=True) as session:
            return ledger.spent_since(session, tenant_id, ledger.utc_day_start(self._now()))

    def limit_for_stored(self, tenant_id: str) -> float | None:
        """The budget applying to ``tenant_id`` now, reading its stored settings.

        An unreadable tenant setting counts as a budget of 0 (fail closed).
        """
        with self._session(readonly=True) as session:
            settings = session.execute(
                select(Tenant.settings).where(Tenant.id == tenant_id)
            ).scalar_one_or_none()
        try:
            return self.limit_for(tenant_id, settings)
        except BudgetExceededError:
            return 0.0

    def remaining_today(self, tenant_id: str) -> float | None:
        """USD left today for ``tenant_id`` (None: no budget applies)."""
        limit = self.limit_for_stored(tenant_id)
        if limit is None:
            return None
        return max(0.0, limit - self.spent_today(tenant_id))

    # -- internals --------------------------------------------------------------------------

    def _create_tenant(self, tenant_id: str) -> None:
        """Create the tenant row if it does not exist (settings all off)."""
        with self._session() as session:
            ensure = getattr(self.database, "ensure_tenant", None)
            if ensure is not None:
                ensure(session, tenant_id)
            elif session.get(Tenant, tenant_id) is None:
                session.add(Tenant(id=tenant_id, name=tenant_id, settings={}))
