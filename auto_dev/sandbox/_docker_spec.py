"""What a sandbox container is: its settings, its hardened create arguments, labels and bootstrap.

Everything here is plain data and pure functions; the docker SDK calls live in ``_docker_pool``.
Hardening is not optional: there is no setting that turns off the network ban, the read-only
root, the capability drop, no-new-privileges or the non-root user.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from typing import Any

from auto_dev._exceptions import ValidationError

DEFAULT_IMAGE = "auto-dev-sandbox:latest"
#: The container's only writable place (a tmpfs), emptied after every case.
SCRATCH_DIR = "/tmp"
#: Emptied by the harness after every case (and by the bootstrap once more before every answer):
#: the scratch tmpfs, and the (already disabled) message-queue mount.
WIPE_DIRS = (SCRATCH_DIR, "/dev/mqueue")

#: Every container we start carries this label; orphans are found by it.
LABEL = "auto-dev.sandbox"
LABEL_POOL = "auto-dev.pool"
LABEL_OWNER_PID = "auto-dev.owner-pid"
LABEL_OWNER_START = "auto-dev.owner-start"
LABEL_OWNER_HOST = "auto-dev.owner-host"

#: Per-container user ids are drawn from this range: a uid of its own per container keeps the
#: per-user RLIMIT_NPROC count (kernel-wide without user namespaces) from coupling containers, and
#: lets the harness's ``--reap-all`` kill "every process of my uid" without touching anything else.
UID_RANGE = (200_000, 1_200_000)

#: Memory the harness itself needs next to a case; a job whose ``memory_mb`` leaves less than this
#: in a pooled container runs in a one-off container sized for it instead.
HARNESS_HEADROOM_MB = 96
#: Processes next to a case's own (the harness and its bookkeeping).
HARNESS_PIDS = 8

#: Read exactly one length-prefixed frame ``{"source", "argv", "wipe"}`` from fd 0 (unbuffered,
#: so not a byte of the first job frame is consumed), make this process non-dumpable (a candidate
#: running under the same uid then cannot ptrace it or open its /proc/<pid>/mem or fds; forked
#: children inherit the flag), then run the harness source as ``__main__``; it goes on reading job
#: frames from the same stdin. Its stdout is wrapped so that every answer is preceded by emptying
#: the ``wipe`` directories: whatever a job left in the scratch tmpfs outside its case directories
#: is gone before the next job can be sent.
BOOTSTRAP = r"""
import ctypes, io, json, os, sys
if ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0) != 0:
    os.write(2, b"auto-dev bootstrap: prctl(PR_SET_DUMPABLE, 0) failed\n")
    os._exit(70)
def _take(n):
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(0, n - len(buf))
        if not chunk:
            os._exit(0)
        buf += chunk
    return bytes(buf)
_boot = json.loads(_take(int.from_bytes(_take(4), "big")))
del _take
def _remove(path):
    try:
        os.chmod(path, 0o700, follow_symlinks=False)
    except OSError:
        pass
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    _remove(entry.path)
                else:
                    os.unlink(entry.path)
        os.rmdir(path)
    except OSError:
        pass
def _wipe(dirs=tuple(_boot["wipe"])):
    for directory in dirs:
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        _remove(entry.path)
                    else:
                        try:
                            os.unlink(entry.path)
                        except OSError:
                            pass
        except OSError:
            pass
class _WipingWriter(io.BufferedWriter):
    def flush(self):
        _wipe()
        super().flush()
# Held here as well: the harness replaces sys.stdout and must not garbage-collect (close) it.
_out = sys.stdout = io.TextIOWrapper(_WipingWriter(io.FileIO(1, "wb", closefd=False)), "utf-8")
sys.argv = ["_harness.py", *_boot["argv"]]
_code = compile(_boot.pop("source"), "_harness.py", "exec")
exec(_code, {"__name__": "__main__", "__file__": "_harness.py", "__builtins__": __builtins__})
"""

@dataclass(frozen=True, slots=True)
class DockerSandboxConfig:
    """Settings of a :class:`~auto_dev.sandbox.docker.DockerSandbox` pool.

    The per-case limits come with each job (:class:`~auto_dev.sandbox.base.Limits`); these are the
    container-wide limits around them. A job that needs more memory or processes than a pooled
    container allows runs in a one-off container sized for it.
    """

    image: str = DEFAULT_IMAGE
    #: Warm containers; ``None`` means one per usable CPU (at least 2).
    pool_size: int | None = None
    #: A container is replaced after this many jobs (and at once after a crash or protocol error).
    recycle_after: int = 500
    memory_mb: int = 512
    cpus: float = 1.0
    pids_limit: int = 64
    scratch_mb: int = 64
    open_files: int = 256
    #: Idle containers are pinged this often; one that does not answer is replaced.
    health_interval_s: float = 30.0
    #: A ping (or a container start) not answered within this long counts as wedged.
    health_timeout_s: float = 5.0
    start_timeout_s: float = 30.0
    #: Slack on top of the job's own deadline (cases x timeout) before the harness counts as wedged.
    job_grace_s: float = 5.0

    def __post_init__(self) -> None:
        if not isinstance(self.image, str) or not self.image.strip():
            raise ValidationError("docker.image", "must be a non-empty image name")
        if self.pool_size is not None and not (
            isinstance(self.pool_size, int) and 1 <= self.pool_size <= 256
        ):
            raise ValidationError("docker.pool_size", "must be between 1 and 256 (or None)")
        if not (isinstance(self.recycle_after, int) and self.recycle_after >= 1):
            raise ValidationError("docker.recycle_after", "must be an integer >= 1")
        if not (isinstance(self.memory_mb, int) and 64 <= self.memory_mb <= 262_144):
            raise ValidationError("docker.memory_mb", "must be between 64 and 262144")
        if not (isinstance(self.cpus, int | float) and 0.01 <= self.cpus <= 256):
            raise ValidationError("docker.cpus", "must be between 0.01 and 256")
        if not (isinstance(self.pids_limit, int) and 16 <= self.pids_limit <= 65_536):
            raise ValidationError("docker.pids_limit", "must be between 16 and 65536")
        if not (isinstance(self.scratch_mb, int) and 1 <= self.scratch_mb <= 65_536):
            raise ValidationError("docker.scratch_mb", "must be between 1 and 65536")
        if not (isinstance(self.open_files, int) and 32 <= self.open_files <= 1_048_576):
            raise ValidationError("docker.open_files", "must be between 32 and 1048576")
        for name in ("health_interval_s", "health_timeout_s", "start_timeout_s", "job_grace_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value <= 86_400):
                raise ValidationError(f"docker.{name}", "must be a number of seconds in (0, 86400]")

    @property
    def size(self) -> int:
        """The pool size actually used."""
        if self.pool_size is not None:
            return self.pool_size
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = os.cpu_count() or 1
        return max(2, cpus)


@dataclass(frozen=True, slots=True)
class ContainerShape:
    """The resource envelope of one container (pooled ones share the config's shape)."""

    memory_mb: int
    pids_limit: int

    def fits(self, memory_mb: int, max_processes: int) -> bool:
        """Whether a job with these per-case limits can run in a container of this shape."""
        return (
            memory_mb + HARNESS_HEADROOM_MB <= self.memory_mb
            and max_processes + HARNESS_PIDS <= self.pids_limit
        )

    @classmethod
    def for_job(cls, memory_mb: int, max_processes: int, base: ContainerShape) -> ContainerShape:
        return cls(
            memory_mb=max(base.memory_mb, memory_mb + HARNESS_HEADROOM_MB),
            pids_limit=max(base.pids_limit, max_processes + HARNESS_PIDS),
        )


def process_start_ticks(pid: int) -> str:
    """The start time of ``pid`` in clock ticks since boot ("" when unknown): with the pid it
    identifies a process even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except OSError:
        return ""
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def owner_labels(pool_id: str) -> dict[str, str]:
    """Labels naming this process as the owner of a container."""
    pid = os.getpid()
    return {
        LABEL: "1",
        LABEL_POOL: pool_id,
        LABEL_OWNER_PID: str(pid),
        LABEL_OWNER_START: process_start_ticks(pid),
        LABEL_OWNER_HOST: socket.gethostname(),
    }


def is_orphan(labels: dict[str, str]) -> bool:
    """Whether a labelled container's owning process is gone (on this host).

    Containers owned by another host are never judged: that host's process may be alive.
    """
    if labels.get(LABEL_OWNER_HOST) != socket.gethostname():
        return False
    try:
        pid = int(labels.get(LABEL_OWNER_PID, ""))
    except ValueError:
        return True
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, owned by another user
    started = labels.get(LABEL_OWNER_START, "")
    return bool(started) and started != process_start_ticks(pid)


def new_uid(taken: set[int]) -> int:
    """A fresh per-container uid not in ``taken``."""
    low, high = UID_RANGE
    while True:
        uid = low + secrets.randbelow(high - low)
        if uid not in taken:
            return uid


def create_kwargs(
    api: Any,
    config: DockerSandboxConfig,
    shape: ContainerShape,
    *,
    name: str,
    uid: int,
    labels: dict[str, str],
) -> dict[str, Any]:
    """Arguments for ``APIClient.create_container``: the hardened container, with nothing of the
    host inside it (no mounts, no environment, no network)."""
    from docker.types import LogConfig, Ulimit

    tmpfs_opts = f"rw,noexec,nosuid,nodev,size={config.scratch_mb}m,nr_inodes=16384,mode=1777"
    host_config = api.create_host_config(
        network_mode="none",
        read_only=True,
        tmpfs={SCRATCH_DIR: tmpfs_opts},
        # No /dev/shm at all: one writable place fewer that could carry data between jobs.
        ipc_mode="none",
        # ...and no SysV shared memory, message queues, semaphores or POSIX message queues: they
        # outlive the process that made them and would carry data from one job to the next.
        sysctls={
            "kernel.shmmni": "0",
            "kernel.msgmni": "0",
            "kernel.sem": "0 0 0 0",
            "fs.mqueue.queues_max": "0",
        },
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        pids_limit=shape.pids_limit,
        mem_limit=f"{shape.memory_mb}m",
        memswap_limit=f"{shape.memory_mb}m",  # equal: no swap beyond the memory limit
        nano_cpus=int(config.cpus * 1e9),
        ulimits=[Ulimit(name="nofile", soft=config.open_files, hard=config.open_files)],
        # The harness is PID 1 (no docker-init): the kernel drops SIGKILL/SIGSTOP sent to a
        # namespace's init from inside it, and when the harness exits everything else dies too.
        init=False,
        auto_remove=True,
        # Frames are not logged: a flood of output would otherwise land on the host's disk.
        log_config=LogConfig(type=LogConfig.types.NONE),
        restart_policy={"Name": "no"},
        privileged=False,
    )
    return {
        "image": config.image,
        "command": ["python3", "-I", "-S", "-B", "-c", BOOTSTRAP],
        "name": name,
        "hostname": "sandbox",
        "user": f"{uid}:{uid}",
        "working_dir": SCRATCH_DIR,
        # The only variables candidates see; the host's environment never enters the container.
        "environment": {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": SCRATCH_DIR,
            "USER": "sandbox",
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        "labels": labels,
        "network_disabled": True,
        "stdin_open": True,
        # detach=False with stdin_open sets StdinOnce: when our attach connection closes (even if
        # this process is SIGKILLed), the harness reads EOF, exits and auto_remove deletes it.
        "detach": False,
        "tty": False,
        "stop_signal": "SIGKILL",
        "host_config": host_config,
    }
