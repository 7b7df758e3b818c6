"""Choosing a sandbox backend: ``auto`` (the default), ``docker``, ``process`` or ``ray``.

``auto`` uses Docker when an engine is reachable and the sandbox image exists, otherwise the
process sandbox, and says which it chose and why (in the log, and in :class:`SandboxChoice`).
A tenant that requires containers (``require_containers=True``) never falls back: a missing engine
or image is then a :class:`~auto_dev.SandboxUnavailableError` that says what to fix.

The mode comes from the argument, else the ``AUTO_DEV_SANDBOX`` environment variable, else
``auto``. ``ray`` evaluates on a Ray cluster (``AUTO_DEV_RAY_ADDRESS``) whose actors each run one
of the other backends on their node; it is never chosen by ``auto``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from auto_dev._exceptions import SandboxError, SandboxUnavailableError, ValidationError
from auto_dev.abc import Sandbox
from auto_dev.sandbox._docker_spec import DEFAULT_IMAGE

log = structlog.get_logger(__name__)

Mode = Literal["auto", "docker", "process", "ray"]
MODES: tuple[str, ...] = ("auto", "docker", "process", "ray")
ENV_MODE = "AUTO_DEV_SANDBOX"
ENV_IMAGE = "AUTO_DEV_SANDBOX_IMAGE"
ENV_RAY_ADDRESS = "AUTO_DEV_RAY_ADDRESS"
_PROBE_TIMEOUT_S = 5


@dataclass(frozen=True, slots=True)
class SandboxChoice:
    """The sandbox :func:`create_sandbox` built, which backend it is and why it was chosen."""

    sandbox: Sandbox
    backend: str
    reason: str

    def __iter__(self) -> Any:  # allows ``sandbox, reason = create_sandbox()``
        return iter((self.sandbox, self.reason))


@dataclass(frozen=True, slots=True)
class BackendStatus:
    """Whether one backend can run here, and why (or why not)."""

    backend: str
    usable: bool
    reason: str
    details: dict[str, str] = field(default_factory=dict)


def resolve_mode(mode: str | None) -> Mode:
    """The effective mode: the argument, else ``$AUTO_DEV_SANDBOX``, else ``auto``."""
    field_name = "sandbox"
    if mode is None:
        mode = os.environ.get(ENV_MODE) or "auto"
        field_name = ENV_MODE
    value = mode.strip().lower() if isinstance(mode, str) else mode
    if value not in MODES:
        raise ValidationError(field_name, f"must be one of {', '.join(MODES)}, got {mode!r}")
    return value  # type: ignore[return-value]


def resolve_image(image: str | None) -> str:
    return image or os.environ.get(ENV_IMAGE) or DEFAULT_IMAGE


def docker_status(image: str | None = None) -> BackendStatus:
    """Is a Docker engine reachable, and does the sandbox image exist? (Blocking, a few ms.)"""
    image = resolve_image(image)
    try:
        import docker
        import docker.errors
    except ImportError:  # pragma: no cover - docker is a dependency
        return BackendStatus("docker", False, "the docker Python SDK is not installed")
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=_PROBE_TIMEOUT_S)
    except Exception as exc:
        return BackendStatus("docker", False,
                             f"no Docker engine reachable at {host}: {_short(exc)}", {"host": host})
    try:
        try:
            version = client.api.version()
        except Exception as exc:
            return BackendStatus("docker", False,
                                 f"the Docker engine at {host} does not answer: {_short(exc)}",
                                 {"host": host})
        details = {"host": host, "engine": str(version.get("Version", "?")), "image": image}
        try:
            found = client.api.inspect_image(image)
        except docker.errors.ImageNotFound:
            return BackendStatus(
                "docker", False,
                f"the Docker engine {details['engine']} is reachable but the image {image!r} is "
                "missing (build it with `auto-dev sandbox build-image`)", details)
        except Exception as exc:
            return BackendStatus("docker", False,
                                 f"cannot inspect the image {image!r}: {_short(exc)}", details)
        details["image_id"] = str(found.get("Id", ""))[7:19]
        labels = (found.get("Config") or {}).get("Labels") or {}
        if labels.get("auto-dev.sandbox.source"):
            details["image_source"] = labels["auto-dev.sandbox.source"]
        return BackendStatus(
            "docker", True,
            f"Docker engine {details['engine']} reachable and image {image!r} present", details)
    finally:
        client.close()


def process_status() -> BackendStatus:
    """The process sandbox runs wherever Python runs; say which isolation the host allows."""
    details = {"python": sys.version.split()[0], "root": str(os.geteuid() == 0)}
    try:
        with open("/proc/sys/kernel/unprivileged_userns_clone") as fh:
            details["unprivileged_userns"] = fh.read().strip()
    except OSError:
        pass
    return BackendStatus(
        "process", True,
        "always available: the harness runs in a local subprocess (no container isolation)",
        details,
    )


def create_sandbox(
    mode: str | None = None,
    *,
    require_containers: bool = False,
    image: str | None = None,
    workers: int | None = None,
    private_paths: Sequence[str] = (),
    ray_address: str | None = None,
    ray_actors: int | None = None,
    ray_node_sandbox: str = "auto",
    **kwargs: Any,
) -> SandboxChoice:
    """Build the sandbox the mode asks for (see the module docstring).

    ``workers`` sizes the pool of either backend (with ``ray``: each actor's pool); other
    keyword arguments go to the backend's constructor (``DockerSandboxConfig`` fields for
    Docker). Containers and Ray actors start lazily, on the first job (or on
    ``await sandbox.start()``). ``private_paths`` are host directories (the database's, the
    config file's) that the process backend hides from candidates besides the working directory
    and home; containers see no host files at all. ``ray_address`` (default:
    ``$AUTO_DEV_RAY_ADDRESS``), ``ray_actors`` and ``ray_node_sandbox`` lay out the Ray backend.
    """
    if resolve_mode(mode) == "ray":
        box = _ray(ray_address, ray_actors, ray_node_sandbox, workers, resolve_image(image),
                   require_containers, private_paths)
        return _choose(box, "ray",
                       f"{ENV_MODE}=ray asks for evaluation on a Ray cluster "
                       f"({ray_address or os.environ.get(ENV_RAY_ADDRESS) or 'local'})")
    if private_paths:
        hidden = [os.getcwd(), os.path.expanduser("~"), *private_paths]
        kwargs = {**kwargs, "_hide_paths": list(dict.fromkeys(hidden))}
    chosen = resolve_mode(mode)
    image = resolve_image(image)
    if chosen == "process":
        if require_containers:
            raise SandboxUnavailableError(
                "this tenant requires containers, but the sandbox mode is 'process' "
                f"(set {ENV_MODE}=docker or auto)"
            )
        return _choose(_process(workers, kwargs), "process",
                       f"{ENV_MODE}=process asks for the process sandbox")
    status = docker_status(image)
    if status.usable:
        why = f"{status.reason} ({'required by the tenant' if require_containers else chosen})"
        return _choose(_docker(image, workers, kwargs), "docker", why)
    if chosen == "docker" or require_containers:
        who = "this tenant requires containers" if require_containers else f"{ENV_MODE}=docker"
        raise SandboxUnavailableError(f"{who}, but {status.reason}")
    return _choose(_process(workers, kwargs), "process",
                   f"falling back to the process sandbox: {status.reason}")


def check_backends(image: str | None = None, *, smoke: bool = False) -> list[BackendStatus]:
    """The status of every backend, plus what the current mode would choose
    (``backend="selected"``).

    With ``smoke=True`` each usable backend also runs one trivial job (this starts a container),
    so "usable" means "just ran a candidate". Blocking; call it outside an event loop.
    """
    image = resolve_image(image)
    statuses = [docker_status(image), process_status()]
    if smoke:
        statuses = [_smoke(s, image) if s.usable else s for s in statuses]
    return [*statuses, _selection(statuses[0])]


def _selection(docker: BackendStatus) -> BackendStatus:
    """What the current mode (``$AUTO_DEV_SANDBOX``) would do with this Docker status."""
    try:
        mode = resolve_mode(None)
    except ValidationError as exc:
        return BackendStatus("selected", False, str(exc))
    if mode == "ray":
        installed = importlib.util.find_spec("ray") is not None
        where = os.environ.get(ENV_RAY_ADDRESS) or "local"
        return BackendStatus(
            "selected", installed,
            f"ray ({ENV_MODE}=ray, cluster {where}): `auto-dev cluster check` shows its nodes"
            if installed else f"none: {ENV_MODE}=ray but Ray is not installed "
            '(pip install "auto-dev[ray]")', {"mode": mode})
    if mode == "process":
        return BackendStatus("selected", True, f"process ({ENV_MODE}=process)", {"mode": mode})
    if docker.usable:
        return BackendStatus("selected", True, f"docker ({mode}): {docker.reason}", {"mode": mode})
    if mode == "docker":
        return BackendStatus("selected", False, f"none: {ENV_MODE}=docker but {docker.reason}",
                             {"mode": mode})
    return BackendStatus("selected", True, f"process (auto fallback): {docker.reason}",
                         {"mode": mode})


# ----------------------------------------------------------------------------- internals


def _choose(sandbox: Sandbox, backend: str, reason: str) -> SandboxChoice:
    log.info("sandbox.selected", backend=backend, reason=reason)
    return SandboxChoice(sandbox=sandbox, backend=backend, reason=reason)


def _docker(image: str, workers: int | None, kwargs: dict[str, Any]) -> Sandbox:
    from auto_dev.sandbox.docker import DockerSandbox, DockerSandboxConfig

    kwargs = {k: v for k, v in kwargs.items() if k != "_hide_paths"}  # no host files in there
    return DockerSandbox(DockerSandboxConfig(image=image, pool_size=workers, **kwargs))


def _ray(address: str | None, actors: int | None, node_sandbox: str, workers: int | None,
         image: str, require_containers: bool, private_paths: Sequence[str]) -> Sandbox:
    """The Ray backend; Ray itself is imported when it starts, but must be installed now."""
    if importlib.util.find_spec("ray") is None:
        raise SandboxUnavailableError(
            f'{ENV_MODE}=ray, but Ray is not installed (pip install "auto-dev[ray]")')
    from auto_dev.sandbox.ray import RaySandbox, RaySandboxConfig

    if require_containers and node_sandbox == "auto":
        node_sandbox = "docker"  # a tenant that requires containers never gets processes
    return RaySandbox(RaySandboxConfig(
        address=address if address is not None else os.environ.get(ENV_RAY_ADDRESS),
        actors=actors, slots_per_actor=workers, node_sandbox=node_sandbox, image=image,
        require_containers=require_containers, private_paths=tuple(private_paths)))


def _process(workers: int | None, kwargs: dict[str, Any]) -> Sandbox:
    from auto_dev.sandbox.process import ProcessSandbox

    kwargs = dict(kwargs)
    hidden = kwargs.pop("_hide_paths", None)
    if hidden is not None:
        kwargs.setdefault("hide_paths", hidden)
    if workers is not None:
        kwargs["workers"] = workers
    return ProcessSandbox(**kwargs)


def _smoke(status: BackendStatus, image: str) -> BackendStatus:
    """Run one trivial job on the backend; the status then reports what really happened."""
    from auto_dev.sandbox.base import Case, SandboxJob

    job = SandboxJob(code="def double(x):\n    return 2 * x\n", entrypoint="double",
                     cases=(Case(args=(21,), expected=42),))

    async def run() -> tuple[str, float]:
        sandbox = (_docker(image, 1, {}) if status.backend == "docker" else _process(1, {}))
        try:
            started = time.perf_counter()
            result = await sandbox.run(job)
            elapsed = time.perf_counter() - started
        finally:
            await sandbox.aclose()
        if not result.all_passed:
            case = result.cases[0] if result.cases else None
            raise SandboxError(f"the smoke job did not pass: {result.error or case}")
        return result.backend, elapsed

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise SandboxError("check_backends(smoke=True) must be called outside an event loop")
    try:
        _, elapsed = asyncio.run(run())
    except Exception as exc:
        return BackendStatus(status.backend, False, f"{status.reason}, but a smoke job failed: "
                             f"{_short(exc)}", status.details)
    details = {**status.details, "smoke_job_s": f"{elapsed:.3f}"}
    return BackendStatus(status.backend, True, f"{status.reason}; a smoke job passed", details)


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."
