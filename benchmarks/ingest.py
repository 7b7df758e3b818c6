"""Ingest speed: episodes recorded through the facade, with and without the engines, in one run.

Three configurations over a fresh SQLite file each, the same episodes in the same order:

1. baseline: no subscribers at all (the episode, its segments, its event row and nothing else);
2. engines: AlphaEvolver and Memento subscribed (one delivery per engine per event, the engine
   handlers queueing coalesced cycle jobs) while the cycle worker runs those cycles in the same
   process, on the real ProcessSandbox;
3. engines, worker off: the same deliveries and job queueing, no cycles (the price of the outbox
   and the job queue alone).

Every episode is a failure of one of ten tools (so the engines have work). The figure is
episodes/s recorded, wall time from the first ``record_episode`` to the last one returning;
then the run drains, and reports how many cycles ran. The cost of the outbox and the job queue
is the ratio of (3) and (2) to (1).

The three configurations are measured in turn, ``--rounds`` times, and each figure is the median
of its rounds (a shared 2-core machine is noisy).

Run: python benchmarks/ingest.py [--episodes N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from auto_dev import AutoDev, load_settings
from auto_dev.gates.usage import EPISODE_HANDLER, REVIEW_HANDLER, SKILL_HANDLER
from auto_dev.sandbox.process import ProcessSandbox

TOOLS = 10
CODE = "def tool_{i}(x):\n    return x + 2\n"


async def measure(label: str, episodes: int, *, engines: bool, worker: bool) -> dict[str, Any]:
    folder = tempfile.mkdtemp()
    settings = load_settings(database_url=f"sqlite:///{folder}/ingest.db", tenant="bench",
                             log_level="error", cycle_worker=worker, evolution_budget=20)
    sandbox = ProcessSandbox(workers=2)
    autodev = AutoDev(settings, sandbox=sandbox, load_plugins=False, builtin_engines=engines)
    if not engines:
        for handler in ("auto_dev.candidates.watch.PromotionWatch", EPISODE_HANDLER,
                        SKILL_HANDLER, REVIEW_HANDLER):
            autodev.events.unsubscribe(handler)
    autodev.configure_tenant(enabled=True, alpha_evolver=True, memento_skills=True)
    for i in range(TOOLS):
        autodev.register_tool(f"tool_{i}", CODE.format(i=i), f"tool_{i}",
                              tests=[{"args": [1], "expected": 2}])
    for i in range(TOOLS):
        autodev.set_maturity(f"agent-{i}", "auto_dev.alpha_evolver", "supervised")
    await autodev.start()
    try:
        started = time.perf_counter()
        for n in range(episodes):
            i = n % TOOLS
            await autodev.record_episode(
                agent=f"agent-{i}", task=f"add one to {n}", success=False, tool_name=f"tool_{i}",
                inputs={"args": [n]}, expected=n + 1, error_trace="AssertionError: off by one",
                segments=[{"tool_name": f"tool_{i}", "inputs": {"args": [n]}, "output": n + 2}])
        seconds = time.perf_counter() - started
        await autodev.events.drain()
        counts = autodev.jobs.counts("bench")
        if worker:
            await autodev.drain(timeout_s=600)
            counts = autodev.jobs.counts("bench")
    finally:
        await autodev.aclose()
        await sandbox.aclose()
    return {"label": label, "rate": episodes / seconds, "seconds": seconds,
            "cycles": counts["done"] + counts["failed"], "queued": counts["queued"]}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    console = Console()
    configurations = [("baseline: no subscribers", False, False),
                      ("engines subscribed, cycles running", True, True),
                      ("engines subscribed, worker off", True, False)]
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _e, _w in configurations}
    for _ in range(args.rounds):
        for label, engines, worker in configurations:
            runs[label].append(await measure(label, args.episodes, engines=engines,
                                             worker=worker))
    rows = [{**sorted(found, key=lambda r: r["rate"])[len(found) // 2]}
            for found in runs.values()]
    base = rows[0]["rate"]
    table = Table(title=f"ingest: {args.episodes} failed episodes through AutoDev.record_episode"
                  f" (SQLite file, load {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores)")
    for column in ("configuration", "episodes/s", "vs baseline", "cycles run", "jobs queued"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["label"], f"{row['rate']:.0f}", f"{row['rate'] / base:.2f}x",
                      str(row["cycles"]), str(row["queued"]))
    console.print(table)


if __name__ == "__main__":
    asyncio.run(main())
