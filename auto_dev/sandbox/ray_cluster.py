"""What a Ray sandbox would have on a cluster: its nodes, the actors placed on them, their slots
and the backend each actor's pool chose, with one smoke job run through every actor
(``auto-dev cluster check``).
"""

from __future__ import annotations

from dataclasses import dataclass

from auto_dev.sandbox._ray_layout import RaySandboxConfig
from auto_dev.sandbox.base import Case, SandboxJob

#: Run once through every actor: a candidate that doubles its argument.
CLUSTER_SMOKE_JOB = SandboxJob(code="def double(x):\n    return 2 * x\n", entrypoint="double",
                               cases=(Case(args=(21,), expected=42),))


@dataclass(frozen=True, slots=True)
class ActorStatus:
    """One actor: where it runs, its pool, and how its smoke job went."""

    index: int
    node_id: str
    hostname: str
    pid: int | None
    backend: str
    slots: int
    smoke_s: float | None = None
    error: str | None = None

    @property
    def healthy(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """One node of the cluster and the actors on it."""

    node_id: str
    address: str
    hostname: str
    alive: bool
    cpus: float
    memory_gb: float
    actors: tuple[ActorStatus, ...] = ()

    @property
    def slots(self) -> int:
        return sum(actor.slots for actor in self.actors)

    @property
    def backends(self) -> list[str]:
        return sorted({actor.backend for actor in self.actors})


@dataclass(frozen=True, slots=True)
class ClusterReport:
    """The whole cluster as a Ray sandbox sees it."""

    address: str
    ray_version: str
    nodes: tuple[NodeStatus, ...]
    smoke: bool

    @property
    def actors(self) -> list[ActorStatus]:
        return [actor for node in self.nodes for actor in node.actors]

    @property
    def slots(self) -> int:
        return sum(node.slots for node in self.nodes)

    @property
    def usable(self) -> bool:
        return bool(self.actors) and all(actor.healthy for actor in self.actors)


def check_cluster(config: RaySandboxConfig, *, smoke: bool = True) -> ClusterReport:
    """Start a Ray sandbox laid out by ``config``, describe every actor, run
    :data:`CLUSTER_SMOKE_JOB` through each (with ``smoke``), and close it again (blocking).

    Raises :class:`~auto_dev.SandboxUnavailableError` when Ray is missing or the cluster cannot
    be reached or host the actors.
    """
    from auto_dev.sandbox.ray import RaySandbox, ray_version

    sandbox = RaySandbox(config)
    sandbox.start_blocking()
    try:
        described = sandbox.describe_blocking()
        outcomes = (sandbox.run_on_each_actor(CLUSTER_SMOKE_JOB) if smoke
                    else [(None, None, None)] * len(described))
        nodes = sandbox.nodes()
        address = sandbox.address
    finally:
        sandbox.close()
    actors: list[ActorStatus] = []
    for info, (seconds, result, error) in zip(described, outcomes, strict=True):
        if error is None and result is not None and not result.all_passed:
            error = f"the smoke job did not pass: {result.error or result.cases}"
        actors.append(ActorStatus(
            index=int(info["actor"]), node_id=str(info.get("node_id", "")),
            hostname=str(info.get("hostname", "")), pid=info.get("pid"),
            backend=str(info.get("backend", "?")), slots=int(info.get("slots", 0)),
            smoke_s=seconds, error=info.get("error") or error))
    known = {node["node_id"] for node in nodes}
    for actor in actors:  # an actor that never said where it runs still shows up
        if actor.node_id not in known:
            known.add(actor.node_id)
            nodes.append({"node_id": actor.node_id, "address": "?", "hostname": actor.hostname,
                          "alive": False, "cpus": 0.0, "memory_gb": 0.0})
    return ClusterReport(
        address=address, ray_version=ray_version() or "?", smoke=smoke,
        nodes=tuple(NodeStatus(
            node_id=node["node_id"], address=node["address"], hostname=node["hostname"],
            alive=node["alive"], cpus=node["cpus"], memory_gb=node["memory_gb"],
            actors=tuple(a for a in actors if a.node_id == node["node_id"]))
            for node in nodes))


__all__ = ["CLUSTER_SMOKE_JOB", "ActorStatus", "ClusterReport", "NodeStatus", "check_cluster"]
