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
        with pytest.raises(ValidationError, match="already exists"):
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
        assert first.scheduler.job_ids() == ["hourly", "two-hourly"]
        await first.scheduler.shutdown()
        second = AutoDev(settings, database=Database(database_url), sandbox=sandbox,
                         load_plugins=False)
        await second.scheduler.start()
        assert second.scheduler.job_ids() == ["hourly", "two-hourly"]
        second.scheduler.remove("two-hourly")
        assert second.scheduler.job_ids() == ["hourly"]
        await second.scheduler.shutdown()
        second.database.dispose()


class TestRunning:
    """What a fired schedule does."""

    async def test_background_cycle_needs_autonomy(self, autodev: AutoDev) -> None:
        """A supervised agent's failing tool is not evolved in the background."""
        await _failing_tool(autodev, "supervised")
        autodev.scheduler.add("alpha_evolver", interval_s=60, budget=200, schedule_id="s")
        assert autodev.scheduler.recently_failing_tools() == ["apply_discount"]
        [result] = await autodev.scheduler.run_schedule("s")
        assert result.status == "denied" and "below autonomous" in result.reason

    async def test_background_cycle_runs_for_autonomous_agent(self, autodev: AutoDev) -> None:
        """An autonomous agent's failing tool gets a cycle that offers a fix."""
        await _failing_tool(autodev, "autonomous")
        autodev.scheduler.add("alpha_evolver", interval_s=60, budget=300, schedule_id="s")
        [result] = await autodev.scheduler.run_schedule("s")
        assert result.status == "completed", result.reason
        assert result.offered_ids

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
