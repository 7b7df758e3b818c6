"""The cycle pipeline the framework owns: gates for every engine, durable jobs, leases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, ClassVar

import pytest
from sqlalchemy import func, select

from auto_dev import BaseLearningEngine, TaskFailed, ValidationError
from auto_dev.config import load_settings
from auto_dev.db import Database
from auto_dev.engines.pipeline import Cycle
from auto_dev.models import CycleJob, EventDelivery, EvolutionRun, ToolMutation, utcnow
from auto_dev.sandbox.process import ProcessSandbox
from auto_dev.service import AutoDev
from auto_dev.types import CycleRequest, EvolutionRunResult
from tests.engines.conftest import BUGGY_DISCOUNT, DISCOUNT_TESTS, ON

FIXED_DISCOUNT = BUGGY_DISCOUNT.replace("1 + percent", "1 - percent")


class SlowEngine(BaseLearningEngine):
    """A custom engine whose cycle outlives the event handler's timeout."""

    name = "slow"
    capability = "acme.slow"
    required_maturity = "student"
    subscriptions: ClassVar[tuple[type, ...]] = (TaskFailed,)

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.cycles: list[CycleRequest] = []

    async def evolve(self, request: CycleRequest, cycle: Cycle) -> EvolutionRunResult:
        self.cycles.append(request)
        await asyncio.sleep(self.seconds)
        return EvolutionRunResult(engine=self.name, target=request.target, status="completed",
                                  reason=f"slept {self.seconds:g} s")


class SeedStyleEngine(BaseLearningEngine):
    """An engine written against the seed's lifecycle only (no evolve)."""

    name = "seed_style"
    capability = "acme.seed_style"
    required_maturity = "student"

    async def analyze_episode(self, episode_id: str, **kwargs: Any) -> dict[str, Any]:
        return {"episode_id": episode_id}

    async def propose_code_change(self, context: dict[str, Any], **kwargs: Any) -> str:
        return FIXED_DISCOUNT  # plain code, as the seed's engines return it


def _acme_on(autodev: AutoDev, *names: str) -> None:
    """Switch the custom capabilities on for tenant t1 and make the agent "bot" known."""
    autodev.configure_tenant(enabled=True, capabilities=dict.fromkeys(names, True))
    for name in names:
        autodev.set_maturity("bot", name, "student", reason="test setup")


@pytest.fixture
async def quick_autodev(database: Database, database_url: str,
                        sandbox: ProcessSandbox) -> AsyncIterator[AutoDev]:
    """An AutoDev with a 0.3 s handler timeout and a 0.5 s run lease."""
    settings = load_settings(database_url=database_url, tenant="t1",
                             event_handler_timeout_s=0.3, cycle_lease_s=0.5, cycle_poll_s=0.1)
    instance = AutoDev(settings, database=database, sandbox=sandbox, load_plugins=False,
                       builtin_engines=False)
    await instance.start()
    try:
        yield instance
    finally:
        await instance.aclose()


class TestGate:
    """Every engine's cycle passes the capability gate, custom engines included."""

    async def test_custom_engine_cycle_is_denied_while_the_tenant_is_off(
        self, autodev: AutoDev
    ) -> None:
        """The default tenant has every toggle off: a custom engine's cycle does not run."""
        engine = autodev.engines.register(SlowEngine())
        autodev.set_maturity("bot", "acme.slow", "autonomous", reason="mature, yet off")
        result = await autodev.run_cycle("slow", "anything", agent="bot")
        assert result.status == "denied" and "turned off" in result.reason
        assert engine.cycles == []  # type: ignore[attr-defined]
        _acme_on(autodev, "acme.slow")
        assert (await autodev.run_cycle("slow", "anything", agent="bot")).status == "completed"
        assert len(engine.cycles) == 1  # type: ignore[attr-defined]

    async def test_overriding_run_cycle_is_refused(self) -> None:
        """run_cycle belongs to the framework: a subclass that overrides it is a TypeError."""
        with pytest.raises(TypeError, match="framework owns"):
            class Sneaky(BaseLearningEngine):
                name = "sneaky"

                async def run_cycle(self, target: str, budget: int | None = None, **kw: Any
                                    ) -> EvolutionRunResult:
                    raise AssertionError("never called")

    async def test_capability_names_are_accepted_for_engines(self, autodev: AutoDev) -> None:
        """run_cycle("memento_skills") finds the engine called memento."""
        assert autodev.engines.get("memento_skills").name == "memento"
        assert autodev.engines.get("auto_dev.alpha_evolver").name == "alpha_evolver"

    @pytest.mark.parametrize("budget", [0, -1, True, 2.5, 10**9])
    async def test_bad_budget_names_the_field_and_runs_nothing(self, autodev: AutoDev,
                                                               budget: Any) -> None:
        """budget=0 is an error, not 'the default'; nothing is written."""
        with pytest.raises(ValidationError) as info:
            await autodev.run_cycle("alpha_evolver", "apply_discount", budget=budget)
        assert info.value.field == "budget"
        with autodev.database.session() as session:
            assert session.scalar(select(func.count()).select_from(EvolutionRun)) == 0


class TestSeedLifecycle:
    """Engines written against analyze/propose/validate work through the default evolve."""

    async def test_seed_style_engine_offers_a_validated_candidate(self, autodev: AutoDev
                                                                  ) -> None:
        """Its code proposal is validated against the tool's tests and offered for review."""
        autodev.engines.register(SeedStyleEngine())
        _acme_on(autodev, "acme.seed_style")
        autodev.register_tool("apply_discount", BUGGY_DISCOUNT, "apply_discount",
                              tests=DISCOUNT_TESTS)
        await autodev.record_episode(agent="bot", task="discount", success=False,
                                     tool_name="apply_discount", inputs={"args": [10.0, 10]},
                                     expected=9.0, error_trace="AssertionError")
        result = await autodev.run_cycle("seed_style", "apply_discount", agent="bot")
        assert result.status == "completed", result.reason
        assert len(result.offered_ids) == 1
        [pending] = autodev.review.list_pending("t1")
        assert pending.id == result.offered_ids[0]


class TestDurableJobs:
    """Events queue cycle jobs; the worker runs them outside the handler."""

    async def test_a_cycle_longer_than_the_handler_timeout_completes_once(
        self, quick_autodev: AutoDev
    ) -> None:
        """The handler only queues the job (its delivery succeeds at once); the cycle runs in
        the worker for 1 s, three times the handler timeout, and completes exactly once."""
        autodev = quick_autodev
        engine = autodev.engines.register(SlowEngine(seconds=1.0))
        _acme_on(autodev, "acme.slow")
        autodev.register_tool("apply_discount", BUGGY_DISCOUNT, "apply_discount")
        await autodev.record_episode(agent="bot", task="t", success=False,
                                     tool_name="apply_discount", error_trace="E: x")
        await autodev.drain(timeout_s=30)
        assert len(engine.cycles) == 1  # type: ignore[attr-defined]
        with autodev.database.session() as session:
            delivery = session.scalars(select(EventDelivery).where(
                EventDelivery.handler == "engine:slow")).one()
            assert (delivery.status, delivery.attempts) == ("delivered", 1)
            job = session.scalars(select(CycleJob)).one()
            assert job.status == "done" and job.outcome["status"] == "completed"
            run = session.scalars(select(EvolutionRun)).one()
            assert run.status == "completed" and run.job_id == job.id

    async def test_a_burst_of_failures_is_one_job(self, database: Database, database_url: str,
                                                  sandbox: ProcessSandbox) -> None:
        """Ten failures of one tool while no worker runs: one queued job asked for ten times,
        acting for one of the failing agents."""
        settings = load_settings(database_url=database_url, tenant="t1", cycle_worker=False)
        autodev = AutoDev(settings, database=database, sandbox=sandbox, load_plugins=False,
                          builtin_engines=False)
        await autodev.start()
        try:
            autodev.engines.register(SlowEngine())
            autodev.register_tool("apply_discount", BUGGY_DISCOUNT, "apply_discount")
            for i in range(10):
                await autodev.record_episode(agent=f"bot{i}", task="t", success=False,
                                             tool_name="apply_discount", error_trace="E: x")
            await autodev.events.drain()
            [job] = autodev.jobs.list("t1")
            assert (job.status, job.requests) == ("queued", 10)
            assert job.agent in {f"bot{i}" for i in range(10)}
        finally:
            await autodev.aclose()

    async def test_two_workers_never_run_one_job_twice(self, database: Database,
                                                       database_url: str,
                                                       sandbox: ProcessSandbox) -> None:
        """Two facades (two lease owners) claim from one queue: each job runs once."""
        # Leases long enough that no live worker's lease lapses on a loaded machine: a lapsed
        # lease is taken over by design (its owner is presumed dead), which is not this test.
        settings = load_settings(database_url=database_url, tenant="t1", cycle_lease_s=30,
                                 cycle_poll_s=0.05)
        first = AutoDev(settings, database=database, sandbox=sandbox, load_plugins=False,
                        builtin_engines=False)
        second = AutoDev(settings, database=Database(database_url), sandbox=sandbox,
                         load_plugins=False, builtin_engines=False)
        engines = [first.engines.register(SlowEngine(seconds=0.05)),
                   second.engines.register(SlowEngine(seconds=0.05))]
        await first.start()
        _acme_on(first, "acme.slow")
        await second.start()
        try:
            for i in range(12):
                first.queue_cycle("slow", f"target-{i}", agent="bot")
            await first.drain(timeout_s=60)
            await second.drain(timeout_s=60)
        finally:
            await second.aclose()
            await first.aclose()
        ran = [r.target for e in engines for r in e.cycles]  # type: ignore[attr-defined]
        assert sorted(ran) == sorted(f"target-{i}" for i in range(12))


class TestLeases:
    """Locks and recovery are lease-based: a live cycle is never taken over."""

    async def test_live_run_blocks_and_expired_run_is_taken_over(self, quick_autodev: AutoDev
                                                                  ) -> None:
        """A running row with a live lease (another process) makes a cycle skip; once that
        lease expires the row becomes interrupted and the next cycle runs."""
        autodev = quick_autodev
        engine = autodev.engines.register(SlowEngine())
        _acme_on(autodev, "acme.slow")
        with autodev.database.session() as session:
            session.add(EvolutionRun(tenant_id="t1", engine="slow", target="x", status="running",
                                     owner="other-host:1", budget=1,
                                     lease_until=utcnow() + timedelta(seconds=60)))
        await autodev.start()  # starting again recovers nothing that is alive
        skipped = await autodev.run_cycle("slow", "x", agent="bot")
        assert skipped.status == "skipped"
        with autodev.database.session() as session:
            row = session.scalars(select(EvolutionRun).where(EvolutionRun.owner == "other-host:1")
                                  ).one()
            row.lease_until = utcnow() - timedelta(seconds=1)
        ran = await autodev.run_cycle("slow", "x", agent="bot")
        assert ran.status == "completed" and len(engine.cycles) == 1  # type: ignore[attr-defined]
        with autodev.database.session() as session:
            statuses = dict(session.execute(select(EvolutionRun.owner, EvolutionRun.status)).all())
        assert statuses["other-host:1"] == "interrupted"

    async def test_recovery_resolves_open_candidates_of_dead_runs(self, autodev: AutoDev
                                                                  ) -> None:
        """A dead process's run is marked interrupted and its pending candidates failed."""
        autodev.register_tool("apply_discount", BUGGY_DISCOUNT, "apply_discount",
                              tests=DISCOUNT_TESTS)
        autodev.configure_tenant(**ON)
        autodev.set_maturity("bot", "auto_dev.alpha_evolver", "supervised")
        with autodev.database.session() as session:
            from auto_dev.models import Tool

            tool_id = session.scalars(select(Tool.id)).one()
            run = EvolutionRun(tenant_id="t1", engine="alpha_evolver", target="apply_discount",
                               status="running", owner="dead:1", budget=1,
                               lease_until=utcnow() - timedelta(seconds=1))
            session.add(run)
            session.flush()
            run_id = run.id
            autodev.store.create_tool_mutation(
                session, tenant_id="t1", tool_id=tool_id, code=FIXED_DISCOUNT, operator="op",
                agent_id="bot", run_id=run_id)
        assert autodev.pipeline.recover() == 1
        with autodev.database.session() as session:
            assert session.get(EvolutionRun, run_id).status == "interrupted"  # type: ignore
            mutation = session.scalars(select(ToolMutation)).one()
            assert mutation.status == "failed"


class TestFailures:
    """A cycle that fails or is cancelled leaves nothing half-done."""

    async def test_engine_error_fails_the_run_and_its_open_candidates(self, autodev: AutoDev
                                                                      ) -> None:
        """An engine that raises after creating a candidate: run failed, candidate failed."""

        class Crashing(BaseLearningEngine):
            name = "crashing"
            capability = "acme.crashing"
            required_maturity = "student"

            async def evolve(self, request: CycleRequest, cycle: Cycle) -> EvolutionRunResult:
                snapshot = cycle.tenant.tools.snapshot(request.target)
                with cycle.candidates.transaction() as tx:
                    tx.create_tool_mutation(tool_id=snapshot.tool_id, code=FIXED_DISCOUNT,
                                            operator="op", parent_version_id=snapshot.version_id)
                raise RuntimeError("engine bug")

        autodev.engines.register(Crashing())
        _acme_on(autodev, "acme.crashing")
        autodev.register_tool("apply_discount", BUGGY_DISCOUNT, "apply_discount")
        result = await autodev.run_cycle("crashing", "apply_discount", agent="bot")
        assert result.status == "failed" and "engine bug" in result.reason
        assert len(result.candidate_ids) == 1
        with autodev.database.session() as session:
            assert session.scalars(select(EvolutionRun.status)).one() == "failed"
            assert session.scalars(select(ToolMutation.status)).one() == "failed"

    async def test_a_placeholder_proposal_is_never_offered(self, autodev: AutoDev) -> None:
        """The seed's "LLM unavailable" comment passes nothing: stored failed, not offered."""

        class Placeholder(SeedStyleEngine):
            name = "placeholder"
            capability = "acme.placeholder"

            async def propose_code_change(self, context: dict[str, Any], **kwargs: Any) -> str:
                return "# Code generation skipped: LLM unavailable\n"

        autodev.engines.register(Placeholder())
        _acme_on(autodev, "acme.placeholder")
        autodev.register_tool("apply_discount", BUGGY_DISCOUNT, "apply_discount",
                              tests=DISCOUNT_TESTS)
        await autodev.record_episode(agent="bot", task="discount", success=False,
                                     tool_name="apply_discount", error_trace="AssertionError")
        result = await autodev.run_cycle("placeholder", "apply_discount", agent="bot")
        assert result.status == "completed" and result.offered_ids == []
        with autodev.database.session() as session:
            assert session.scalars(select(ToolMutation.status)).one() == "failed"
