"""The harness: its pure helpers (normalise, outputs_match) and its wire protocol, spoken to a real
harness process."""

from __future__ import annotations

import contextlib
import enum
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auto_dev.sandbox import _harness
from auto_dev.sandbox._harness import normalise, outputs_match
from tests.sandbox._lifecycle_support import ENDLESS, GRACE_S, alive, processes_named, wait_until

IS_ROOT = os.geteuid() == 0
#: Root runs the harness as nobody in its own namespaces (never --reap-all: other tests may run
#: as nobody at the same time).
ROOT_FLAGS = ["--uid", "65534", "--gid", "65534", "--pid-ns", "--private-tmp", "--unshare-net"]

scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.floats(
    allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(max_size=4), inner, max_size=4), max_leaves=20)
python_values = st.recursive(
    scalars | st.binary(max_size=4) | st.builds(range, st.integers(-3, 3), st.integers(-3, 5)),
    lambda inner: (st.lists(inner, max_size=4) | st.lists(inner, max_size=4).map(tuple)
                   | st.frozensets(st.integers() | st.text(max_size=3), max_size=4)
                   | st.sets(st.integers(), max_size=4)
                   | st.dictionaries(st.integers() | st.text(max_size=3) | st.booleans(), inner,
                                     max_size=4)),
    max_leaves=20)


class Colour(enum.IntEnum):
    RED = 1


class Thing:
    pass


class TestNormalise:
    """normalise() turns return values into plain JSON data."""

    @given(json_values)
    def test_json_values_are_unchanged(self, value: Any) -> None:
        """Plain JSON data comes back as it went in."""
        assert json.dumps(normalise(value)) == json.dumps(value)

    @given(python_values)
    def test_result_is_json_and_idempotent(self, value: Any) -> None:
        """Whatever goes in, JSON comes out, and normalising twice changes nothing."""
        once = normalise(value)
        assert json.loads(json.dumps(once)) == once
        assert normalise(once) == once

    @given(st.lists(json_values, max_size=5))
    def test_sequences_and_iterators_become_lists(self, items: list[Any]) -> None:
        """Tuples, generators and iterators normalise like the list of their items."""
        expected = normalise(items)
        assert normalise(tuple(items)) == expected
        assert normalise(x for x in items) == expected
        assert normalise(iter(items)) == expected

    @given(st.sets(st.integers() | st.text(max_size=3), max_size=6))
    def test_sets_become_sorted_lists_regardless_of_order(self, items: set[Any]) -> None:
        """Sets become lists in an order that depends only on their content."""
        out = normalise(items)
        assert sorted(map(json.dumps, out)) == sorted(json.dumps(x) for x in items)
        assert out == normalise(set(reversed(list(items))))
        if all(isinstance(x, int) for x in items):
            assert out == sorted(items)

    @given(st.dictionaries(st.integers() | st.booleans() | st.none() | st.floats(
        allow_nan=False, allow_infinity=False) | st.text(max_size=3), st.integers(), max_size=5))
    def test_dict_keys_are_spelled_as_json_spells_them(self, value: dict[Any, int]) -> None:
        """Non-string keys become the strings json.dumps would write."""
        assert normalise(value) == json.loads(json.dumps(value))

    def test_other_values(self) -> None:
        """Numbers, bytes, ranges, views, enums and arbitrary objects get sensible JSON."""
        assert normalise(Decimal("1.5")) == 1.5 and normalise(Fraction(1, 4)) == 0.25
        assert normalise(Colour.RED) == 1 and type(normalise(Colour.RED)) is int
        assert normalise(True) is True
        assert normalise(b"ab") == [97, 98] and normalise(range(3)) == [0, 1, 2]
        assert normalise({"a": 1}.keys()) == ["a"] and normalise({"a": 1}.items()) == [["a", 1]]
        assert normalise(Thing()) == "<tests.sandbox.test_harness.Thing object>"
        assert normalise(1 + 2j) == "(1+2j)"
        assert math.isnan(normalise(float("nan")))

    def test_deep_or_cyclic_values_are_refused(self) -> None:
        """Values nested beyond 400 levels, or containing themselves, raise ValueError."""
        cyclic: list[Any] = []
        cyclic.append(cyclic)
        deep: list[Any] = []
        for _ in range(1000):
            deep = [deep]
        for value in (cyclic, deep):
            with pytest.raises(ValueError, match="nested too deeply"):
                normalise(value)


class TestOutputsMatch:
    """outputs_match() compares normalised values, floats within a tolerance."""

    @given(json_values)
    def test_reflexive(self, value: Any) -> None:
        """Every value matches itself at zero tolerance."""
        assert outputs_match(value, value, 0.0)

    @given(json_values, json_values, st.sampled_from([0.0, 1e-9, 1e-3]))
    def test_symmetric(self, a: Any, b: Any, tolerance: float) -> None:
        """Swapping the sides never changes the verdict."""
        assert outputs_match(a, b, tolerance) == outputs_match(b, a, tolerance)

    @given(st.floats(-1e9, 1e9), st.sampled_from([1e-9, 1e-6, 1e-3]))
    def test_float_tolerance_boundary(self, x: float, tolerance: float) -> None:
        """A float matches within half the tolerance (scaled beyond 1) and not at twice it."""
        scale = max(1.0, abs(x))
        assert outputs_match(x + 0.5 * tolerance * scale, x, tolerance)
        assert not outputs_match(x + 2 * tolerance * scale, x, tolerance)

    @given(st.integers())
    def test_integers_are_exact_and_booleans_are_not_numbers(self, n: int) -> None:
        """Integers compare exactly whatever the tolerance; booleans only match booleans."""
        assert not outputs_match(n, n + 1, 0.5)
        assert outputs_match(n, float(n), 1e-6) or abs(n) > 2**53
        assert not outputs_match(True, 1, 1e-6) and not outputs_match(0, False, 1e-6)

    def test_structures(self) -> None:
        """Lists match tuples element-wise, dicts need the same keys, NaN matches NaN."""
        assert outputs_match([1, (2.0, 3)], [1, [2.0000000001, 3]], 1e-6)
        assert not outputs_match([1, 2], [1, 2, 3], 1e-6)
        assert not outputs_match({"a": 1}, {"a": 1, "b": 2}, 1e-6)
        assert outputs_match({"a": [0.1 + 0.2]}, {"a": [0.3]}, 1e-9)
        assert outputs_match(float("nan"), float("nan"), 0.0)
        assert not outputs_match("1", 1, 1e-6) and not outputs_match(None, [], 1e-6)


def descendants(root: int) -> list[int]:
    """Live (non-zombie) processes below ``root``."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(name)] = int(fields[1])
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, ppid in parents.items() if ppid in frontier]
        found += children
        frontier = children
    return found


class Harness:
    """A real harness process spoken to over its stdin/stdout."""

    def __init__(self, flags: list[str], command: list[str] | None = None) -> None:
        base = command or [sys.executable, "-I", "-S", _harness.__file__]
        self.proc = subprocess.Popen([*base, *flags], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={},
                                     cwd="/")

    def send(self, body: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(len(body).to_bytes(4, "big") + body)
        self.proc.stdin.flush()

    def ask(self, frame: Any) -> dict[str, Any]:
        self.send(frame if isinstance(frame, bytes) else json.dumps(frame).encode())
        assert self.proc.stdout is not None
        size = int.from_bytes(self.proc.stdout.read(4), "big")
        return json.loads(self.proc.stdout.read(size))

    def run(self, code: str, *cases: dict[str, Any], **extra: Any) -> dict[str, Any]:
        limits = {"timeout_s": 2.0, "memory_mb": 128, "output_bytes": 4096, "max_processes": 8,
                  "file_size_mb": 4}
        limits.update(extra.pop("limits", {}))
        return self.ask({"code": code, "entrypoint": "f", "cases": list(cases), "limits": limits,
                         **extra})

    def close(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.proc.wait(timeout=30)


@pytest.fixture
def harness() -> Any:
    h = Harness(ROOT_FLAGS if IS_ROOT else ["--pid-ns", "--private-tmp", "--unshare-net"])
    yield h
    if h.proc.poll() is None:
        h.close()


class TestProtocol:
    """Frames in, frames out: the harness as every backend talks to it."""

    def test_info_frame_describes_the_isolation(self, harness: Harness) -> None:
        """An info frame is answered with the uid and the isolation actually in place."""
        reply = harness.ask({"info": True})
        assert reply["cases"] == [] and reply["error"] is None
        info = reply["info"]
        assert {"uid", "namespaces", "network_isolated", "reap", "nproc", "problems"} <= set(info)
        if IS_ROOT:
            assert info["uid"] == 65534 and info["pid_namespace"] and info["network_isolated"]

    @pytest.mark.parametrize(("frame", "field"), [
        (b"not json", "job.frame"),
        (b"[1, 2]", "job.frame"),
        (b"", "job.frame"),
        ({"code": 1, "entrypoint": "f", "cases": []}, "job.code"),
        ({"code": "", "entrypoint": "no good", "cases": []}, "job.entrypoint"),
        ({"code": "", "entrypoint": "f", "cases": {}}, "job.cases"),
        ({"code": "", "entrypoint": "f", "cases": [{"args": {}}]}, "job.cases[0].args"),
        ({"code": "", "entrypoint": "f", "cases": [{"kwargs": []}]}, "job.cases[0].kwargs"),
        ({"code": "", "entrypoint": "f", "cases": [], "limits": {"timeout_s": -1}},
         "job.limits.timeout_s"),
        ({"code": "", "entrypoint": "f", "cases": [], "float_tolerance": -1},
         "job.float_tolerance"),
    ])
    def test_malformed_jobs_get_an_error_naming_the_field(self, harness: Harness, frame: Any,
                                                          field: str) -> None:
        """A bad job frame is answered with a job error naming the field; serving goes on."""
        reply = harness.ask(frame)
        assert reply["cases"] == [] and reply["error"].startswith(field + ":")
        ok = harness.run("def f(x):\n    return x\n", {"args": [1], "expected": 1})
        assert ok["cases"][0]["status"] == "ok"

    def test_jobs_are_served_until_eof(self, harness: Harness) -> None:
        """Several jobs run one after another; end of input ends the harness cleanly."""
        for n in range(3):
            reply = harness.run("def f(x):\n    return x * 2\n", {"args": [n], "expected": 2 * n},
                                {"args": [n], "expected": -1})
            assert [c["status"] for c in reply["cases"]] == ["ok", "wrong_answer"]
            assert [c["index"] for c in reply["cases"]] == [0, 1]
        assert harness.close() == 0

    def test_expected_answers_are_out_of_the_candidates_reach(self, harness: Harness) -> None:
        """A candidate searching its frames and the heap cannot find the expected answers."""
        code = textwrap.dedent("""
            import gc, re, sys
            def f(prefix):
                pattern = re.compile(re.escape(prefix) + '[0-9a-f]+')
                found = set()
                frame = sys._getframe()
                while frame is not None:
                    found.update(pattern.findall(repr(frame.f_locals)))
                    frame = frame.f_back
                for obj in gc.get_objects():
                    if isinstance(obj, (list, dict, tuple)):
                        try:
                            found.update(pattern.findall(repr(obj)))
                        except Exception:
                            pass
                return sorted(found)
        """)
        prefix = "SECRET-EXPECTED-"
        reply = harness.run(code, {"args": [prefix], "expected": prefix + "7f3a"},
                            {"args": [prefix], "expected": [prefix + "9b1c"]})
        for case in reply["cases"]:
            assert case["status"] == "wrong_answer", case
            assert case["output"] == [], case

    @pytest.mark.parametrize("forged", [
        "b'[' * 100_000 + b']' * 100_000",
        "b'{\"kind\": \"ok\", \"output\": ' + b'[' * 600 + b']' * 600 + b'}'",
        "b'\\xff\\xfe not json'",
        "b'{\"kind\": \"ok\"' * 10",
    ])
    def test_forged_results_are_crashes(self, harness: Harness, forged: str) -> None:
        """Bytes a candidate writes on the result pipe itself (absurdly nested, not JSON) make
        its case crashed, and the harness serves on."""
        code = f"import os\ndef f():\n    os.write(3, {forged})\n    os._exit(0)\n"
        reply = harness.run(code, {"args": [], "expected": 1})
        assert reply["cases"][0]["status"] == "crashed", reply
        ok = harness.run("def f():\n    return 1\n", {"args": [], "expected": 1})
        assert ok["cases"][0]["status"] == "ok"

    def test_death_by_unnamed_signal_is_crashed(self, harness: Harness) -> None:
        """A real-time signal (which has no name) still gives a crashed case."""
        code = "import os, signal\ndef f():\n    os.kill(os.getpid(), signal.SIGRTMIN + 2)\n"
        reply = harness.run(code, {"args": []})
        assert reply["cases"][0]["status"] == "crashed"
        assert "signal" in reply["cases"][0]["error"]

    def test_candidate_holds_only_its_own_descriptors(self, harness: Harness) -> None:
        """Inside a case only stdin, the capture pipe and the result pipe are open."""
        code = ("import os\ndef f():\n"
                "    return sorted(int(fd) for fd in os.listdir('/proc/self/fd'))\n")
        reply = harness.run(code, {"args": []})
        fds = reply["cases"][0]["output"]
        assert set(fds) - {0, 1, 2, 3} <= {max(fds)}  # plus the one listdir itself opened

    def test_runs_when_exec_as_main_by_a_bootstrap(self) -> None:
        """The harness source exec'd as __main__ (as a container bootstrap does) serves jobs."""
        boot = ("import sys\nsys.argv = ['_harness.py', *sys.argv[1:]]\n"
                f"src = open({_harness.__file__!r}).read()\n"
                "exec(compile(src, '_harness.py', 'exec'), {'__name__': '__main__'})\n")
        h = Harness(ROOT_FLAGS if IS_ROOT else [], command=[sys.executable, "-I", "-S", "-c",
                                                             boot])
        try:
            reply = h.run("def f(x):\n    return [x, x]\n", {"args": [3], "expected": [3, 3]})
            assert reply["cases"][0]["status"] == "ok"
        finally:
            assert h.close() == 0

    @pytest.mark.skipif(not IS_ROOT, reason="only root can be refused")
    @pytest.mark.parametrize("flags", [[], ["--reap-all", "--allow-root"]])
    def test_root_is_refused_unless_dropped(self, flags: list[str]) -> None:
        """As root, the harness refuses to serve without a uid to drop to, and never reaps as
        root."""
        h = Harness(flags)
        _, err = h.proc.communicate(timeout=30)
        assert h.proc.returncode == 2
        assert b"root" in err


#: A harness in its own PID namespace (the wrapper outside watches the host for the namespace's
#: init), and one without (it watches the host itself).
WATCH_MODES = {
    "pid-namespace": ROOT_FLAGS if IS_ROOT else ["--pid-ns", "--private-tmp", "--unshare-net"],
    "plain": ["--uid", "65534", "--gid", "65534"] if IS_ROOT else [],
}

#: Starts a harness (flags in argv[1] as JSON) whose stdin pipe is also held open by another
#: process (as a host that leaked the fd into a child would), waits until it serves, optionally
#: sends it a job (argv[2]), prints the harness's and the holder's pids and waits to be killed.
LEAKY_HOST = textwrap.dedent(f"""
    import json, subprocess, sys, time
    harness = subprocess.Popen([sys.executable, "-I", "-S", {_harness.__file__!r},
                                *json.loads(sys.argv[1])], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, env={{}}, cwd="/", start_new_session=True)
    holder = subprocess.Popen(["sleep", "600"], pass_fds=[harness.stdin.fileno()],
                              start_new_session=True)
    def send(body):
        harness.stdin.write(len(body).to_bytes(4, "big") + body)
        harness.stdin.flush()
    send(b'{{"info": true}}')
    harness.stdout.read(int.from_bytes(harness.stdout.read(4), "big"))
    if sys.argv[2]:
        send(sys.argv[2].encode())
    print(harness.pid, holder.pid, flush=True)
    time.sleep(600)
""")


def _endless_job(tag: str) -> dict[str, Any]:
    return {"code": ENDLESS, "entrypoint": "f", "cases": [{"args": [tag]}],
            "limits": {"timeout_s": 120.0, "memory_mb": 128, "max_processes": 8}}


class TestHostGone:
    """The harness never outlives its host: a hang-up or the death of its parent ends it, and the
    case it was running, even in the middle of a job."""

    @pytest.mark.parametrize("mode", sorted(WATCH_MODES))
    def test_hangup_mid_job_kills_the_case_and_exits(self, mode: str) -> None:
        """Closing the harness's stdin while a case runs kills the case and ends the harness."""
        tag = f"adhup{os.urandom(4).hex()}"
        h = Harness(WATCH_MODES[mode])
        try:
            h.send(json.dumps(_endless_job(tag)).encode())
            wait_until(lambda: processes_named(tag), 30, "the case to start")
            assert h.proc.stdin is not None
            h.proc.stdin.close()
            wait_until(lambda: h.proc.poll() is not None and not processes_named(tag), GRACE_S,
                       "the harness and its case to exit")
        finally:
            if h.proc.poll() is None:
                h.proc.kill()
                h.proc.wait()

    @pytest.mark.parametrize("busy", [False, True], ids=["idle", "mid-job"])
    @pytest.mark.parametrize("mode", sorted(WATCH_MODES))
    def test_parent_death_ends_it_even_when_stdin_stays_open(self, mode: str, busy: bool) -> None:
        """When the host dies but its stdin pipe lives on in another process (no hang-up), the
        harness notices its parent is gone and exits, killing a running case."""
        tag = f"adppid{os.urandom(4).hex()}"
        job = json.dumps(_endless_job(tag)) if busy else ""
        host = subprocess.Popen([sys.executable, "-c", LEAKY_HOST, json.dumps(WATCH_MODES[mode]),
                                 job], stdout=subprocess.PIPE, text=True)
        assert host.stdout is not None
        harness_pid, holder_pid = map(int, host.stdout.readline().split())
        try:
            if busy:
                wait_until(lambda: processes_named(tag), 30, "the case to start")
            host.kill()
            host.wait()
            assert alive(holder_pid), "the stdin pipe must stay open for this test"
            wait_until(lambda: not alive(harness_pid) and not processes_named(tag), GRACE_S,
                       "the harness and its case to exit")
        finally:
            for pid in (harness_pid, holder_pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not (IS_ROOT and shutil.which("setpriv") and os.access("/usr/bin/python3",
                                                                            os.X_OK)),
                    reason="needs root (to become nobody), setpriv and a system python")
class TestUnprivilegedHarness:
    """A harness started as an ordinary user isolates what the kernel lets it."""

    def command(self) -> list[str]:
        return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
                "/usr/bin/python3", "-I", "-S", _harness.__file__]

    def test_user_namespace_or_a_stated_problem(self) -> None:
        """Without root, it gets its namespaces from a user namespace or says why not."""
        h = Harness(["--pid-ns", "--private-tmp", "--unshare-net"], command=self.command())
        try:
            info = h.ask({"info": True})["info"]
            assert info["uid"] == 65534
            if "user" in info["namespaces"]:
                assert info["network_isolated"] and info["pid_namespace"]
                assert info["nproc"] == "exact"
            else:
                assert any("user namespace" in p for p in info["problems"])
        finally:
            h.close()

    def test_fork_bomb_is_bounded_without_namespaces(self) -> None:
        """With no namespaces at all, the estimated RLIMIT_NPROC and the sweep still contain a
        fork bomb."""
        h = Harness([], command=self.command())
        try:
            info = h.ask({"info": True})["info"]
            assert info["nproc"] == "estimated" and info["reap"] == "descendants"
            code = ("import os\ndef f():\n    while True:\n        try:\n            if os.fork()"
                    " == 0:\n                os.setsid()\n        except OSError:\n"
                    "            pass\n")
            reply = h.run(code, {"args": []}, limits={"timeout_s": 0.5})
            assert reply["cases"][0]["status"] in {"timeout", "error", "crashed"}
            ok = h.run("def f():\n    return 1\n", {"args": [], "expected": 1})
            assert ok["cases"][0]["status"] == "ok"
            # The harness is a child subreaper: a survivor would still be its descendant.
            assert descendants(h.proc.pid) == []
        finally:
            h.close()


@settings(max_examples=50)
@given(st.lists(st.integers(-5, 5), max_size=6))
def test_parse_job_accepts_what_the_host_sends(args: list[int]) -> None:
    """Every frame SandboxJob.to_wire() produces parses, with the same cases and limits."""
    from auto_dev.sandbox.base import Case, SandboxJob

    job = SandboxJob(code="def f(*a):\n    return a\n", entrypoint="f",
                     cases=(Case(args=tuple(args), expected=args), Case(has_expected=False)))
    parsed = _harness.parse_job(json.dumps(job.to_wire()).encode())
    assert parsed is not None
    assert parsed.cases == [[args, {}, args, True], [[], {}, None, False]]
    assert parsed.limits["timeout_s"] == job.limits.timeout_s
    assert parsed.limits["cpu_s"] == job.limits.to_wire()["cpu_s"]
