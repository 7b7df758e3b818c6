"""DockerSandbox: settings, container spec, bootstrap, and the warm pool against a real engine."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st

from auto_dev._exceptions import (
    SandboxError,
    SandboxUnavailableError,
    ValidationError,
)
from auto_dev.sandbox._docker_spec import (
    BOOTSTRAP,
    HARNESS_HEADROOM_MB,
    HARNESS_PIDS,
    LABEL,
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_OWNER_START,
    LABEL_POOL,
    ContainerShape,
    DockerSandboxConfig,
    create_kwargs,
    is_orphan,
    owner_labels,
    process_start_ticks,
)
from auto_dev.sandbox.base import Case, CaseStatus, Limits, SandboxJob
from auto_dev.sandbox.docker import DockerSandbox, harness_source
from tests.sandbox._docker_support import (
    DOUBLE,
    IMAGE,
    api,
    gone,
    job,
    pool_containers,
    processes_of,
    require_docker,
)
from tests.sandbox.contract import SandboxContract


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


class TestDockerSandboxConfig:
    """The pool settings validate every field and name the bad one."""

    @given(st.integers(max_value=0) | st.integers(min_value=257))
    def test_pool_size_out_of_range_is_rejected(self, size: int) -> None:
        """A pool size outside 1..256 is a ValidationError naming docker.pool_size."""
        with pytest.raises(ValidationError) as info:
            DockerSandboxConfig(pool_size=size)
        assert info.value.field == "docker.pool_size"

    @pytest.mark.parametrize(
        ("field", "value"),
        [("recycle_after", 0), ("memory_mb", 32), ("cpus", 0), ("pids_limit", 8),
         ("scratch_mb", 0), ("open_files", 4), ("health_interval_s", 0),
         ("health_timeout_s", -1), ("job_grace_s", 0), ("image", " ")],
    )
    def test_bad_values_name_their_field(self, field: str, value: Any) -> None:
        """Each invalid setting raises a ValidationError naming that setting."""
        with pytest.raises(ValidationError) as info:
            DockerSandboxConfig(**{field: value})
        assert info.value.field == f"docker.{field}"

    def test_default_size_follows_the_cpus(self) -> None:
        """Without pool_size the pool has one container per usable CPU, at least two."""
        assert DockerSandboxConfig().size == max(2, len(os.sched_getaffinity(0)))
        assert DockerSandboxConfig(pool_size=3).size == 3

    def test_config_and_keywords_do_not_mix(self) -> None:
        """Passing both a config and keyword settings is a TypeError."""
        with pytest.raises(TypeError):
            DockerSandbox(DockerSandboxConfig(), pool_size=2)


class TestContainerShape:
    """Pooled containers take jobs whose limits fit; bigger jobs get a one-off shape."""

    @given(st.integers(16, 4096), st.integers(1, 512))
    def test_for_job_always_fits_the_job(self, memory_mb: int, processes: int) -> None:
        """The one-off shape computed for a job always fits that job and never shrinks."""
        base = ContainerShape(memory_mb=512, pids_limit=64)
        shape = ContainerShape.for_job(memory_mb, processes, base)
        assert shape.fits(memory_mb, processes)
        assert shape.memory_mb >= base.memory_mb and shape.pids_limit >= base.pids_limit

    def test_headroom_is_kept_for_the_harness(self) -> None:
        """A job fits only if the harness keeps its memory and process headroom."""
        shape = ContainerShape(memory_mb=512, pids_limit=64)
        assert shape.fits(512 - HARNESS_HEADROOM_MB, 64 - HARNESS_PIDS)
        assert not shape.fits(512 - HARNESS_HEADROOM_MB + 1, 1)
        assert not shape.fits(16, 64 - HARNESS_PIDS + 1)


class TestContainerSpec:
    """The create arguments harden every container, with no setting to opt out."""

    @pytest.fixture
    def spec(self) -> dict[str, Any]:
        import docker

        client = docker.APIClient(version="1.41")  # builds configs without contacting an engine
        config = DockerSandboxConfig(memory_mb=300, cpus=0.5, pids_limit=40, scratch_mb=8)
        return create_kwargs(client, config, ContainerShape(300, 40), name="n", uid=123_456,
                             labels=owner_labels("pool1"))

    def test_host_config_is_hardened(self, spec: dict[str, Any]) -> None:
        """No network, read-only root, no capabilities, no-new-privileges, limits, no mounts."""
        host = spec["host_config"]
        assert host["NetworkMode"] == "none" and spec["network_disabled"] is True
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
        assert host["SecurityOpt"] == ["no-new-privileges"]
        assert host["PidsLimit"] == 40
        assert host["Memory"] == host["MemorySwap"] == 300 * 1024 * 1024
        assert host["NanoCpus"] == 500_000_000
        assert host["IpcMode"] == "none"
        assert host["Sysctls"]["kernel.shmmni"] == "0"
        assert host["LogConfig"]["Type"] == "none"
        assert host["AutoRemove"] is True and not host.get("Privileged")
        assert not host.get("Binds") and not host.get("Mounts") and not host.get("Devices")
        assert host["Tmpfs"] == {
            "/tmp": "rw,noexec,nosuid,nodev,size=8m,nr_inodes=16384,mode=1777"
        }

    def test_user_environment_and_labels(self, spec: dict[str, Any]) -> None:
        """A non-root uid, an environment with nothing from the host, and owner labels."""
        assert spec["user"] == "123456:123456"
        assert set(spec["environment"]) == {"PATH", "HOME", "USER", "LANG",
                                            "PYTHONDONTWRITEBYTECODE"}
        labels = spec["labels"]
        assert labels[LABEL] == "1" and labels[LABEL_POOL] == "pool1"
        assert labels[LABEL_OWNER_PID] == str(os.getpid())
        assert spec["stdin_open"] is True and spec["detach"] is False  # StdinOnce

    def test_host_secrets_never_reach_the_environment(self, spec: dict[str, Any],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
        """A secret in the host environment does not appear anywhere in the create arguments."""
        monkeypatch.setenv("AUTO_DEV_TEST_SECRET", "s3cr3t-canary")
        assert "s3cr3t-canary" not in json.dumps(spec, default=str)


class TestOrphanLabels:
    """A container is an orphan when its owner process on this host is gone."""

    def test_own_process_is_not_an_orphan(self) -> None:
        """Labels written by this live process do not mark an orphan."""
        assert not is_orphan(owner_labels("p"))

    def test_dead_owner_is_an_orphan(self) -> None:
        """Labels naming a dead pid mark an orphan."""
        labels = {**owner_labels("p"), LABEL_OWNER_PID: str(_dead_pid())}
        assert is_orphan(labels)

    def test_reused_pid_is_an_orphan(self) -> None:
        """A live pid with a different start time (pid reuse) marks an orphan."""
        labels = {**owner_labels("p"), LABEL_OWNER_START: "1"}
        assert process_start_ticks(os.getpid()) != "1"
        assert is_orphan(labels)

    @given(st.text(min_size=1, max_size=20))
    def test_other_hosts_are_never_judged(self, host: str) -> None:
        """Containers owned by another host are left alone whatever their labels say."""
        labels = {**owner_labels("p"), LABEL_OWNER_PID: "999999999", LABEL_OWNER_HOST: host}
        import socket

        if host != socket.gethostname():
            assert not is_orphan(labels)


def _frame(payload: dict[str, Any]) -> bytes:
    body = json.dumps(payload).encode()
    return len(body).to_bytes(4, "big") + body


def _read_frame(stream: Any) -> dict[str, Any]:
    size = int.from_bytes(stream.read(4), "big")
    return json.loads(stream.read(size))


class TestBootstrap:
    """The bootstrap runs the harness fed on stdin and empties the scratch after every job."""

    def test_runs_jobs_and_wipes_scratch(self, tmp_path: Path) -> None:
        """A job's stray file in the wipe directory is gone once its answer is sent."""
        scratch = tmp_path / "scratch"
        scratch.mkdir(mode=0o777)
        flags = ["--scratch", str(scratch)] + (["--allow-root"] if os.geteuid() == 0 else [])
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", "-c", BOOTSTRAP],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin"},
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(_frame({"source": harness_source(), "argv": flags,
                                     "wipe": [str(scratch)]}))
            code = f"def f():\n    open({str(scratch / 'stray')!r}, 'w').write('x')\n    return 1\n"
            proc.stdin.write(_frame(SandboxJob(code=code, entrypoint="f",
                                               cases=(Case(expected=1),)).to_wire()))
            proc.stdin.flush()
            reply = _read_frame(proc.stdout)
            assert reply["cases"][0]["status"] == "ok", reply
            assert list(scratch.iterdir()) == []
        finally:
            proc.stdin.close()
            assert proc.wait(timeout=10) == 0, proc.stderr.read() if proc.stderr else ""


# ------------------------------------------------------------------------------- real engine


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def sandbox() -> AsyncIterator[DockerSandbox]:
    require_docker()
    box = DockerSandbox(pool_size=2, job_grace_s=1.0, health_timeout_s=1.0, image=IMAGE)
    await box.start()
    yield box
    pool_id, uids = box.pool.pool_id, box.pool.uids
    await box.aclose()
    gone(pool_id)
    assert processes_of(uids) == []


@pytest.mark.docker
@pytest.mark.asyncio(loop_scope="module")
class TestDockerSandboxRuns:
    """Jobs run in the warm pool and come back complete and in order."""

    async def test_results_in_case_order(self, sandbox: DockerSandbox) -> None:
        """Every case comes back, in order, with ok and wrong_answer decided in the harness."""
        cases = tuple(Case(args=(i,), expected=2 * i if i % 3 else -1) for i in range(7))
        result = await sandbox.run(SandboxJob(code=DOUBLE.code, entrypoint="double", cases=cases))
        assert result.backend == "docker" and result.total == 7 and result.error is None
        assert [c.index for c in result.cases] == list(range(7))
        assert [c.status for c in result.cases] == [
            CaseStatus.WRONG_ANSWER if i % 3 == 0 else CaseStatus.OK for i in range(7)
        ]

    async def test_concurrent_jobs_share_the_pool(self, sandbox: DockerSandbox) -> None:
        """Many concurrent jobs on two containers all get their own correct answers."""
        jobs = [SandboxJob(code=DOUBLE.code, entrypoint="double",
                           cases=(Case(args=(i,), expected=2 * i),)) for i in range(24)]
        results = await asyncio.gather(*(sandbox.run(j) for j in jobs))
        assert all(r.all_passed for r in results)
        assert [r.cases[0].output for r in results] == [2 * i for i in range(24)]

    async def test_empty_job_needs_no_container(self, sandbox: DockerSandbox) -> None:
        """A job without cases returns at once with nothing run."""
        result = await sandbox.run(SandboxJob(code="", entrypoint="f", cases=()))
        assert result.total == 0 and result.cases == ()

    async def test_unserialisable_case_is_a_validation_error(self, sandbox: DockerSandbox) -> None:
        """A case argument that is not JSON raises ValidationError before touching a container."""
        bad = SandboxJob(code=DOUBLE.code, entrypoint="double", cases=(Case(args=(object(),)),))
        with pytest.raises(ValidationError) as info:
            await sandbox.run(bad)
        assert info.value.field == "job.cases"

    async def test_malformed_frame_is_a_job_error(self, sandbox: DockerSandbox) -> None:
        """A harness job-level error comes back as the result's error, not an exception."""
        bad = SandboxJob(code=DOUBLE.code, entrypoint="double", cases=(Case(),),
                         float_tolerance=-1.0)
        result = await sandbox.run(bad)
        assert result.error and "float_tolerance" in result.error and result.cases == ()

    async def test_describe_reports_the_isolation(self, sandbox: DockerSandbox) -> None:
        """describe() shows a non-root uid, PID 1 harness, and the container settings."""
        info = await sandbox.describe()
        assert info["uid"] >= 1000 and info["pid"] == 1 and info["reap"] == "kill-all"
        assert info["network"] == "none" and info["capabilities"] == "none"

    async def test_oversized_job_gets_a_one_off_container(self, sandbox: DockerSandbox) -> None:
        """A job needing more memory than a pooled container runs in a removed-after one-off."""
        before = set(sandbox.pool.container_ids)
        big = job("def f():\n    return len(bytearray(600 * 1024 * 1024))\n", timeout_s=5.0,
                  memory_mb=900, expected=600 * 1024 * 1024, has_expected=True)
        result = await sandbox.run(big)
        assert result.all_passed, result
        for _ in range(50):
            if set(sandbox.pool.container_ids) == before:
                break
            await asyncio.sleep(0.05)
        assert set(sandbox.pool.container_ids) == before


@pytest.mark.docker
@pytest.mark.asyncio(loop_scope="module")
class TestDockerSandboxContract(SandboxContract):
    """DockerSandbox honours the contract every sandbox backend passes."""

    async def kill_worker_during_job(self, sandbox: DockerSandbox) -> None:  # type: ignore[override]
        for container_id in sandbox.pool.busy_ids:
            await asyncio.to_thread(api().kill, container_id)


@pytest.mark.docker
@pytest.mark.asyncio(loop_scope="module")
class TestDockerSandboxRecovery:
    """Dead, wedged and worn-out containers are replaced without failing the job twice."""

    async def _wait_for_busy(self, sandbox: DockerSandbox, exclude: set[str]) -> str:
        for _ in range(400):
            busy = [c for c in sandbox.pool.busy_ids if c not in exclude]
            if busy:
                return busy[0]
            await asyncio.sleep(0.01)
        raise AssertionError("no container picked up the job")

    async def test_container_killed_mid_job_is_retried(self, sandbox: DockerSandbox) -> None:
        """A container killed under a job is replaced and the job succeeds on the retry."""
        replaced = sandbox.pool.replaced
        slow = job("import time\ndef f():\n    time.sleep(0.3)\n    return 7\n", expected=7,
                   has_expected=True, timeout_s=3.0)
        running = asyncio.create_task(sandbox.run(slow))
        victim = await self._wait_for_busy(sandbox, set())
        await asyncio.to_thread(api().kill, victim)
        result = await running
        assert result.all_passed, result
        assert sandbox.pool.replaced == replaced + 1
        assert victim not in sandbox.pool.container_ids

    async def test_dying_twice_reports_crashed(self, sandbox: DockerSandbox) -> None:
        """When the retry's container dies too, every case is reported crashed, not raised."""
        slow = SandboxJob(code="import time\ndef f():\n    time.sleep(0.5)\n", entrypoint="f",
                          cases=(Case(has_expected=False), Case(has_expected=False)),
                          limits=Limits(timeout_s=3.0))
        running = asyncio.create_task(sandbox.run(slow))
        first = await self._wait_for_busy(sandbox, set())
        await asyncio.to_thread(api().kill, first)
        second = await self._wait_for_busy(sandbox, {first})
        await asyncio.to_thread(api().kill, second)
        result = await running
        assert [c.status for c in result.cases] == [CaseStatus.CRASHED] * 2
        assert "died twice" in (result.cases[0].error or "")
        assert (await sandbox.run(DOUBLE)).all_passed

    async def test_wedged_container_mid_job_is_replaced(self, sandbox: DockerSandbox) -> None:
        """A frozen container passes the job deadline, is replaced, and the retry succeeds."""
        slow = job("import time\ndef f():\n    time.sleep(0.2)\n    return 1\n", expected=1,
                   has_expected=True, timeout_s=0.5)
        running = asyncio.create_task(sandbox.run(slow))
        victim = await self._wait_for_busy(sandbox, set())
        await asyncio.to_thread(api().pause, victim)
        result = await running
        assert result.all_passed, result
        assert victim not in sandbox.pool.container_ids

    async def test_health_check_replaces_a_wedged_idle_container(
        self, sandbox: DockerSandbox
    ) -> None:
        """An idle container that stops answering pings is replaced by the health check."""
        await asyncio.sleep(0.3)  # let earlier replacements settle into the idle queue
        assert await sandbox.check_health() == 0
        victim = sandbox.pool.container_ids[0]
        await asyncio.to_thread(api().pause, victim)
        assert await sandbox.check_health() == 1
        for _ in range(100):
            if victim not in sandbox.pool.container_ids and len(sandbox.pool.container_ids) == 2:
                break
            await asyncio.sleep(0.05)
        assert victim not in sandbox.pool.container_ids
        assert (await sandbox.run(DOUBLE)).all_passed

    async def test_crashed_case_recycles_its_container(self, sandbox: DockerSandbox) -> None:
        """A case that dies of a signal ends crashed and its container is replaced."""
        replaced = sandbox.pool.replaced
        crash = job("import os, signal\ndef f():\n    os.kill(os.getpid(), signal.SIGSEGV)\n")
        result = await sandbox.run(crash)
        assert result.cases[0].status is CaseStatus.CRASHED
        assert sandbox.pool.replaced == replaced + 1
        assert (await sandbox.run(DOUBLE)).all_passed


@pytest.mark.docker
class TestRecycling:
    """Containers are replaced after ``recycle_after`` jobs."""

    async def test_recycled_after_n_jobs(self) -> None:
        """With recycle_after=3 a single container is replaced after every third job."""
        require_docker()
        async with DockerSandbox(pool_size=1, recycle_after=3, image=IMAGE) as box:
            seen = []
            for _ in range(7):
                assert (await box.run(DOUBLE)).all_passed
                seen.append(tuple(box.pool.container_ids))
            assert box.pool.replaced == 2
            assert len({ids for ids in seen if ids}) >= 3
            pool_id = box.pool.pool_id
        gone(pool_id)


@pytest.mark.docker
class TestLifecycle:
    """Orphans are removed at start; close, exit and SIGKILL leave nothing running."""

    async def test_orphans_are_removed_at_start(self) -> None:
        """A labelled container whose owner died is removed; a live owner's is kept."""
        require_docker()
        client = api()
        dead = {**owner_labels("orphanpool"), LABEL_OWNER_PID: str(_dead_pid())}
        alive = owner_labels("livepool")
        made = []
        for labels in (dead, alive):
            created = client.create_container(IMAGE, ["sleep", "60"], labels=labels,
                                              host_config=client.create_host_config(
                                                  network_mode="none", auto_remove=True))
            client.start(created["Id"])
            made.append(created["Id"])
        try:
            async with DockerSandbox(pool_size=1, image=IMAGE) as box:
                await box.start()
                ids = {c["Id"] for c in client.containers(all=True)}
                assert made[0] not in ids and made[1] in ids
        finally:
            for cid in made:
                with contextlib.suppress(Exception):  # already gone is the expected case
                    client.remove_container(cid, force=True)

    async def test_background_health_check_replaces_wedged_containers(self) -> None:
        """Without anyone asking, the periodic health check replaces a frozen container."""
        require_docker()
        async with DockerSandbox(pool_size=1, health_interval_s=0.2, health_timeout_s=0.5,
                                 image=IMAGE) as box:
            await box.start()
            victim = box.pool.container_ids[0]
            await asyncio.to_thread(api().pause, victim)
            for _ in range(100):
                if box.pool.replaced and victim not in box.pool.container_ids:
                    break
                await asyncio.sleep(0.1)
            assert box.pool.replaced == 1 and victim not in box.pool.container_ids
            assert (await box.run(DOUBLE)).all_passed

    async def test_aclose_is_idempotent_and_final(self) -> None:
        """aclose() removes every container, can be repeated, and later runs raise."""
        require_docker()
        box = DockerSandbox(pool_size=2, image=IMAGE)
        assert (await box.run(DOUBLE)).all_passed
        pool_id = box.pool.pool_id
        await box.aclose()
        await box.aclose()
        gone(pool_id)
        with pytest.raises(SandboxError):
            await box.run(DOUBLE)

    def test_used_from_a_second_event_loop(self) -> None:
        """A sandbox used in one asyncio.run and then another starts fresh containers there."""
        require_docker()
        box = DockerSandbox(pool_size=1, image=IMAGE)
        first = asyncio.run(box.run(DOUBLE))
        old_pool = box.pool.pool_id

        async def second() -> bool:
            try:
                return (await box.run(DOUBLE)).all_passed
            finally:
                await box.aclose()

        assert first.all_passed and asyncio.run(second())
        gone(old_pool)
        gone(box.pool.pool_id)

    @pytest.mark.parametrize("ending", ["exit", "sigkill"])
    def test_owner_process_ending_leaves_nothing(self, ending: str) -> None:
        """Whether the owner exits without aclose() or is SIGKILLed, its containers go away."""
        require_docker()
        script = textwrap.dedent(f"""
            import asyncio, os, signal, sys
            from auto_dev.sandbox.docker import DockerSandbox
            from tests.sandbox._docker_support import DOUBLE
            async def main():
                box = DockerSandbox(pool_size=2, image={IMAGE!r})
                assert (await box.run(DOUBLE)).all_passed
                print(box.pool.pool_id, flush=True)
                if {ending!r} == "sigkill":
                    os.kill(os.getpid(), signal.SIGKILL)
            asyncio.run(main())
        """)
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                  timeout=60, cwd=Path(__file__).parents[2], env={
                                      **os.environ, "PYTHONPATH": str(Path(__file__).parents[2]),
                                      "TMPDIR": tmp})
        pool_id = proc.stdout.strip().splitlines()[0]
        if ending == "sigkill":
            assert proc.returncode == -signal.SIGKILL
        else:
            assert proc.returncode == 0, proc.stderr
        deadline = time.monotonic() + 15
        while pool_containers(pool_id) and time.monotonic() < deadline:
            time.sleep(0.2)
        gone(pool_id)


@pytest.mark.docker
class TestEngineErrors:
    """Docker SDK failures surface as our own errors, saying what to do."""

    async def test_missing_image_is_unavailable(self) -> None:
        """A missing image raises SandboxUnavailableError pointing at build-image."""
        require_docker()
        box = DockerSandbox(pool_size=1, image="auto-dev-sandbox:no-such-tag")
        with pytest.raises(SandboxUnavailableError, match="build-image"):
            await box.run(DOUBLE)
        await box.aclose()

    async def test_unreachable_engine_is_unavailable(self,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
        """An engine that cannot be reached raises SandboxUnavailableError, never falls back."""
        monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        box = DockerSandbox(pool_size=1)
        with pytest.raises(SandboxUnavailableError, match="not reachable"):
            await box.run(DOUBLE)
        await box.aclose()
