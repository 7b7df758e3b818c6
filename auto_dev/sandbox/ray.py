"""RaySandbox: candidate evaluation fanned out over a Ray cluster.

Each node of the cluster gets actors (:class:`EvaluationActor`), each holding a warm local pool
of the process or Docker backend on its node; candidate code runs there exactly as it would on
one machine, under the same harness, limits and isolation. This process keeps the jobs
(:class:`~auto_dev.sandbox._ray_jobs.RayJobBook`):

* **Placement**: a job goes to the least loaded actor with a free slot, so jobs spread over the
  actors instead of filling the first.
* **Backpressure**: never more jobs in flight than the actors have slots (the sum of their pool
  sizes); one collector thread waits on the in-flight jobs with ``ray.wait`` and hands the next
  waiting job a slot as soon as one frees. Callers of :meth:`RaySandbox.run` wait in ``run``
  meanwhile: nothing is queued in Ray.
* **Fault tolerance**: a job whose actor dies under it (killed, out of memory, its node gone) is
  run again on another actor, and its result is delivered once: every job has an id, holds one
  attempt at a time, and its caller is answered exactly once. A dead actor is replaced. A job
  whose actors die under it ``max_tries`` times ends with its cases ``crashed`` instead of
  being tried for ever, and the cluster keeps serving the other jobs.

Ray is an optional dependency (``pip install "auto-dev[ray]"``): this is the only module that
imports it, and only when a Ray sandbox starts. ``AUTO_DEV_SANDBOX=ray`` selects this backend,
``AUTO_DEV_RAY_ADDRESS`` names the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from types import ModuleType
from typing import Any, ClassVar

import structlog

from auto_dev._exceptions import SandboxError, SandboxUnavailableError, ValidationError
from auto_dev.abc import Sandbox
from auto_dev.sandbox._ray_jobs import PendingJob, RayJobBook
from auto_dev.sandbox._ray_layout import (
    ActorPlan,
    ActorSlot,
    NodeSpec,
    RaySandboxConfig,
    RaySandboxStats,
    plan_actors,
    short_error,
)
from auto_dev.sandbox.base import SandboxJob, SandboxResult

log = structlog.get_logger(__name__)

INSTALL_HINT = 'pip install "auto-dev[ray]"'


def ray_version() -> str | None:
    """The installed Ray's version, or ``None`` (without importing Ray)."""
    try:
        return importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:
        return None


def import_ray() -> ModuleType:
    """Ray, or :class:`SandboxUnavailableError` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise SandboxUnavailableError(
            f"Ray is not installed: {INSTALL_HINT} on this machine and on every node") from exc
    return ray


class EvaluationActor:
    """A Ray actor on one node: runs jobs in a warm local pool (process or Docker) of
    ``slots`` workers, chosen on the node by :func:`~auto_dev.sandbox.factory.create_sandbox`.

    Started by :class:`RaySandbox` only; its methods are called through Ray.
    """

    def __init__(self, node_sandbox: str, slots: int, image: str | None,
                 require_containers: bool, private_paths: tuple[str, ...]) -> None:
        from auto_dev.sandbox.factory import create_sandbox

        choice = create_sandbox(node_sandbox, require_containers=require_containers, image=image,
                                workers=slots, private_paths=private_paths)
        self._sandbox = choice.sandbox
        self._backend = choice.backend
        self._reason = choice.reason
        self._slots = slots
        self._jobs = 0

    async def run(self, job_id: str, job: SandboxJob) -> SandboxResult:
        result = await self._sandbox.run(job)
        self._jobs += 1
        return result

    async def describe(self) -> dict[str, Any]:
        """Where this actor runs and what its pool is (starts one warm worker)."""
        import ray

        describe = getattr(self._sandbox, "describe", None)
        isolation = await describe() if describe is not None else {}
        return {"node_id": ray.get_runtime_context().get_node_id(),
                "hostname": socket.gethostname(), "pid": os.getpid(), "backend": self._backend,
                "reason": self._reason, "slots": self._slots, "jobs": self._jobs,
                "isolation": json.loads(json.dumps(isolation, default=str))}

    async def close(self) -> None:
        await self._sandbox.aclose()


class RaySandbox(Sandbox):
    """Evaluation on a Ray cluster (see the module docstring).

    Pass a :class:`RaySandboxConfig` or its fields. The sandbox connects and starts its actors
    on the first job (or on ``await sandbox.start()``); if Ray is already initialised in this
    process it uses that connection and leaves it open, otherwise it connects to
    ``config.address`` (a local instance when unset and none runs here) and disconnects on
    :meth:`aclose`. Usable from any event loop, and from several in turn.
    """

    name: ClassVar[str] = "ray"

    def __init__(self, config: RaySandboxConfig | None = None, **fields: Any) -> None:
        if config is not None and fields:
            raise ValidationError("ray", "pass a RaySandboxConfig or its fields, not both")
        self.config = config or RaySandboxConfig(**fields)
        self._start_lock = threading.Lock()
        self._actors: list[ActorSlot] = []
        self._book: RayJobBook | None = None
        self._collector: threading.Thread | None = None
        self._closed = False
        self._owns_connection = False
        self._remote_class: Any = None
        self._address = ""

    # ------------------------------------------------------------------ public API

    @property
    def slots(self) -> int:
        """Jobs the actors run at once, the sum of their pool sizes (0 before :meth:`start`;
        the search reads it after its first job, which starts the sandbox)."""
        return sum(actor.plan.slots for actor in self._actors)

    @property
    def address(self) -> str:
        """The cluster this sandbox is connected to ("" before :meth:`start`)."""
        return self._address

    def stats(self) -> RaySandboxStats:
        if self._book is None:
            return RaySandboxStats(0, 0, 0, 0, 0, 0, 0, 0, 0)
        return self._book.stats()

    def actor_handles(self) -> list[Any]:
        """The current Ray handles of the actors (an actor that died is replaced by a new one)."""
        return self._book.handles() if self._book is not None else []

    def busy_actor_handles(self) -> list[Any]:
        """Handles of the actors running a job right now."""
        return self._book.busy_handles() if self._book is not None else []

    async def start(self) -> RaySandbox:
        if self._book is None:
            await asyncio.to_thread(self.start_blocking)
        return self

    def start_blocking(self) -> None:
        """Connect and start the actors, each with a warm worker (blocking; idempotent)."""
        with self._start_lock:
            if self._closed:
                raise SandboxError("the Ray sandbox is closed")
            if self._book is not None:
                return
            ray = import_ray()
            self._connect(ray)
            actors: list[ActorSlot] = []
            try:
                plans = plan_actors(self.config, alive_nodes(ray))
                actors = [ActorSlot(index=i, plan=plan) for i, plan in enumerate(plans)]
                for actor in actors:
                    self._spawn(ray, actor)
                infos = ray.get([a.handle.describe.remote() for a in actors],
                                timeout=self.config.start_timeout_s)
            except BaseException as exc:
                for actor in actors:
                    _end_actor(ray, actor.handle)
                self._disconnect(ray)
                if isinstance(exc, SandboxError | ValidationError):
                    raise
                raise SandboxUnavailableError(
                    f"the Ray actors did not start on {self._address}: {short_error(exc)}"
                ) from exc
            for actor, info in zip(actors, infos, strict=True):
                actor.info = info
            self._actors = actors
            self._book = RayJobBook(ray, actors, max_tries=self.config.max_tries,
                                    backend=self.name,
                                    respawn=lambda actor: self._respawn(ray, actor))
            self._collector = threading.Thread(target=self._book.collect, daemon=True,
                                               name="auto-dev-ray-collector")
            self._collector.start()
            log.info("ray_sandbox.started", address=self._address, actors=len(actors),
                     slots=self.slots, nodes=len({a.info.get("node_id") for a in actors}),
                     backends=dict(Counter(str(a.info.get("backend")) for a in actors)))

    async def run(self, job: SandboxJob) -> SandboxResult:
        if not isinstance(job, SandboxJob):
            raise ValidationError("job", f"must be a SandboxJob, got {type(job).__name__}")
        if not job.cases:
            return SandboxResult(backend=self.name, cases=(), total=0)
        try:
            json.dumps(job.to_wire())
        except (TypeError, ValueError) as exc:
            raise ValidationError("job.cases", f"must be JSON-serialisable: {exc}") from exc
        await self.start()
        assert self._book is not None
        pending = PendingJob(id=uuid.uuid4().hex, job=job, started=time.monotonic(),
                             future=asyncio.get_running_loop().create_future())
        self._book.submit(pending)
        try:
            return await pending.future
        except asyncio.CancelledError:
            self._book.cancel(pending)
            raise

    async def describe(self) -> list[dict[str, Any]]:
        """What every actor says about itself now (node, pid, backend, slots, isolation), or
        the error that kept it from answering."""
        await self.start()
        return await asyncio.to_thread(self.describe_blocking)

    def describe_blocking(self) -> list[dict[str, Any]]:
        ray = import_ray()
        actors = list(self._actors)
        refs = [actor.handle.describe.remote() for actor in actors]
        ray.wait(refs, num_returns=len(refs), timeout=self.config.start_timeout_s)
        found = []
        for actor, ref in zip(actors, refs, strict=True):
            try:
                actor.info = ray.get(ref, timeout=0)
            except Exception as exc:
                found.append({"actor": actor.index, "slots": actor.plan.slots,
                              "error": short_error(exc)})
            else:
                found.append({"actor": actor.index, **actor.info})
        return found

    def nodes(self) -> list[dict[str, Any]]:
        """Every node the cluster knows, alive or not (after :meth:`start`)."""
        ray = import_ray()
        return [{"node_id": str(n["NodeID"]), "address": str(n.get("NodeManagerAddress", "")),
                 "hostname": str(n.get("NodeManagerHostname", "")), "alive": bool(n.get("Alive")),
                 "cpus": float((n.get("Resources") or {}).get("CPU", 0.0)),
                 "memory_gb": float((n.get("Resources") or {}).get("memory", 0.0)) / 2**30}
                for n in ray.nodes()]

    def run_on_each_actor(self, job: SandboxJob, timeout_s: float = 60.0
                          ) -> list[tuple[float | None, SandboxResult | None, str | None]]:
        """Run ``job`` once on every actor at the same time, outside placement (the cluster
        check): ``(seconds, result, None)`` or ``(None, None, error)`` per actor, in order."""
        ray = import_ray()
        started = time.monotonic()
        refs = [handle.run.remote(f"check-{i}", job) for i, handle in
                enumerate(self.actor_handles())]
        ended: dict[Any, float] = {}
        pending = list(refs)
        deadline = started + timeout_s
        while pending and time.monotonic() < deadline:
            ready, pending = ray.wait(pending, num_returns=1,
                                      timeout=max(0.0, deadline - time.monotonic()))
            for ref in ready:
                ended[ref] = time.monotonic() - started
        outcomes: list[tuple[float | None, SandboxResult | None, str | None]] = []
        for ref in refs:
            if ref not in ended:
                outcomes.append((None, None, f"no answer within {timeout_s:g} s"))
                continue
            try:
                outcomes.append((ended[ref], ray.get(ref, timeout=0), None))
            except Exception as exc:
                outcomes.append((None, None, short_error(exc)))
        return outcomes

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Close the actors' pools, end the actors and (if this sandbox connected) disconnect.
        Jobs still waiting or running fail with :class:`SandboxError`. Idempotent."""
        with self._start_lock:
            if self._closed:
                return
            self._closed = True
            book = self._book
        if book is None:
            return
        ray = import_ray()
        handles = book.close()
        closing = [handle.close.remote() for handle in handles]
        with contextlib.suppress(Exception):  # each pool removes its own containers
            ray.wait(closing, num_returns=len(closing), timeout=30)
        for handle in handles:
            _end_actor(ray, handle)
        if self._collector is not None:
            self._collector.join(timeout=30)
        book.abandon("the Ray sandbox is closed")
        self._disconnect(ray)
        log.info("ray_sandbox.closed", **dict(book.counts))

    # ------------------------------------------------------------------ connection and actors

    def _connect(self, ray: ModuleType) -> None:
        address = self.config.address
        if ray.is_initialized():
            self._owns_connection = False
            current = str(getattr(ray.get_runtime_context(), "gcs_address", "") or "")
            if not _same_head(address, current):
                raise SandboxUnavailableError(
                    f"cannot connect to the Ray cluster at {address}: this process is already "
                    f"connected to the one at {current} (one cluster per process)")
        else:
            options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING,
                                       "configure_logging": False}
            if address in (None, "local"):
                options["include_dashboard"] = False
            try:
                _probe_head(address, self.config.connect_timeout_s)
                ray.init(address=address, **options)
            except Exception as exc:
                where = address or "this machine (or a new local instance)"
                raise SandboxUnavailableError(
                    f"cannot connect to the Ray cluster at {where}: {short_error(exc)}") from exc
            self._owns_connection = True
        context = ray.get_runtime_context()
        self._address = str(getattr(context, "gcs_address", "") or address or "local")

    def _disconnect(self, ray: ModuleType) -> None:
        if self._owns_connection:
            self._owns_connection = False
            with contextlib.suppress(Exception):
                ray.shutdown()

    def _spawn(self, ray: ModuleType, actor: ActorSlot) -> None:
        """Start ``actor``. Ray never restarts it by itself: this sandbox replaces a dead one
        (so that each death is seen once, with the generation it happened in)."""
        if self._remote_class is None:
            self._remote_class = ray.remote(EvaluationActor)
        if actor.plan.node_id is not None:  # pinned to its node (Ray's soft pinning drifts)
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            strategy: Any = NodeAffinitySchedulingStrategy(node_id=actor.plan.node_id, soft=False)
        else:
            strategy = "SPREAD"
        config = self.config
        actor.handle = self._remote_class.options(
            num_cpus=config.actor_cpus, max_restarts=0, max_task_retries=0,
            max_concurrency=actor.plan.slots + 4, scheduling_strategy=strategy,
        ).remote(config.node_sandbox, actor.plan.slots, config.image, config.require_containers,
                 config.private_paths)
        actor.generation += 1

    def _respawn(self, ray: ModuleType, actor: ActorSlot) -> None:
        old = actor.handle
        if actor.plan.node_id is not None:
            with contextlib.suppress(Exception):
                if actor.plan.node_id not in {n.node_id for n in alive_nodes(ray)}:
                    # Its node is gone: the replacement goes wherever Ray spreads it.
                    actor.plan = ActorPlan(slots=actor.plan.slots, node_id=None)
        self._spawn(ray, actor)
        _end_actor(ray, old)  # if it was only unreachable, it must not come back as a twin


def alive_nodes(ray: ModuleType) -> list[NodeSpec]:
    """The alive nodes of the connected cluster."""
    return [NodeSpec(node_id=str(n["NodeID"]), address=str(n.get("NodeManagerAddress", "")),
                     hostname=str(n.get("NodeManagerHostname", "")),
                     cpus=float((n.get("Resources") or {}).get("CPU", 0.0)))
            for n in ray.nodes() if n.get("Alive")]


def _probe_head(address: str | None, timeout_s: float) -> None:
    """Fail fast when nothing answers at ``host:port`` (Ray itself keeps retrying for
    minutes): a name that does not resolve or a closed port is an :class:`OSError` now."""
    if address is None or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
        pass


def _same_head(address: str | None, current: str) -> bool:
    """Whether ``address`` names the head this process is connected to (``current``, the GCS
    ``host:port``). Unset, ``auto``, ``local`` and Ray Client addresses (whose port is not the
    GCS port) take the existing connection as it is."""
    if address is None or address in ("auto", "local") or address.startswith("ray://"):
        return True
    try:
        wanted = _resolve_host_port(address)
        return wanted == _resolve_host_port(current) or (
            wanted[1] == _resolve_host_port(current)[1] and wanted[0].startswith("127."))
    except (OSError, ValueError):
        return False


def _resolve_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return socket.gethostbyname(host.strip("[]")), int(port)


def _end_actor(ray: ModuleType, handle: Any) -> None:
    if handle is not None:
        with contextlib.suppress(Exception):
            ray.kill(handle, no_restart=True)


__all__ = ["INSTALL_HINT", "EvaluationActor", "RaySandbox", "RaySandboxConfig",
           "RaySandboxStats", "alive_nodes", "import_ray", "ray_version"]
