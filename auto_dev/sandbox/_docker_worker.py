"""One sandbox container and the framed conversation with the harness inside it.

A worker is created, attached (the docker attach socket, hijacked HTTP, multiplexed stdout and
stderr) and started in a worker thread; from then on all traffic is asyncio on a duplicate of the
attach socket. The first frame on the container's stdin is the bootstrap frame carrying the
harness source, then job frames follow, each answered by one result frame on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from auto_dev._exceptions import SandboxError, SandboxUnavailableError
from auto_dev.sandbox._docker_spec import WIPE_DIRS, ContainerShape

log = structlog.get_logger(__name__)

_STDOUT, _STDERR = 1, 2
_STDERR_TAIL = 4096
#: The attach stream interleaves stdout and stderr in chunks with this 8-byte header.
_MUX_HEADER = 8


class WorkerLost(Exception):
    """The container can no longer serve: it died, wedged or broke the protocol.

    ``protocol`` says the harness answered something that is not the protocol (as opposed to
    the stream ending or the deadline passing).
    """

    def __init__(self, reason: str, *, protocol: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.protocol = protocol


def encode(payload: dict[str, Any]) -> bytes:
    """A frame body: compact JSON (raises TypeError/ValueError for what JSON cannot hold)."""
    return json.dumps(payload, separators=(",", ":")).encode()


def docker_error(exc: BaseException, doing: str, image: str | None = None) -> SandboxError:
    """Map a docker SDK / transport error to our error tree (the only place that knows them)."""
    import docker.errors
    import requests.exceptions

    if isinstance(exc, docker.errors.ImageNotFound) or (
        isinstance(exc, docker.errors.NotFound) and image and "No such image" in str(exc)
    ):
        return SandboxUnavailableError(
            f"the sandbox image {image!r} does not exist; build it with `auto-dev sandbox "
            "build-image`"
        )
    if isinstance(exc, requests.exceptions.ConnectionError | ConnectionError | FileNotFoundError):
        return SandboxUnavailableError(f"the Docker engine is not reachable while {doing}: {exc}")
    if isinstance(exc, docker.errors.DockerException) and "Error while fetching server API" in str(
        exc
    ):
        return SandboxUnavailableError(f"the Docker engine is not reachable while {doing}: {exc}")
    if isinstance(exc, docker.errors.APIError):
        return SandboxError(f"Docker refused {doing}: {exc.explanation or exc}")
    return SandboxError(f"Docker failed {doing}: {exc}")


def _plain_socket(attached: Any) -> socket.socket:
    """A duplicate of the socket under the SDK's attach object, usable by asyncio."""
    raw = getattr(attached, "_sock", attached)
    if isinstance(raw, ssl.SSLSocket) or not isinstance(raw, socket.socket):
        raise SandboxUnavailableError(
            "DockerSandbox streams over a unix-socket or plain-TCP Docker host; this host's "
            f"attach stream is a {type(raw).__name__} (use the local socket, or ssh tunnel it)"
        )
    dup = raw.dup()
    dup.setblocking(False)
    with contextlib.suppress(OSError):
        attached.close()
    return dup


@dataclass(eq=False)
class Worker:
    """A running container whose harness answers job frames."""

    container_id: str
    name: str
    uid: int
    shape: ContainerShape
    one_off: bool = False
    jobs: int = 0
    started_at: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    info: dict[str, Any] = field(default_factory=dict)
    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None
    _stdout: bytearray = field(default_factory=bytearray)
    _stderr: bytearray = field(default_factory=bytearray)
    lost: str | None = None

    @property
    def short_id(self) -> str:
        return self.container_id[:12]

    @property
    def stderr_tail(self) -> str:
        return bytes(self._stderr).decode("utf-8", "replace")

    async def connect(self, sock: socket.socket) -> None:
        self._reader, self._writer = await asyncio.open_connection(sock=sock, limit=1 << 20)

    async def bootstrap(self, source: str, argv: list[str], timeout: float) -> dict[str, Any]:
        """Send the harness source, then ask it to describe itself (proves it serves)."""
        await self._send({"source": source, "argv": argv, "wipe": list(WIPE_DIRS)})
        reply = await self.request({"info": True}, timeout=timeout, max_reply=1 << 20)
        info = reply.get("info")
        if not isinstance(info, dict):
            raise WorkerLost("the harness did not answer the info request", protocol=True)
        self.info = info
        return info

    async def request(
        self, payload: dict[str, Any] | bytes, *, timeout: float, max_reply: int
    ) -> dict[str, Any]:
        """Send one frame (a JSON object, or its encoding) and wait for its answer.

        Raises :class:`WorkerLost`.
        """
        if self.lost is not None:
            raise WorkerLost(self.lost)
        try:
            async with asyncio.timeout(timeout):
                await self._send(payload)
                head = await self._take(4)
                size = int.from_bytes(head, "big")
                if size > max_reply:
                    raise WorkerLost(
                        f"the harness announced a {size}-byte answer (limit {max_reply})",
                        protocol=True,
                    )
                body = await self._take(size)
        except TimeoutError:
            self.lost = f"no answer within {timeout:.1f} s (the harness is wedged)"
            raise WorkerLost(self.lost) from None
        except WorkerLost as exc:
            self.lost = exc.reason
            raise
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            self.lost = "the container exited" + self._stderr_note()
            raise WorkerLost(self.lost) from exc
        try:
            reply = json.loads(body)
        except ValueError as exc:
            self.lost = f"the harness answered non-JSON ({exc})"
            raise WorkerLost(self.lost, protocol=True) from None
        if not isinstance(reply, dict):
            self.lost = "the harness answered a non-object frame"
            raise WorkerLost(self.lost, protocol=True)
        self.last_used = time.monotonic()
        return reply

    async def _send(self, payload: dict[str, Any] | bytes) -> None:
        assert self._writer is not None
        body = payload if isinstance(payload, bytes) else encode(payload)
        try:
            self._writer.write(len(body).to_bytes(4, "big") + body)
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            self.lost = "the container closed its stdin" + self._stderr_note()
            raise WorkerLost(self.lost) from exc

    async def _take(self, n: int) -> bytes:
        """Exactly ``n`` bytes of the container's stdout, demultiplexing the attach stream."""
        assert self._reader is not None
        while len(self._stdout) < n:
            head = await self._reader.readexactly(_MUX_HEADER)
            size = int.from_bytes(head[4:8], "big")
            chunk = await self._reader.readexactly(size) if size else b""
            if head[0] == _STDERR:
                # Only the tail matters: it explains a harness that dies.
                self._stderr += chunk
                del self._stderr[:-_STDERR_TAIL]
            elif head[0] == _STDOUT:
                self._stdout += chunk
            else:
                raise WorkerLost(f"unknown attach stream type {head[0]}", protocol=True)
        out = bytes(self._stdout[:n])
        del self._stdout[:n]
        return out

    def _stderr_note(self) -> str:
        tail = self.stderr_tail.strip()
        return f" (stderr: {tail[-500:]})" if tail else ""

    def close_stream(self) -> None:
        """Drop our end of the attach stream (the harness then reads EOF on stdin)."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None


def create_attach_start(api: Any, kwargs: dict[str, Any]) -> tuple[str, socket.socket]:
    """Create, attach and start one container (blocking: run it in a thread).

    Attaching before starting means not a byte of the harness's output can be missed. On any
    failure the half-made container is removed.
    """
    import docker.errors

    image = kwargs.get("image")
    try:
        created = api.create_container(**kwargs)
    except (docker.errors.DockerException, OSError) as exc:
        raise docker_error(exc, "creating a sandbox container", image) from exc
    container_id = str(created["Id"])
    try:
        attached = api.attach_socket(
            container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        )
        sock = _plain_socket(attached)
        try:
            api.start(container_id)
        except BaseException:
            sock.close()
            raise
    except BaseException as exc:
        with contextlib.suppress(Exception):
            api.remove_container(container_id, force=True)
        if isinstance(exc, SandboxError):
            raise
        if isinstance(exc, docker.errors.DockerException | OSError):
            raise docker_error(exc, "starting a sandbox container", image) from exc
        raise
    return container_id, sock


def remove_containers(api: Any, container_ids: list[str]) -> list[str]:
    """Force-remove containers (blocking); returns the ids that could not be removed."""
    import docker.errors

    failed = []
    for container_id in container_ids:
        try:
            api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass  # already gone (auto_remove got there first)
        except docker.errors.APIError as exc:
            # "removal already in progress" means auto_remove is on it; anything else is real.
            if "already in progress" not in str(exc):
                failed.append(container_id)
                log.warning("sandbox.container_remove_failed", container=container_id[:12],
                            error=str(exc))
        except Exception as exc:  # transport errors: the engine went away
            failed.append(container_id)
            log.warning("sandbox.container_remove_failed", container=container_id[:12],
                        error=str(exc))
    return failed
