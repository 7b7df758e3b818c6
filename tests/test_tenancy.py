"""Several auto-dev processes and tenants on one database: nothing crosses tenants, nothing
live is taken over. Each scenario runs a real second process (``tests/_tenancy_proc.py``)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from auto_dev import TaskFailed
from auto_dev.config import load_settings
from auto_dev.db import Database
from auto_dev.models import CycleJob, EventDelivery, EvolutionRun
from auto_dev.sandbox.process import ProcessSandbox
from auto_dev.service import AutoDev

REPO = Path(__file__).resolve().parents[1]


def _spawn(mode: str, url: str, tenant: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("AUTO_DEV_CONFIG", None)
    return subprocess.Popen([sys.executable, "-m", "tests._tenancy_proc", mode, url, tenant],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.fixture
def sandbox() -> Iterator[ProcessSandbox]:
    yield ProcessSandbox(workers=1)


class TestDeliveriesAcrossProcesses:
    """A process recovers only what its handlers' tenant scopes cover."""

    async def test_another_tenants_events_never_reach_my_handler(
        self, database: Database, database_url: str, sandbox: ProcessSandbox
    ) -> None:
        """Tenant B's process dies right after accepting a failure. Tenant A's process, with a
        handler of the same name, recovers: its handler never sees B's task or trace, B's own
        delivery stays pending for B, and B's engine delivery becomes a cycle job in B."""
        child = _spawn("emit", database_url, "tenant-b")
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0 and "accepted" in out, err[-2000:]

        settings = load_settings(database_url=database_url, tenant="tenant-a",
                                 cycle_worker=False)
        autodev = AutoDev(settings, database=database, sandbox=sandbox, load_plugins=False)
        autodev.events.stale_after_s = 0.0  # B's process is dead: its leftovers are stale
        seen: list[Any] = []
        autodev.events.on_task_fail(seen.append, name="shared.audit")
        await autodev.start()
        try:
            await autodev.events.drain()
            assert seen == []
            with database.session() as session:
                rows = dict(session.execute(select(EventDelivery.handler, EventDelivery.status)
                                            .where(EventDelivery.tenant_id == "tenant-b")).all())
                jobs = session.scalars(select(CycleJob)).all()
            assert rows["shared.audit"] == "pending"  # waits for a tenant-b process
            assert rows["engine:alpha_evolver"] == "delivered"
            assert [(j.tenant_id, j.engine, j.target) for j in jobs] == [
                ("tenant-b", "alpha_evolver", "clamp")]
            [outcome] = await autodev.run_queued_cycles()
            assert outcome.tenant_id == "tenant-b"  # gated and run in B, not in A
            assert outcome.status == "denied" and "tenant-b" in outcome.reason
        finally:
            await autodev.aclose()

    async def test_my_scoped_handler_gets_my_events_only(self, database: Database,
                                                         database_url: str,
                                                         sandbox: ProcessSandbox) -> None:
        """In one process, a handler scoped to tenant A is not given tenant B's events; an
        all-tenants handler gets both."""
        settings = load_settings(database_url=database_url, tenant="tenant-a")
        autodev = AutoDev(settings, database=database, sandbox=sandbox, load_plugins=False,
                          builtin_engines=False)
        mine: list[str] = []
        every: list[str] = []
        autodev.events.on_task_fail(lambda e: mine.append(e.tenant_id), name="mine")
        autodev.events.subscribe(TaskFailed, lambda e: every.append(e.tenant_id), name="all",
                                 tenant="*")
        await autodev.start()
        try:
            for tenant in ("tenant-a", "tenant-b"):
                await autodev.record_episode(agent="bot", task="t", success=False,
                                             error_trace="E: x", tenant_id=tenant)
            await autodev.events.drain()
        finally:
            await autodev.aclose()
        assert mine == ["tenant-a"]
        assert sorted(every) == ["tenant-a", "tenant-b"]


class TestRunsAcrossProcesses:
    """A starting process never interrupts a live cycle of another process."""

    async def test_live_cycle_keeps_its_lock_until_its_process_dies(
        self, database: Database, database_url: str, sandbox: ProcessSandbox
    ) -> None:
        """Process 1 holds target x. Starting process 2 leaves that run running and a cycle
        on x is skipped; after process 1 is killed and its 1 s lease lapses, the run is
        interrupted and process 2's cycle takes the target."""
        child = _spawn("hold", database_url, "t1")
        try:
            assert child.stdout is not None
            line = child.stdout.readline()
            assert line.startswith("holding"), child.stderr.read() if child.stderr else ""
            held = line.split()[1]
            settings = load_settings(database_url=database_url, tenant="t1")
            autodev = AutoDev(settings, database=database, sandbox=sandbox, load_plugins=False,
                              builtin_engines=False)
            from tests._tenancy_proc import Sleepy

            engine = autodev.engines.register(Sleepy())
            await autodev.start()
            try:
                assert _status(database, held) == "running"
                skipped = await autodev.run_cycle("sleepy", "x", agent="bot")
                assert skipped.status == "skipped"
                child.send_signal(signal.SIGKILL)
                child.wait(timeout=30)
                deadline = time.monotonic() + 30
                engine.evolve = _quick  # type: ignore[method-assign]
                result = skipped
                while result.status == "skipped" and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                    result = await autodev.run_cycle("sleepy", "x", agent="bot")
                assert result.status == "completed", result.reason
                assert _status(database, held) == "interrupted"
            finally:
                await autodev.aclose()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()


async def _quick(request: Any, cycle: Any) -> Any:
    from auto_dev.types import EvolutionRunResult

    return EvolutionRunResult(engine="sleepy", target=request.target, status="completed")


def _status(database: Database, run_id: str) -> str | None:
    with database.session() as session:
        return session.scalars(select(EvolutionRun.status).where(EvolutionRun.id == run_id)
                               ).one_or_none()
