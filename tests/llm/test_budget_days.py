"""The per-tenant day rows the budget checks against: always equal to the ledger, constant-time."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, event, select, update

from auto_dev._exceptions import BudgetExceededError, LLMError, NotFoundError
from auto_dev.config import LLMSettings
from auto_dev.db import Database
from auto_dev.llm import ledger
from auto_dev.llm._sqlite_fast import _RESERVE_WITHIN, _SETTLE
from auto_dev.llm.budget import STALE_AFTER_S, BudgetGuard
from auto_dev.llm.client import LLMClient
from auto_dev.llm.ledger import DayTotals
from auto_dev.models import LLMBudgetDay, LLMCall, Tenant
from auto_dev.testing import OpenAICompatibleServer, ServerReply
from tests.llm.conftest import llm_settings

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def any_database(request: pytest.FixtureRequest) -> Database:
    """The SQLite file database, or a migrated PostgreSQL one."""
    name = "database" if request.param == "sqlite" else "postgres_database"
    database: Database = request.getfixturevalue(name)
    return database


def stored_days(database: Database) -> dict[tuple[str, date], DayTotals]:
    with database.session(readonly=True) as s:
        rows = s.execute(
            select(LLMBudgetDay.tenant_id, LLMBudgetDay.day, LLMBudgetDay.committed_usd,
                   LLMBudgetDay.reserved_usd, LLMBudgetDay.reserved_calls)
        ).all()
    return {(r[0], r[1]): DayTotals(r[2], r[3], r[4]) for r in rows}


def ledger_days(database: Database) -> dict[tuple[str, date], DayTotals]:
    """The totals per (tenant, UTC day) summed in Python from the ledger rows."""
    sums: dict[tuple[str, date], list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    with database.session(readonly=True) as s:
        for tenant, created, status, cost in s.execute(
            select(LLMCall.tenant_id, LLMCall.created_at, LLMCall.status, LLMCall.cost_usd)
        ):
            entry = sums[(tenant, created.astimezone(UTC).date())]
            if status == ledger.RESERVED:
                entry[1] += cost
                entry[2] += 1
            else:
                entry[0] += cost
    return {key: DayTotals(v[0], v[1], int(v[2])) for key, v in sums.items()}


def assert_days_match_ledger(database: Database) -> None:
    """Every day row equals the ledger rows of its tenant and day (empty days: zeros)."""
    expected = ledger_days(database)
    stored = stored_days(database)
    assert set(expected) <= set(stored), (expected, stored)
    for key, got in stored.items():
        want = expected.get(key, DayTotals())
        assert got.committed_usd == pytest.approx(want.committed_usd, abs=1e-9), key
        assert got.reserved_usd == pytest.approx(want.reserved_usd, abs=1e-9), key
        assert got.reserved_calls == want.reserved_calls, key
        if want.reserved_calls == 0:
            assert got.reserved_usd == 0.0  # exactly: no residue of the subtractions


def assert_totals(got: DayTotals, committed: float, reserved: float, calls: int) -> None:
    assert (got.committed_usd, got.reserved_usd, got.reserved_calls) == (
        pytest.approx(committed), pytest.approx(reserved), calls)


def row(**extra: object) -> dict[str, object]:
    return {"model": "m", "deployment": "m", **extra}


class Clock:
    """A settable ``now`` for guards."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


class TestDayRowFollowsTheLedger:
    """Whatever happens to the calls, each day row equals the sum of its ledger rows."""

    async def test_mixed_client_calls(
        self, server: OpenAICompatibleServer, any_database: Database, tmp_path: Path
    ) -> None:
        """Successes, failures, a timeout, an empty answer, cache hits and a dangling
        reservation leave day rows equal to the ledger, on SQLite and PostgreSQL."""
        client = LLMClient(
            llm_settings(server, num_retries=0, timeout_s=0.3, cache_dir=str(tmp_path / "c"),
                         daily_budget_usd=5.0),
            any_database, tenant_id="t1",
        )
        server.script(
            ServerReply(content="first", prompt_tokens=11, completion_tokens=7),
            ServerReply.server_error(),
            ServerReply.slow(2.0),
            ServerReply(content="   ", prompt_tokens=5, completion_tokens=1),
            ServerReply(content="second", prompt_tokens=30, completion_tokens=12),
        )
        outcomes: list[object] = []
        for index in range(5):
            messages = [{"role": "user", "content": f"prompt {index}"}]
            try:
                outcomes.append(await client.complete(messages))
            except LLMError as exc:
                outcomes.append(exc)
        await client.complete([{"role": "user", "content": "prompt 0"}])  # a cache hit
        await client.complete([{"role": "user", "content": "prompt 4"}])  # another
        guard = BudgetGuard(any_database, client.settings)
        guard.reserve(tenant_id="t1", estimate_usd=0.25, **row())  # never settled
        await client.aclose()

        statuses = sorted(r.status for r in ledger.calls(any_database, tenant_id="t1"))
        assert statuses == ["cache_hit", "cache_hit", "error", "error", "error", "ok", "ok",
                            "reserved"]
        assert_days_match_ledger(any_database)
        totals = guard.day_totals("t1")
        timed_out = [r for r in ledger.calls(any_database) if "Timeout" in (r.error or "")]
        assert timed_out and timed_out[0].cost_usd > 0  # charged at its estimate
        assert totals.reserved_calls == 1 and totals.reserved_usd == pytest.approx(0.25)
        assert totals.spent_usd == pytest.approx(guard.spent_today("t1"))
        assert guard.remaining_today("t1") == pytest.approx(5.0 - totals.spent_usd)

    @given(ops=st.lists(st.tuples(st.sampled_from(["reserve", "record", "settle", "move",
                                                   "delete", "retenant"]),
                                  st.integers(0, 30), st.floats(0.0, 2.0)),
                        min_size=1, max_size=25))
    @settings(max_examples=30, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    def test_any_ledger_edit(self, database: Database, ops: list[tuple[str, int, float]]) -> None:
        """Inserts, settlements, rows moved to another day or tenant and deletions, made
        through the ORM (not the guard), keep every day row equal to the ledger."""
        with database.session() as s:
            s.execute(delete(LLMCall))
            for tenant in ("a", "b"):
                database.ensure_tenant(s, tenant)
        now = datetime.now(UTC)
        ids: list[str] = []
        for kind, pick, cost in ops:
            with database.session() as s:
                target = ids[pick % len(ids)] if ids else None
                if kind in {"reserve", "record"} or target is None:
                    status = ledger.RESERVED if kind != "record" else "ok"
                    ids.append(ledger.insert_call(
                        s, tenant_id="ab"[pick % 2], model="m", cost_usd=cost, status=status,
                        created_at=now - timedelta(days=pick % 3)))
                elif kind == "settle":
                    s.execute(update(LLMCall).where(LLMCall.id == target)
                              .values(status="ok", cost_usd=cost / 2))
                elif kind == "move":
                    s.execute(update(LLMCall).where(LLMCall.id == target)
                              .values(created_at=now - timedelta(days=1 + pick % 2)))
                elif kind == "retenant":
                    s.execute(update(LLMCall).where(LLMCall.id == target)
                              .values(tenant_id="ab"[(pick + 1) % 2]))
                else:
                    s.execute(delete(LLMCall).where(LLMCall.id == target))
                    ids.remove(target)
        assert_days_match_ledger(database)

    def test_tenant_deletion(self, any_database: Database) -> None:
        """Deleting a tenant removes its ledger and its day rows together."""
        guard = BudgetGuard(any_database, LLMSettings(model="m", daily_budget_usd=1.0))
        call_id = guard.reserve(tenant_id="gone", estimate_usd=0.5, **row())
        guard.settle(call_id, status="ok", cost_usd=0.1)
        guard.reserve(tenant_id="gone", estimate_usd=0.2, **row())
        guard.reserve(tenant_id="kept", estimate_usd=0.3, **row())
        with any_database.session() as s:
            s.execute(delete(Tenant).where(Tenant.id == "gone"))
        assert {key[0] for key in stored_days(any_database)} == {"kept"}
        assert_days_match_ledger(any_database)


class TestReconcile:
    """Each guard recomputes a day row from the ledger at first use, and on demand."""

    def test_tampered_row_heals_at_first_use(self, any_database: Database) -> None:
        """A day row edited by hand is recomputed by the next guard before it checks."""
        budget = LLMSettings(model="m", daily_budget_usd=1.0)
        first = BudgetGuard(any_database, budget)
        call_id = first.reserve(tenant_id="t1", estimate_usd=0.4, **row())
        first.settle(call_id, status="ok", cost_usd=0.3)
        with any_database.session() as s:
            s.execute(update(LLMBudgetDay).values(committed_usd=50.0, reserved_calls=3))
        with pytest.raises(BudgetExceededError):
            first.reserve(tenant_id="t1", estimate_usd=0.1, **row())  # trusts its row
        fresh = BudgetGuard(any_database, budget)
        fresh.reserve(tenant_id="t1", estimate_usd=0.7, **row())  # 0.3 + 0.7 fits exactly
        assert_days_match_ledger(any_database)
        with any_database.session() as s:
            s.execute(update(LLMBudgetDay).values(reserved_usd=9.0))
        assert_totals(first.reconcile("t1"), 0.3, 0.7, 1)
        assert_days_match_ledger(any_database)

    @pytest.mark.parametrize("hold", [False, True], ids=["sqlalchemy", "raw-sqlite"])
    def test_dead_reservation_holds_its_day_only(self, database: Database, hold: bool) -> None:
        """A reservation its process never settled counts at its estimate for its own day,
        for any later guard, and does not block the next day."""
        clock = Clock(datetime(2030, 5, 1, 23, 59, 59, tzinfo=UTC))
        budget = LLMSettings(model="m", daily_budget_usd=1.0)
        died = BudgetGuard(database, budget, now=clock, hold_connection=hold)
        died.reserve(tenant_id="t1", estimate_usd=0.9, **row())
        died.release_connection()
        later = BudgetGuard(database, budget, now=clock, hold_connection=hold)
        with pytest.raises(BudgetExceededError, match=r"\$0\.900000 spent or reserved"):
            later.reserve(tenant_id="t1", estimate_usd=0.2, **row())
        clock.at += timedelta(seconds=2)  # the next UTC day
        later.reserve(tenant_id="t1", estimate_usd=0.95, **row())
        later.release_connection()
        assert_totals(later.day_totals("t1", date(2030, 5, 1)), 0.0, 0.9, 1)
        assert_totals(later.day_totals("t1"), 0.0, 0.95, 1)


    def test_abandoned_reservation_is_written_off(self, any_database: Database) -> None:
        """A reservation older than any call can last becomes an error row charged at its
        estimate when a guard first uses its day; a late settlement still replaces it."""
        clock = Clock(datetime.now(UTC).replace(hour=12))
        budget = LLMSettings(model="m", daily_budget_usd=1.0, timeout_s=30.0)
        died = BudgetGuard(any_database, budget, now=clock)
        stale = died.reserve(tenant_id="t1", estimate_usd=0.4, **row())
        clock.at += timedelta(seconds=STALE_AFTER_S - 5)
        fresh = died.reserve(tenant_id="t1", estimate_usd=0.3, **row())
        clock.at += timedelta(seconds=10)
        later = BudgetGuard(any_database, budget, now=clock)
        assert_totals(later.reconcile("t1"), 0.4, 0.3, 1)
        with any_database.session(readonly=True) as s:
            written_off = s.get(LLMCall, stale)
            assert written_off is not None and written_off.status == "error"
            assert (written_off.error or "").startswith(f"{ledger.ABANDONED}:")
            assert written_off.cost_usd == pytest.approx(0.4)
            still_in_flight = s.get(LLMCall, fresh)
            assert still_in_flight is not None and still_in_flight.status == "reserved"
        with pytest.raises(BudgetExceededError):
            later.reserve(tenant_id="t1", estimate_usd=0.31, **row())
        died.settle(stale, status="ok", cost_usd=0.1)  # it was only suspended, after all
        with pytest.raises(NotFoundError):
            died.settle(stale, status="ok", cost_usd=0.1)
        later.reserve(tenant_id="t1", estimate_usd=0.6, **row())
        assert_days_match_ledger(any_database)


class TestDayBoundary:
    """A call belongs to the UTC day it was reserved in."""

    @pytest.mark.parametrize("hold", [False, True], ids=["sqlalchemy", "raw-sqlite"])
    def test_settled_after_midnight(self, database: Database, hold: bool) -> None:
        """A reservation made before midnight and settled after it charges its own day; the
        new day starts empty."""
        clock = Clock(datetime(2030, 5, 1, 23, 59, 59, 900000, tzinfo=UTC))
        guard = BudgetGuard(database, LLMSettings(model="m", daily_budget_usd=1.0), now=clock,
                            hold_connection=hold)
        guard.reserve(tenant_id="t1", estimate_usd=0.1, **row())  # the tenant's first call
        call_id = guard.reserve(tenant_id="t1", estimate_usd=0.8, **row())
        clock.at += timedelta(seconds=1)
        guard.settle(call_id, status="ok", cost_usd=0.5)
        guard.reserve(tenant_id="t1", estimate_usd=1.0, **row())  # a full budget again
        guard.release_connection()
        assert_totals(guard.day_totals("t1", date(2030, 5, 1)), 0.5, 0.1, 1)
        assert_totals(guard.day_totals("t1", date(2030, 5, 2)), 0.0, 1.0, 1)
        assert_days_match_ledger(database)


@pytest.fixture
def statements(database: Database) -> Iterator[list[str]]:
    """Every SQL statement run on connections ``database`` opens from now on."""
    seen: list[str] = []

    def trace(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_trace_callback(seen.append)

    event.listen(database.engine, "connect", trace)
    database.engine.dispose()  # so that the guard's connections are new ones
    yield seen
    event.remove(database.engine, "connect", trace)


class TestConstantTime:
    """The budget check reads one row however large the ledger grows."""

    def test_one_statement_per_write(self, database: Database, statements: list[str]) -> None:
        """Once a tenant's day is known, a reservation and a settlement are one statement
        each, and neither sums the ledger."""
        guard = BudgetGuard(database, LLMSettings(model="m", daily_budget_usd=100.0),
                            hold_connection=True)
        for _ in range(2):  # the first reservation creates the tenant and its day row
            guard.settle(guard.reserve(tenant_id="t1", estimate_usd=0.1, **row()),
                         status="ok", cost_usd=0.05)
        statements.clear()
        for _ in range(50):
            call_id = guard.reserve_nowait(tenant_id="t1", estimate_usd=0.1, **row())
            assert call_id is not None
            assert guard.settle_nowait(call_id, status="ok", cost_usd=0.05)
        guard.release_connection()
        # SQLite traces each trigger a statement fires as the statement again: count once.
        ours = [s for i, s in enumerate(statements)
                if not s.startswith("PRAGMA") and (i == 0 or statements[i - 1] != s)]
        assert len(ours) == 100
        assert all(s.startswith(("INSERT INTO llm_calls", "UPDATE llm_calls")) for s in ours)
        assert not any("sum(" in s.lower() for s in ours)
        assert guard.day_totals("t1").committed_usd == pytest.approx(52 * 0.05)

    @pytest.mark.parametrize("sql", [_RESERVE_WITHIN, _SETTLE], ids=["reserve", "settle"])
    def test_hot_statements_never_scan(self, database_url: str, sql: str) -> None:
        """SQLite plans the hot statements as index look-ups only (no table scan)."""
        connection = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        try:
            plan = connection.execute(
                "EXPLAIN QUERY PLAN " + sql, [None] * sql.count("?")
            ).fetchall()
        finally:
            connection.close()
        details = [step[3] for step in plan]
        assert details and all(d.startswith("SEARCH") for d in details), details
        assert "ix_llm_calls_tenant_created" not in " ".join(details)


class TestSettingsFreshness:
    """The one-statement reservation never uses stale tenant settings."""

    def test_lowered_tenant_budget_applies_at_once(self, database: Database) -> None:
        """A tenant lowering its own budget is honoured by the very next reservation, and
        raising it again too."""
        guard = BudgetGuard(database, LLMSettings(model="m", daily_budget_usd=10.0),
                            hold_connection=True)
        for _ in range(3):
            guard.reserve(tenant_id="t1", estimate_usd=0.2, **row())

        def set_budget(value: object) -> None:
            with database.session() as s:
                tenant = s.get(Tenant, "t1")
                assert tenant is not None
                tenant.settings = {} if value is None else {"daily_budget_usd": value}

        set_budget(0.65)
        with pytest.raises(BudgetExceededError, match=r"daily budget of \$0\.650000"):
            guard.reserve_nowait(tenant_id="t1", estimate_usd=0.1, **row())
        assert guard.reserve(tenant_id="t1", estimate_usd=0.05, **row())  # 0.65 exactly
        set_budget(None)
        assert guard.reserve_nowait(tenant_id="t1", estimate_usd=5.0, **row()) is not None
        set_budget("lots")
        with pytest.raises(BudgetExceededError, match="not a number"):
            guard.reserve(tenant_id="t1", estimate_usd=0.0, **row())
        guard.release_connection()
