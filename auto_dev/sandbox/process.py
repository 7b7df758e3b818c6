"""ProcessSandbox: candidates run in a pool of warm local harness processes.

Each worker is a ``_harness.py`` fork server started with ``python -I -S``, an environment holding
only ``PATH`` and a private working directory; every case runs in a fresh child of it.

Isolation depends on privileges, and the sandbox says which it got in a structlog line at start:

* **As root** every worker runs under a uid/gid of its own (``0x7A000000 + slot``), with
  ``--reap-all`` (after each case, every process of that uid but the harness is killed), its own
  PID namespace (candidates cannot signal the harness; when the harness goes, the kernel kills
  everything it left), its own network namespace (no network at all), a private ``/tmp`` emptied
  after every case, and the caller's working directory and home covered by empty read-only
  mounts. ``RLIMIT_NPROC`` is exact because the uid is dedicated.
* **Not as root** the same namespaces are requested through an unprivileged user namespace where
  the kernel allows it. Otherwise isolation is best effort: candidates run as the calling user,
  confined by process groups, a child-subreaper sweep and rlimits, with the network and files of
  that user. ``RLIMIT_NPROC`` counts *all* of a user's processes, so it cannot be set to the
  case's own budget: the harness adds the user's current process count (refreshed every second),
  which bounds fork bombs but is racy. Such a candidate can also signal any process of the user,
  the harness included (the job then fails with :class:`SandboxProtocolError` after its retry).

A worker that dies, wedges or answers something that is not the protocol is replaced and the job
retried once on a fresh worker; a second failure raises :class:`SandboxProtocolError`.

Workers never outlive this process: a harness exits, killing the case it runs, as soon as its
stdin hangs up or its parent dies (even mid-job), so a SIGKILLed host leaves no process behind.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import json
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import structlog

from auto_dev._exceptions import (
    SandboxError,
    SandboxProtocolError,
    SandboxUnavailableError,
    ValidationError,
)
from auto_dev.abc import Sandbox
from auto_dev.sandbox._workers import (
    HARNESS,
    UID_SLOTS,
    HarnessWorker,
    Identity,
    WorkerGone,
    claim_identity,
    release_identity,
)
from auto_dev.sandbox.base import CaseResult, CaseStatus, SandboxJob, SandboxResult

log = structlog.get_logger(__name__)

_STATUSES = frozenset(s.value for s in CaseStatus)
_CASE_FIELDS = frozenset({"index", "status", "output", "error", "stdout", "duration_s",
                          "peak_memory_kb"})
#: Per-case slack on top of ``timeout_s`` for forking, sweeping and reporting, before the host
#: decides a harness is wedged.
_CASE_SLACK_S = 6.0
#: Where this process starts looking for a free uid slot: random, so that sandboxes in different
#: processes rarely contend for the same lock files.
_uid_cursor = itertools.count(secrets.randbelow(UID_SLOTS))


class _PoolState:
    """Everything the pool shares; deliberately holds no reference to the sandbox itself, so
    that the exit-time finaliser can clean up after a sandbox nobody closed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: list[HarnessWorker] = []
        self.live: set[HarnessWorker] = set()
        self.starting = 0
        self.waiters: deque[asyncio.Future[HarnessWorker | None]] = deque()
        self.closed = False
        self.root: Path | None = None
        self.used_uids: set[int] = set()
        self.retiring: set[threading.Thread] = set()


def _shutdown(state: _PoolState) -> None:
    """Close every worker and remove the sandbox's directory (blocking; idempotent)."""
    with state.lock:
        state.closed = True
        workers = list(state.live)
        state.live.clear()
        state.idle.clear()
        waiters = list(state.waiters)
        state.waiters.clear()
    for future in waiters:
        _deliver(future, None)
    for worker in workers:  # EOF to all first: they wind down in parallel
        with contextlib.suppress(OSError):
            worker.proc.stdin.close()  # type: ignore[union-attr]
    for worker in workers:
        worker.close()
    with state.lock:
        retiring = list(state.retiring)
    for thread in retiring:  # replaced workers still being torn down
        thread.join(timeout=15)
    if state.root is not None:
        shutil.rmtree(state.root, ignore_errors=True)
        state.root = None


def _deliver(future: asyncio.Future[Any], value: Any) -> bool:
    """Resolve ``future`` from any thread; False if its loop is gone."""

    def settle() -> None:
        if not future.done():
            future.set_result(value)
        elif isinstance(value, HarnessWorker):  # the waiter gave up meanwhile: not lost
            _return_worker(value)

    try:
        future.get_loop().call_soon_threadsafe(settle)
        return True
    except RuntimeError:
        return False


def _return_worker(worker: HarnessWorker) -> None:
    state: _PoolState = worker.pool_state
    with state.lock:
        if not state.closed and worker in state.live:
            while state.waiters:
                if _deliver(state.waiters.popleft(), worker):
                    return
            state.idle.append(worker)
            return
    _retire(worker)


def _retire(worker: HarnessWorker) -> None:
    """Kill a worker now and finish tearing it down in the background (aclose waits for it)."""
    state: _PoolState = worker.pool_state
    worker.kill()

    def teardown() -> None:
        try:
            worker.close()
        finally:
            with state.lock:
                state.retiring.discard(thread)

    thread = threading.Thread(target=teardown, name="auto-dev-sandbox-reaper", daemon=True)
    with state.lock:
        state.retiring.add(thread)
    thread.start()


def _retire_spawned(done: concurrent.futures.Future[HarnessWorker]) -> None:
    if done.exception() is None:
        _retire(done.result())


class ProcessSandbox(Sandbox):
    """A pool of warm local harness processes (see the module docstring for the isolation).

    ``workers`` defaults to the number of CPUs. ``python`` is the interpreter for the harness
    (default: this one); ``launcher`` is a command prefix for it (e.g. ``setpriv``, ``nice``),
    in which case uids are left to the launcher. ``hide_paths`` are covered by empty read-only
    mounts where a mount namespace is available (default: the current directory and the home
    directory). Concurrent :meth:`run` calls are spread over the workers; usable from any event
    loop, and from several in turn.
    """

    name: ClassVar[str] = "process"

    def __init__(
        self,
        workers: int | None = None,
        *,
        python: str | None = None,
        launcher: Sequence[str] = (),
        isolate_network: bool = True,
        hide_paths: Sequence[str] | None = None,
        startup_timeout_s: float = 20.0,
    ) -> None:
        size = (os.cpu_count() or 1) if workers is None else workers
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 512:
            raise ValidationError("workers", "must be an integer between 1 and 512")
        if not (isinstance(startup_timeout_s, int | float) and startup_timeout_s > 0):
            raise ValidationError("startup_timeout_s", "must be a positive number of seconds")
        self._size = size
        self._python = python or sys.executable or "python3"
        self._launcher = [str(part) for part in launcher]
        self._isolate_network = isolate_network
        if hide_paths is None:
            with contextlib.suppress(OSError):  # a deleted working directory has nothing to hide
                hide_paths = [os.getcwd()]
            hide_paths = [*(hide_paths or ()), os.path.expanduser("~")]
        self._hide = [str(Path(p).resolve()) for p in hide_paths]
        self._startup_timeout_s = float(startup_timeout_s)
        self._privileged = os.geteuid() == 0 and not self._launcher
        self._state = _PoolState()
        self._announced = False
        self._finalizer = weakref.finalize(self, _shutdown, self._state)

    # ------------------------------------------------------------------ public API

    @property
    def privileged(self) -> bool:
        """Whether workers run under dedicated uids (the host is root and no launcher is set)."""
        return self._privileged

    @property
    def workers(self) -> int:
        return self._size

    @property
    def slots(self) -> int:
        """Jobs run at once: one per warm worker."""
        return self._size

    def worker_uids(self, *, include_retired: bool = False) -> list[int]:
        """The uids of the live workers (and of replaced ones); empty unless :attr:`privileged`."""
        with self._state.lock:
            if include_retired:
                return sorted(self._state.used_uids)
            return sorted(w.identity.uid for w in self._state.live if w.identity is not None)

    def worker_pids(self) -> list[int]:
        """Host pids of the live workers' harness processes."""
        with self._state.lock:
            return sorted(w.pid for w in self._state.live)

    async def describe(self) -> dict[str, Any]:
        """The isolation a worker actually achieved (its harness's info frame)."""
        worker = await self._acquire()
        _return_worker(worker)
        return dict(worker.info, privileged=self._privileged, workers=self._size)

    async def run(self, job: SandboxJob) -> SandboxResult:
        if not isinstance(job, SandboxJob):
            raise ValidationError("job", f"must be a SandboxJob, got {type(job).__name__}")
        started = time.monotonic()
        if not job.cases:
            return SandboxResult(backend=self.name, cases=(), total=0)
        try:
            payload = json.dumps(job.to_wire()).encode()
        except (TypeError, ValueError) as exc:
            raise ValidationError("job.cases", f"must be JSON-serialisable: {exc}") from exc
        deadline = sum(job.limits.timeout_s + _CASE_SLACK_S for _ in job.cases) + 10.0
        failure: Exception | None = None
        for attempt in (1, 2):
            worker = await self._acquire()
            try:
                raw = await worker.request(payload, deadline)
                cases, error = _decode_reply(raw, job)
            except (WorkerGone, SandboxProtocolError) as exc:
                failure = exc
                log.warning("process_sandbox.worker_lost", attempt=attempt, reason=str(exc),
                            jobs_served=worker.jobs,
                            harness_stderr=worker.stderr_tail()[-500:] or None)
                self._discard(worker)
                continue
            except BaseException:  # cancelled mid-job: the worker's state is unknown
                self._discard(worker)
                raise
            _return_worker(worker)
            return SandboxResult(backend=self.name, cases=cases, total=len(job.cases),
                                 duration_s=time.monotonic() - started, error=error)
        raise SandboxProtocolError(f"the harness failed on this job twice: {failure}")

    async def __aenter__(self) -> ProcessSandbox:
        return self

    async def aclose(self) -> None:
        if self._finalizer.alive:
            await asyncio.to_thread(self._finalizer)

    # ------------------------------------------------------------------ pool

    async def _acquire(self) -> HarnessWorker:
        state = self._state
        loop = asyncio.get_running_loop()
        while True:
            with state.lock:
                if state.closed:
                    raise SandboxError("the process sandbox is closed")
                if state.idle:
                    return state.idle.pop()
                spawn = len(state.live) + state.starting < self._size
                if spawn:
                    state.starting += 1
                else:
                    waiter: asyncio.Future[HarnessWorker | None] = loop.create_future()
                    state.waiters.append(waiter)
            if spawn:
                return await self._start_worker()
            try:
                worker = await waiter
            except asyncio.CancelledError:
                with state.lock, contextlib.suppress(ValueError):
                    state.waiters.remove(waiter)
                handed = waiter.result() if waiter.done() and not waiter.cancelled() else None
                if handed is not None:  # handed over just as we were cancelled: not lost
                    _return_worker(handed)
                raise
            if worker is not None:
                return worker
            # None: a slot was freed (or the pool closed); go round again

    async def _start_worker(self) -> HarnessWorker:
        state = self._state
        spawned: concurrent.futures.Future[HarnessWorker] = concurrent.futures.Future()
        spawned.set_running_or_notify_cancel()  # runs to the end even if we stop waiting

        def spawn() -> None:
            try:
                worker = self._spawn()
            except BaseException as exc:
                spawned.set_exception(exc)
            else:
                worker.pool_state = state
                spawned.set_result(worker)

        threading.Thread(target=spawn, name="auto-dev-sandbox-spawn", daemon=True).start()
        try:
            worker = await asyncio.wrap_future(spawned)
        except BaseException as exc:
            with state.lock:
                state.starting -= 1
                self._wake_one_locked()
            if isinstance(exc, asyncio.CancelledError):  # a worker nobody waits for: retire it
                spawned.add_done_callback(_retire_spawned)
            raise
        with state.lock:
            state.starting -= 1
            closed = state.closed
            if not closed:
                state.live.add(worker)
        if closed:
            _retire(worker)
            raise SandboxError("the process sandbox is closed")
        self._announce(worker)
        return worker

    def _wake_one_locked(self) -> None:
        while self._state.waiters:
            if _deliver(self._state.waiters.popleft(), None):
                return

    def _discard(self, worker: HarnessWorker) -> None:
        with self._state.lock:
            self._state.live.discard(worker)
            self._wake_one_locked()
        _retire(worker)

    def _spawn(self) -> HarnessWorker:
        state = self._state
        with state.lock:
            if state.root is None:
                state.root = Path(tempfile.mkdtemp(prefix="auto-dev-sandbox-"))
                state.root.chmod(0o711)  # workers may enter their own directory, nothing else
            root = state.root
        identity: Identity | None = None
        if self._privileged:
            identity = claim_identity(next(_uid_cursor) % UID_SLOTS)
            with state.lock:
                state.used_uids.add(identity.uid)
        workdir = Path(tempfile.mkdtemp(prefix="worker-", dir=root))
        try:
            command = [*self._launcher, self._python, "-I", "-S", "-B", str(HARNESS),
                       *self._flags(identity, workdir)]
            if identity is not None:
                os.chown(workdir, identity.uid, identity.gid)
            return HarnessWorker.spawn(command, workdir, identity, self._startup_timeout_s)
        except BaseException as exc:
            if identity is not None:
                release_identity(identity)
            shutil.rmtree(workdir, ignore_errors=True)
            if isinstance(exc, SandboxError):
                raise
            if isinstance(exc, OSError):
                raise SandboxUnavailableError(f"cannot start a harness: {exc}") from exc
            raise

    def _flags(self, identity: Identity | None, workdir: Path) -> list[str]:
        flags = ["--pid-ns", "--private-tmp"]
        if identity is not None:
            flags += ["--uid", str(identity.uid), "--gid", str(identity.gid), "--reap-all"]
        if not self._launcher:
            flags += ["--scratch", str(workdir)]
        if self._isolate_network:
            flags.append("--unshare-net")
        for path in self._hide:
            flags += ["--hide", path]
        return flags

    def _announce(self, worker: HarnessWorker) -> None:
        if self._announced:
            return
        self._announced = True
        info = worker.info
        fields = {
            "workers": self._size, "uid": info.get("uid"), "namespaces": info.get("namespaces"),
            "network_isolated": info.get("network_isolated"), "reap": info.get("reap"),
            "nproc": info.get("nproc"), "problems": info.get("problems") or None,
        }
        if self._privileged:
            log.info("process_sandbox.started", mode="dedicated-uid", **fields)
        else:
            log.warning(
                "process_sandbox.started", mode="best-effort",
                note="not running as root: candidates run as the calling user; isolation relies "
                     "on user namespaces where the kernel allows them, else on process groups, "
                     "rlimits and an estimated RLIMIT_NPROC", **fields,
            )


def _decode_reply(raw: bytes, job: SandboxJob) -> tuple[tuple[CaseResult, ...], str | None]:
    """Check a result frame against the protocol; raises :class:`SandboxProtocolError`."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise SandboxProtocolError(f"the harness answered with non-JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise SandboxProtocolError("the harness answer has no 'cases' list")
    error = data.get("error")
    if error is not None and not isinstance(error, str):
        raise SandboxProtocolError("the harness answer's 'error' is not a string")
    items = data["cases"]
    if error is not None:
        if items:
            raise SandboxProtocolError("the harness reported a job error and case results")
        return (), error
    total = len(job.cases)
    if len(items) > total or (len(items) < total and not job.stop_on_first_failure):
        raise SandboxProtocolError(f"the harness reported {len(items)} of {total} cases")
    cases = []
    for position, item in enumerate(items):
        if (not isinstance(item, dict) or not item.keys() >= _CASE_FIELDS
                or item["index"] != position or item["status"] not in _STATUSES):
            raise SandboxProtocolError(f"the harness reported a malformed case at {position}")
        try:
            cases.append(CaseResult.from_wire(item))
        except (TypeError, ValueError) as exc:
            raise SandboxProtocolError(f"the harness reported a malformed case: {exc}") from exc
    if len(cases) < total and (not cases or cases[-1].passed
                               or not all(c.passed for c in cases[:-1])):
        raise SandboxProtocolError("the harness stopped early without a failing case")
    return tuple(cases), error
