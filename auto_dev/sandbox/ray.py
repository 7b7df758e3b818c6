"""RaySandbox: candidate evaluation fanned out over a Ray cluster.

Each node of the cluster gets actors (:class:`EvaluationActor`), each holding a warm local pool
of the process or Docker backend on its node; candidate code runs there exactly as it would on
one machine, under the same harness, limits and isolation. This process keeps the jobs:

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
from collections import Counter, deque
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, ClassVar

import structlog

from auto_dev._exceptions import SandboxError, SandboxUnavailableError, ValidationError
from auto_dev.abc import Sandbox
from auto_dev.sandbox._ray_layout import (
    ActorSlot,
    NodeSpec,
    RaySandboxConfig,
    RaySandboxStats,
    choose_actor,
    crashed_result,
    plan_actors,
)
from auto_dev.sandbox.base import Case, SandboxJob, SandboxResult

log = structlog.get_logger(__name__)

INSTALL_HINT = 'pip install "auto-dev[ray]"'
#: How long the collector waits on in-flight jobs before looking for new ones (jobs placed by
#: callers while it waits) when slots are free; when every slot is busy nothing new can be
#: placed before a job ends, so it waits longer.
_POLL_S = 0.002
_BUSY_POLL_S = 0.05


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
                "isolation": _jsonable(isolation)}

    async def close(self) -> None:
        await self._sandbox.aclose()


@dataclass(eq=False, slots=True)
class _PendingJob:
    """One :meth:`RaySandbox.run` call: at most one attempt in flight at a time."""

    id: str
    job: SandboxJob
    future: asyncio.Future[SandboxResult]
    started: float
    tries: int = 0
    died_on: set[int] = field(default_factory=set)
    ref: Any = None
    cancelled: bool = False


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
        self._lock = threading.Condition()
        self._start_lock = threading.Lock()
        self._actors: list[ActorSlot] = []
        self._waiting: deque[_PendingJob] = deque()
        self._in_flight: dict[Any, tuple[_PendingJob, ActorSlot, int]] = {}
        self._started = False
        self._closed = False
        self._owns_connection = False
        self._collector: threading.Thread | None = None
        self._remote_class: Any = None
        self._counts: Counter[str] = Counter()
        self._address = ""

    # ------------------------------------------------------------------ public API

    @property
    def slots(self) -> int:
        """Jobs the actors run at once (0 before :meth:`start`)."""
        return sum(actor.plan.slots for actor in self._actors)

    @property
    def address(self) -> str:
        """The cluster this sandbox is connected to ("" before :meth:`start`)."""
        return self._address

    def stats(self) -> RaySandboxStats:
        with self._lock:
            return RaySandboxStats(
                jobs=self._counts["jobs"], attempts=self._counts["attempts"],
                retried=self._counts["retried"], crashed=self._counts["crashed"],
                actors_replaced=self._counts["replaced"], in_flight=len(self._in_flight),
                waiting=len(self._waiting), slots=self.slots,
                most_in_flight=self._counts["most_in_flight"])

    def actor_handles(self) -> list[Any]:
        """The current Ray handles of the actors (an actor that died is replaced by a new one)."""
        with self._lock:
            return [actor.handle for actor in self._actors]

    def busy_actor_handles(self) -> list[Any]:
        """Handles of the actors running a job right now."""
        with self._lock:
            return [actor.handle for actor in self._actors if actor.busy]

    async def start(self) -> RaySandbox:
        if not self._started:
            await asyncio.to_thread(self.start_blocking)
        return self

    def start_blocking(self) -> None:
        """Connect and start the actors, each with a warm worker (blocking; idempotent)."""
        with self._start_lock:
            if self._closed:
                raise SandboxError("the Ray sandbox is closed")
            if self._started:
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
                    _kill(ray, actor.handle)
                self._disconnect(ray)
                if isinstance(exc, SandboxError | ValidationError):
                    raise
                raise SandboxUnavailableError(
                    f"the Ray actors did not start on {self._address}: {_short(exc)}") from exc
            for actor, info in zip(actors, infos, strict=True):
                actor.info = info
            with self._lock:
                self._actors = actors
                self._started = True
            self._collector = threading.Thread(target=self._collect, args=(ray,), daemon=True,
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
        loop = asyncio.get_running_loop()
        pending = _PendingJob(id=uuid.uuid4().hex, job=job, future=loop.create_future(),
                              started=time.monotonic())
        with self._lock:
            if self._closed:
                raise SandboxError("the Ray sandbox is closed")
            self._waiting.append(pending)
            self._place_locked()
            self._lock.notify_all()
        try:
            return await pending.future
        except asyncio.CancelledError:
            self._cancel(pending)
            raise

    async def describe(self) -> list[dict[str, Any]]:
        """What every actor says about itself now (node, pid, backend, slots, isolation), or
        the error that kept it from answering."""
        await self.start()
        return await asyncio.to_thread(self._describe_blocking)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Close the actors' pools, end the actors and (if this sandbox connected) disconnect.
        Jobs still waiting or running fail with :class:`SandboxError`. Idempotent."""
        with self._start_lock, self._lock:
            if self._closed:
                return
            self._closed = True
            waiting = list(self._waiting)
            self._waiting.clear()
            actors = list(self._actors)
            started = self._started
            self._lock.notify_all()
        for pending in waiting:
            _deliver(pending, error=SandboxError("the Ray sandbox is closed"))
        if not started:
            return
        ray = import_ray()
        closing = [actor.handle.close.remote() for actor in actors]
        with contextlib.suppress(Exception):  # containers are removed by the pools themselves
            ray.wait(closing, num_returns=len(closing), timeout=30)
        for actor in actors:
            _kill(ray, actor.handle)
        if self._collector is not None:
            self._collector.join(timeout=30)
        with self._lock:
            left = [pending for pending, _, _ in self._in_flight.values()]
            self._in_flight.clear()
        for pending in left:
            _deliver(pending, error=SandboxError("the Ray sandbox is closed"))
        self._disconnect(ray)
        log.info("ray_sandbox.closed", **{k: v for k, v in self._counts.items()})

    # ------------------------------------------------------------------ connection and actors

    def _connect(self, ray: ModuleType) -> None:
        address = self.config.address
        if ray.is_initialized():
            self._owns_connection = False
        else:
            options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING,
                                       "configure_logging": False}
            if address in (None, "local"):
                options["include_dashboard"] = False
            try:
                ray.init(address=address, **options)
            except Exception as exc:
                where = address or "this machine (or a new local instance)"
                raise SandboxUnavailableError(
                    f"cannot connect to the Ray cluster at {where}: {_short(exc)}") from exc
            self._owns_connection = True
        context = ray.get_runtime_context()
        self._address = str(getattr(context, "gcs_address", "") or address or "local")

    def _disconnect(self, ray: ModuleType) -> None:
        if self._owns_connection:
            self._owns_connection = False
            with contextlib.suppress(Exception):
                ray.shutdown()

    def _spawn(self, ray: ModuleType, actor: ActorSlot) -> None:
        """Start (or restart) ``actor``: Ray never restarts it by itself, this sandbox replaces
        it (so one failure is seen once, with the generation it happened in)."""
        if self._remote_class is None:
            self._remote_class = ray.remote(EvaluationActor)
        if actor.plan.node_id is not None:  # pinned while its node lives, then anywhere
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            strategy: Any = NodeAffinitySchedulingStrategy(node_id=actor.plan.node_id, soft=True)
        else:
            strategy = "SPREAD"
        config = self.config
        actor.handle = self._remote_class.options(
            num_cpus=config.actor_cpus, max_restarts=0, max_task_retries=0,
            max_concurrency=actor.plan.slots + 4, scheduling_strategy=strategy,
        ).remote(config.node_sandbox, actor.plan.slots, config.image, config.require_containers,
                 config.private_paths)
        actor.generation += 1

    def _describe_blocking(self) -> list[dict[str, Any]]:
        ray = import_ray()
        with self._lock:
            actors = list(self._actors)
        refs = [actor.handle.describe.remote() for actor in actors]
        ray.wait(refs, num_returns=len(refs), timeout=self.config.start_timeout_s)
        found = []
        for actor, ref in zip(actors, refs, strict=True):
            try:
                info = ray.get(ref, timeout=0)
            except Exception as exc:
                found.append({"actor": actor.index, "slots": actor.plan.slots,
                              "error": _short(exc)})
                continue
            actor.info = info
            found.append({"actor": actor.index, **info})
        return found

    # ------------------------------------------------------------------ placement

    def _place_locked(self) -> None:
        """Give waiting jobs free slots, first come first served (caller holds the lock)."""
        while self._waiting and not self._closed:
            pending = self._waiting[0]
            actor = choose_actor(self._actors, pending.died_on)
            if actor is None:
                return
            self._waiting.popleft()
            try:
                pending.ref = actor.handle.run.remote(pending.id, pending.job)
            except Exception as exc:  # Ray itself is gone: nothing can run
                _deliver(pending, error=SandboxError(f"cannot reach the Ray cluster: "
                                                     f"{_short(exc)}"))
                continue
            pending.tries += 1
            actor.busy += 1
            self._in_flight[pending.ref] = (pending, actor, actor.generation)
            self._counts["attempts"] += 1
            if len(self._in_flight) > self._counts["most_in_flight"]:
                self._counts["most_in_flight"] = len(self._in_flight)

    def _cancel(self, pending: _PendingJob) -> None:
        with self._lock:
            pending.cancelled = True
            with contextlib.suppress(ValueError):
                self._waiting.remove(pending)
            ref = pending.ref if pending.ref in self._in_flight else None
        if ref is not None:
            with contextlib.suppress(Exception):
                import_ray().cancel(ref)

    # ------------------------------------------------------------------ the collector

    def _collect(self, ray: ModuleType) -> None:
        """Wait on the in-flight jobs with ``ray.wait`` and settle each as it ends."""
        while True:
            with self._lock:
                while not self._in_flight and not self._closed:
                    self._lock.wait()
                if not self._in_flight:
                    return
                refs = list(self._in_flight)
                timeout = _BUSY_POLL_S if self._waiting else _POLL_S
            try:
                ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
                if ready and len(refs) > 1:
                    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            except Exception as exc:  # the connection to the cluster is gone
                self._fail_everything(f"lost the Ray cluster: {_short(exc)}")
                continue
            for ref in ready:
                try:
                    self._settle(ray, ref)
                except Exception as exc:  # never lose the collector: a bug fails that job only
                    log.error("ray_sandbox.settle_failed", error=_short(exc))

    def _settle(self, ray: ModuleType, ref: Any) -> None:
        with self._lock:
            entry = self._in_flight.pop(ref, None)
            if entry is None:
                return
            pending, actor, generation = entry
            actor.busy -= 1  # a replaced actor's slots free up as its lost jobs come back
        exceptions = ray.exceptions
        try:
            result: SandboxResult = ray.get(ref, timeout=0)
        except exceptions.TaskCancelledError:
            self._finish(pending, error=asyncio.CancelledError())
        except exceptions.RayTaskError as exc:  # the actor answered with an exception
            cause = getattr(exc, "cause", None)
            if isinstance(cause, ValidationError):
                self._finish(pending, error=cause)
            elif isinstance(cause, SandboxError):  # that node's pool is broken: try another
                self._lost(ray, pending, actor, generation, f"{type(cause).__name__}: {cause}",
                           replace=False, broken=cause)
            else:
                self._finish(pending, error=SandboxError(
                    f"the evaluation actor failed: {_short(cause or exc)}"))
        except exceptions.RayError as exc:  # the actor (or its node, or the object) is gone
            reason = _short(exc)
            if "creation task" in str(exc):  # a new actor could not even start its pool
                self._lost(ray, pending, actor, generation, reason, replace=True,
                           broken=SandboxError(reason))
            else:
                self._lost(ray, pending, actor, generation, reason, replace=True)
        else:
            with self._lock:
                actor.jobs_done += 1
            self._finish(pending, result=SandboxResult(
                backend=self.name, cases=result.cases, total=result.total,
                duration_s=time.monotonic() - pending.started, error=result.error))

    def _lost(self, ray: ModuleType, pending: _PendingJob, actor: ActorSlot, generation: int,
              reason: str, *, replace: bool, broken: SandboxError | None = None) -> None:
        """The attempt ended without a result: replace the actor if it died, then try the job
        on another actor, or end it once it has used its tries."""
        log.warning("ray_sandbox.attempt_lost", job_id=pending.id, actor=actor.index,
                    attempt=pending.tries, reason=reason)
        with self._lock:
            if replace and actor.generation == generation and not self._closed:
                old = actor.handle
                self._spawn(ray, actor)
                self._counts["replaced"] += 1
                _kill(ray, old)
            pending.died_on.add(actor.index)
            closed, cancelled = self._closed, pending.cancelled
            retry = not (closed or cancelled) and pending.tries < self.config.max_tries
            if retry:
                self._counts["retried"] += 1
                self._waiting.appendleft(pending)  # it has waited longest
                self._place_locked()
                self._lock.notify_all()
        if retry:
            return
        if closed:
            self._finish(pending, error=SandboxError("the Ray sandbox is closed"))
        elif cancelled:
            self._finish(pending, error=asyncio.CancelledError())
        elif broken is not None:
            self._finish(pending, error=SandboxError(
                f"the sandbox pools failed this job on {pending.tries} actors; last: {reason}"))
        else:
            with self._lock:
                self._counts["crashed"] += 1
            self._finish(pending, result=crashed_result(
                pending.job, f"the evaluation actor died under this job on each of its "
                f"{pending.tries} tries; last: {reason}", time.monotonic() - pending.started,
                self.name))

    def _fail_everything(self, reason: str) -> None:
        log.error("ray_sandbox.cluster_lost", reason=reason)
        with self._lock:
            lost = [entry[0] for entry in self._in_flight.values()] + list(self._waiting)
            self._in_flight.clear()
            self._waiting.clear()
            for actor in self._actors:
                actor.busy = 0
        for pending in lost:
            _deliver(pending, error=SandboxError(reason))

    def _finish(self, pending: _PendingJob, *, result: SandboxResult | None = None,
                error: BaseException | None = None) -> None:
        """Answer the caller (once) and hand the freed slot to the next job."""
        with self._lock:
            if result is not None:
                self._counts["jobs"] += 1
            self._place_locked()
            self._lock.notify_all()
        _deliver(pending, result=result, error=error)


def alive_nodes(ray: ModuleType) -> list[NodeSpec]:
    """The alive nodes of the connected cluster."""
    return [NodeSpec(node_id=str(n["NodeID"]), address=str(n.get("NodeManagerAddress", "")),
                     hostname=str(n.get("NodeManagerHostname", "")),
                     cpus=float((n.get("Resources") or {}).get("CPU", 0.0)))
            for n in ray.nodes() if n.get("Alive")]


def _deliver(pending: _PendingJob, *, result: SandboxResult | None = None,
             error: BaseException | None = None) -> None:
    future = pending.future

    def settle() -> None:
        if future.done():
            return
        if error is not None:
            if isinstance(error, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    with contextlib.suppress(RuntimeError):  # the caller's loop is gone: nobody to answer
        future.get_loop().call_soon_threadsafe(settle)


def _kill(ray: ModuleType, handle: Any) -> None:
    if handle is not None:
        with contextlib.suppress(Exception):
            ray.kill(handle, no_restart=True)


def _jsonable(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return str(value)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."


SMOKE_JOB = SandboxJob(code="def double(x):\n    return 2 * x\n", entrypoint="double",
                       cases=(Case(args=(21,), expected=42),))


__all__ = ["INSTALL_HINT", "SMOKE_JOB", "EvaluationActor", "RaySandbox",
           "RaySandboxConfig", "RaySandboxStats", "alive_nodes", "import_ray", "ray_version"]
