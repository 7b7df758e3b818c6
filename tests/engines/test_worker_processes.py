"""Cycle jobs split between several worker processes on one PostgreSQL database: each job runs
once, and a process killed mid-cycle loses nothing (its job is taken over after its lease)."""

from __future__ import annotations

import os
import select as io_select
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from auto_dev.config import load_settings
from auto_dev.db import Database
from auto_dev.models import CycleJob, EvolutionRun
from auto_dev.service import AutoDev
from tests.engines._cycle_proc import Recorder

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 3
JOBS = 12


def _lines(log: Path) -> list[tuple[str, str, int]]:
    if not log.exists():
        return []
    return [(w, t, int(p)) for w, t, p in (line.split() for line in log.read_text().splitlines())]


def _wait(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _wait_for_line(proc: subprocess.Popen[bytes], expected: str, timeout_s: float) -> None:
    assert proc.stdout is not None
    ready, _, _ = io_select.select([proc.stdout], [], [], timeout_s)
    line = proc.stdout.readline().decode().strip() if ready else ""
    if line != expected:
        err = proc.stderr.read().decode()[-2000:] if proc.poll() is not None and proc.stderr else ""
        raise AssertionError(f"worker {proc.pid} said {line!r}, not {expected!r}: {err}")


@pytest.mark.postgres
class TestCyclesSpreadOverProcesses:
    """N worker processes, M queued cycle jobs, one process SIGKILLed mid-cycle."""

    def test_each_job_runs_once_and_a_killed_workers_job_is_taken_over(
            self, postgres_database: Database, postgres_url: str, tmp_path: Path) -> None:
        """Every job ends done with exactly one finished cycle; the killed process's job is
        claimed again once its 4 s lease expires and completes once, in another process; the
        jobs were shared between the surviving processes."""
        settings = load_settings(database_url=postgres_url, tenant="t1", cycle_worker=False)
        queuer = AutoDev(settings, database=postgres_database, load_plugins=False,
                         builtin_engines=False)
        queuer.engines.register(Recorder())
        queuer.configure_tenant(enabled=True, capabilities={"acme.recorder": True})
        queuer.set_maturity("bot", "acme.recorder", "student", reason="test setup")
        log = tmp_path / "cycles.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "AUTO_DEV_LOG_LEVEL": "warning"}
        workers = [subprocess.Popen(
            [sys.executable, "-m", "tests.engines._cycle_proc", postgres_url, str(log), "0.4"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(PROCESSES)]
        try:
            for worker in workers:  # every process claims from the first job on
                _wait_for_line(worker, "ready", 60)
            job_ids = [queuer.queue_cycle("recorder", f"target-{i}", agent="bot")
                       for i in range(JOBS)]
            _wait(lambda: any(w == "start" for w, _, _ in _lines(log)), 60, "a first cycle")
            _, victim_target, victim_pid = next(e for e in _lines(log) if e[0] == "start")
            victim = next(w for w in workers if w.pid == victim_pid)
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)

            def all_finished() -> bool:
                with postgres_database.session() as session:
                    jobs = session.scalars(select(CycleJob)).all()
                return len(jobs) == JOBS and all(j.status in ("done", "failed") for j in jobs)

            _wait(all_finished, 120, "every job to finish")
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)
            for worker in workers:
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait()
        survivors = [w for w in workers if w is not victim]
        assert all(w.returncode == 0 for w in survivors), [
            w.stderr.read().decode()[-2000:] for w in survivors if w.stderr]
        entries = _lines(log)
        done = Counter(t for w, t, _ in entries if w == "done")
        assert done == Counter({f"target-{i}": 1 for i in range(JOBS)})
        victim_starts = [p for w, t, p in entries if w == "start" and t == victim_target]
        assert victim_starts[0] == victim_pid and len(victim_starts) == 2
        [finisher] = [p for w, t, p in entries if w == "done" and t == victim_target]
        assert finisher != victim_pid
        assert victim_pid not in {p for w, _, p in entries if w == "done"}
        assert len({p for w, _, p in entries if w == "done"}) == PROCESSES - 1  # shared
        with postgres_database.session() as session:
            jobs = {j.id: j for j in session.scalars(select(CycleJob))}
            runs = session.scalars(select(EvolutionRun)).all()
        assert {jobs[j].status for j in job_ids} == {"done"}
        attempts = {jobs[j].target: jobs[j].attempts for j in job_ids}
        assert attempts == {t: 2 if t == victim_target else 1 for t in attempts}
        completed = Counter(r.target for r in runs if r.status == "completed")
        assert completed == Counter({f"target-{i}": 1 for i in range(JOBS)})
        # The run the killed process left is closed as interrupted, not left running.
        assert sorted(r.status for r in runs if r.target == victim_target) == [
            "completed", "interrupted"]
