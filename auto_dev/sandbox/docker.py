"""DockerSandbox: candidates run in a warm pool of hardened containers.

Each container runs the stdlib-only harness (``_harness.py``) as a fork server, fed over stdin
(no host mount), so every case is a fresh forked process inside a container that is:

* cut off from the network (``--network none``), with a read-only root filesystem and a
  size-capped ``noexec,nosuid,nodev`` tmpfs as its only writable place, emptied after every case
  (each case also gets a fresh working directory there, which is its ``HOME`` and ``TMPDIR``; no
  ``/dev/shm``; SysV IPC and POSIX message queues disabled, so nothing outlives a case);
* stripped of every capability, with ``no-new-privileges`` and Docker's seccomp profile, running
  as a non-root uid of its own; the harness is the container's PID 1 (the kernel drops the
  signals a candidate sends it) and non-dumpable (no ptrace, no /proc/1/mem or fds);
* capped in processes, memory (swap included), CPU and open files;
* labelled with its owner, so orphans are found and removed, and removed on close and at exit
  (and, since its stdin closes with our end of the stream, even when this process is killed: the
  harness notices the hang-up at once, also in the middle of a job, kills the running case and
  exits, and ``auto_remove`` deletes the container).

Per-case limits (deadline, CPU, address space, output, processes, file size) are enforced by the
harness inside; the container limits are the wall around it. A container is recycled after
``recycle_after`` jobs and at once after a crash or protocol error. When a container dies under
a job, the job is retried once on a fresh container; if that dies too, its cases are reported
``crashed`` (the candidate is the likely cause) rather than raising.

Usage::

    async with DockerSandbox() as sandbox:
        result = await sandbox.run(job)

Containers start on the first job (or ``await sandbox.start()``) on the running event loop; a
sandbox used from another loop later starts a fresh pool there.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import time
from typing import Any, ClassVar

import structlog

from auto_dev._exceptions import SandboxError, SandboxProtocolError, ValidationError
from auto_dev.abc import Sandbox
from auto_dev.sandbox._docker_pool import ContainerPool
from auto_dev.sandbox._docker_spec import (
    DEFAULT_IMAGE,
    SCRATCH_DIR,
    WIPE_DIRS,
    ContainerShape,
    DockerSandboxConfig,
)
from auto_dev.sandbox._docker_worker import WorkerLost, encode
from auto_dev.sandbox.base import CaseResult, CaseStatus, SandboxJob, SandboxResult

__all__ = ["DEFAULT_IMAGE", "DockerSandbox", "DockerSandboxConfig"]

log = structlog.get_logger(__name__)

#: Flags for the harness inside a container. The container's uid is dedicated to it, so after
#: every case it may kill every process of that uid but itself; cases work under /tmp, the tmpfs,
#: which (like every writable place in the container) is emptied after every case.
HARNESS_ARGV = ["--reap-all", "--scratch", SCRATCH_DIR,
                *(arg for directory in WIPE_DIRS for arg in ("--wipe", directory))]

_MIB = 1024 * 1024


def harness_source() -> str:
    """The harness module's source, sent to each container on start."""
    return importlib.resources.files("auto_dev.sandbox").joinpath("_harness.py").read_text(
        encoding="utf-8"
    )


class DockerSandbox(Sandbox):
    """A :class:`~auto_dev.abc.Sandbox` backed by a warm pool of hardened Docker containers."""

    name: ClassVar[str] = "docker"

    def __init__(self, config: DockerSandboxConfig | None = None, **overrides: Any) -> None:
        if config is None:
            config = DockerSandboxConfig(**overrides)
        elif overrides:
            raise TypeError("pass either a DockerSandboxConfig or keyword settings, not both")
        self.config = config
        self._source = harness_source()
        self._pool = ContainerPool(config, self._source, HARNESS_ARGV)

    # ------------------------------------------------------------------ public

    @property
    def slots(self) -> int:
        """Jobs run at once: one per pooled container."""
        return self.config.size

    @property
    def pool(self) -> ContainerPool:
        """The container pool (for health checks, diagnostics and tests)."""
        return self._pool

    async def start(self) -> None:
        """Start the pool now instead of on the first job (raises if Docker cannot serve)."""
        await self._ensure_pool()

    async def check_health(self) -> int:
        """Ping idle containers now; returns how many were replaced."""
        await self._ensure_pool()
        return await self._pool.check_health()

    async def describe(self) -> dict[str, Any]:
        """The isolation a container actually achieved (its harness's info frame), with the
        container settings around it."""
        await self._ensure_pool()
        worker = await self._pool.acquire()
        try:
            reply = await worker.request({"info": True}, timeout=10.0, max_reply=1 << 20)
        except WorkerLost as exc:
            self._pool.discard(worker, exc.reason)
            raise SandboxError(f"the sandbox container did not describe itself: {exc}") from exc
        except BaseException:
            self._pool.discard(worker, "describe was interrupted")
            raise
        self._pool.release(worker, count=False)
        info = dict(reply.get("info") or {})
        info.update(
            backend=self.name, image=self.config.image, containers=self.config.size,
            container_memory_mb=self.config.memory_mb, container_cpus=self.config.cpus,
            container_pids=self.config.pids_limit, network="none", read_only_root=True,
            capabilities="none", no_new_privileges=True,
        )
        return info

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def __aenter__(self) -> DockerSandbox:
        return self

    async def _ensure_pool(self) -> None:
        """Start the pool; on a different event loop than before, start a fresh one there.

        Streams belong to the loop that opened them, so a sandbox used from several loops in turn
        (e.g. one ``asyncio.run`` after another) abandons the old loop's containers and warms new
        ones. Using one sandbox from two loops at the same time is not supported.
        """
        loop = asyncio.get_running_loop()
        if self._pool.loop is not None and self._pool.loop is not loop and not self._pool.closed:
            old, self._pool = self._pool, ContainerPool(self.config, self._source, HARNESS_ARGV)
            await old.abandon()
        await self._pool.start()

    async def run(self, job: SandboxJob) -> SandboxResult:
        if not isinstance(job, SandboxJob):
            raise ValidationError("job", f"must be a SandboxJob, got {type(job).__name__}")
        started = time.perf_counter()
        if not job.cases:
            return SandboxResult(backend=self.name, cases=(), total=0)
        try:
            frame = encode(job.to_wire())
        except (TypeError, ValueError) as exc:
            raise ValidationError("job.cases", f"must be JSON-serialisable: {exc}") from exc
        await self._ensure_pool()
        timeout = self._deadline(job)
        max_reply = _max_reply(job)
        limits = job.limits
        shape = None
        if not self._pool.shape.fits(limits.memory_mb, limits.max_processes):
            shape = ContainerShape.for_job(limits.memory_mb, limits.max_processes, self._pool.shape)

        failure = ""
        for attempt in (1, 2):
            worker = await (self._pool.acquire() if shape is None else self._pool.one_off(shape))
            try:
                reply = await worker.request(frame, timeout=timeout, max_reply=max_reply)
                result = self._result(job, reply, started)
            except WorkerLost as exc:
                failure = exc.reason
                self._pool.discard(worker, exc.reason)
                log.warning("sandbox.job_lost_container", attempt=attempt, reason=exc.reason,
                            container=worker.short_id, protocol=exc.protocol)
                continue
            except SandboxProtocolError as exc:
                failure = str(exc)
                self._pool.discard(worker, failure)
                log.warning("sandbox.protocol_error", attempt=attempt, error=failure,
                            container=worker.short_id)
                continue
            except BaseException:
                # Cancelled (or worse) mid-conversation: the stream is out of step for good.
                self._pool.discard(worker, "a job was interrupted mid-conversation")
                raise
            crashed = any(c.status is CaseStatus.CRASHED for c in result.cases)
            self._pool.release(worker, recycle="a case crashed" if crashed else None)
            return result
        return self._all_crashed(job, failure, started)

    # ------------------------------------------------------------------ internals

    def _deadline(self, job: SandboxJob) -> float:
        # The harness kills every case at its own deadline; beyond this the harness is wedged.
        per_case = job.limits.timeout_s + 1.0
        return self.config.job_grace_s + per_case * max(1, len(job.cases))

    def _result(self, job: SandboxJob, reply: dict[str, Any], started: float) -> SandboxResult:
        error = reply.get("error")
        raw_cases = reply.get("cases")
        if not isinstance(raw_cases, list) or not (error is None or isinstance(error, str)):
            raise SandboxProtocolError("the harness answered a result frame without cases/error")
        try:
            cases = tuple(CaseResult.from_wire(c) for c in raw_cases)
        except (KeyError, TypeError, ValueError) as exc:
            raise SandboxProtocolError(f"the harness answered a malformed case: {exc}") from exc
        indices = [c.index for c in cases]
        if indices != sorted(set(indices)) or any(not 0 <= i < len(job.cases) for i in indices):
            raise SandboxProtocolError(f"the harness answered case indices {indices}")
        return SandboxResult(
            backend=self.name,
            cases=cases,
            total=len(job.cases),
            duration_s=time.perf_counter() - started,
            error=error,
        )

    def _all_crashed(self, job: SandboxJob, failure: str, started: float) -> SandboxResult:
        message = f"the sandbox container died twice running this job: {failure}"
        log.warning("sandbox.job_crashed_twice", reason=failure, cases=len(job.cases))
        return SandboxResult(
            backend=self.name,
            cases=tuple(
                CaseResult(index=i, status=CaseStatus.CRASHED, error=message)
                for i in range(len(job.cases))
            ),
            total=len(job.cases),
            duration_s=time.perf_counter() - started,
        )


def _max_reply(job: SandboxJob) -> int:
    """The largest result frame an honest harness can send for ``job``.

    Per case: the return value (at most ``max(output_bytes, 1 MiB)`` of JSON) and the captured
    output, each possibly re-escaped (up to 6x), plus a capped traceback.
    """
    out = job.limits.output_bytes
    per_case = 6 * (max(out, _MIB) + out) + 256 * 1024
    return min(1 << 30, _MIB + per_case * max(1, len(job.cases)))


