"""ProcessSandbox: the sandbox contract, as root and as an ordinary user, plus its own promises."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from auto_dev._exceptions import SandboxError, SandboxProtocolError, ValidationError
from auto_dev.sandbox import _workers
from auto_dev.sandbox._workers import UID_BASE, UID_SLOTS, uid_processes
from auto_dev.sandbox.base import Case, CaseStatus, Limits, SandboxJob
from auto_dev.sandbox.process import ProcessSandbox
from tests.sandbox.contract import ADD, SandboxContract, host_processes_with, job, smoke

IS_ROOT = os.geteuid() == 0
SYSTEM_PYTHON = "/usr/bin/python3"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
root_only = pytest.mark.skipif(not IS_ROOT, reason="dedicated uids need root")


def _system_python_usable() -> bool:
    if not (IS_ROOT and shutil.which("setpriv") and os.access(SYSTEM_PYTHON, os.X_OK)):
        return False
    probe = subprocess.run([*NOBODY, SYSTEM_PYTHON, "-c", "import sys; assert sys.version_info "
                            ">= (3, 10)"], capture_output=True, cwd="/", check=False)
    return probe.returncode == 0


#: Every worker uid any sandbox of this module used (checked once more after the module).
USED_UIDS: set[int] = set()


@pytest.fixture(scope="module", autouse=True)
def _no_worker_uid_survives_the_module() -> Iterator[None]:
    yield
    survivors = {uid: uid_processes(uid) for uid in USED_UIDS}
    assert not any(survivors.values()), f"worker uids with processes left: {survivors}"


async def _closed_and_clean(sandbox: ProcessSandbox) -> None:
    pids = sandbox.worker_pids()
    uids = sandbox.worker_uids(include_retired=True)
    USED_UIDS.update(uids)
    await sandbox.aclose()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or _is_zombie_free(pid)
    for uid in uids:
        assert uid_processes(uid) == [], f"processes of worker uid {uid} survived"


@contextlib.asynccontextmanager
async def opened(**settings: Any) -> AsyncIterator[ProcessSandbox]:
    """A sandbox that is closed, and checked for survivors, on the way out."""
    sandbox = ProcessSandbox(**settings)
    try:
        yield sandbox
    finally:
        await _closed_and_clean(sandbox)


def _is_zombie_free(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _kill_workers(sandbox: ProcessSandbox) -> None:
    for pid in sandbox.worker_pids():
        os.kill(pid, signal.SIGKILL)


class TestProcessSandboxContract(SandboxContract):
    """ProcessSandbox as configured by default here (dedicated uids when the host is root)."""

    @pytest.fixture
    async def sandbox(self) -> AsyncIterator[ProcessSandbox]:
        sandbox = ProcessSandbox(workers=2)
        try:
            yield sandbox
        finally:
            await _closed_and_clean(sandbox)

    async def network_should_be_blocked(self, sandbox: ProcessSandbox) -> bool:  # type: ignore[override]
        return sandbox.privileged or bool((await sandbox.describe())["network_isolated"])

    async def contains_signals(self, sandbox: ProcessSandbox) -> bool:  # type: ignore[override]
        return sandbox.privileged or bool((await sandbox.describe())["pid_namespace"])

    async def kill_worker_during_job(self, sandbox: ProcessSandbox) -> None:  # type: ignore[override]
        _kill_workers(sandbox)


@pytest.mark.skipif(not _system_python_usable(), reason="needs root, setpriv and a system python")
class TestUnprivilegedProcessSandboxContract(TestProcessSandboxContract):
    """ProcessSandbox whose harness runs as an ordinary user (nobody), as on a non-root host."""

    @pytest.fixture
    async def sandbox(self) -> AsyncIterator[ProcessSandbox]:
        sandbox = ProcessSandbox(workers=2, python=SYSTEM_PYTHON, launcher=NOBODY)
        try:
            yield sandbox
        finally:
            pids = sandbox.worker_pids()
            await sandbox.aclose()
            assert all(not Path(f"/proc/{pid}").exists() or _is_zombie_free(pid) for pid in pids)


class TestDedicatedUids:
    """As root, each worker runs under a uid of its own and nothing of it outlives the sandbox."""

    @root_only
    async def test_workers_run_under_distinct_reserved_uids(self) -> None:
        """Two busy workers have two different uids from the reserved range, which the
        candidate sees as its own."""
        sandbox = ProcessSandbox(workers=2)
        try:
            code = "import os, time\ndef f():\n    time.sleep(0.3)\n    return os.getuid()\n"
            results = await asyncio.gather(*(sandbox.run(job(code, smoke(), limits=Limits()))
                                             for _ in range(2)))
            uids = sandbox.worker_uids()
            assert len(uids) == 2 and len(set(uids)) == 2
            assert all(UID_BASE <= uid < UID_BASE + UID_SLOTS for uid in uids)
            assert {r.cases[0].output for r in results} <= set(uids)
            info = await sandbox.describe()
            assert info["reap"] == "kill-all" and info["pid_namespace"] and info["nproc"] == "exact"
            assert info["network_isolated"] and "/tmp" in info["private_tmp"]
        finally:
            await _closed_and_clean(sandbox)

    @root_only
    async def test_between_jobs_only_the_harness_runs_as_the_worker_uid(self) -> None:
        """After a job that left processes behind, the worker's uid runs exactly one process."""
        sandbox = ProcessSandbox(workers=1)
        try:
            code = textwrap.dedent("""
                import subprocess, sys
                def f():
                    sleeper = [sys.executable, '-c', 'import time; time.sleep(60)']
                    subprocess.Popen(sleeper, start_new_session=True)
                    return 1
            """)
            assert (await sandbox.run(job(code, smoke(), limits=Limits()))).all_passed
            [uid] = sandbox.worker_uids()
            assert len(uid_processes(uid)) == 1
        finally:
            await _closed_and_clean(sandbox)

    @root_only
    async def test_nothing_survives_aclose_even_mid_job(self) -> None:
        """Closing while a case runs a fork bomb and background sleepers leaves no process of
        any worker uid and removes the sandbox's directory."""
        sandbox = ProcessSandbox(workers=2)
        bomb = ("import os, subprocess, sys\ndef f():\n    subprocess.Popen([sys.executable, '-c', "
                "'import time; time.sleep(60)'], start_new_session=True)\n    while True:\n"
                "        try:\n            if os.fork() == 0:\n                os.setsid()\n"
                "        except OSError:\n            pass\n")
        await sandbox.run(job(ADD, Case(args=(1, 1), expected=2), entrypoint="add"))
        root = sandbox._state.root
        task = asyncio.create_task(sandbox.run(job(bomb, smoke(), limits=Limits(timeout_s=20.0))))
        await asyncio.sleep(0.5)
        await _closed_and_clean(sandbox)
        with pytest.raises(SandboxError):
            await task
        assert root is not None and not root.exists()


class TestLimits:
    """Limits specific to how the process backend enforces them."""

    async def test_max_processes_bounds_forks(self) -> None:
        """With max_processes=3 a case cannot hold more than three processes at once."""
        code = textwrap.dedent("""
            import os, time
            def f():
                made = 0
                for _ in range(10):
                    try:
                        if os.fork() == 0:
                            time.sleep(5)
                            os._exit(0)
                        made += 1
                    except OSError:
                        break
                return made
        """)
        async with opened(workers=1) as sandbox:
            info = await sandbox.describe()
            if info["nproc"] != "exact":
                pytest.skip("RLIMIT_NPROC is only an estimate without a dedicated uid")
            case = (await sandbox.run(job(code, smoke(), limits=Limits(timeout_s=5.0,
                                                                       max_processes=3)))).cases[0]
        assert case.status is CaseStatus.OK, case
        assert 1 <= case.output <= 2

    async def test_cpu_limit_ends_as_timeout(self) -> None:
        """Burning CPU past cpu_s (SIGXCPU) is a timeout even before the wall-clock deadline."""
        async with opened(workers=1) as sandbox:
            case = (await sandbox.run(job("def f():\n    while True:\n        pass\n", smoke(),
                                          limits=Limits(timeout_s=6.0, cpu_s=1.0)))).cases[0]
        assert case.status is CaseStatus.TIMEOUT
        assert "CPU" in (case.error or "") and case.duration_s < 5


FAKE_HARNESS = """
import json, os, sys
mode, marker, real = sys.argv[1], sys.argv[2], sys.argv[3:]
if mode == "garbage-once" and os.path.exists(marker):
    if os.geteuid() == 0:
        real += ["--uid", "65534", "--gid", "65534"]
    os.execv(real[0], real)
open(marker, "a").close()
def read(n):
    data = b""
    while len(data) < n:
        chunk = os.read(0, n - len(data))
        if not chunk:
            sys.exit(0)
        data += chunk
    return data
def send(body):
    os.write(1, len(body).to_bytes(4, "big") + body)
while True:
    frame = json.loads(read(int.from_bytes(read(4), "big")))
    if frame.get("info"):
        send(json.dumps({"cases": [], "error": None, "info": {"uid": os.getuid()}}).encode())
    elif mode == "die":
        os._exit(3)
    else:
        send(b"this is not json")
"""


class TestFaults:
    """A broken harness is replaced and the job retried once; twice is a protocol error."""

    def fake(self, tmp_path: Path, mode: str) -> ProcessSandbox:
        script = tmp_path / "fake_harness.py"
        script.write_text(FAKE_HARNESS)
        return ProcessSandbox(workers=1, launcher=[sys.executable, str(script), mode,
                                                   str(tmp_path / "spawned")])

    async def test_garbage_answer_is_retried_on_a_fresh_worker(self, tmp_path: Path) -> None:
        """A worker answering garbage is replaced and the caller still gets the real result."""
        async with self.fake(tmp_path, "garbage-once") as sandbox:
            with capture_logs() as logs:
                result = await sandbox.run(job(ADD, Case(args=(1, 2), expected=3),
                                               entrypoint="add"))
        assert result.all_passed, result
        assert any(e["event"] == "process_sandbox.worker_lost" for e in logs)

    @pytest.mark.parametrize("mode", ["garbage", "die"])
    async def test_failing_twice_raises_protocol_error(self, tmp_path: Path, mode: str) -> None:
        """A harness that fails on the retry too makes run() raise SandboxProtocolError."""
        async with self.fake(tmp_path, mode) as sandbox:
            with pytest.raises(SandboxProtocolError, match="twice"):
                await sandbox.run(job(ADD, Case(args=(1, 2), expected=3), entrypoint="add"))

    async def test_harness_that_cannot_start_is_unavailable(self, tmp_path: Path) -> None:
        """An interpreter that does not exist is reported as SandboxError, not a hang."""
        async with opened(workers=1, python=str(tmp_path / "no-python")) as sandbox:
            with pytest.raises(SandboxError):
                await sandbox.run(job(ADD, smoke(1, 2), entrypoint="add"))

    async def test_cancelled_run_leaves_a_working_pool(self) -> None:
        """Cancelling a run mid-case kills its worker, and the pool keeps serving."""
        async with opened(workers=1) as sandbox:
            marker = "auto-dev-cancelled-sleeper"
            code = ("import os, sys\ndef f(tag):\n    os.execv(sys.executable, [tag, '-c', "
                    "'import time; time.sleep(60)'])\n")
            task = asyncio.create_task(sandbox.run(job(code, smoke(marker),
                                                       limits=Limits(timeout_s=30.0))))
            await asyncio.sleep(0.5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            for _ in range(3):
                result = await sandbox.run(job(ADD, Case(args=(1, 1), expected=2),
                                               entrypoint="add"))
                assert result.all_passed
            assert len(sandbox.worker_pids()) == 1
            for _ in range(100):
                if not host_processes_with(marker):
                    break
                await asyncio.sleep(0.05)
            assert host_processes_with(marker) == []


@pytest.fixture
def info_logs() -> Iterator[None]:
    """Let info lines through (the suite runs at warning level) for the duration of a test."""
    old = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    yield
    structlog.configure(**old)


class TestLifecycle:
    """Construction, closing and event loops."""

    @root_only
    async def test_cancelled_while_starting_leaks_no_worker(self) -> None:
        """A run cancelled while its worker is still starting leaves no process behind."""
        sandbox = ProcessSandbox(workers=1)
        task = asyncio.create_task(sandbox.run(job(ADD, smoke(1, 2), entrypoint="add")))
        for _ in range(200):
            await asyncio.sleep(0.005)
            if sandbox.worker_uids(include_retired=True):
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.5)  # let the start finish, so the orphan is retired
        await _closed_and_clean(sandbox)

    def test_invalid_settings_name_the_field(self) -> None:
        """Bad constructor arguments raise ValidationError naming the argument."""
        with pytest.raises(ValidationError) as err:
            ProcessSandbox(workers=0)
        assert err.value.field == "workers"
        with pytest.raises(ValidationError) as err:
            ProcessSandbox(startup_timeout_s=-1)
        assert err.value.field == "startup_timeout_s"

    async def test_unserialisable_case_is_a_validation_error(self) -> None:
        """A case argument that is not JSON is refused before any worker is involved."""
        async with opened(workers=1) as sandbox:
            with pytest.raises(ValidationError) as err:
                await sandbox.run(SandboxJob(code=ADD, entrypoint="add",
                                             cases=(Case(args=({1, 2}, 1)),)))
            assert err.value.field == "job.cases"
            assert sandbox.worker_pids() == []

    async def test_empty_job_needs_no_worker(self) -> None:
        """A job without cases returns an empty result at once."""
        async with opened(workers=1) as sandbox:
            result = await sandbox.run(SandboxJob(code=ADD, entrypoint="add", cases=()))
            assert result.total == 0 and result.cases == ()
            assert sandbox.worker_pids() == []

    async def test_aclose_is_idempotent_and_final(self) -> None:
        """aclose() can be called twice; run() afterwards raises SandboxError."""
        sandbox = ProcessSandbox(workers=1)
        await sandbox.run(job(ADD, smoke(1, 2), entrypoint="add"))
        await sandbox.aclose()
        await sandbox.aclose()
        with pytest.raises(SandboxError, match="closed"):
            await sandbox.run(job(ADD, smoke(1, 2), entrypoint="add"))

    def test_usable_from_several_event_loops(self) -> None:
        """The same sandbox serves asyncio.run() calls one after another."""
        sandbox = ProcessSandbox(workers=1)
        try:
            for n in range(3):
                result = asyncio.run(sandbox.run(job(ADD, Case(args=(n, 1), expected=n + 1),
                                                     entrypoint="add")))
                assert result.all_passed
        finally:
            asyncio.run(sandbox.aclose())

    @pytest.mark.usefixtures("info_logs")
    async def test_start_is_logged_with_the_isolation_achieved(self) -> None:
        """The first worker start logs the mode and the isolation the harness achieved."""
        with capture_logs() as logs:
            async with opened(workers=1) as sandbox:
                await sandbox.run(job(ADD, smoke(1, 2), entrypoint="add"))
        [started] = [e for e in logs if e["event"] == "process_sandbox.started"]
        assert started["mode"] == ("dedicated-uid" if IS_ROOT else "best-effort")
        assert "namespaces" in started and "reap" in started

    @pytest.mark.skipif(not _system_python_usable(), reason="needs root, setpriv, system python")
    async def test_unprivileged_start_says_best_effort(self) -> None:
        """Without dedicated uids the start line is a warning that says so."""
        with capture_logs() as logs:
            async with opened(workers=1, python=SYSTEM_PYTHON, launcher=NOBODY) as sb:
                await sb.run(job(ADD, smoke(1, 2), entrypoint="add"))
        [started] = [e for e in logs if e["event"] == "process_sandbox.started"]
        assert started["mode"] == "best-effort" and started["log_level"] == "warning"
        assert "not running as root" in started["note"]

    def test_unclosed_sandbox_is_cleaned_up_at_exit(self, tmp_path: Path) -> None:
        """A program that never closes its sandbox leaves no worker or directory behind."""
        script = textwrap.dedent(f"""
            import asyncio
            from auto_dev.sandbox.process import ProcessSandbox
            from auto_dev.sandbox.base import Case, SandboxJob
            sandbox = ProcessSandbox(workers=2)
            job = SandboxJob(code={ADD!r}, entrypoint="add", cases=(Case(args=(1, 2)),))
            async def main():
                await asyncio.gather(sandbox.run(job), sandbox.run(job))
            asyncio.run(main())
            print("RESULT", sandbox._state.root, *sandbox.worker_pids(), *sandbox.worker_uids())
        """)
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             cwd=tmp_path, timeout=60, check=True).stdout
        [line] = [x for x in out.splitlines() if x.startswith("RESULT ")]
        words = line.split()[1:]
        root, numbers = Path(words[0]), [int(x) for x in words[1:]]
        assert len(numbers) == (4 if IS_ROOT else 2)
        assert not root.exists()
        for number in numbers:
            if number >= UID_BASE:
                assert uid_processes(number) == []
            else:
                assert not Path(f"/proc/{number}").exists() or _is_zombie_free(number)


def test_uid_slots_are_exclusive() -> None:
    """A uid slot claimed by one owner is skipped by the next claimant until released."""
    if not IS_ROOT:
        pytest.skip("uid slots need root")
    first = _workers.claim_identity(7)
    second = _workers.claim_identity(7)
    try:
        assert first.uid != second.uid
    finally:
        _workers.release_identity(first)
        _workers.release_identity(second)
