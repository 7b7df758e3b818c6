"""Harness worker processes for :class:`~auto_dev.sandbox.process.ProcessSandbox`.

One :class:`HarnessWorker` is one ``_harness.py`` fork server: spawned with a cleared environment
in a private directory, spoken to in length-prefixed JSON frames over its stdin/stdout. Frame I/O
runs on whichever asyncio loop calls :meth:`HarnessWorker.request` (the fds are simply registered
for the duration of the call), so a pool outlives any one event loop.

When the host runs as root each worker gets a uid/gid of its own from a reserved range
(:data:`UID_BASE` + slot, no passwd entry needed). A slot is claimed with an ``flock`` on a lock
file, so concurrent sandboxes (in this or other processes) never share a uid: the harness's
``--reap-all`` kills every process of its uid, which is only safe while the uid is dedicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import select
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auto_dev._exceptions import SandboxUnavailableError

#: First uid/gid of the range reserved for sandbox workers (high and otherwise unused).
UID_BASE = 0x7A000000
UID_SLOTS = 4096
_LOCK_DIRS = ("/run/auto-dev-sandbox", "/tmp/auto-dev-sandbox-uids")
_MAX_REPLY = 512 * 1024 * 1024
_STDERR_TAIL = 4000
HARNESS = Path(__file__).with_name("_harness.py")


class WorkerGone(Exception):
    """The worker cannot serve any more: it exited, wedged, or broke the protocol."""


@dataclass
class Identity:
    """A dedicated uid/gid, held for as long as the lock file descriptor is open."""

    uid: int
    gid: int
    lock_fd: int


def _lock_dir() -> str:
    for directory in _LOCK_DIRS:
        try:
            os.makedirs(directory, 0o700, exist_ok=True)
            if os.stat(directory).st_uid == 0:
                return directory
        except OSError:
            continue
    raise SandboxUnavailableError("no root-owned directory for the sandbox uid locks")


def uid_processes(uid: int) -> list[int]:
    """Pids whose real uid is ``uid`` (read from /proc/<pid>/status, which never lies)."""
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
        if at >= 0 and int(status[at + 5 :].split(None, 1)[0]) == uid:
            found.append(int(name))
    return found


def kill_uid_processes(uid: int, timeout_s: float = 3.0) -> bool:
    """SIGKILL every process running as ``uid`` until none is left; False if some survived."""
    deadline = time.monotonic() + timeout_s
    while True:
        pids = uid_processes(uid)
        if not pids:
            return True
        if time.monotonic() > deadline:
            return False
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.005)


def claim_identity(start: int = 0) -> Identity:
    """Lock the first free uid slot at or after ``start`` (wrapping); root only."""
    directory = _lock_dir()
    for step in range(UID_SLOTS):
        uid = UID_BASE + (start + step) % UID_SLOTS
        fd = os.open(f"{directory}/{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        # Free slot: anything still running as this uid is a leftover of a crashed owner.
        if kill_uid_processes(uid):
            return Identity(uid, uid, fd)
        os.close(fd)
    raise SandboxUnavailableError(f"all {UID_SLOTS} sandbox uids are in use")


def release_identity(identity: Identity) -> None:
    kill_uid_processes(identity.uid)
    with contextlib.suppress(OSError):
        os.close(identity.lock_fd)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _FrameReader:
    """Collects one reply frame from a non-blocking fd into a future."""

    def __init__(self, fd: int, future: asyncio.Future[bytes]) -> None:
        self.fd, self.future = fd, future
        self.buf = bytearray()
        self.size = -1

    def readable(self) -> None:
        if self.future.done():
            return
        while True:
            try:
                chunk = os.read(self.fd, 1 << 20)
            except BlockingIOError:
                return
            except OSError as exc:
                self.future.set_exception(WorkerGone(f"reading from the harness failed: {exc}"))
                return
            if not chunk:
                self.future.set_exception(WorkerGone("the harness exited"))
                return
            self.buf += chunk
            if self.size < 0 and len(self.buf) >= 4:
                self.size = int.from_bytes(self.buf[:4], "big")
                if self.size > _MAX_REPLY:
                    self.future.set_exception(WorkerGone("the harness sent an oversized frame"))
                    return
            if self.size >= 0 and len(self.buf) >= 4 + self.size:
                if len(self.buf) > 4 + self.size:
                    self.future.set_exception(WorkerGone("the harness sent unrequested bytes"))
                else:
                    self.future.set_result(bytes(self.buf[4:]))
                return

    def expire(self, timeout: float) -> None:
        if not self.future.done():
            self.future.set_exception(WorkerGone(f"the harness did not answer within {timeout} s"))


class HarnessWorker:
    """One running harness. Not thread-safe: one request at a time (the pool guarantees it)."""

    def __init__(self, proc: subprocess.Popen[bytes], workdir: Path,
                 identity: Identity | None) -> None:
        self.proc = proc
        self.workdir = workdir
        self.identity = identity
        self.info: dict[str, Any] = {}
        self.jobs = 0
        #: Owned by the pool that started this worker (opaque here).
        self.pool_state: Any = None
        self._close_lock = threading.Lock()
        self._closed = False
        assert proc.stdin is not None and proc.stdout is not None
        self._in = proc.stdin.fileno()
        self._out = proc.stdout.fileno()
        os.set_blocking(self._in, False)
        os.set_blocking(self._out, False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    def spawn(cls, command: list[str], workdir: Path, identity: Identity | None,
              timeout_s: float) -> HarnessWorker:
        """Start a harness and wait for its answer to an info frame (blocking: run in a thread)."""
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin"}  # nothing of the host's environment
        with open(workdir / "harness.log", "wb") as log_file:
            proc = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file,
                env=env, cwd=workdir, close_fds=True, start_new_session=True,
            )
        worker = cls(proc, workdir, identity)
        try:
            worker.info = worker._handshake(timeout_s)
        except BaseException:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            for stream in (proc.stdin, proc.stdout):
                with contextlib.suppress(OSError):
                    stream.close()  # type: ignore[union-attr]
            raise  # the caller releases the uid and the directory
        return worker

    def _handshake(self, timeout_s: float) -> dict[str, Any]:
        import json

        body = b'{"info": true}'
        os.set_blocking(self._in, True)
        try:
            os.write(self._in, len(body).to_bytes(4, "big") + body)
        except OSError as exc:
            raise SandboxUnavailableError(f"the harness did not start: {self.stderr_tail()}"
                                          ) from exc
        finally:
            os.set_blocking(self._in, False)
        deadline = time.monotonic() + timeout_s
        buf = bytearray()
        while len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[:4], "big"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._out], [], [], remaining)[0]:
                raise SandboxUnavailableError(f"the harness did not answer within {timeout_s} s")
            try:
                chunk = os.read(self._out, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                self.proc.wait()
                raise SandboxUnavailableError(
                    f"the harness exited with status {self.proc.returncode}: "
                    f"{self.stderr_tail() or 'no message'}"
                )
            buf += chunk
        reply = json.loads(bytes(buf[4:]))
        if not isinstance(reply, dict) or not isinstance(reply.get("info"), dict):
            raise SandboxUnavailableError("the harness answered the handshake with garbage")
        return reply["info"]

    async def request(self, payload: bytes, timeout_s: float) -> bytes:
        """Send one job frame and return the reply frame's body; raises :class:`WorkerGone`."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        reader = _FrameReader(self._out, future)
        loop.add_reader(self._out, reader.readable)
        timer = loop.call_later(timeout_s, reader.expire, timeout_s)
        try:
            await self._write(loop, len(payload).to_bytes(4, "big") + payload)
            result = await future
            self.jobs += 1
            return result
        finally:
            timer.cancel()
            loop.remove_reader(self._out)

    async def _write(self, loop: asyncio.AbstractEventLoop, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._in, view):]
            except BlockingIOError:
                ready: asyncio.Future[None] = loop.create_future()
                loop.add_writer(self._in, _settle, ready)
                try:
                    await ready
                finally:
                    loop.remove_writer(self._in)
            except OSError as exc:
                raise WorkerGone(f"writing to the harness failed: {exc}") from exc

    def stderr_tail(self) -> str:
        try:
            with open(self.workdir / "harness.log", "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - _STDERR_TAIL))
                return fh.read().decode(errors="replace").strip()
        except OSError:
            return ""

    def kill(self) -> None:
        """Stop the harness now. In a PID namespace its wrapper SIGKILLs the namespace's init and
        the kernel kills everything in it; otherwise the harness sweeps its case and exits."""
        with contextlib.suppress(OSError):
            self.proc.terminate()

    def close(self, grace_s: float = 1.0) -> None:
        """Shut down (blocking): EOF first, then SIGTERM, then SIGKILL; free uid and directory.

        Idempotent and safe from several threads: later callers wait for the first to finish.
        """
        with self._close_lock:
            if not self._closed:
                self._close(grace_s)
                self._closed = True

    def _close(self, grace_s: float) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # type: ignore[union-attr]
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                with contextlib.suppress(OSError):
                    self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=grace_s)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(OSError):
            self.proc.stdout.close()  # type: ignore[union-attr]
        if self.identity is not None:
            release_identity(self.identity)
            self.identity = None
        shutil.rmtree(self.workdir, ignore_errors=True)
