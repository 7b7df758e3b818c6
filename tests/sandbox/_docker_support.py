"""Helpers shared by the Docker sandbox tests: skip-or-fail, leftovers by label, trivial jobs."""

from __future__ import annotations

import functools
import os
import time
from typing import Any

import pytest

from auto_dev.sandbox._docker_spec import DEFAULT_IMAGE, LABEL, LABEL_POOL
from auto_dev.sandbox.base import Case, Limits, SandboxJob
from auto_dev.sandbox.factory import docker_status
from tests._services import require_service

IMAGE = os.environ.get("AUTO_DEV_SANDBOX_IMAGE") or DEFAULT_IMAGE

DOUBLE = SandboxJob(
    code="def double(x):\n    return 2 * x\n",
    entrypoint="double",
    cases=(Case(args=(21,), expected=42),),
)


@functools.cache
def _docker() -> tuple[bool, str]:
    status = docker_status(IMAGE)
    return status.usable, status.reason


def require_docker() -> None:
    """Skip unless a Docker engine and the sandbox image are here (fail in CI instead)."""
    usable, why = _docker()
    require_service("Docker", "AUTO_DEV_REQUIRE_DOCKER", usable, why)


def api() -> Any:
    import docker

    return docker.from_env(timeout=30).api


def pool_containers(pool_id: str) -> list[dict[str, Any]]:
    """Containers (running or not) labelled with this pool id."""
    client = api()
    try:
        return list(client.containers(all=True, filters={"label": f"{LABEL_POOL}={pool_id}"}))
    finally:
        client.close()


def gone(pool_id: str, timeout_s: float = 20.0) -> None:
    """Wait until no container of ``pool_id`` is left. A closed pool has asked the engine to
    remove them; on a loaded machine the engine may still be removing one ("Removal In
    Progress") for a moment, which is not a leftover."""
    deadline = time.monotonic() + timeout_s
    while (left := pool_containers(pool_id)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], left


def all_sandbox_containers() -> list[dict[str, Any]]:
    client = api()
    try:
        return list(client.containers(all=True, filters={"label": f"{LABEL}=1"}))
    finally:
        client.close()


def processes_of(uids: set[int]) -> list[int]:
    """Host pids whose real uid is one of ``uids`` (the per-container sandbox users)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as fh:
                status = fh.read()
        except OSError:
            continue
        at = status.find(b"\nUid:")
        if at >= 0 and int(status[at + 5:].split(None, 1)[0]) in uids:
            found.append(int(name))
    return found


def job(code: str, *, timeout_s: float = 1.0, expected: Any = None, has_expected: bool = False,
        entrypoint: str = "f", **limits: Any) -> SandboxJob:
    """A one-case job calling ``f()``."""
    return SandboxJob(
        code=code,
        entrypoint=entrypoint,
        cases=(Case(expected=expected, has_expected=has_expected),),
        limits=Limits(timeout_s=timeout_s, **limits),
    )


#: Lists every process in the container other than the harness (pid 1) and the case itself.
STRAY_PROCESSES = """
import os
def f():
    me = os.getpid()
    return sorted(int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1, me))
"""


@pytest.fixture
def docker_required() -> None:
    require_docker()
