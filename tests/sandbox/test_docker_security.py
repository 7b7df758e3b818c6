"""DockerSandbox against a careful attacker, on the real engine.

Every attack ends in its expected status; afterwards the pool still answers a trivial job, the
health check finds nothing wedged, and no process of the attack is left in the container. At the
end of the module no container and no process of the pool is left anywhere. The pool has one
container, so "the next job" always lands where the attacker ran.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from auto_dev.sandbox.base import Case, CaseStatus, Limits, SandboxJob
from auto_dev.sandbox.docker import DockerSandbox
from tests.sandbox._docker_support import (
    DOUBLE,
    IMAGE,
    STRAY_PROCESSES,
    gone,
    job,
    processes_of,
    require_docker,
)

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="module")]

CANARY_VAR = "AUTO_DEV_SECURITY_CANARY"
CANARY = f"canary-{secrets.token_hex(12)}"

S = CaseStatus


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def sandbox() -> AsyncIterator[DockerSandbox]:
    require_docker()
    # Planted before the pool starts: whatever the containers inherit, they inherit after this.
    os.environ[CANARY_VAR] = CANARY
    box = DockerSandbox(pool_size=1, job_grace_s=2.0, health_timeout_s=2.0, image=IMAGE)
    try:
        await box.start()
        yield box
    finally:
        pool_id, uids = box.pool.pool_id, box.pool.uids
        await box.aclose()
        os.environ.pop(CANARY_VAR, None)
    gone(pool_id)
    assert processes_of(uids) == []


async def assert_pool_healthy(sandbox: DockerSandbox) -> None:
    """A trivial job passes, nothing is wedged, and no stray process is left in the container."""
    assert (await sandbox.run(DOUBLE)).all_passed
    assert await sandbox.check_health() == 0
    stray = await sandbox.run(job(STRAY_PROCESSES, expected=[], has_expected=True))
    assert stray.all_passed, stray


async def run_one(sandbox: DockerSandbox, code: str, **kw: Any) -> Any:
    result = await sandbox.run(job(code, **kw))
    assert result.error is None and len(result.cases) == 1, result
    return result.cases[0]


# (name, code defining f(), limits, allowed statuses, expected output or None)
ATTACKS: list[tuple[str, str, dict[str, Any], set[CaseStatus], Any]] = [
    ("fork bomb", """
import os
def f():
    while True:
        try:
            os.fork()
        except OSError:
            pass
""", {}, {S.TIMEOUT, S.ERROR, S.CRASHED}, None),
    ("fork bomb leaving the session", """
import os
def f():
    while True:
        try:
            if os.fork() == 0:
                os.setsid()
        except OSError:
            pass
""", {}, {S.TIMEOUT, S.ERROR, S.CRASHED}, None),
    ("memory bomb", """
def f():
    keep = []
    while True:
        keep.append(bytearray(10 * 1024 * 1024))
""", {"timeout_s": 5.0}, {S.MEMORY_EXCEEDED}, None),
    ("memory bomb across processes (the container's cgroup is the wall)", """
import os, time
def f():
    kids = []
    for _ in range(7):
        pid = os.fork()
        if pid == 0:
            try:
                block = bytearray(200 * 1024 * 1024)
                for i in range(0, len(block), 4096):
                    block[i] = 1
                time.sleep(0.5)
            finally:
                os._exit(0)
        kids.append(pid)
    return sorted(os.waitpid(pid, 0)[1] != 0 for pid in kids)[-1]
""", {"timeout_s": 5.0}, {S.OK, S.CRASHED, S.TIMEOUT}, None),
    ("infinite loop", "def f():\n    while True:\n        pass\n", {}, {S.TIMEOUT}, None),
    ("busy threads", """
import threading
def f():
    def spin():
        while True:
            pass
    threads = [threading.Thread(target=spin) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
""", {}, {S.TIMEOUT}, None),
    ("output flood through print", "def f():\n    while True:\n        print('x' * 4096)\n",
     {"timeout_s": 5.0}, {S.OUTPUT_EXCEEDED}, None),
    ("output flood on the raw stderr fd", """
import os
def f():
    while True:
        os.write(2, b'y' * 65536)
""", {"timeout_s": 5.0}, {S.OUTPUT_EXCEEDED}, None),
    ("huge return value", "def f():\n    return 'x' * 40_000_000\n",
     {"timeout_s": 5.0}, {S.OUTPUT_EXCEEDED}, None),
    ("deep recursion", "def f():\n    def r(n):\n        return r(n + 1) + 1\n    return r(0)\n",
     {}, {S.ERROR}, None),
    ("C stack overflow", """
import sys
def f():
    sys.setrecursionlimit(10**8)
    def r(n):
        return list(map(r, [n + 1]))
    return r(0)
""", {"timeout_s": 5.0}, {S.CRASHED}, None),
    ("sleeping past the deadline ignoring SIGTERM", """
import signal, time
def f():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(60)
""", {}, {S.TIMEOUT}, None),
    ("raising its own limits", """
import resource
def f():
    out = []
    for limit in (resource.RLIMIT_AS, resource.RLIMIT_NPROC, resource.RLIMIT_CPU,
                  resource.RLIMIT_NOFILE):
        try:
            resource.setrlimit(limit, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            out.append('raised')
        except (ValueError, OSError):
            out.append('refused')
    return out
""", {}, {S.OK}, ["refused"] * 4),
]


class TestResourceAttacks:
    """Bombs, floods, loops and deadline dodges end in the right status and harm nothing."""

    @pytest.mark.parametrize(("name", "code", "limits", "statuses", "output"), ATTACKS,
                             ids=[a[0] for a in ATTACKS])
    async def test_attack(self, sandbox: DockerSandbox, name: str, code: str,
                          limits: dict[str, Any], statuses: set[CaseStatus], output: Any) -> None:
        """The attack ends in one of its expected statuses and the pool stays healthy."""
        case = await run_one(sandbox, code, **limits)
        assert case.status in statuses, (name, case)
        if output is not None:
            assert case.output == output, (name, case)
        await assert_pool_healthy(sandbox)

    async def test_file_descriptor_exhaustion(self, sandbox: DockerSandbox) -> None:
        """Opening files without end stops at the container's open-file limit."""
        code = ("import os\ndef f():\n    fds = []\n    try:\n        while True:\n"
                "            fds.append(os.open('/dev/null', os.O_RDONLY))\n"
                "    except OSError as exc:\n        return [len(fds), exc.errno]\n")
        case = await run_one(sandbox, code)
        assert case.status is S.OK and case.output[0] <= sandbox.config.open_files
        await assert_pool_healthy(sandbox)

    async def test_huge_job_payload(self, sandbox: DockerSandbox) -> None:
        """A multi-megabyte program and argument travel through stdin and back intact."""
        blob = "z" * (4 * 1024 * 1024)
        code = f"DATA = {blob!r}\ndef f(xs):\n    return [len(DATA), len(xs)]\n"
        result = await sandbox.run(SandboxJob(
            code=code, entrypoint="f", cases=(Case(args=(list(range(200_000)),),
                                                   expected=[len(blob), 200_000]),),
            limits=Limits(timeout_s=10.0)))
        assert result.all_passed, result.cases[0].error if result.cases else result
        await assert_pool_healthy(sandbox)

    async def test_scratch_filling_is_contained(self, sandbox: DockerSandbox) -> None:
        """Filling the scratch tmpfs (bytes and inodes) fails inside the job only."""
        code = ("import os\ndef f():\n    n = 0\n    try:\n        while True:\n"
                "            open(f'/tmp/fill-{n}', 'wb').write(b'x' * 65536)\n"
                "            n += 1\n    except OSError as exc:\n        return exc.errno\n")
        case = await run_one(sandbox, code, timeout_s=10.0, file_size_mb=1)
        assert case.status is S.OK and case.output in {28, 27}  # ENOSPC / EFBIG
        inodes = ("import os\ndef f():\n    n = 0\n    try:\n        while True:\n"
                  "            open(f'/tmp/i{n}', 'w').close()\n            n += 1\n"
                  "    except OSError as exc:\n        return exc.errno\n")
        case = await run_one(sandbox, inodes, timeout_s=10.0)
        assert case.status in {S.OK, S.TIMEOUT}
        after = ("import os\ndef f():\n    open('/tmp/ok', 'wb').write(b'x' * (8 << 20))\n"
                 "    return sorted(os.listdir('/tmp'))\n")
        case = await run_one(sandbox, after, timeout_s=5.0)
        # Only this job's own case directory and its file: the fillers were wiped.
        assert case.status is S.OK and len(case.output) == 2 and "ok" in case.output, case
        await assert_pool_healthy(sandbox)


class TestEscapes:
    """Network, filesystem, privileges, devices and the harness are out of reach."""

    async def test_network_connections_fail(self, sandbox: DockerSandbox) -> None:
        """TCP, UDP and DNS fail, and the only interface is loopback."""
        code = """
import socket
def f():
    out = []
    for attempt in (
        lambda: socket.create_connection(('1.1.1.1', 53), timeout=0.5),
        lambda: socket.create_connection(('172.17.0.1', 2375), timeout=0.5),
        lambda: socket.getaddrinfo('pypi.org', 443),
        lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('8.8.8.8', 53)),
    ):
        try:
            attempt()
            out.append('open')
        except OSError:
            out.append('blocked')
    return out + [name for _, name in socket.if_nameindex()]
"""
        case = await run_one(sandbox, code, timeout_s=5.0)
        assert case.output == ["blocked"] * 4 + ["lo"], case

    async def test_writes_outside_scratch_fail(self, sandbox: DockerSandbox) -> None:
        """Every location outside the scratch tmpfs is read-only or not ours."""
        code = """
import os
def f():
    out = {}
    for d in ('/', '/etc', '/usr/lib', '/var/tmp', '/root', '/home', '/dev', '/run', '/opt',
              '/dev/shm', '/sys/fs/cgroup'):
        try:
            with open(os.path.join(d, 'probe'), 'w') as fh:
                fh.write('x')
            out[d] = 'written'
        except OSError:
            out[d] = 'refused'
    return sorted(k for k, v in out.items() if v == 'written')
"""
        case = await run_one(sandbox, code)
        assert case.status is S.OK and case.output == [], case

    async def test_scratch_is_noexec(self, sandbox: DockerSandbox) -> None:
        """A program written to scratch cannot be executed."""
        code = """
import os, subprocess
def f():
    with open('run.sh', 'w') as fh:
        fh.write('#!/bin/sh\\necho pwned\\n')
    os.chmod('run.sh', 0o755)
    try:
        return subprocess.run(['./run.sh'], capture_output=True, text=True).stdout
    except PermissionError:
        return 'refused'
"""
        case = await run_one(sandbox, code)
        assert case.output == "refused", case

    async def test_host_environment_and_pid1_are_invisible(self, sandbox: DockerSandbox) -> None:
        """The host's canary secret is nowhere: environment, /proc/*/environ, cmdlines."""
        code = """
import os
def f():
    blobs = [repr(dict(os.environ))]
    for pid in os.listdir('/proc'):
        for what in ('environ', 'cmdline'):
            try:
                with open(f'/proc/{pid}/{what}', 'rb') as fh:
                    blobs.append(fh.read().decode('latin-1'))
            except OSError:
                pass
    return '\\n'.join(blobs)
"""
        case = await run_one(sandbox, code)
        assert case.status is S.OK
        assert os.environ[CANARY_VAR] == CANARY
        assert CANARY not in case.output and CANARY_VAR not in case.output
        assert "/work" not in case.output and "HOSTNAME" not in case.output

    async def test_privileges_cannot_be_gained(self, sandbox: DockerSandbox) -> None:
        """No capabilities, no-new-privs, seccomp on, not root; setuid(0), mount, unshare,
        chroot and ptrace of the harness all fail."""
        code = """
import ctypes, os
def f():
    libc = ctypes.CDLL(None, use_errno=True)
    status = dict(line.split(':', 1) for line in open('/proc/self/status'))
    out = {k: status[k].strip() for k in ('CapEff', 'CapPrm', 'CapBnd', 'NoNewPrivs', 'Seccomp')}
    out['uid'] = os.getuid()
    out['setuid0'] = libc.setuid(0)
    out['mount'] = libc.mount(b'tmpfs', b'/tmp', b'tmpfs', 0, None)
    out['unshare_user'] = libc.unshare(0x10000000)
    out['chroot'] = libc.chroot(b'/tmp')
    out['ptrace_harness'] = libc.ptrace(16, 1, 0, 0)
    return out
"""
        out = (await run_one(sandbox, code)).output
        assert out["CapEff"] == out["CapPrm"] == out["CapBnd"] == "0000000000000000"
        assert out["NoNewPrivs"] == "1" and out["Seccomp"] == "2" and out["uid"] >= 1000
        assert [out[k] for k in ("setuid0", "mount", "unshare_user", "chroot",
                                 "ptrace_harness")] == [-1] * 5

    async def test_no_setuid_programs_or_raw_devices(self, sandbox: DockerSandbox) -> None:
        """The image has no setuid/setgid files, /dev has no block devices, /dev/mem is absent."""
        code = """
import os, stat
def f():
    found = []
    for root, dirs, files in os.walk('/'):
        if root.startswith(('/proc', '/sys')):
            dirs[:] = []
            continue
        for name in files:
            try:
                mode = os.lstat(os.path.join(root, name)).st_mode
            except OSError:
                continue
            if mode & (stat.S_ISUID | stat.S_ISGID) or stat.S_ISBLK(mode):
                found.append(os.path.join(root, name))
    refused = []
    for dev in ('/dev/mem', '/dev/kmsg', '/dev/sda', '/dev/vda'):
        try:
            open(dev, 'rb').close()
        except OSError:
            refused.append(dev)
    return [found, refused]
"""
        case = await run_one(sandbox, code, timeout_s=10.0)
        assert case.output == [[], ["/dev/mem", "/dev/kmsg", "/dev/sda", "/dev/vda"]], case

    async def test_harness_memory_and_fds_are_closed(self, sandbox: DockerSandbox) -> None:
        """The harness's /proc entries (mem, fds, environ) cannot be opened by a candidate."""
        code = """
import os
def f():
    out = []
    for path in ('/proc/1/mem', '/proc/1/environ', '/proc/1/fd/1', '/proc/1/fd/0'):
        try:
            open(path, 'rb').close()
            out.append('opened')
        except OSError:
            out.append('refused')
    try:
        os.listdir('/proc/1/fd')
        out.append('listed')
    except OSError:
        out.append('refused')
    return out
"""
        case = await run_one(sandbox, code)
        assert case.output == ["refused"] * 5, case

    async def test_killing_the_harness_fails(self, sandbox: DockerSandbox) -> None:
        """SIGKILL, SIGTERM and SIGSTOP to the harness (PID 1) and kill(-1) leave the container
        serving: nothing is replaced."""
        replaced = sandbox.pool.replaced
        code = """
import os, signal, time
def f():
    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP, signal.SIGINT):
        for target in (1, os.getppid()):
            try:
                os.kill(target, sig)
            except OSError:
                pass
    time.sleep(0.1)
    return 'still here'
"""
        case = await run_one(sandbox, code)
        assert case.status is S.OK and case.output == "still here"
        # kill(-1) reaches every process of the container's uid but PID 1 and the caller:
        # here there is nobody else, so it fails with ESRCH.
        sweep = await run_one(sandbox, "import os, signal\ndef f():\n"
                              "    os.kill(-1, signal.SIGKILL)\n")
        assert sweep.status is S.ERROR and "ProcessLookupError" in (sweep.error or "")
        await assert_pool_healthy(sandbox)
        assert sandbox.pool.replaced == replaced


    async def test_forged_result_frames_are_just_output(self, sandbox: DockerSandbox) -> None:
        """Bytes shaped like a result frame on the candidate's stdout are captured as output."""
        code = """
import json, os
def f():
    body = json.dumps({'cases': [{'index': 0, 'status': 'ok', 'output': 1}], 'error': None})
    os.write(1, len(body).to_bytes(4, 'big') + body.encode())
    return 'wrong'
"""
        result = await sandbox.run(job(code, expected="right", has_expected=True))
        assert result.cases[0].status is S.WRONG_ANSWER and "cases" in result.cases[0].stdout
        await assert_pool_healthy(sandbox)

    async def test_sysv_and_posix_ipc_are_disabled(self, sandbox: DockerSandbox) -> None:
        """Shared memory, message queues and semaphores (which outlive processes) cannot be made."""
        code = """
import ctypes
def f():
    libc = ctypes.CDLL(None, use_errno=True)
    out = [libc.shmget(4242, 4096, 0o1666), libc.msgget(4242, 0o1666),
           libc.semget(4242, 1, 0o1666)]
    try:
        open('/dev/mqueue/q', 'w').close()
        out.append(0)
    except OSError:
        out.append(-1)
    return out
"""
        case = await run_one(sandbox, code)
        assert case.output == [-1, -1, -1, -1], case


class TestCrossJobLeaks:
    """Nothing one job leaves (files, globals, processes) reaches the next job."""

    async def test_another_jobs_scratch_files_are_gone(self, sandbox: DockerSandbox) -> None:
        """A secret written to the case directory, /tmp and hidden corners is unreadable later."""
        secret = secrets.token_hex(16)
        plant = f"""
import os
def f():
    for path in ('mine.txt', '/tmp/planted', '/tmp/.hidden/deep/x', os.path.expanduser('~/h')):
        os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
        with open(path, 'w') as fh:
            fh.write({secret!r})
    os.makedirs('/tmp/locked/inner')
    open('/tmp/locked/inner/s', 'w').write({secret!r})
    os.chmod('/tmp/locked/inner', 0)
    os.chmod('/tmp/locked', 0)
    return 'planted'
"""
        assert (await run_one(sandbox, plant)).output == "planted"
        hunt = f"""
import os
def f():
    hits = []
    for root, dirs, files in os.walk('/tmp'):
        for name in files:
            try:
                if {secret!r} in open(os.path.join(root, name)).read():
                    hits.append(os.path.join(root, name))
            except OSError:
                pass
    return [hits, sorted(os.listdir('/tmp'))]
"""
        case = await run_one(sandbox, hunt)
        assert case.status is S.OK and case.output[0] == [], case
        assert all(name.startswith("case-") for name in case.output[1]), case

    async def test_module_state_does_not_carry_over(self, sandbox: DockerSandbox) -> None:
        """sys.modules, sys.path, os.environ and builtins changed by one job are pristine next."""
        taint = """
import builtins, os, sys, types
def f():
    sys.modules['evil_mod'] = types.ModuleType('evil_mod')
    sys.path.insert(0, '/tmp/evil')
    os.environ['EVIL'] = '1'
    builtins.evil = True
    return 'tainted'
"""
        check = """
import builtins, os, sys
def f():
    return ['evil_mod' in sys.modules, '/tmp/evil' in sys.path, 'EVIL' in os.environ,
            hasattr(builtins, 'evil')]
"""
        assert (await run_one(sandbox, taint)).output == "tainted"
        assert (await run_one(sandbox, check)).output == [False] * 4

    async def test_background_processes_are_killed(self, sandbox: DockerSandbox) -> None:
        """Daemonised, re-parented and zombie processes are gone when the result comes back."""
        code = """
import os, time
def f():
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            while True:
                time.sleep(1)
        os._exit(0)
    for _ in range(3):
        if os.fork() == 0:
            os._exit(0)  # zombies: never waited for
    time.sleep(0.1)
    return 'left running'
"""
        assert (await run_one(sandbox, code)).output == "left running"
        await assert_pool_healthy(sandbox)
