"""Killing ``auto-dev evolve`` (SIGKILL or SIGTERM) while its sandbox runs cases leaves no harness
process, case process or container behind a few seconds later."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from auto_dev.sandbox._docker_spec import LABEL, LABEL_OWNER_PID
from tests.sandbox._docker_support import api, require_docker
from tests.sandbox._lifecycle_support import ENDLESS, GRACE_S, processes_named, wait_until
from tests.sandbox.contract import host_processes_with

ROOT = Path(__file__).parents[2]


def containers_of(pid: int) -> list[str]:
    """Sandbox containers (running or not) whose owner is process ``pid``."""
    client = api()
    try:
        rows = client.containers(all=True, filters={"label": [f"{LABEL}=1",
                                                              f"{LABEL_OWNER_PID}={pid}"]})
        return [row["Id"][:12] for row in rows]
    finally:
        client.close()


@dataclass
class Evolve:
    """A running ``python -m auto_dev.cli evolve`` whose cases never end."""

    proc: subprocess.Popen[str]
    tag: str
    #: In every harness command line of this run (the sandbox's directory under our TMPDIR).
    marker: str
    #: What evolve printed (stdout and stderr), once stopped.
    output: str = ""

    def stop(self, signum: int) -> int:
        self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout=60)
        finally:
            assert self.proc.stdout is not None
            self.output = self.proc.stdout.read()


@pytest.fixture
def evolve(tmp_path: Path) -> Iterator[Callable[[str], Evolve]]:
    started: list[Evolve] = []

    def start(backend: str) -> Evolve:
        tag = f"adcase{secrets.token_hex(4)}"
        program = tmp_path / "endless.py"
        program.write_text(ENDLESS)
        tests = tmp_path / "tests.json"
        tests.write_text(json.dumps([{"args": [tag, i], "expected": i} for i in range(4)]))
        scratch = tmp_path / "tmp"
        scratch.mkdir(exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(scratch),
               "AUTO_DEV_DATABASE_URL": f"sqlite:///{tmp_path}/auto-dev.db",
               "AUTO_DEV_SANDBOX": backend, "AUTO_DEV_SANDBOX_WORKERS": "2"}
        env.pop("AUTO_DEV_CONFIG", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "auto_dev.cli", "evolve", str(program), "-e", "f", "-t",
             str(tests), "--timeout", "120", "--budget", "8", "--offline", "--json"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        run = Evolve(proc, tag, f"{scratch}/auto-dev-sandbox-")
        started.append(run)
        # Mid-flight: a case process is running (the seed's first case never returns).
        wait_until(lambda: processes_named(tag) or proc.poll() is not None, 90, "a running case")
        assert proc.poll() is None, proc.communicate()[0]
        return run

    yield start
    for run in started:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()


class TestProcessSandboxOwnerDeath:
    """The process backend's harnesses and cases die with the evolve process that started them."""

    @pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
    def test_nothing_outlives_the_owner(self, evolve: Callable[[str], Evolve],
                                        signum: int) -> None:
        """Killed or terminated mid-job, evolve leaves no harness or case process behind."""
        run = evolve("process")
        assert host_processes_with(run.marker), "the harness is not marked as expected"
        code = run.stop(signum)
        assert code == (-signal.SIGKILL if signum == signal.SIGKILL else 128 + signal.SIGTERM)
        wait_until(lambda: not processes_named(run.tag) and not host_processes_with(run.marker),
                   GRACE_S, "the harness and case processes to exit")

    def test_sigterm_reports_the_interruption(self, evolve: Callable[[str], Evolve]) -> None:
        """SIGTERM stops evolve like Ctrl-C: the sandbox is closed and --json says why."""
        run = evolve("process")
        assert run.stop(signal.SIGTERM) == 143
        last = json.loads(run.output.strip().splitlines()[-1])
        assert last["exit_code"] == 143 and "SIGTERM" in last["error"]
        # Closed before exiting, not merely orphaned: nothing was left to time out.
        assert not processes_named(run.tag) and not host_processes_with(run.marker)


@pytest.mark.docker
class TestDockerSandboxOwnerDeath:
    """The Docker backend's containers die with the evolve process that started them."""

    @pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
    def test_nothing_outlives_the_owner(self, evolve: Callable[[str], Evolve],
                                        signum: int) -> None:
        """Killed or terminated mid-job, evolve leaves no container or case process behind."""
        require_docker()
        run = evolve("docker")
        owner = run.proc.pid
        assert containers_of(owner), "the containers are not labelled with their owner"
        code = run.stop(signum)
        assert code == (-signal.SIGKILL if signum == signal.SIGKILL else 128 + signal.SIGTERM)
        wait_until(lambda: not processes_named(run.tag) and not containers_of(owner), GRACE_S,
                   "the containers to be removed")
