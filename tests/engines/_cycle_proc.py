"""A cycle-worker process for the multi-process tests (``tests/engines/test_worker_processes.py``).

Usage: ``python -m tests.engines._cycle_proc DATABASE_URL LOG_PATH SECONDS``

Starts an :class:`AutoDev` on DATABASE_URL whose cycle worker runs queued cycles of the
``recorder`` engine, with a 4 s lease. Each cycle appends ``start TARGET PID`` to LOG_PATH, works
for SECONDS, then appends ``done TARGET PID``. Prints ``ready`` once the worker runs, and exits
cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from auto_dev import AutoDev, BaseLearningEngine, Cycle, CycleRequest, EvolutionRunResult
from auto_dev.config import load_settings


class Recorder(BaseLearningEngine):
    """Writes down every cycle it starts and finishes (O_APPEND: one line per write)."""

    name = "recorder"
    capability = "acme.recorder"
    required_maturity = "student"

    def __init__(self, log_path: str = os.devnull, seconds: float = 0.0) -> None:
        self.log_path = log_path
        self.seconds = seconds

    def _note(self, what: str, target: str) -> None:
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{what} {target} {os.getpid()}\n".encode())
        finally:
            os.close(fd)

    async def evolve(self, request: CycleRequest, cycle: Cycle) -> EvolutionRunResult:
        self._note("start", request.target)
        await asyncio.sleep(self.seconds)
        self._note("done", request.target)
        return EvolutionRunResult(engine=self.name, target=request.target, status="completed")


async def serve(url: str, log_path: str, seconds: float) -> None:
    # A lease long enough that a live worker's heartbeat never lapses on a loaded machine (a
    # lapsed lease is taken over by design), short enough that the killed one's job moves on.
    settings = load_settings(database_url=url, tenant="t1", cycle_lease_s=4.0, cycle_poll_s=0.1)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    autodev = AutoDev(settings, load_plugins=False, builtin_engines=False)
    autodev.engines.register(Recorder(log_path, seconds))  # before the worker claims a job
    async with autodev:
        print("ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2], float(sys.argv[3])))
