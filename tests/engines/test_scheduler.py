"""Scheduled evolution cycles: stored jobs, restarts, gating and one cycle per target."""

from __future__ import annotations

import asyncio

import pytest

from auto_dev import NotFoundError, ValidationError
from auto_dev.config import load_settings
from auto_dev.db import Database
from auto_dev.sandbox.process import ProcessSandbox
from auto_dev.service import AutoDev
from tests.engines.conftest import BUGGY_DISCOUNT, DISCOUNT_TESTS, ON


async def _failing_tool(autodev: AutoDev, maturity: str) -> None:
    autodev.configure_tenant(**ON, background_evolution=True)
    autodev.register_tool("apply_discount", BUGGY_DISCOUNT, "apply_discount",
                          tests=DISCOUNT_TESTS)
    autodev.set_maturity("bot", "auto_dev.alpha_evolver", maturity)
    autodev.set_maturity("bot", "auto_dev.background_evolution", maturity)
    # Unregister the event-driven engine reaction so only the schedule evolves the tool.
    autodev.events.unsubscribe("engine:alpha_evolver")
    await autodev.record_episode(agent="bot", task="discount", success=False,
                                 tool_name="apply_discount", inputs={"args": [10.0, 10]},
                                 expected=9.0, error_trace="AssertionError: 11.0 != 9.0")
    await autodev.events.drain()


class TestSchedules:
    """Managing schedules."""

    async def test_add_list_remove_and_validation(self, autodev: AutoDev) -> None:
        """Schedules are stored; bad fields are named; removal of unknown ids is an error."""
        row = autodev.scheduler.add("alpha_evolver", interval_s=60, budget=20)
        assert row.id == "alpha_evolver.recent-failures"
        assert [s.id for s in autodev.scheduler.schedules()] == [row.id]
        with pytest.raises(ValidationError) as info:
            autodev.scheduler.add("nope", interval_s=60)
        assert info.value.field == "engine"
        with pytest.raises(ValidationError) as info:
            autodev.scheduler.add("alpha_evolver", interval_s=0, schedule_id="x")
        assert info.value.field == "interval_s"
        for bad in (float("inf"), float("nan"), 1e12, 0.5, True):
            with pytest.raises(ValidationError) as info:
                autodev.scheduler.add("alpha_evolver", interval_s=bad, schedule_id="y")
            assert info.value.field == "interval_s"
        with pytest.raises(ValidationError, match="already has a schedule"):
            autodev.scheduler.add("alpha_evolver", interval_s=60)
        autodev.scheduler.remove(row.id)
        assert autodev.scheduler.schedules() == []
        with pytest.raises(NotFoundError):
            autodev.scheduler.remove(row.id)

    async def test_restart_neither_loses_nor_doubles_jobs(
        self, database: Database, database_url: str, sandbox: ProcessSandbox
    ) -> None:
        """Jobs live in the database; a second process start reconciles, not duplicates."""
        settings = load_settings(database_url=database_url, tenant="t1")
        first = AutoDev(settings, database=database, sandbox=sandbox, load_plugins=False)
        first.scheduler.add("alpha_evolver", interval_s=3600, schedule_id="hourly")
        first.scheduler.add("memento", interval_s=7200, schedule_id="two-hourly")
        await first.scheduler.start()
        assert first.scheduler.job_ids() == ["t1/hourly", "t1/two-hourly"]
        await first.scheduler.shutdown()
        second = AutoDev(settings, database=Database(database_url), sandbox=sandbox,
                         load_plugins=False)
        await second.scheduler.start()
        assert second.scheduler.job_ids() == ["t1/hourly", "t1/two-hourly"]
        second.scheduler.remove("two-hourly")
        assert second.scheduler.job_ids() == ["t1/hourly"]
        await second.scheduler.shutdown()
        second.database.dispose()


class TestTenants:
    """Schedules belong to their tenant."""

    async def test_ids_are_per_tenant_and_fire_in_their_tenant(self, autodev: AutoDev) -> None:
        """Two tenants may use one id; each lists only its own, and a fired schedule queues a
        cycle in its own tenant, never the facade's."""
        autodev.scheduler.add("alpha_evolver", interval_s=60, schedule_id="nightly",
                              target="tool_a")
        other = autodev.scheduler.add("alpha_evolver", interval_s=60, schedule_id="nightly",
                                      target="tool_b", tenant_id="t2")
        assert other.tenant_id == "t2"
        assert [(s.tenant_id, s.target) for s in autodev.scheduler.schedules()] == [
            ("t1", "tool_a")]
        assert [(s.tenant_id, s.target) for s in autodev.scheduler.schedules("t2")] == [
            ("t2", "tool_b")]
        autodev.worker._closed = True  # keep the job queued for inspection
        [job_id] = await autodev.scheduler.run_schedule("nightly", tenant_id="t2")
        job = autodev.jobs.get(job_id)
        assert job is not None
        assert (job.tenant_id, job.target, job.trigger) == ("t2", "tool_b", "schedule")
        autodev.scheduler.remove("nightly", tenant_id="t2")
        assert [s.id for s in autodev.scheduler.schedules()] == ["nightly"]

    async def test_a_bad_stored_interval_does_not_stop_the_others(self, autodev: AutoDev
                                                                  ) -> None:
        """A row written with an unbounded interval is skipped with a log line at start."""
        from auto_dev.models import Schedule

        autodev.scheduler.add("alpha_evolver", interval_s=60, schedule_id="good")
        with autodev.database.session() as session:
            session.add(Schedule(id="bad", tenant_id="t1", engine="alpha_evolver",
                                 interval_s=float("inf"), budget=10))
        await autodev.scheduler.start()
        try:
            assert autodev.scheduler.job_ids() == ["t1/good"]
        finally:
            await autodev.scheduler.shutdown()


class TestRunning:
    """What a fired schedule does."""

    async def test_background_cycle_needs_autonomy(self, autodev: AutoDev) -> None:
        """A supervised agent's failing tool is not evolved in the background."""
        await _failing_tool(autodev, "supervised")
        autodev.scheduler.add("alpha_evolver", interval_s=60, budget=200, schedule_id="s")
        assert autodev.scheduler.recently_failing_tools() == ["apply_discount"]
        [result] = await autodev.scheduler.fire_all()
        assert result.status == "denied" and "below autonomous" in result.reason

    async def test_background_cycle_runs_for_autonomous_agent(self, autodev: AutoDev) -> None:
        """An autonomous agent's failing tool gets a cycle that offers a fix."""
        await _failing_tool(autodev, "autonomous")
        autodev.scheduler.add("alpha_evolver", interval_s=60, budget=300, schedule_id="s")
        [result] = await autodev.scheduler.fire_all()
        assert result.status == "completed", result.reason
        assert result.offered_ids

    async def test_a_schedule_whose_cycles_keep_failing_backs_off(self, autodev: AutoDev
                                                                  ) -> None:
        """Denied cycles make the next firing wait (interval x 2^failures); nothing is queued
        while it waits."""
        await _failing_tool(autodev, "supervised")
        autodev.scheduler.add("alpha_evolver", interval_s=60, budget=10, schedule_id="s")
        [denied] = await autodev.scheduler.fire_all()
        assert denied.status == "denied"
        assert await autodev.scheduler.run_schedule("s") == []  # counts the denial, backs off
        [row] = autodev.scheduler.schedules()
        assert row.failures == 1 and row.backoff_until is not None
        assert await autodev.scheduler.run_schedule("s") == []

    async def test_fires_on_interval_one_cycle_at_a_time(self, autodev: AutoDev) -> None:
        """A started scheduler fires the job; overlapping fires don't run two cycles."""
        await _failing_tool(autodev, "autonomous")
        autodev.scheduler.add("alpha_evolver", interval_s=1, budget=300, schedule_id="fast")
        await autodev.scheduler.start()
        try:
            for _ in range(100):
                await asyncio.sleep(0.1)
                if autodev.review.list_candidates("t1"):
                    break
        finally:
            await autodev.scheduler.shutdown()
        from sqlalchemy import func, select

        from auto_dev.models import EvolutionRun

        with autodev.database.session() as session:
            running = session.scalar(select(func.count()).select_from(EvolutionRun).where(
                EvolutionRun.status == "running"))
            runs = session.scalar(select(func.count()).select_from(EvolutionRun))
        assert runs >= 1 and running <= 1
        assert autodev.review.list_candidates("t1")
