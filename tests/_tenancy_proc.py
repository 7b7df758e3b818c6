"""A second auto-dev process for the multi-process tenancy tests (``tests/test_tenancy.py``).

Usage: ``python -m tests._tenancy_proc MODE DATABASE_URL TENANT``

* ``emit``: accept one failing episode of tool ``clamp`` in TENANT with a user handler named
  ``shared.audit`` subscribed, then die at once (``os._exit``) before anything is dispatched.
* ``hold``: start a cycle of the ``sleepy`` engine on target ``x`` in TENANT, print ``holding``
  once its run row is written, and keep it running (heartbeat included) until killed.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from auto_dev import AutoDev, BaseLearningEngine, Cycle, CycleRequest, EvolutionRunResult
from auto_dev.config import load_settings

CLAMP = "def clamp(v, lo, hi):\n    return max(lo, max(v, hi))\n"


class Sleepy(BaseLearningEngine):
    """Holds its target for as long as the process lives."""

    name = "sleepy"
    capability = "acme.sleepy"
    required_maturity = "student"

    async def evolve(self, request: CycleRequest, cycle: Cycle) -> EvolutionRunResult:
        print("holding", cycle.run_id, flush=True)
        await asyncio.sleep(3600)
        return EvolutionRunResult(engine=self.name, target=request.target, status="completed")


async def emit(url: str, tenant: str) -> None:
    autodev = AutoDev(load_settings(database_url=url, tenant=tenant), load_plugins=False)
    seen: list[Any] = []
    autodev.events.on_task_fail(seen.append, name="shared.audit")
    autodev.register_tool("clamp", CLAMP, "clamp", tests=[{"args": [5, 0, 10], "expected": 5}])
    await autodev.record_episode(agent="bot", task=f"secret task of {tenant}", success=False,
                                 tool_name="clamp", inputs={"args": [42, 0, 10]}, expected=10,
                                 error_trace=f"AssertionError: secret trace of {tenant}")
    print("accepted", flush=True)
    os._exit(0)  # die before the loop dispatches anything


async def hold(url: str, tenant: str) -> None:
    settings = load_settings(database_url=url, tenant=tenant, cycle_lease_s=1.0)
    async with AutoDev(settings, load_plugins=False, builtin_engines=False) as autodev:
        autodev.engines.register(Sleepy())
        autodev.configure_tenant(enabled=True, capabilities={"acme.sleepy": True})
        autodev.set_maturity("bot", "acme.sleepy", "student")
        await autodev.run_cycle("sleepy", "x", agent="bot")


if __name__ == "__main__":
    mode, db_url, tenant_id = sys.argv[1:4]
    asyncio.run({"emit": emit, "hold": hold}[mode](db_url, tenant_id))
