"""What the Ray backend needs besides Ray itself: its settings, the actors' bookkeeping, where
a job goes next, and the result of a job that every actor it landed on died under.

Nothing here imports Ray (only :mod:`auto_dev.sandbox.ray` does, lazily), so these parts are
tested without a cluster.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from auto_dev._exceptions import ValidationError
from auto_dev.sandbox.base import CaseResult, CaseStatus, SandboxJob, SandboxResult

#: Backends an actor may run on its node (never ``ray`` itself).
NODE_SANDBOXES: tuple[str, ...] = ("auto", "docker", "process")

_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>\d{1,5})$")


def check_ray_address(value: str | None, *, field_name: str = "ray.address") -> str | None:
    """``None`` (connect to a cluster started on this machine, else start a local one),
    ``auto``, ``local``, ``host:port`` (the head's GCS) or ``ray://host:port`` (Ray Client).
    Anything else is a :class:`ValidationError` naming ``field_name``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(field_name, f"must be a string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        return None
    if text in ("auto", "local"):
        return text
    rest = text.removeprefix("ray://")
    match = _HOST_PORT.match(rest)
    if match is None or not 1 <= int(match.group("port")) <= 65535:
        raise ValidationError(
            field_name, f"must be auto, local, host:port or ray://host:port, got {value!r}")
    return text


@dataclass(frozen=True, slots=True)
class RaySandboxConfig:
    """How the Ray backend lays out its actors.

    ``actors=None`` puts one actor on every alive node, pinned there while the node lives, with
    ``slots_per_actor`` warm workers (default: the node's CPUs). ``actors=N`` spreads N actors
    over the nodes with ``slots_per_actor`` workers each (default: the cluster's CPUs divided
    by N, at least 1). ``node_sandbox`` is the pool each actor runs on its node: ``auto`` (Docker
    where the node has an engine and the image, else processes), ``docker`` or ``process``. A job
    whose actor dies is run again on another actor, at most ``max_tries`` times in all.
    ``start_timeout_s`` bounds the actors' start, ``connect_timeout_s`` the first answer of
    the head at ``address``.
    """

    address: str | None = None
    actors: int | None = None
    slots_per_actor: int | None = None
    node_sandbox: str = "auto"
    image: str | None = None
    require_containers: bool = False
    private_paths: tuple[str, ...] = ()
    max_tries: int = 3
    actor_cpus: float = 0.0
    start_timeout_s: float = 120.0
    connect_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", check_ray_address(self.address))
        for name, upper in (("actors", 4096), ("slots_per_actor", 512)):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or not 1 <= value <= upper):
                raise ValidationError(f"ray.{name}", f"must be an integer between 1 and {upper}")
        if self.node_sandbox not in NODE_SANDBOXES:
            raise ValidationError("ray.node_sandbox",
                                  f"must be one of {', '.join(NODE_SANDBOXES)}, "
                                  f"got {self.node_sandbox!r}")
        if self.require_containers and self.node_sandbox == "process":
            raise ValidationError("ray.node_sandbox", "containers are required, but the actors "
                                  "would run the process sandbox")
        if not isinstance(self.max_tries, int) or not 1 <= self.max_tries <= 20:
            raise ValidationError("ray.max_tries", "must be an integer between 1 and 20")
        if not (isinstance(self.actor_cpus, int | float) and 0 <= self.actor_cpus <= 1024):
            raise ValidationError("ray.actor_cpus", "must be a number between 0 and 1024")
        for name in ("start_timeout_s", "connect_timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and not isinstance(value, bool) and value > 0):
                raise ValidationError(f"ray.{name}", "must be a positive number of seconds")
        object.__setattr__(self, "private_paths", tuple(str(p) for p in self.private_paths))


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """An alive node of the cluster as the layout sees it."""

    node_id: str
    address: str
    hostname: str
    cpus: float


@dataclass(frozen=True, slots=True)
class ActorPlan:
    """One actor to start: on ``node_id`` (``None``: wherever SPREAD puts it), with ``slots``."""

    slots: int
    node_id: str | None


def plan_actors(config: RaySandboxConfig, nodes: Sequence[NodeSpec]) -> list[ActorPlan]:
    """The actors ``config`` asks for on a cluster of ``nodes``."""
    if not nodes:
        raise ValidationError("ray.address", "the Ray cluster has no alive node")
    if config.actors is None:
        return [ActorPlan(slots=config.slots_per_actor or max(1, int(node.cpus)),
                          node_id=node.node_id) for node in nodes]
    total_cpus = sum(node.cpus for node in nodes)
    slots = config.slots_per_actor or max(1, int(total_cpus) // config.actors)
    return [ActorPlan(slots=slots, node_id=None) for _ in range(config.actors)]


@dataclass(slots=True)
class ActorSlot:
    """One actor of the backend: its current Ray handle (replaced when the actor dies), how many
    of its slots are busy, and where it runs (learnt from the actor itself)."""

    index: int
    plan: ActorPlan
    handle: Any = None
    generation: int = 0
    busy: int = 0
    jobs_done: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def free(self) -> int:
        return self.plan.slots - self.busy


def choose_actor(actors: Sequence[ActorSlot], avoid: set[int]) -> ActorSlot | None:
    """The actor a job goes to next: among those with a free slot, one the job has not died on
    if there is such, the least loaded (busy share), then the one that did the fewest jobs, so
    that jobs spread over actors instead of filling the first. ``None``: every slot is busy."""
    free = [a for a in actors if a.free > 0]
    fresh = [a for a in free if a.index not in avoid]
    pool = fresh or free
    if not pool:
        return None
    return min(pool, key=lambda a: (a.busy / a.plan.slots, a.jobs_done, a.index))


def crashed_result(job: SandboxJob, reason: str, duration_s: float, backend: str
                   ) -> SandboxResult:
    """Every case ``crashed`` (only the first with ``stop_on_first_failure``, as the harness
    would have stopped there): what a job gets when every actor it landed on died under it."""
    count = 1 if job.stop_on_first_failure else len(job.cases)
    cases = tuple(CaseResult(index=i, status=CaseStatus.CRASHED, error=reason)
                  for i in range(count))
    return SandboxResult(backend=backend, cases=cases, total=len(job.cases),
                         duration_s=duration_s)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def short_error(exc: BaseException | object) -> str:
    """One line of at most about 300 characters. Ray's errors carry the remote traceback: of
    those, the summary (up to its first comma) and the exception line at the end are kept."""
    text = _ANSI.sub("", str(exc)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and any(line.startswith('File "') for line in lines):
        text = f"{lines[0].split(',', 1)[0]}: {lines[-1]}"
    else:
        text = " ".join(text.split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."


@dataclass(frozen=True, slots=True)
class RaySandboxStats:
    """What the backend did so far. ``jobs`` counts each job once, however often it ran;
    ``attempts`` counts what was sent to actors (``jobs`` plus the retries of lost ones)."""

    jobs: int
    attempts: int
    retried: int
    crashed: int
    actors_replaced: int
    in_flight: int
    waiting: int
    slots: int
    most_in_flight: int


__all__ = [
    "NODE_SANDBOXES",
    "ActorPlan",
    "ActorSlot",
    "NodeSpec",
    "RaySandboxConfig",
    "RaySandboxStats",
    "check_ray_address",
    "choose_actor",
    "crashed_result",
    "plan_actors",
    "short_error",
]
