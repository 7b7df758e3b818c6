"""A custom learning engine: subclass BaseLearningEngine, register it, receive its events.

Run: python examples/custom_engine.py   (uses a temporary SQLite file unless
AUTO_DEV_DATABASE_URL is set)
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections import Counter
from typing import Any

from auto_dev import AutoDev, BaseLearningEngine, TaskFailed, load_settings
from auto_dev.engines._signatures import exception_of
from auto_dev.engines.base import EvolutionRunResult, ValidationResult, episode_analysis
from auto_dev.evolution.program import Proposal


class ErrorCensus(BaseLearningEngine):
    """Counts failures by exception type: the smallest useful engine."""

    name = "error_census"
    capability = "acme.error_census"
    subscriptions = (TaskFailed,)

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    async def handle_event(self, event: Any) -> None:
        analysis = await self.analyze_episode(event.episode_id)
        self.counts[analysis["error_type"]] += 1

    async def analyze_episode(self, episode_id: str, **kwargs: Any) -> dict[str, Any]:
        return episode_analysis(self.context, episode_id)

    async def propose_code_change(self, context: dict[str, Any], **kwargs: Any) -> list[Proposal]:
        return []  # this engine only observes

    async def validate_change(self, proposal: Proposal, **kwargs: Any) -> ValidationResult:
        raise NotImplementedError("ErrorCensus proposes nothing to validate")

    async def run_cycle(self, target: str, budget: int) -> EvolutionRunResult:
        top = ", ".join(f"{k}={v}" for k, v in self.counts.most_common(3))
        return EvolutionRunResult(engine=self.name, target=target, status="completed",
                                  reason=f"most common failures: {top}")


async def main() -> None:
    url = os.environ.get("AUTO_DEV_DATABASE_URL") or (
        f"sqlite:///{tempfile.mkdtemp()}/custom_engine.db")
    async with AutoDev(load_settings(database_url=url)) as autodev:
        census = autodev.engines.register(ErrorCensus())
        for trace in ("KeyError: 'total'", "KeyError: 'id'", "TimeoutError: slow API"):
            await autodev.record_episode(agent="bot", task="sync orders", success=False,
                                         error_trace=trace)
        await autodev.events.drain()
        print("census:", dict(census.counts))  # type: ignore[attr-defined]
        result = await autodev.run_cycle("error_census", "all")
        print("cycle:", result.reason)
        assert exception_of("KeyError: 'x'")[0] == "KeyError"


if __name__ == "__main__":
    asyncio.run(main())
