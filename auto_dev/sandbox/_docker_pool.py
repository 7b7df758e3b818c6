"""The warm pool of sandbox containers behind :class:`~auto_dev.sandbox.docker.DockerSandbox`.

The pool keeps ``size`` slots. Each slot is, at any time, an idle worker in the queue, a worker
lent to a job, a replacement being started in the background, or a *vacancy* (a replacement that
could not be started: the next caller to take it tries once more, so the pool heals when the
engine comes back and fails loudly while it does not).

Lifecycle guarantees: containers carry owner labels, and those whose owner process is gone are
removed at start; ``aclose`` and interpreter exit remove every container of the pool; a closed
attach stream (even after SIGKILL of this process) makes the harness exit, and ``auto_remove``
deletes the container.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import os
import secrets
import threading
from dataclasses import dataclass
from typing import Any

import structlog

from auto_dev._exceptions import SandboxError, SandboxUnavailableError
from auto_dev.sandbox._docker_spec import (
    LABEL,
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_OWNER_START,
    LABEL_POOL,
    ContainerShape,
    DockerSandboxConfig,
    create_kwargs,
    is_orphan,
    new_uid,
    owner_labels,
)
from auto_dev.sandbox._docker_worker import (
    Worker,
    WorkerLost,
    create_attach_start,
    docker_error,
    remove_containers,
)

log = structlog.get_logger(__name__)

_SPAWN_RETRIES = (0.2, 1.0)  # backoff between attempts to start a replacement


@dataclass(frozen=True, slots=True)
class _Vacancy:
    """A slot whose container could not be (re)started; ``error`` says why."""

    error: SandboxError


_CLOSED = object()

# The pid that started a pool in this process (None: never). At interpreter exit every
# container labelled with this process as its owner is removed, whether or not aclose() ran and
# whatever a cancelled start left half-made. A forked child has another pid and removes nothing.
_STARTED_IN: int | None = None
_STARTED_LOCK = threading.Lock()


def _cleanup_at_exit() -> None:
    with _STARTED_LOCK:
        if os.getpid() != _STARTED_IN:
            return
    remove_owned_containers()


atexit.register(_cleanup_at_exit)


def _note_started() -> None:
    global _STARTED_IN
    with _STARTED_LOCK:
        _STARTED_IN = os.getpid()


def docker_client(timeout: float = 30.0) -> Any:
    """A low-level docker ``APIClient`` from the environment, or SandboxUnavailableError."""
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - docker is a dependency
        raise SandboxUnavailableError("the docker SDK is not installed") from exc
    try:
        return docker.from_env(timeout=int(max(1, timeout))).api
    except Exception as exc:
        raise docker_error(exc, "connecting") from exc


def remove_owned_containers() -> int:
    """Force-remove every container this process owns (blocking). Returns how many were found."""
    labels = owner_labels("")
    try:
        api = docker_client(timeout=15)
    except SandboxError:
        return 0
    try:
        rows = api.containers(all=True, filters={"label": [
            f"{LABEL_OWNER_PID}={labels[LABEL_OWNER_PID]}",
            f"{LABEL_OWNER_START}={labels[LABEL_OWNER_START]}",
            f"{LABEL_OWNER_HOST}={labels[LABEL_OWNER_HOST]}",
        ]})
        remove_containers(api, [row["Id"] for row in rows])
        return len(rows)
    except Exception as exc:
        log.warning("sandbox.exit_cleanup_failed", error=str(exc))
        return 0
    finally:
        with contextlib.suppress(Exception):
            api.close()


def remove_orphans(api: Any) -> int:
    """Remove labelled containers whose owning process on this host is gone (blocking)."""
    try:
        rows = api.containers(all=True, filters={"label": f"{LABEL}=1"})
    except Exception as exc:
        raise docker_error(exc, "listing sandbox containers") from exc
    orphans = [row["Id"] for row in rows if is_orphan(row.get("Labels") or {})]
    if orphans:
        log.info("sandbox.orphans_removed", count=len(orphans),
                 containers=[cid[:12] for cid in orphans])
        remove_containers(api, orphans)
    return len(orphans)


class ContainerPool:
    """``size`` warm, hardened containers each running the harness as a fork server."""

    def __init__(self, config: DockerSandboxConfig, harness_source: str, harness_argv: list[str]):
        self.config = config
        self.pool_id = secrets.token_hex(6)
        self.shape = ContainerShape(memory_mb=config.memory_mb, pids_limit=config.pids_limit)
        self._source = harness_source
        self._argv = list(harness_argv)
        self._api: Any = None
        self._idle: asyncio.Queue[Worker | _Vacancy | object] = asyncio.Queue()
        self._workers: set[Worker] = set()
        self._lent: set[Worker] = set()
        self._uids: set[int] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._seq = itertools.count(1)
        self._start_lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._closed = False
        self.replaced = 0  # containers replaced so far (recycling, crashes, health checks)

    # ------------------------------------------------------------------ lifecycle

    @property
    def started(self) -> bool:
        return self._started

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def container_ids(self) -> list[str]:
        """Every live container of the pool (idle, lent out or one-off)."""
        return sorted(w.container_id for w in self._workers)

    @property
    def uids(self) -> set[int]:
        """The user ids of the live containers (each container has its own)."""
        return {w.uid for w in self._workers}

    @property
    def busy_ids(self) -> list[str]:
        """Containers lent out to a job right now."""
        return sorted(w.container_id for w in self._lent)

    async def start(self) -> None:
        """Connect, check the image, remove orphans and start every container. Idempotent."""
        async with self._start_lock:
            if self._closed:
                raise SandboxError("the Docker sandbox is closed")
            if self._started:
                return
            self._loop = asyncio.get_running_loop()
            if self._api is None:
                self._api = await asyncio.to_thread(docker_client, self.config.start_timeout_s)
            await asyncio.to_thread(self._check_image)
            await asyncio.to_thread(remove_orphans, self._api)
            _note_started()
            results = await asyncio.gather(
                *(self._spawn(self.shape) for _ in range(self.config.size)), return_exceptions=True
            )
            workers = [r for r in results if isinstance(r, Worker)]
            errors = [r for r in results if isinstance(r, BaseException)]
            if not workers:
                # Not closed: a later start (after the image is built, say) may succeed.
                await asyncio.to_thread(self._remove_all, [])
                first = errors[0]
                if isinstance(first, SandboxError):
                    raise first
                raise SandboxError(f"no sandbox container could be started: {first}") from first
            for worker in workers:
                self._idle.put_nowait(worker)
            for error in errors:
                self._idle.put_nowait(_Vacancy(_as_sandbox_error(error)))
            self._started = True
            self._track(asyncio.create_task(self._health_loop(), name="sandbox-health"))
            log.info("sandbox.pool_started", pool=self.pool_id, containers=len(workers),
                     failed=len(errors), image=self.config.image, harness=workers[0].info)

    def _check_image(self) -> None:
        try:
            self._api.inspect_image(self.config.image)
        except Exception as exc:
            raise docker_error(exc, "inspecting the sandbox image", self.config.image) from exc

    async def aclose(self) -> None:
        """Stop the health check and remove every container. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._idle.put_nowait(_CLOSED)  # wakes every waiter in turn (each puts it back)
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        if self._tasks:
            await asyncio.gather(*(t for t in self._tasks if t is not current),
                                 return_exceptions=True)
        workers = list(self._workers)
        self._workers.clear()
        for worker in workers:
            worker.close_stream()
        if self._api is not None:
            ids = [w.container_id for w in workers]
            await asyncio.to_thread(self._remove_all, ids)
            with contextlib.suppress(Exception):
                self._api.close()
        if self._started:
            log.info("sandbox.pool_closed", pool=self.pool_id, replaced=self.replaced)

    def _remove_all(self, ids: list[str]) -> None:
        remove_containers(self._api, ids)
        # Anything else labelled with our pool id (a spawn cancelled half-way) goes too.
        with contextlib.suppress(Exception):
            rows = self._api.containers(all=True, filters={"label": f"{LABEL_POOL}={self.pool_id}"})
            remove_containers(self._api, [row["Id"] for row in rows])

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the pool's streams belong to (None before start)."""
        return self._loop

    async def abandon(self) -> None:
        """Close a pool whose event loop is gone, from another loop: drop the streams without
        touching the old loop, then remove the containers."""
        self._closed = True
        workers = list(self._workers)
        self._workers.clear()
        for worker in workers:
            with contextlib.suppress(Exception):  # the old loop may be closed already
                worker.close_stream()
        if self._api is not None:
            await asyncio.to_thread(self._remove_all, [w.container_id for w in workers])
        log.info("sandbox.pool_abandoned", pool=self.pool_id, reason="used from a new event loop")

    # ------------------------------------------------------------------ lending workers

    async def acquire(self) -> Worker:
        """An idle pooled worker (waits for one). Raises SandboxError when none can exist."""
        while True:
            if self._closed:
                raise SandboxError("the Docker sandbox is closed")
            token = await self._idle.get()
            if token is _CLOSED:
                self._idle.put_nowait(_CLOSED)
                raise SandboxError("the Docker sandbox is closed")
            if isinstance(token, _Vacancy):
                try:
                    worker = await self._spawn(self.shape)
                except BaseException:
                    self._idle.put_nowait(token)
                    raise
                self._lent.add(worker)
                return worker
            assert isinstance(token, Worker)
            self._lent.add(token)
            if token.lost is None:
                return token
            self.discard(token, token.lost)

    def release(self, worker: Worker, *, recycle: str | None = None, count: bool = True) -> None:
        """Give a worker back after a job; ``recycle`` (a reason) replaces it instead."""
        self._lent.discard(worker)
        if count:
            worker.jobs += 1
        if self._closed:
            self._forget(worker)
            return
        if worker.one_off:
            self._track(asyncio.create_task(self._kill(worker)))
            return
        if recycle is None and worker.jobs >= self.config.recycle_after:
            recycle = f"served {worker.jobs} jobs"
        if recycle is not None or worker.lost is not None:
            self.discard(worker, recycle or worker.lost or "")
        else:
            self._idle.put_nowait(worker)

    def discard(self, worker: Worker, reason: str) -> None:
        """Remove a worker's container and start a replacement in the background."""
        self._lent.discard(worker)
        if self._closed:
            self._forget(worker)
            return
        if worker.one_off:
            self._track(asyncio.create_task(self._kill(worker)))
            return
        log.info("sandbox.container_replaced", container=worker.short_id, reason=reason,
                 jobs=worker.jobs)
        self.replaced += 1
        self._track(asyncio.create_task(self._replace(worker)))

    async def one_off(self, shape: ContainerShape) -> Worker:
        """A container sized for one oversized job; :meth:`release` removes it afterwards."""
        worker = await self._spawn(shape, one_off=True)
        self._lent.add(worker)
        return worker

    # ------------------------------------------------------------------ health

    async def check_health(self) -> int:
        """Ping every idle worker, replace those that do not answer, retry vacancies.

        Returns the number of containers replaced or restarted.
        """
        fixed = 0
        for _ in range(self._idle.qsize()):
            try:
                token = self._idle.get_nowait()
            except asyncio.QueueEmpty:
                break
            if token is _CLOSED:
                self._idle.put_nowait(token)
                break
            if isinstance(token, _Vacancy):
                try:
                    worker = await self._spawn(self.shape)
                except SandboxError as exc:
                    self._idle.put_nowait(_Vacancy(exc))
                    continue
                self._idle.put_nowait(worker)
                fixed += 1
                continue
            assert isinstance(token, Worker)
            try:
                await token.request({"info": True}, timeout=self.config.health_timeout_s,
                                    max_reply=1 << 20)
            except WorkerLost as exc:
                self.discard(token, f"health check: {exc.reason}")
                fixed += 1
            else:
                self._idle.put_nowait(token)
        return fixed

    async def _health_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.config.health_interval_s)
            try:
                await self.check_health()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop must survive anything one round meets
                log.warning("sandbox.health_check_failed", error=str(exc))

    # ------------------------------------------------------------------ containers

    async def _spawn(self, shape: ContainerShape, *, one_off: bool = False) -> Worker:
        if self._closed:
            raise SandboxError("the Docker sandbox is closed")
        uid = new_uid(self._uids)
        self._uids.add(uid)
        name = f"auto-dev-sandbox-{self.pool_id}-{next(self._seq)}"
        kwargs = create_kwargs(self._api, self.config, shape, name=name, uid=uid,
                               labels=owner_labels(self.pool_id))
        started = asyncio.ensure_future(asyncio.to_thread(create_attach_start, self._api, kwargs))
        try:
            container_id, sock = await asyncio.shield(started)
        except asyncio.CancelledError:
            started.add_done_callback(self._abandon_start)
            self._uids.discard(uid)
            raise
        except BaseException:
            self._uids.discard(uid)
            raise
        worker = Worker(container_id=container_id, name=name, uid=uid, shape=shape,
                        one_off=one_off)
        self._workers.add(worker)
        try:
            await worker.connect(sock)
            await worker.bootstrap(self._source, self._argv, timeout=self.config.start_timeout_s)
        except BaseException as exc:
            await asyncio.shield(self._kill(worker))
            if isinstance(exc, WorkerLost):
                raise SandboxError(
                    f"sandbox container {name} did not start its harness: {exc.reason}"
                ) from None
            raise
        if self._closed:
            await self._kill(worker)
            raise SandboxError("the Docker sandbox is closed")
        return worker

    def _abandon_start(self, fut: asyncio.Future[tuple[str, Any]]) -> None:
        """A start whose caller was cancelled: remove the container it made anyway."""
        if fut.cancelled() or fut.exception() is not None:
            return
        container_id, sock = fut.result()
        sock.close()
        if self._api is not None:
            self._track(asyncio.ensure_future(
                asyncio.to_thread(remove_containers, self._api, [container_id])))

    def _forget(self, worker: Worker) -> None:
        """After close: aclose() removed (or its labels sweep removes) the container already."""
        worker.close_stream()
        self._workers.discard(worker)
        self._lent.discard(worker)

    async def _kill(self, worker: Worker) -> None:
        worker.close_stream()
        self._workers.discard(worker)
        self._lent.discard(worker)
        self._uids.discard(worker.uid)
        await asyncio.to_thread(remove_containers, self._api, [worker.container_id])

    async def _replace(self, old: Worker) -> None:
        kill = asyncio.ensure_future(self._kill(old))
        error: SandboxError | None = None
        for delay in (0.0, *_SPAWN_RETRIES):
            if self._closed:
                break
            if delay:
                await asyncio.sleep(delay)
            try:
                worker = await self._spawn(self.shape)
            except SandboxError as exc:
                error = exc
                log.warning("sandbox.container_start_failed", error=str(exc))
                continue
            self._idle.put_nowait(worker)
            error = None
            break
        if error is not None:
            self._idle.put_nowait(_Vacancy(error))
        await kill

    def _track(self, task: asyncio.Future[Any]) -> None:
        self._tasks.add(task)  # type: ignore[arg-type]
        task.add_done_callback(self._tasks.discard)


def _as_sandbox_error(exc: BaseException) -> SandboxError:
    return exc if isinstance(exc, SandboxError) else SandboxError(str(exc))
