"""SIGTERM stops the CLI's long-running commands as Ctrl-C does: cleanup runs, then a non-zero
exit."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from auto_dev.cli._signals import CommandInterrupted, run_stoppable, sigterm_like_ctrl_c
from auto_dev.config import load_settings
from auto_dev.service import AutoDev
from tests.engines.conftest import ON
from tests.sandbox._lifecycle_support import ENDLESS, GRACE_S, processes_named, wait_until
from tests.sandbox.contract import host_processes_with

ROOT = Path(__file__).parents[2]


class TestSigtermLikeCtrlC:
    """Inside sigterm_like_ctrl_c, SIGTERM winds a command down exactly as Ctrl-C does."""

    def test_sigterm_cancels_the_main_task_and_its_cleanup_runs(self) -> None:
        """The main task is cancelled, its finally (awaits included) runs, and the command
        ends with CommandInterrupted for SIGTERM (exit status 143)."""
        cleaned: list[str] = []
        before = signal.getsignal(signal.SIGTERM)

        async def main() -> None:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                await asyncio.sleep(30)
            finally:
                await asyncio.sleep(0)
                cleaned.append("closed")

        started = time.monotonic()
        with pytest.raises(CommandInterrupted) as caught:
            run_stoppable(main())
        assert time.monotonic() - started < 10
        assert cleaned == ["closed"]
        assert caught.value.signal_name == "SIGTERM" and caught.value.exit_code == 143
        assert signal.getsignal(signal.SIGTERM) is before

    def test_ctrl_c_ends_the_same_way_with_its_own_status(self) -> None:
        """Ctrl-C (SIGINT) takes the same path and is reported as SIGINT (exit status 130)."""
        cleaned: list[str] = []

        async def main() -> None:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                await asyncio.sleep(30)
            finally:
                cleaned.append("closed")

        with pytest.raises(CommandInterrupted) as caught:
            run_stoppable(main())
        assert cleaned == ["closed"] and caught.value.exit_code == 130

    def test_a_swallowed_cancellation_still_stops_the_command(self) -> None:
        """A main task that catches its cancellation and returns is still reported stopped."""

        async def main() -> str:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                return "swallowed"
            return "finished"

        with pytest.raises(CommandInterrupted) as caught:
            run_stoppable(main())
        assert caught.value.exit_code == 143

    def test_outside_an_event_loop_sigterm_interrupts(self) -> None:
        """Without an event loop, SIGTERM interrupts the block as KeyboardInterrupt would."""
        with pytest.raises(CommandInterrupted) as caught, sigterm_like_ctrl_c():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        assert caught.value.exit_code == 143

    def test_a_finished_block_changes_nothing(self) -> None:
        """Without a signal the block's result comes back and SIGTERM's handler is restored."""
        before = signal.getsignal(signal.SIGTERM)

        async def main() -> int:
            return 7

        assert run_stoppable(main()) == 7
        assert signal.getsignal(signal.SIGTERM) is before


class TestSchedulerRunStops:
    """``auto-dev scheduler run`` stopped by SIGTERM mid-cycle closes its sandbox and exits 143."""

    def test_sigterm_mid_cycle(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A scheduled cycle is running cases when SIGTERM arrives: the command says it stopped,
        exits 143, and no harness or case process is left."""
        tag = f"adsched{secrets.token_hex(4)}"
        scratch = tmp_path / "tmp"
        scratch.mkdir()
        env = {"AUTO_DEV_DATABASE_URL": f"sqlite:///{tmp_path}/auto-dev.db",
               "AUTO_DEV_SANDBOX": "process", "AUTO_DEV_CASE_TIMEOUT_S": "120",
               "AUTO_DEV_TENANT": "t1"}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AUTO_DEV_CONFIG", raising=False)
        asyncio.run(_schedule_an_endless_cycle(tag))

        proc = subprocess.Popen(
            [sys.executable, "-m", "auto_dev.cli", "scheduler", "run"], cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(scratch), "COLUMNS": "200"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            wait_until(lambda: processes_named(tag) or proc.poll() is not None, 90,
                       "a scheduled cycle to run a case")
            assert proc.poll() is None, proc.communicate()[0]
            proc.send_signal(signal.SIGTERM)
            output = proc.communicate(timeout=60)[0]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 143, output
        assert "scheduler stopped (SIGTERM)" in output
        marker = f"{scratch}/auto-dev-sandbox-"
        wait_until(lambda: not processes_named(tag) and not host_processes_with(marker), GRACE_S,
                   "the sandbox's processes to exit")
        # The interrupted cycle released its target and its job went back to the queue.
        from sqlalchemy import select

        from auto_dev.db import Database
        from auto_dev.models import CycleJob, EvolutionRun

        database = Database(f"sqlite:///{tmp_path}/auto-dev.db")
        try:
            with database.session() as session:
                runs = session.scalars(select(EvolutionRun.status)).all()
                jobs = session.scalars(select(CycleJob.status)).all()
        finally:
            database.dispose()
        assert runs and "running" not in runs and "interrupted" in runs, runs
        assert jobs and "running" not in jobs, jobs


async def _schedule_an_endless_cycle(tag: str) -> None:
    """A failing tool whose every test runs forever, an autonomous agent, and a schedule that
    fires its engine every second. The failure is recorded without engines, so that no cycle
    runs here: the scheduler's is the one to interrupt."""
    quiet = AutoDev(load_settings(), load_plugins=False, builtin_engines=False)
    try:
        quiet.configure_tenant(**ON, background_evolution=True)
        quiet.register_tool("endless", ENDLESS, "f", tests=[{"args": [tag], "expected": 1}])
        for capability in ("auto_dev.alpha_evolver", "auto_dev.background_evolution"):
            quiet.set_maturity("bot", capability, "autonomous")
        await quiet.record_episode(agent="bot", task="never ends", success=False,
                                   tool_name="endless", inputs={"args": [tag]}, expected=1)
    finally:
        await quiet.aclose()
    autodev = AutoDev(load_settings(), load_plugins=False)
    try:
        autodev.scheduler.add("alpha_evolver", interval_s=1, target="endless", budget=5)
    finally:
        await autodev.aclose()
