"""Scheduled evolution cycles: schedules stored in the database, fired by APScheduler.

Background cycles act for the agent whose failures they answer, so that agent must be
autonomous for auto_dev.background_evolution, and the tenant must turn it on.

Run: python examples/scheduled_cycles.py
"""

from __future__ import annotations

import asyncio
import os
import tempfile

from auto_dev import AutoDev, load_settings

BUGGY = "def apply_discount(price, percent):\n    return round(price * (1 + percent / 100), 2)\n"


async def main() -> None:
    url = os.environ.get("AUTO_DEV_DATABASE_URL") or (
        f"sqlite:///{tempfile.mkdtemp()}/scheduled.db")
    async with AutoDev(load_settings(database_url=url)) as autodev:
        autodev.configure_tenant(enabled=True, alpha_evolver=True, background_evolution=True)
        for capability in ("auto_dev.alpha_evolver", "auto_dev.background_evolution"):
            autodev.set_maturity("night-bot", capability, "autonomous", reason="example")
        autodev.register_tool("apply_discount", BUGGY, "apply_discount",
                              tests=[{"args": [50.0, 0], "expected": 50.0}])
        autodev.events.unsubscribe("engine:alpha_evolver")  # leave the work to the schedule
        await autodev.record_episode(agent="night-bot", task="10% off 100", success=False,
                                     tool_name="apply_discount", inputs={"args": [100.0, 10]},
                                     expected=90.0, error_trace="AssertionError: 110.0 != 90.0")
        await autodev.events.drain()

        autodev.scheduler.add("alpha_evolver", interval_s=1, budget=300, schedule_id="nightly")
        print("schedules:", [s.id for s in autodev.scheduler.schedules()])
        await autodev.scheduler.start()  # jobs live in the apscheduler_jobs table
        for _ in range(60):
            await asyncio.sleep(0.25)
            if autodev.review.list_pending(autodev.tenant_id):
                break
        await autodev.scheduler.shutdown()
        for candidate in autodev.review.list_pending(autodev.tenant_id):
            print(f"offered by the schedule: {candidate.target} {candidate.id[:12]} "
                  f"({candidate.operator})")


if __name__ == "__main__":
    asyncio.run(main())
