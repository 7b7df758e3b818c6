"""The behaviour every :class:`auto_dev.abc.Sandbox` backend must show.

Use it by subclassing in a backend's test module::

    class TestMySandboxContract(SandboxContract):
        @pytest.fixture
        async def sandbox(self):
            async with MySandbox() as sb:
                yield sb

        async def kill_worker_during_job(self, sandbox): ...  # optional hooks below

The class name has no ``Test`` prefix, so pytest collects it only through subclasses. Attack
tests end by checking the sandbox still runs a trivial job.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from typing import Any

import pytest

from auto_dev.abc import Sandbox
from auto_dev.sandbox.base import Case, CaseStatus, Limits, SandboxJob, SandboxResult

TIGHT = Limits(timeout_s=0.5, memory_mb=128, output_bytes=4096, max_processes=8, file_size_mb=4)
CANARY_VAR = "AUTO_DEV_CONTRACT_CANARY"

ADD = "def add(a, b):\n    return a + b\n"

#: ``f("write", name)`` writes a file ``name`` into every directory the case can write to (its
#: working directory, HOME, TMPDIR, the usual temporary directories and every writable mount)
#: and returns those directories; ``f("find", name)`` returns every file called ``name`` found
#: anywhere below them.
WRITABLE_PLACES = """
import os, tempfile

def places():
    found = {os.getcwd(), os.path.expanduser('~'), tempfile.gettempdir(), '/tmp', '/var/tmp',
             '/dev/shm', '/run/lock', '/dev/mqueue'}
    try:
        with open('/proc/self/mounts') as fh:
            for line in fh:
                fields = line.split()
                if len(fields) > 3 and 'rw' in fields[3].split(','):
                    found.add(fields[1].replace('\\\\040', ' '))
    except OSError:
        pass
    return sorted(p for p in found if not p.startswith(('/proc', '/sys'))
                  and os.path.isdir(p) and os.access(p, os.W_OK))

def f(action, name):
    if action == 'write':
        written = []
        for place in places():
            try:
                with open(os.path.join(place, name), 'w') as fh:
                    fh.write('left by an earlier case')
                written.append(place)
            except OSError:
                pass
        return written
    seen = set()
    for place in places():
        for root, dirs, files in os.walk(place):
            if name in files:
                seen.add(os.path.join(root, name))
    return sorted(seen)
"""


def job(code: str, *cases: Case, entrypoint: str = "f", limits: Limits = TIGHT,
        **kwargs: Any) -> SandboxJob:
    return SandboxJob(code=code, entrypoint=entrypoint, cases=cases or (Case(),), limits=limits,
                      **kwargs)


def smoke(*args: Any) -> Case:
    """A case that passes whenever the call returns."""
    return Case(args=args, has_expected=False)


def host_processes_with(marker: str) -> list[int]:
    """Pids on this machine whose command line contains ``marker``."""
    found = []
    needle = marker.encode()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as fh:
                    if needle in fh.read():
                        found.append(int(name))
            except OSError:
                continue
    return found


class SandboxContract:
    """Contract tests; a subclass supplies the ``sandbox`` fixture (and optional hooks)."""

    # ------------------------------------------------------------------ hooks

    async def network_should_be_blocked(self, sandbox: Sandbox) -> bool:
        """Whether this backend, here, must block the network (default: always)."""
        return True

    async def contains_signals(self, sandbox: Sandbox) -> bool:
        """Whether ``kill(-1, SIGKILL)`` from a candidate can only reach the sandbox's own
        processes (default: always). A best-effort backend running candidates as the caller's
        own user cannot promise it, and the test would then kill the test runner."""
        return True

    async def kill_worker_during_job(self, sandbox: Sandbox) -> None:
        """Kill the backend's worker(s) from outside while a job runs."""
        pytest.skip(f"{type(self).__name__} has no way to kill a worker")

    # ------------------------------------------------------------------ helpers

    @pytest.fixture(autouse=True)
    def canary(self, monkeypatch: pytest.MonkeyPatch) -> str:
        """A secret planted in the host environment before any sandbox starts."""
        secret = f"canary-{secrets.token_hex(8)}"
        monkeypatch.setenv(CANARY_VAR, secret)
        return secret

    async def assert_healthy(self, sandbox: Sandbox) -> None:
        result = await sandbox.run(job(ADD, Case(args=(2, 3), expected=5), entrypoint="add"))
        assert result.all_passed, result

    async def only(self, sandbox: Sandbox, the_job: SandboxJob) -> Any:
        result = await sandbox.run(the_job)
        assert result.error is None and len(result.cases) == 1, result
        return result.cases[0]

    # ------------------------------------------------------------------ outcomes

    async def test_right_answer_is_ok(self, sandbox: Sandbox) -> None:
        """A correct function passes every case, with its output, timing and memory recorded."""
        result = await sandbox.run(job(ADD, Case(args=(1, 2), expected=3),
                                       Case(args=(), kwargs={"a": "x", "b": "y"}, expected="xy"),
                                       entrypoint="add"))
        assert isinstance(result, SandboxResult)
        assert result.backend == sandbox.name
        assert [c.status for c in result.cases] == [CaseStatus.OK, CaseStatus.OK]
        assert [c.output for c in result.cases] == [3, "xy"]
        assert [c.index for c in result.cases] == [0, 1]
        assert result.all_passed and result.pass_rate == 1.0
        assert all(c.peak_memory_kb > 0 and c.duration_s >= 0 for c in result.cases)

    async def test_wrong_answer(self, sandbox: Sandbox) -> None:
        """A wrong return value is wrong_answer and the actual output is reported."""
        case = await self.only(sandbox, job(ADD, Case(args=(2, 2), expected=5), entrypoint="add"))
        assert case.status is CaseStatus.WRONG_ANSWER
        assert case.output == 4

    async def test_exception_is_error_with_traceback(self, sandbox: Sandbox) -> None:
        """An exception is an error whose message carries the candidate's traceback."""
        code = "def f(x):\n    return helper(x)\n\ndef helper(x):\n    return 1 / x\n"
        case = await self.only(sandbox, job(code, Case(args=(0,), expected=1)))
        assert case.status is CaseStatus.ERROR
        assert "ZeroDivisionError" in case.error
        assert "helper" in case.error and "return 1 / x" in case.error

    async def test_stdout_is_captured(self, sandbox: Sandbox) -> None:
        """What the candidate prints is returned with the case."""
        code = "import sys\ndef f():\n    print('hello')\n    print('oops', file=sys.stderr)\n"
        case = await self.only(sandbox, job(code, smoke()))
        assert case.status is CaseStatus.OK
        assert "hello" in case.stdout and "oops" in case.stdout

    async def test_syntax_error_fails_every_case(self, sandbox: Sandbox) -> None:
        """Code that does not compile makes every case an error naming the syntax error."""
        result = await sandbox.run(job("def f(:\n    pass\n", smoke(1), smoke(2), smoke(3)))
        assert [c.status for c in result.cases] == [CaseStatus.ERROR] * 3
        assert all("SyntaxError" in (c.error or "") for c in result.cases)

    async def test_missing_entrypoint_is_error(self, sandbox: Sandbox) -> None:
        """An entrypoint the code does not define is an error that names it."""
        case = await self.only(sandbox, job("def g():\n    return 1\n", smoke(),
                                            entrypoint="solve"))
        assert case.status is CaseStatus.ERROR
        assert "solve" in case.error

    async def test_smoke_case_passes_when_the_call_returns(self, sandbox: Sandbox) -> None:
        """A case without an expected value passes on any return."""
        case = await self.only(sandbox, job("def f():\n    return object()\n", smoke()))
        assert case.status is CaseStatus.OK

    # ------------------------------------------------------------------ limits

    async def test_infinite_loop_times_out(self, sandbox: Sandbox) -> None:
        """A busy loop is killed at the deadline as timeout."""
        case = await self.only(sandbox, job("def f():\n    while True:\n        pass\n", smoke()))
        assert case.status is CaseStatus.TIMEOUT
        assert case.duration_s < 3
        await self.assert_healthy(sandbox)

    async def test_sleep_ignoring_sigterm_times_out(self, sandbox: Sandbox) -> None:
        """Sleeping past the deadline with SIGTERM ignored still ends as timeout."""
        code = ("import signal, time\ndef f():\n    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "    time.sleep(30)\n")
        case = await self.only(sandbox, job(code, smoke()))
        assert case.status is CaseStatus.TIMEOUT
        await self.assert_healthy(sandbox)

    async def test_memory_bomb_is_memory_exceeded(self, sandbox: Sandbox) -> None:
        """Allocating past the memory limit is memory_exceeded, gradually or at once."""
        gradual = ("def f():\n    keep = []\n    while True:\n"
                   "        keep.append(bytearray(1 << 20))\n")
        at_once = "def f():\n    return len(bytearray(1 << 34))\n"
        for code in (gradual, at_once):
            case = await self.only(sandbox, job(code, smoke(), limits=Limits(
                timeout_s=5.0, memory_mb=128, output_bytes=4096, max_processes=8)))
            assert case.status is CaseStatus.MEMORY_EXCEEDED, case
        await self.assert_healthy(sandbox)

    async def test_output_flood_is_output_exceeded(self, sandbox: Sandbox) -> None:
        """Printing without end is output_exceeded, and what was kept stays within the cap."""
        code = "def f():\n    while True:\n        print('x' * 1000)\n"
        case = await self.only(sandbox, job(code, smoke(), limits=Limits(
            timeout_s=5.0, output_bytes=4096, max_processes=8)))
        assert case.status is CaseStatus.OUTPUT_EXCEEDED
        assert len(case.stdout) <= 4096
        await self.assert_healthy(sandbox)

    async def test_huge_return_value_is_output_exceeded(self, sandbox: Sandbox) -> None:
        """A return value too big to report is output_exceeded."""
        case = await self.only(sandbox, job("def f():\n    return 'x' * 30_000_000\n", smoke(),
                                            limits=Limits(timeout_s=5.0, memory_mb=256)))
        assert case.status is CaseStatus.OUTPUT_EXCEEDED
        await self.assert_healthy(sandbox)

    @pytest.mark.parametrize("body", ["os._exit(3)", "os.kill(os.getpid(), signal.SIGKILL)",
                                      "os.abort()"])
    async def test_process_death_is_crashed(self, sandbox: Sandbox, body: str) -> None:
        """A case whose process exits or is killed before answering is crashed."""
        code = f"import os, signal\ndef f():\n    {body}\n"
        case = await self.only(sandbox, job(code, smoke()))
        assert case.status is CaseStatus.CRASHED
        await self.assert_healthy(sandbox)

    @pytest.mark.parametrize("escape", [False, True])
    async def test_fork_bomb_ends_and_the_sandbox_survives(self, sandbox: Sandbox,
                                                          escape: bool) -> None:
        """A fork bomb (also one whose children leave the process group) ends the case and
        the sandbox keeps working."""
        code = ("import os\ndef f():\n    while True:\n        try:\n            if os.fork() == 0"
                f" and {escape}:\n                os.setsid()\n        except OSError:\n"
                "            pass\n")
        case = await self.only(sandbox, job(code, smoke()))
        assert case.status in {CaseStatus.TIMEOUT, CaseStatus.ERROR, CaseStatus.CRASHED}
        await self.assert_healthy(sandbox)

    async def test_background_processes_do_not_outlive_the_case(self, sandbox: Sandbox) -> None:
        """Processes a case leaves behind (plain, new session, double-forked) are gone when the
        result comes back."""
        marker = f"auto-dev-orphan-{secrets.token_hex(6)}"
        code = (
            "import os, sys\n"
            "def spawn(tag, daemon):\n"
            "    if os.fork() == 0:\n"
            "        os.setsid()\n"
            "        if daemon and os.fork() != 0:\n"
            "            os._exit(0)\n"
            "        os.execv(sys.executable, [tag, '-c', 'import time; time.sleep(60)'])\n"
            "def f(marker):\n"
            "    spawn(marker + '-a', False)\n"
            "    spawn(marker + '-b', True)\n"
            "    import time; time.sleep(0.2)\n"
            "    return 'spawned'\n"
        )
        case = await self.only(sandbox, job(code, Case(args=(marker,), expected="spawned"),
                                            limits=Limits(timeout_s=5.0)))
        assert case.status is CaseStatus.OK, case
        assert host_processes_with(marker) == []
        await self.assert_healthy(sandbox)

    # ------------------------------------------------------------------ isolation

    async def test_host_environment_is_invisible(self, sandbox: Sandbox, canary: str) -> None:
        """A secret in the host's environment is in neither the candidate's environment nor
        any process environment it can read."""
        code = (
            "import os\n"
            "def f(secret):\n"
            "    seen = [k for k, v in os.environ.items() if secret in k + v]\n"
            "    for pid in os.listdir('/proc'):\n"
            "        for what in ('environ', 'cmdline'):\n"
            "            try:\n"
            "                with open(f'/proc/{pid}/{what}', 'rb') as fh:\n"
            "                    if secret.encode() in fh.read():\n"
            "                        seen.append(f'{pid}/{what}')\n"
            "            except OSError:\n"
            "                pass\n"
            "    return [s for s in seen if not s.endswith('cmdline')] + [\n"
            "        k for k in os.environ if k.startswith('AUTO_DEV')]\n"
        )
        assert os.environ[CANARY_VAR] == canary
        # The secret travels as an argument, so only cmdlines of the case itself show it.
        case = await self.only(sandbox, job(code, Case(args=(canary,), expected=[])))
        assert case.status is CaseStatus.OK, case
        await self.assert_healthy(sandbox)

    async def test_cwd_is_a_fresh_private_directory(self, sandbox: Sandbox) -> None:
        """The candidate's working directory is not the caller's, and starts empty."""
        code = "import os\ndef f():\n    return [os.getcwd(), os.listdir('.')]\n"
        case = await self.only(sandbox, job(code, smoke()))
        cwd, listing = case.output
        assert os.path.realpath(cwd) != os.path.realpath(os.getcwd())
        assert listing == []

    async def test_files_do_not_persist_between_jobs(self, sandbox: Sandbox) -> None:
        """Files written by one job (in its directory or in /tmp) are absent in the next."""
        name = f"persist-{secrets.token_hex(6)}"
        write = ("import os, tempfile\ndef f(name):\n"
                 "    paths = [name, os.path.join(tempfile.gettempdir(), name), '/tmp/' + name]\n"
                 "    written = 0\n    for p in paths:\n        try:\n"
                 "            open(p, 'w').write('x')\n            written += 1\n"
                 "        except OSError:\n            pass\n    return written\n")
        check = ("import os, tempfile\ndef f(name):\n    return [p for p in (name, os.path.join("
                 "tempfile.gettempdir(), name), '/tmp/' + name) if os.path.exists(p)]\n")
        for _ in range(2):
            wrote = await self.only(sandbox, job(write, smoke(name)))
            assert wrote.status is CaseStatus.OK and wrote.output >= 1
            for _ in range(3):
                seen = await self.only(sandbox, job(check, Case(args=(name,), expected=[])))
                assert seen.status is CaseStatus.OK, seen

    async def test_files_do_not_persist_between_cases(self, sandbox: Sandbox) -> None:
        """Nothing a case writes anywhere it can write (its working directory, HOME, TMPDIR,
        /tmp and every other writable mount) is there for the next case of the same job."""
        name = f"persist-{secrets.token_hex(6)}"
        result = await sandbox.run(job(
            WRITABLE_PLACES, Case(args=("write", name), has_expected=False),
            Case(args=("find", name), expected=[]), Case(args=("find", name), expected=[]),
            limits=Limits(timeout_s=10.0)))
        assert result.error is None and len(result.cases) == 3, result
        wrote = result.cases[0]
        assert wrote.status is CaseStatus.OK and wrote.output, wrote
        assert [c.status for c in result.cases[1:]] == [CaseStatus.OK] * 2, result.cases[1:]

    async def test_globals_do_not_persist_between_jobs(self, sandbox: Sandbox) -> None:
        """Module globals, imported modules and builtins mutated by one job are pristine in the
        next (and in the next case of the same job)."""
        code = ("import json, builtins\nCOUNT = [0]\ndef f():\n    COUNT[0] += 1\n"
                "    seen = (json.dumps is not None, hasattr(builtins, 'leak'))\n"
                "    json.dumps = None\n    builtins.leak = True\n    return [COUNT[0], *seen]\n")
        for _ in range(3):
            result = await sandbox.run(job(code, Case(expected=[1, True, False]),
                                           Case(expected=[1, True, False])))
            assert result.all_passed, result

    async def test_network_is_unreachable(self, sandbox: Sandbox) -> None:
        """Connections to a server on the host's loopback and to the outside both fail."""
        if not await self.network_should_be_blocked(sandbox):
            pytest.skip("this kernel does not let the backend take the network away")
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        code = ("import socket\ndef f(port):\n    out = []\n"
                "    for addr in (('127.0.0.1', port), ('1.1.1.1', 53), ('8.8.8.8', 443)):\n"
                "        try:\n            socket.create_connection(addr, timeout=0.3).close()\n"
                "            out.append('connected')\n        except OSError:\n"
                "            out.append('blocked')\n    return out\n")
        try:
            case = await self.only(sandbox, job(code, Case(args=(port,), expected=["blocked"] * 3),
                                                limits=Limits(timeout_s=5.0)))
        finally:
            server.close()
        assert case.status is CaseStatus.OK, case
        await self.assert_healthy(sandbox)

    async def test_writes_outside_scratch_fail(self, sandbox: Sandbox) -> None:
        """Writing to /etc or to the caller's directory fails and leaves nothing on the host."""
        name = f"auto-dev-probe-{secrets.token_hex(6)}"
        targets = [f"/etc/{name}", os.path.join(os.getcwd(), name)]
        code = ("def f(paths):\n    out = []\n    for p in paths:\n        try:\n"
                "            open(p, 'w').write('x')\n            out.append('written')\n"
                "        except OSError:\n            out.append('refused')\n    return out\n")
        try:
            case = await self.only(sandbox, job(code, Case(args=(targets,),
                                                           expected=["refused"] * 2)))
            assert case.status is CaseStatus.OK, case
            assert not any(os.path.exists(t) for t in targets)
            await self.assert_healthy(sandbox)
        finally:
            for target in targets:
                if os.path.exists(target):
                    os.unlink(target)

    # ------------------------------------------------------------------ comparison and flow

    async def test_json_normalisation(self, sandbox: Sandbox) -> None:
        """Tuples, generators, sets and ranges are compared as lists, dict keys as strings."""
        code = ("def f(kind):\n    return {'tuple': (1, 2), 'gen': (i for i in range(3)),\n"
                "            'set': {3, 1, 2}, 'range': range(2), 'keys': {1: (2,)}}[kind]\n")
        cases = [Case(args=("tuple",), expected=[1, 2]), Case(args=("gen",), expected=[0, 1, 2]),
                 Case(args=("set",), expected=[1, 2, 3]), Case(args=("range",), expected=[0, 1]),
                 Case(args=("keys",), expected={"1": [2]})]
        result = await sandbox.run(job(code, *cases))
        assert result.all_passed, result

    async def test_float_tolerance(self, sandbox: Sandbox) -> None:
        """Floats match within the job's tolerance and not beyond it."""
        code = "def f():\n    return 0.1 + 0.2\n"
        loose = await self.only(sandbox, job(code, Case(expected=0.3)))
        strict = await self.only(sandbox, job(code, Case(expected=0.3), float_tolerance=0.0))
        far = await self.only(sandbox, job(code, Case(expected=0.31)))
        assert loose.status is CaseStatus.OK
        assert strict.status is CaseStatus.WRONG_ANSWER
        assert far.status is CaseStatus.WRONG_ANSWER

    async def test_stop_on_first_failure_skips_the_rest(self, sandbox: Sandbox) -> None:
        """With stop_on_first_failure the cases after the first failure are not run."""
        cases = [Case(args=(1, 1), expected=2), Case(args=(1, 1), expected=3),
                 Case(args=(2, 2), expected=4)]
        stopped = await sandbox.run(job(ADD, *cases, entrypoint="add", stop_on_first_failure=True))
        assert [c.status for c in stopped.cases] == [CaseStatus.OK, CaseStatus.WRONG_ANSWER]
        assert stopped.total == 3 and stopped.passed == 1
        full = await sandbox.run(job(ADD, *cases, entrypoint="add"))
        assert len(full.cases) == 3 and full.passed == 2

    async def test_concurrent_runs_are_correct_and_ordered(self, sandbox: Sandbox) -> None:
        """Many jobs at once each get their own results, in case order."""
        async def one(n: int) -> SandboxResult:
            cases = [Case(args=(n, i), expected=n * 100 + i) for i in range(4)]
            return await sandbox.run(job("def f(n, i):\n    return n * 100 + i\n", *cases))

        results = await asyncio.gather(*(one(n) for n in range(16)))
        for n, result in enumerate(results):
            assert result.all_passed, result
            assert [c.output for c in result.cases] == [n * 100 + i for i in range(4)]

    async def test_harness_killed_mid_job_is_recovered(self, sandbox: Sandbox) -> None:
        """When the worker dies under a running job, the job is retried and still answered."""
        await self.assert_healthy(sandbox)
        code = "import time\ndef f():\n    time.sleep(0.8)\n    return 42\n"
        task = asyncio.create_task(sandbox.run(job(code, Case(expected=42),
                                                   limits=Limits(timeout_s=5.0))))
        await asyncio.sleep(0.3)
        await self.kill_worker_during_job(sandbox)
        result = await asyncio.wait_for(task, 30)
        assert result.all_passed, result
        await self.assert_healthy(sandbox)

    async def test_signals_to_the_harness_family_do_not_break_the_sandbox(
        self, sandbox: Sandbox
    ) -> None:
        """A candidate signalling its parent and every process it may reach cannot take the
        sandbox down."""
        if not await self.contains_signals(sandbox):
            pytest.skip("candidates run as the caller's user here: kill(-1) would reach us")
        code = ("import os, signal\ndef f():\n    for target in (os.getppid(), -1):\n"
                "        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):\n"
                "            try:\n                os.kill(target, sig)\n"
                "            except OSError:\n                pass\n    return 1\n")
        result = await sandbox.run(job(code, smoke()))
        assert result.error is None
        await self.assert_healthy(sandbox)


__all__ = ["ADD", "CANARY_VAR", "TIGHT", "SandboxContract", "host_processes_with", "job", "smoke"]
