"""Prices, worst-case estimates, reserve-then-settle, and the daily budget under concurrency."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from auto_dev._exceptions import BudgetExceededError, ConfigurationError, NotFoundError
from auto_dev.config import LLMSettings, ModelPrice
from auto_dev.db import Database
from auto_dev.llm import ledger
from auto_dev.llm.budget import BudgetGuard
from auto_dev.llm.client import LLMClient
from auto_dev.llm.pricing import Pricing, prompt_token_bound
from auto_dev.models import LLMCall, Tenant
from auto_dev.testing import OpenAICompatibleServer, ServerReply
from tests.llm.conftest import USER, llm_settings


def total_cost(database: Database, tenant: str) -> float:
    with database.session(readonly=True) as s:
        return float(
            s.execute(
                select(func.coalesce(func.sum(LLMCall.cost_usd), 0.0)).where(
                    LLMCall.tenant_id == tenant
                )
            ).scalar_one()
        )


def statuses(database: Database) -> list[str]:
    with database.session(readonly=True) as s:
        return list(s.scalars(select(LLMCall.status)))


class TestPricing:
    """Prices come from configuration first, then litellm's map, else 0."""

    def test_configured_by_any_name(self) -> None:
        """A price keyed by deployment id, group or model string applies, in that order."""
        pricing = Pricing({"grp": ModelPrice(input_cost_per_token=1, output_cost_per_token=2),
                           "dep": ModelPrice(input_cost_per_token=5, output_cost_per_token=6)})
        assert pricing.price("openai/x", "dep", "grp").input_per_token == 5
        assert pricing.price("openai/x", "other", "grp").output_per_token == 2
        assert pricing.price("openai/x", "dep").source == "configured"

    def test_inline_litellm_params_price(self) -> None:
        """input/output_cost_per_token in litellm_params count as configured prices."""
        price = Pricing({}).price("openai/x", inline={"input_cost_per_token": 0.5})
        assert (price.input_per_token, price.output_per_token) == (0.5, 0.0)
        with pytest.raises(ConfigurationError, match="input_cost_per_token"):
            Pricing({}).price("openai/x", inline={"input_cost_per_token": -1})

    def test_litellm_known_and_unknown(self) -> None:
        """A model litellm knows has its price; an unknown local model costs 0."""
        known = Pricing({}).price("openai/gpt-4o-mini")
        assert known.source == "litellm" and known.input_per_token > 0
        local = Pricing({}).price("ollama/some-local-model-xyz")
        assert local.source == "unknown" and local.cost(1000, 1000) == 0.0

    def test_cost(self) -> None:
        """Cost is tokens times price, per direction."""
        price = Pricing({"m": ModelPrice(input_cost_per_token=1e-6, output_cost_per_token=3e-6)})
        assert price.price("m").cost(1000, 100) == pytest.approx(1000e-6 + 300e-6)


class TestPromptBound:
    """The worst-case prompt size is never below a real tokenizer's count."""

    @given(st.lists(st.text(max_size=300), min_size=1, max_size=4))
    @settings(max_examples=60, deadline=None)
    def test_bound_exceeds_tokenizer(self, contents: list[str]) -> None:
        """For any text the byte-based bound is >= tiktoken's count through litellm."""
        from auto_dev.llm import _litellm

        litellm = _litellm.load()
        messages = [{"role": "user", "content": c} for c in contents]
        counted = litellm.token_counter(model="gpt-4o-mini", messages=messages)
        assert prompt_token_bound(messages) >= counted


@pytest.fixture(params=[False, True], ids=["sqlalchemy", "raw-sqlite"])
def guard(database: Database, request: pytest.FixtureRequest) -> Iterator[BudgetGuard]:
    """A guard on the SQLAlchemy path and one on the raw SQLite fast path (held connection)."""
    guard = BudgetGuard(database, LLMSettings(model="m", daily_budget_usd=1.0),
                        hold_connection=request.param)
    yield guard
    guard.release_connection()


def row(**extra: object) -> dict[str, object]:
    return {"model": "m", "deployment": "m", **extra}


class TestReserveSettle:
    """A reservation holds the estimate until settled with the real cost."""

    def test_reserve_then_settle(self, guard: BudgetGuard, database: Database) -> None:
        """The reserved row counts at its estimate, then at the real cost."""
        call_id = guard.reserve(tenant_id="t1", estimate_usd=0.4, **row())
        assert guard.spent_today("t1") == pytest.approx(0.4)
        assert statuses(database) == ["reserved"]
        guard.settle(call_id, status="ok", cost_usd=0.1, prompt_tokens=5, completion_tokens=6,
                     latency_s=0.2)
        assert guard.spent_today("t1") == pytest.approx(0.1)
        assert guard.remaining_today("t1") == pytest.approx(0.9)
        with pytest.raises(NotFoundError):
            guard.settle(call_id, status="ok", cost_usd=0.1)

    def test_refuses_what_would_overshoot(self, guard: BudgetGuard, database: Database) -> None:
        """A reservation beyond the remaining budget raises and writes nothing."""
        guard.reserve(tenant_id="t1", estimate_usd=0.7, **row())
        with pytest.raises(BudgetExceededError, match="daily budget"):
            guard.reserve(tenant_id="t1", estimate_usd=0.31, **row())
        guard.reserve(tenant_id="t1", estimate_usd=0.3, **row())  # exactly fits
        assert len(statuses(database)) == 2

    def test_only_today_counts(self, guard: BudgetGuard, database: Database) -> None:
        """Yesterday's spend does not count against today's budget."""
        call_id = guard.reserve(tenant_id="t1", estimate_usd=0.9, **row())
        guard.settle(call_id, status="ok", cost_usd=0.9)
        with database.session() as s:
            s.execute(update(LLMCall).values(created_at=datetime.now(UTC) - timedelta(days=1)))
        guard.reserve(tenant_id="t1", estimate_usd=0.9, **row())

    def test_tenant_budgets(self, database: Database) -> None:
        """Per-tenant configuration overrides the default; the tenant's own setting is
        honoured when stricter; tenants are independent."""
        guard = BudgetGuard(database, LLMSettings(model="m", daily_budget_usd=1.0,
                                                  tenant_budgets_usd={"rich": 5.0}))
        guard.reserve(tenant_id="rich", estimate_usd=4.0, **row())
        guard.reserve(tenant_id="poor", estimate_usd=1.0, **row())
        with database.session() as s:
            database.ensure_tenant(s, "thrifty").settings = {"daily_budget_usd": 0.25}
        with pytest.raises(BudgetExceededError):
            guard.reserve(tenant_id="thrifty", estimate_usd=0.3, **row())
        assert guard.limit_for_stored("thrifty") == 0.25

    def test_invalid_tenant_setting_fails_closed(self, database: Database) -> None:
        """A tenant budget that is not a number refuses every call."""
        guard = BudgetGuard(database, LLMSettings(model="m"))
        with database.session() as s:
            database.ensure_tenant(s, "broken").settings = {"daily_budget_usd": "lots"}
        with pytest.raises(BudgetExceededError, match="not a number"):
            guard.reserve(tenant_id="broken", estimate_usd=0.0, **row())
        assert guard.limit_for_stored("broken") == 0.0

    def test_no_budget_means_no_limit(self, database: Database) -> None:
        """Without any budget everything is reserved (and still recorded)."""
        guard = BudgetGuard(database, LLMSettings(model="m"))
        guard.reserve(tenant_id="new-tenant", estimate_usd=1e6, **row())
        assert guard.remaining_today("new-tenant") is None
        with database.session(readonly=True) as s:
            assert s.get(Tenant, "new-tenant") is not None  # created on first use


def _hammer(
    guard: BudgetGuard, jobs: list[tuple[float, float]], threads: int, tenant: str = "t1"
) -> int:
    """Run reserve->settle for every (estimate, real fraction) on ``threads`` threads."""
    accepted = 0
    lock = threading.Lock()
    queue: Iterator[tuple[float, float]] = iter(jobs)

    def worker() -> None:
        nonlocal accepted
        while True:
            with lock:
                job = next(queue, None)
            if job is None:
                guard.release_connection()
                return
            estimate, fraction = job
            try:
                call_id = guard.reserve(tenant_id=tenant, estimate_usd=estimate, **row())
            except BudgetExceededError:
                continue
            with lock:
                accepted += 1
            guard.settle(call_id, status="ok", cost_usd=estimate * fraction)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return accepted


jobs_strategy = st.lists(
    st.tuples(st.floats(0.0, 0.4), st.floats(0.0, 1.0)), min_size=1, max_size=40
)


class TestConcurrentBudget:
    """However calls interleave, today's spend never exceeds the budget."""

    @given(jobs=jobs_strategy, budget=st.floats(0.05, 2.0), threads=st.integers(2, 8),
           hold=st.booleans())
    @settings(max_examples=30, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    def test_threads_never_overshoot(
        self, database: Database, jobs: list[tuple[float, float]], budget: float, threads: int,
        hold: bool
    ) -> None:
        """Concurrent reserve/settle on SQLite (either path): spend <= budget, and fitting
        calls pass."""
        tenant_budgets = {"t1": budget}
        guard = BudgetGuard(database, LLMSettings(model="m", tenant_budgets_usd=tenant_budgets),
                            hold_connection=hold)
        with database.session() as s:
            s.execute(update(LLMCall).values(created_at=datetime.now(UTC) - timedelta(days=2)))
        accepted = _hammer(guard, jobs, threads)
        assert guard.spent_today("t1") <= budget + 1e-9
        assert guard.day_totals("t1").spent_usd == pytest.approx(guard.spent_today("t1"))
        if min(e for e, _ in jobs) <= budget:
            assert accepted >= 1

    @pytest.mark.postgres
    @given(jobs=jobs_strategy, budget=st.floats(0.05, 2.0), threads=st.integers(2, 8),
           hold=st.booleans())
    @settings(max_examples=12, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    def test_threads_never_overshoot_postgres(
        self, postgres_database: Database, jobs: list[tuple[float, float]], budget: float,
        threads: int, hold: bool
    ) -> None:
        """Same property on PostgreSQL, where FOR UPDATE on the tenant's day row serialises
        (a fresh tenant per example)."""
        tenant = f"p{uuid.uuid4().hex[:12]}"
        guard = BudgetGuard(postgres_database,
                            LLMSettings(model="m", tenant_budgets_usd={tenant: budget}),
                            hold_connection=hold)
        accepted = _hammer(guard, jobs, threads, tenant)
        assert guard.spent_today(tenant) <= budget + 1e-9
        assert guard.day_totals(tenant).spent_usd == pytest.approx(guard.spent_today(tenant))
        if min(e for e, _ in jobs) <= budget:
            assert accepted >= 1

    @pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres",
                                                                 marks=pytest.mark.postgres)])
    def test_database_alone_serialises(
        self, backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without the in-process lock (as with several processes), the database alone (the
        one-statement reservation or BEGIN IMMEDIATE / SELECT ... FOR UPDATE on the day row)
        still keeps spend within the budget."""
        from auto_dev.llm import budget as budget_module

        database = request.getfixturevalue(
            "database" if backend == "sqlite" else "postgres_database"
        )
        monkeypatch.setattr(budget_module, "_tenant_lock", lambda tenant_id: threading.Lock())
        guard = BudgetGuard(database, LLMSettings(model="m", daily_budget_usd=0.5),
                            hold_connection=True)
        jobs = [(0.03, 1.0), (0.05, 0.5), (0.02, 1.0)] * 20
        accepted = _hammer(guard, jobs, threads=8)
        assert guard.spent_today("t1") <= 0.5 + 1e-9
        assert guard.day_totals("t1").spent_usd == pytest.approx(guard.spent_today("t1"))
        assert accepted >= 10

    @given(
        usages=st.lists(st.tuples(st.integers(0, 50), st.integers(0, 64)), min_size=1,
                        max_size=16),
        budget=st.floats(0.0002, 0.003),
    )
    @settings(max_examples=12, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    def test_concurrent_client_calls_never_overshoot(
        self, server: OpenAICompatibleServer, database: Database,
        usages: list[tuple[int, int]], budget: float
    ) -> None:
        """Concurrent LLMClient calls through litellm: the ledger total stays within budget."""
        tenant = f"h{abs(hash((tuple(usages), budget))) % 10**9}"
        server.reset()
        for prompt_tokens, completion_tokens in usages:
            server.script(ServerReply(content="ok", prompt_tokens=prompt_tokens,
                                      completion_tokens=completion_tokens))
        client = LLMClient(
            llm_settings(server, tenant_budgets_usd={tenant: budget}, num_retries=0),
            database, tenant_id=tenant,
        )

        async def run() -> list[object]:
            return await asyncio.gather(
                *(client.complete(USER) for _ in usages), return_exceptions=True
            )

        results = asyncio.run(run())
        client.close()
        assert all(isinstance(r, BudgetExceededError) or not isinstance(r, Exception)
                   for r in results), results
        assert total_cost(database, tenant) <= budget + 1e-12
        day = BudgetGuard(database, client.settings).day_totals(tenant)
        assert day.spent_usd == pytest.approx(total_cost(database, tenant), abs=1e-15)
        assert day.reserved_calls == 0 and day.reserved_usd == 0.0
        estimate = client.price_of(client.table.deployments[0]).cost(
            prompt_token_bound(USER), 64
        )
        if estimate <= budget:
            assert any(not isinstance(r, Exception) for r in results)


class TestLedgerQueries:
    """spend() groups today's rows by tenant, model and engine."""

    def test_spend_grouping(self, database: Database, guard: BudgetGuard) -> None:
        """Costs, counts and statuses add up per group."""
        for engine, cost, status in [("a", 0.1, "ok"), ("a", 0.2, "error"), ("b", 0.05, "ok")]:
            call_id = guard.reserve(tenant_id="t1", estimate_usd=0.3, engine=engine, **row())
            guard.settle(call_id, status=status, cost_usd=cost, prompt_tokens=10,
                         completion_tokens=1)
        guard.record(tenant_id="t1", status="cache_hit", engine="a", cache_hit=True, **row())
        guard.reserve(tenant_id="t2", estimate_usd=0.01, engine="a", **row())
        rows = {(r.tenant_id, r.engine): r for r in ledger.spend(database)}
        a = rows[("t1", "a")]
        assert (a.calls, a.errors, a.cache_hits, a.in_flight) == (3, 1, 1, 0)
        assert a.cost_usd == pytest.approx(0.3) and a.prompt_tokens == 20
        assert rows[("t1", "b")].cost_usd == pytest.approx(0.05)
        assert rows[("t2", "a")].in_flight == 1
        assert [r.tenant_id for r in ledger.spend(database, tenant_id="t2")] == ["t2"]
        yesterday = ledger.utc_day_start() - timedelta(days=1)
        assert ledger.spend(database, since=yesterday) == []
        assert len(list(ledger.calls(database, tenant_id="t1"))) == 4


class TestFastPath:
    """The raw SQLite path stores exactly what the SQLAlchemy path stores."""

    def test_rows_match_the_orm_view(self, database: Database) -> None:
        """Rows written raw read back through the ORM with the same values and times."""
        fast = BudgetGuard(database, LLMSettings(model="m", daily_budget_usd=5.0),
                           hold_connection=True)
        call_id = fast.reserve(tenant_id="t1", estimate_usd=0.5, engine="e", purpose="p",
                               **row(prompt_tokens=7))
        assert fast.spent_today("t1") == pytest.approx(0.5)
        fast.settle(call_id, status="ok", cost_usd=0.25, prompt_tokens=7, completion_tokens=3,
                    latency_s=0.5)
        fast.release_connection()
        with database.session(readonly=True) as s:
            stored = s.get(LLMCall, call_id)
            assert stored is not None
            assert (stored.status, stored.cost_usd, stored.prompt_tokens,
                    stored.completion_tokens, stored.engine, stored.cache_hit) == (
                "ok", 0.25, 7, 3, "e", False)
            assert abs(stored.created_at.replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(
                minutes=1)
        [spent] = ledger.spend(database)
        assert spent.cost_usd == pytest.approx(0.25) and spent.calls == 1

    def test_locked_database_is_mapped(self, database_url: str) -> None:
        """A database another process keeps locked raises DatabaseLockedError, not sqlite3's."""
        import sqlite3

        from auto_dev._exceptions import DatabaseLockedError

        database = Database(database_url, busy_timeout_s=0.1)
        guard = BudgetGuard(database, LLMSettings(model="m"), hold_connection=True)
        guard.reserve(tenant_id="t1", estimate_usd=0.0, **row())
        blocker = sqlite3.connect(Path(database_url.removeprefix("sqlite:///")),
                                  isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(DatabaseLockedError):
                guard.reserve(tenant_id="t1", estimate_usd=0.0, **row())
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        guard.reserve(tenant_id="t1", estimate_usd=0.0, **row())  # usable again
        guard.release_connection()
        database.dispose()

    def test_nowait_never_waits(self, database_url: str) -> None:
        """reserve_nowait/settle_nowait give up at once when another writer holds the
        database (or the tenant does not exist yet), and work when it does not."""
        import sqlite3
        import time

        database = Database(database_url)
        guard = BudgetGuard(database, LLMSettings(model="m"), hold_connection=True)
        assert guard.reserve_nowait(tenant_id="fresh", estimate_usd=0.1, **row()) is None
        call_id = guard.reserve(tenant_id="fresh", estimate_usd=0.1, **row())
        blocker = sqlite3.connect(Path(database_url.removeprefix("sqlite:///")),
                                  isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        started = time.perf_counter()
        try:
            assert guard.reserve_nowait(tenant_id="fresh", estimate_usd=0.1, **row()) is None
            assert guard.settle_nowait(call_id, status="ok", cost_usd=0.05) is False
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert time.perf_counter() - started < 1.0  # the busy timeout (5 s) was not waited
        assert guard.settle_nowait(call_id, status="ok", cost_usd=0.05) is True
        assert guard.reserve_nowait(tenant_id="fresh", estimate_usd=0.1, **row()) is not None
        assert guard.spent_today("fresh") == pytest.approx(0.15)
        guard.release_connection()
        database.dispose()

    def test_nowait_does_not_apply_elsewhere(self, database: Database) -> None:
        """Without held connections the nowait variants always defer to the normal path."""
        guard = BudgetGuard(database, LLMSettings(model="m"))
        assert guard.reserve_nowait(tenant_id="t1", estimate_usd=0.0, **row()) is None
        assert guard.settle_nowait("x", status="ok", cost_usd=0.0) is False
