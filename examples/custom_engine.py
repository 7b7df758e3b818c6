"""A custom learning engine: subclass BaseLearningEngine, register it, let the framework run it.

The engine observes failures (``handle_event``) and does its work in ``evolve``; the framework
owns everything around that work: the per-target lock, the capability gate (here the custom
capability ``acme.error_census``, which the tenant must switch on and the agent must be mature
enough for), storage and review.

Run: python examples/custom_engine.py   (uses a temporary SQLite file unless
AUTO_DEV_DATABASE_URL is set)
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections import Counter
from typing import Any

from auto_dev import (
    AutoDev,
    BaseLearningEngine,
    Cycle,
    CycleRequest,
    EvolutionRunResult,
    TaskFailed,
    load_settings,
)
from auto_dev.failures import exception_of


class ErrorCensus(BaseLearningEngine):
    """Counts failures by exception type: the smallest useful engine."""

    name = "error_census"
    capability = "acme.error_census"
    required_maturity = "student"  # it only observes: any agent may run it once switched on
    subscriptions = (TaskFailed,)

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    async def handle_event(self, event: Any) -> None:
        self.counts[exception_of(event.error_trace)[0]] += 1

    async def evolve(self, request: CycleRequest, cycle: Cycle) -> EvolutionRunResult:
        top = ", ".join(f"{k}={v}" for k, v in self.counts.most_common(3))
        return EvolutionRunResult(engine=self.name, target=request.target, status="completed",
                                  reason=f"most common failures: {top}")


async def main() -> None:
    url = os.environ.get("AUTO_DEV_DATABASE_URL") or (
        f"sqlite:///{tempfile.mkdtemp()}/custom_engine.db")
    async with AutoDev(load_settings(database_url=url)) as autodev:
        census = autodev.engines.register(ErrorCensus())
        for trace in ("KeyError: 'total'", "KeyError: 'id'", "TimeoutError: slow API"):
            await autodev.record_episode(agent="bot", task="sync orders", success=False,
                                         error_trace=trace)
        await autodev.drain()
        print("census:", dict(census.counts))

        # Every tenant toggle defaults to off: the framework gates custom engines too.
        denied = await autodev.run_cycle("error_census", "all", agent="bot")
        print("cycle while the tenant is off:", denied.status, "-", denied.reason)

        autodev.configure_tenant(enabled=True, capabilities={"acme.error_census": True})
        result = await autodev.run_cycle("error_census", "all", agent="bot")
        print("cycle:", result.status, "-", result.reason)


if __name__ == "__main__":
    asyncio.run(main())
