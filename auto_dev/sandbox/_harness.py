"""auto-dev's sandbox harness: a stdlib-only fork server (wire protocol: ``sandbox/base.py``).

Runs as ``python3 -I -S _harness.py [flags]`` or with its source exec'd as ``__main__`` (this file
must stay one self-contained, stdlib-only module). It reads job frames on fd 0 (stdin) and
answers on ``sys.stdout.buffer``. Every case runs in a freshly forked child (own session, private
temporary cwd, rlimits, cleared environment, output captured through a capped pipe); the parent
only supervises: it never compiles or executes candidate code and never unpickles anything.

A frame ``{"info": true}`` (an addition to the protocol) is answered with
``{"cases": [], "error": null, "info": {...}}`` describing the isolation actually achieved.

Flags (every isolation step is best effort except the uid drop, which is fatal when it fails):
  --uid N --gid N   drop to this dedicated uid/gid after setup (when started as root)
  --unshare-net     own network namespace (unprivileged: CLONE_NEWUSER|CLONE_NEWNET)
  --pid-ns          own PID namespace with the harness as its init: candidates cannot signal the
                    harness, and the kernel kills every candidate process when the harness exits
  --private-tmp     private tmpfs on /tmp, /var/tmp, /dev/shm, /run/lock, emptied after every case
  --hide PATH       cover PATH (e.g. the host's working directory) with an empty read-only tmpfs
  --scratch DIR     parent of case directories when there is no private /tmp
  --reap-all        after every case kill every process of our uid but ourselves: only for a uid
                    dedicated to this harness (a per-worker uid, or the container user)
  --allow-root      serve even though candidates would run as root (never the default)
  --preload a,b     stdlib modules imported once before serving (children inherit them warm)
  --wipe DIR        also empty DIR after every case (a shared scratch such as a container's /tmp)

The harness never outlives its host: it exits when stdin reaches end of file or hangs up (also
in the middle of a job, killing the running case first) and when its parent process dies (a
parent-death signal, and ``getppid`` checked while waiting), so a killed host leaves nothing.

Outcomes: the result of a call is normalised (:func:`normalise`) and JSON-encoded in the child;
the parent compares it with the expected value (:func:`outputs_match`). A return value whose JSON
exceeds ``max(output_bytes, 1 MiB)`` is ``output_exceeded``, as is captured stdout/stderr beyond
``output_bytes``.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import resource
import select
import signal
import sys
import time

TYPE_CHECKING = False  # typing is not imported at run time: it is slow to import and unused
if TYPE_CHECKING:
    from typing import Any

_MAX_FRAME = 256 * 1024 * 1024
_TRACE_CAP = 8000
_REPR_CAP = 10_000
_RESULT_FLOOR = 1024 * 1024
_MAX_DEPTH = 400
_SETUP_FAILED = 121
_RESULT_FD = 3
_PATH = "/usr/local/bin:/usr/bin:/bin"
_TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
_PRELOAD = ("traceback,linecache,math,re,collections,itertools,functools,heapq,bisect,string,"
            "operator")
# Bound once: a candidate rebinding json.dumps in its own process cannot stop it reporting.
_dumps = json.dumps
_LIMIT_DEFAULTS = {"timeout_s": 2.0, "memory_mb": 256, "output_bytes": 65_536,
                   "max_processes": 16, "file_size_mb": 16}

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 36, 38
_HOST_IN = 0  # job frames arrive on stdin
#: Sent by the kernel when our parent *thread* ends (PR_SET_PDEATHSIG). A host's short-lived
#: spawning thread ending sends it too, so the handler checks ``getppid`` before acting on it.
_PARENT_SIGNAL = signal.SIGUSR1
_WATCH_MS = 250  # how often a waiting harness checks that its parent is still there


# ----------------------------------------------------------------------------- pure helpers


def _key(key: Any) -> str:
    """A dict key as JSON would spell it."""
    if isinstance(key, str):
        return str(key)
    if key is True or key is False or key is None:
        return json.dumps(key)
    if isinstance(key, int):
        return str(int(key))
    if isinstance(key, float):
        return repr(float(key))
    return _repr(key)


def _repr(value: Any) -> str:
    """``repr`` without memory addresses (they differ between runs), capped."""
    try:
        text = repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"
    while " at 0x" in text:
        head, _, tail = text.partition(" at 0x")
        text = head + tail.lstrip("0123456789abcdefABCDEF")
    return text if len(text) <= _REPR_CAP else text[:_REPR_CAP] + "...<truncated>"


def _sorted(items: list[Any]) -> list[Any]:
    try:
        return sorted(items)
    except TypeError:  # mixed types: order by canonical JSON text, which is deterministic
        return sorted(items, key=lambda x: json.dumps(x, sort_keys=True))


def normalise(value: Any, _depth: int = 0) -> Any:
    """Turn a return value into plain JSON data.

    Tuples, generators, ranges, dict views and other iterables become lists; sets become sorted
    lists (ordered by JSON text when their items are not comparable); bytes become lists of ints;
    dict keys become strings spelled as JSON would; numpy-like values go through ``tolist()``;
    other number types become ``int``/``float``; anything else becomes its ``repr`` without
    memory addresses. Raises ``ValueError`` for values nested deeper than 400 levels (or cyclic).
    """
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is float or kind is str:
        return value
    if _depth > _MAX_DEPTH:
        raise ValueError("the return value is nested too deeply (or contains a cycle)")
    depth = _depth + 1
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict) or (hasattr(value, "keys") and hasattr(value, "__getitem__")
                                   and hasattr(value, "items")):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out[_key(k)] = normalise(v, depth)
        return out
    if isinstance(value, set | frozenset):
        items = []
        for v in value:
            items.append(normalise(v, depth))
        return _sorted(items)
    if isinstance(value, bytes | bytearray | memoryview):
        return list(bytes(value))
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        try:
            converted = tolist()
        except Exception:
            converted = value
        if converted is not value:
            return normalise(converted, depth)
    if hasattr(value, "__index__"):
        try:
            return int(value.__index__())
        except Exception:
            pass
    if hasattr(value, "__float__") and not hasattr(value, "__iter__"):
        try:
            return float(value)
        except Exception:
            pass
    try:
        iterator = iter(value)
    except TypeError:
        return _repr(value)
    items = []
    for v in iterator:
        items.append(normalise(v, depth))
    return items


def outputs_match(actual: Any, expected: Any, tolerance: float = 1e-6) -> bool:
    """Compare normalised values; numbers with a float among them match within ``tolerance``.

    Two numbers ``a``, ``b`` (at least one a float) match when ``|a - b| <= tolerance *
    max(1, |a|, |b|)`` (absolute near zero, relative beyond); NaN matches NaN. Booleans only
    match booleans. Lists (and tuples) match element-wise, dicts key-wise, the rest by ``==``.
    """
    if isinstance(actual, bool) or isinstance(expected, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual == expected
    if isinstance(actual, int | float) and isinstance(expected, int | float):
        if isinstance(actual, int) and isinstance(expected, int):
            return actual == expected
        try:
            a, b = float(actual), float(expected)
        except OverflowError:
            return actual == expected
        if a != a or b != b:
            return a != a and b != b
        if a == b:
            return True
        return abs(a - b) <= tolerance * max(1.0, abs(a), abs(b))
    # Plain loops, not all(<generator>): one stack frame per level of nesting.
    if isinstance(actual, list | tuple) and isinstance(expected, list | tuple):
        if len(actual) != len(expected):
            return False
        for x, y in zip(actual, expected, strict=True):  # noqa: SIM110 - see above
            if not outputs_match(x, y, tolerance):
                return False
        return True
    if isinstance(actual, dict) and isinstance(expected, dict):
        if actual.keys() != expected.keys():
            return False
        for key in actual:  # noqa: SIM110 - see above
            if not outputs_match(actual[key], expected[key], tolerance):
                return False
        return True
    try:
        return bool(actual == expected)
    except Exception:
        return False


# ----------------------------------------------------------------------------- job frames


class JobError(Exception):
    """A malformed job frame: answered with a job-level error, no case runs."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"job.{field}: {problem}")


class _Job:
    __slots__ = ("cases", "code", "entrypoint", "limits", "stop", "tolerance")

    def __init__(self, code: str, entrypoint: str, cases: list[list[Any]], limits: dict[str, Any],
                 stop: bool, tolerance: float) -> None:
        self.code, self.entrypoint, self.cases = code, entrypoint, cases
        self.limits, self.stop, self.tolerance = limits, stop, tolerance


def _number(data: dict[str, Any], name: str, default: float, where: str) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e12:
        raise JobError(f"{where}.{name}", "must be a positive number")
    return value


def parse_job(raw: bytes) -> _Job | None:
    """Validate a job frame; ``None`` means an info request. Raises :class:`JobError`."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise JobError("frame", f"is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise JobError("frame", "must be a JSON object")
    if data.get("info") is True and "code" not in data:
        return None
    code, entrypoint = data.get("code"), data.get("entrypoint")
    if not isinstance(code, str):
        raise JobError("code", "must be a string")
    if not isinstance(entrypoint, str) or not entrypoint.isidentifier():
        raise JobError("entrypoint", "must be a Python identifier")
    raw_cases = data.get("cases")
    if not isinstance(raw_cases, list):
        raise JobError("cases", "must be a list")
    cases = []
    for i, case in enumerate(raw_cases):
        if not isinstance(case, dict):
            raise JobError(f"cases[{i}]", "must be an object")
        args, kwargs = case.get("args", []), case.get("kwargs", {})
        if not isinstance(args, list):
            raise JobError(f"cases[{i}].args", "must be a list")
        if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise JobError(f"cases[{i}].kwargs", "must be an object")
        has_expected = case.get("has_expected", "expected" in case)
        if not isinstance(has_expected, bool):
            raise JobError(f"cases[{i}].has_expected", "must be a boolean")
        cases.append([args, kwargs, case.get("expected"), has_expected])
    raw_limits = data.get("limits", {})
    if not isinstance(raw_limits, dict):
        raise JobError("limits", "must be an object")
    limits = {k: _number(raw_limits, k, v, "limits") for k, v in _LIMIT_DEFAULTS.items()}
    for name in ("memory_mb", "output_bytes", "max_processes", "file_size_mb"):
        limits[name] = int(limits[name])
    limits["cpu_s"] = _number(raw_limits, "cpu_s", -(-limits["timeout_s"] // 1) + 1, "limits")
    stop = data.get("stop_on_first_failure", False)
    if not isinstance(stop, bool):
        raise JobError("stop_on_first_failure", "must be a boolean")
    tolerance = data.get("float_tolerance", 1e-6)
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not (
        0 <= tolerance < float("inf")
    ):
        raise JobError("float_tolerance", "must be a finite number >= 0")
    return _Job(code, entrypoint, cases, limits, stop, float(tolerance))


def _read_exact(fd: int, size: int) -> bytes:
    """Up to ``size`` bytes from ``fd``: fewer only at end of file."""
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int) -> bytes | None:
    """One frame body from ``fd`` (unbuffered: nothing past the frame is consumed); ``None`` at
    end of file, ``b""`` for a frame over the size limit (skipped)."""
    head = _read_exact(fd, 4)
    if not head:
        return None
    if len(head) < 4:
        raise EOFError("truncated frame header")
    size = int.from_bytes(head, "big")
    if size > _MAX_FRAME:
        while size:  # keep the stream in step, then refuse the job
            chunk = os.read(fd, min(size, 1 << 20))
            if not chunk:
                raise EOFError("truncated frame body")
            size -= len(chunk)
        return b""
    body = _read_exact(fd, size)
    if len(body) < size:
        raise EOFError("truncated frame body")
    return body


def _write_frame(stream: Any, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    stream.write(len(body).to_bytes(4, "big") + body)
    stream.flush()


# ----------------------------------------------------------------------------- the case child


def _format_error(exc: BaseException, code: str) -> str:
    import linecache
    import traceback

    # Register the source so tracebacks show candidate lines, then drop the harness's own frames.
    linecache.cache["<candidate>"] = (len(code), None, code.splitlines(True), "<candidate>")
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != "<candidate>":
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    return text if len(text) <= _TRACE_CAP else "...<truncated>\n" + text[-_TRACE_CAP:]


def _send(fd: int, body: bytes) -> None:
    view = memoryview(body)
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError:  # the parent stopped listening (a limit was hit): nothing more to say
        pass


def _call_candidate(code: str, entrypoint: str, args: list[Any], kwargs: dict[str, Any],
                    result_cap: int) -> None:
    me = os.getpid()
    memory = b'{"kind": "memory", "error": "MemoryError"}'
    try:
        module = type(sys)("__candidate__")
        sys.modules["__candidate__"] = module
        exec(compile(code, "<candidate>", "exec"), module.__dict__)
        fn = module.__dict__.get(entrypoint)
        if fn is None:
            raise NameError(f"entrypoint {entrypoint!r} is not defined by the candidate")
        if not callable(fn):
            raise TypeError(f"entrypoint {entrypoint!r} is not callable ({type(fn).__name__})")
        started = time.perf_counter()
        value = fn(*args, **kwargs)
        elapsed = time.perf_counter() - started
        output = normalise(value)
        body = _dumps({"kind": "ok", "output": output, "duration_s": elapsed}).encode()
        if len(body) > result_cap:
            body = _dumps({"kind": "big", "error": f"the return value is {len(body)} bytes "
                               f"of JSON, over the {result_cap}-byte limit"}).encode()
    except MemoryError:
        body = memory
    except BaseException as exc:
        try:
            body = _dumps({"kind": "error", "error": _format_error(exc, code)}).encode()
        except MemoryError:
            body = memory
        except BaseException:
            body = b'{"kind": "error", "error": "the exception could not be formatted"}'
    if os.getpid() != me:  # a process the candidate forked has returned into the harness
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    _send(_RESULT_FD, body)


def _child(job: _Job, index: int, workdir: str, out_w: int, res_w: int, cfg: _Config,
           nproc: int) -> None:
    """Runs in the forked child: isolate, run one case, report on fd 3, and ``_exit``."""
    args, kwargs = job.cases[index][0], job.cases[index][1]
    lim = job.limits
    try:
        for case in job.cases:  # expected answers never reach candidate code
            case[2] = None
        os.setsid()
        os.dup2(cfg.devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        os.dup2(res_w, _RESULT_FD, inheritable=False)
        os.closerange(_RESULT_FD + 1, cfg.max_fd)  # the protocol pipes included
        os.chdir(workdir)
        if cfg.term_handler:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(_PARENT_SIGNAL, signal.SIG_DFL)
        # The parent prepared environment, sys.stdin/stdout/argv once (see _prepare): every page
        # this child writes costs a copy-on-write fault, so it does as little as possible.
        mib = 1024 * 1024
        cpu = int(-(-lim["cpu_s"] // 1))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (lim["file_size_mb"] * mib,) * 2)
        if nproc:
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        resource.setrlimit(resource.RLIMIT_AS, (lim["memory_mb"] * mib,) * 2)
    except BaseException:
        os._exit(_SETUP_FAILED)
    try:
        _call_candidate(job.code, job.entrypoint, args, kwargs,
                        max(lim["output_bytes"], _RESULT_FLOOR))
    finally:
        os._exit(0)  # never run atexit hooks or finalisers the candidate registered


# ----------------------------------------------------------------------------- the parent side


def _drain(fd: int, buf: bytearray, cap: int) -> bool:
    """Read what ``fd`` has now into ``buf`` (up to a little past ``cap``); False on EOF."""
    while len(buf) <= cap:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not chunk:
            return False
        buf += chunk
    return True


def _supervise(cfg: _Config, pid: int, out_r: int, res_r: int, lim: dict[str, Any], t0: float
               ) -> tuple[str | None, int, Any, bytearray, bytearray]:
    """Wait for the child under the deadline and the output caps; returns what was seen.

    Raises :class:`_HostGone` when the host hangs up or our parent dies meanwhile (the caller's
    sweep then kills the case).
    """
    deadline = t0 + lim["timeout_s"]
    out_cap, res_cap = lim["output_bytes"], max(lim["output_bytes"], _RESULT_FLOOR)
    out, res = bytearray(), bytearray()
    verdict: str | None = None
    poller = select.poll()
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = -1
    else:
        poller.register(pidfd, select.POLLIN)
    poller.register(out_r, select.POLLIN)
    poller.register(res_r, select.POLLIN)
    # No events asked for: poll reports only a hang-up (or error) of the host's end. The host
    # sends nothing while a job runs, so any data there is left for the next frame read.
    poller.register(_HOST_IN, 0)
    watch_parent = cfg.parent > 1
    waited: tuple[int, int, Any] | None = None
    try:
        while waited is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                verdict = "timeout"
                break
            timeout_ms = int(remaining * 1000) + 1
            if pidfd < 0:  # no pidfd to wake us when the child exits: poll wait4 often
                timeout_ms = min(timeout_ms, 2)
            elif watch_parent:
                timeout_ms = min(timeout_ms, _WATCH_MS)
            for fd, _event in poller.poll(timeout_ms):
                if fd == _HOST_IN:
                    raise _HostGone("the host closed our stdin")
                if fd == out_r and not _drain(out_r, out, out_cap):
                    poller.unregister(out_r)
                elif fd == res_r and not _drain(res_r, res, res_cap):
                    poller.unregister(res_r)
            if len(out) > out_cap or len(res) > res_cap:
                verdict = "output"
                break
            if watch_parent and _host_gone(cfg):
                raise _HostGone("our parent process died")
            waited = os.wait4(pid, os.WNOHANG)
            if waited[0] == 0:
                waited = None
    finally:
        if pidfd >= 0:
            os.close(pidfd)
    if waited is None:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        waited = os.wait4(pid, 0)
    _drain(out_r, out, out_cap)
    _drain(res_r, res, res_cap)
    return verdict, waited[1], waited[2], out, res


def _shallow(value: Any, raw: bytes | bytearray) -> bool:
    """Whether ``value`` nests at most _MAX_DEPTH + 2 deep, as everything normalise() produced
    does; deeper means forged, and could overflow the recursion of whoever reads it next."""
    limit = _MAX_DEPTH + 2
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return True
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, list | dict):
            if depth > limit:
                return False
            stack.extend((x, depth + 1) for x in (item.values() if isinstance(item, dict)
                                                   else item))
    return True


def _outcome(job: _Job, index: int, verdict: str | None, status: int, usage: Any,
             out: bytearray, res: bytearray, elapsed: float) -> dict[str, Any]:
    lim = job.limits
    result: dict[str, Any] = {
        "index": index, "status": "crashed", "output": None, "error": None,
        "stdout": bytes(out[: lim["output_bytes"]]).decode("utf-8", "replace"),
        "duration_s": round(elapsed, 6), "peak_memory_kb": int(usage.ru_maxrss),
    }
    if verdict == "timeout":
        result.update(status="timeout", error=f"no answer within {lim['timeout_s']} s (killed)")
        return result
    if verdict == "output":
        result.update(status="output_exceeded", error=f"output exceeded {lim['output_bytes']} "
                      f"bytes (stdout/stderr) or {max(lim['output_bytes'], _RESULT_FLOOR)} bytes "
                      "(return value); killed")
        return result
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        cpu = usage.ru_utime + usage.ru_stime
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= lim["cpu_s"] - 0.05):
            result.update(status="timeout", error=f"CPU time limit of {lim['cpu_s']} s exceeded")
        else:
            try:
                result["error"] = f"killed by signal {signal.Signals(sig).name}"
            except ValueError:  # a real-time signal has no name
                result["error"] = f"killed by signal {sig}"
        return result
    try:  # the candidate's process wrote these bytes: it may have forged anything
        msg = json.loads(res) if res else None
        if not _shallow(msg, res):
            msg = None
    except (ValueError, RecursionError):
        msg = None
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
    if not isinstance(msg, dict) or msg.get("kind") not in ("ok", "error", "memory", "big"):
        if code == _SETUP_FAILED:
            result["error"] = "the harness could not set up the case process"
        elif res:
            result["error"] = "sent an unreadable result"
        else:
            result["error"] = f"exited with status {code} without a result"
        return result
    kind = msg["kind"]
    error = msg.get("error")
    result["error"] = str(error)[:_TRACE_CAP] if error is not None else None
    if kind == "memory":
        result.update(status="memory_exceeded",
                      error=f"MemoryError: over the {lim['memory_mb']} MiB memory limit")
    elif kind == "big":
        result["status"] = "output_exceeded"
    elif kind == "error":
        result["status"] = "error"
    else:
        expected, has_expected = job.cases[index][2], job.cases[index][3]
        output = msg.get("output")
        reported = msg.get("duration_s")
        if isinstance(reported, int | float) and 0 <= reported < elapsed:
            result["duration_s"] = round(reported, 6)
        ok = not has_expected or outputs_match(output, expected, job.tolerance)
        result.update(status="ok" if ok else "wrong_answer", output=output)
    return result


def _count_uid_processes(uid: int) -> int:
    count = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/status", "rb") as fh:
                    status = fh.read()
            except OSError:
                continue
            at = status.find(b"\nUid:")
            if at >= 0 and int(status[at + 5:].split(None, 1)[0]) == uid:
                count += 1
    return count


def _nproc_limit(cfg: _Config, max_processes: int) -> int:
    """RLIMIT_NPROC for a case, or 0 for none.

    The kernel counts every process of the real uid (per user namespace), so the limit is only
    exact when the uid is dedicated to this harness or we own a user namespace. Otherwise the
    user's current process count (refreshed once a second) is added: racy, but it still bounds a
    fork bomb, and it only ever binds the candidate's own processes.
    """
    if cfg.nproc_base:
        return cfg.nproc_base + max_processes
    now = time.monotonic()
    if now - cfg.nproc_at > 1.0:
        cfg.nproc_seen, cfg.nproc_at = _count_uid_processes(os.getuid()), now
    return cfg.nproc_seen + max_processes


def _children(me: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as fh:
                    stat = fh.read()
            except OSError:
                continue
            if int(stat[stat.rfind(b")") + 2:].split()[1]) == me:
                found.append(int(name))
    return found


def _reap() -> bool:
    """Collect exited children; True while some child (hence some descendant) is alive."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def _sweep(cfg: _Config, pgid: int = 0) -> None:
    """Kill everything the last case started.

    We are a child subreaper (or the namespace's init), so every orphaned descendant becomes our
    child: "no children" means "no descendants". With ``kill_all`` (a dedicated uid, or our own
    PID namespace) ``kill(-1)`` also reaches processes that escaped the tree.
    """
    if pgid:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while True:
        signalled = False
        if cfg.kill_all:
            try:
                os.kill(-1, signal.SIGKILL)
                signalled = True
            except OSError:
                pass
        alive = _reap()
        if not alive and not signalled:
            return
        if alive and not cfg.kill_all:
            for pid in _children(os.getpid()):
                try:
                    group = os.getpgid(pid)
                    if group != os.getpgrp():
                        os.killpg(group, signal.SIGKILL)
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        if time.monotonic() > deadline:
            sys.stderr.write("harness: some case processes could not be killed\n")
            return
        time.sleep(0.0005)


def _remove(path: str) -> None:
    """Delete a case directory, whatever permissions the candidate left on it."""
    try:
        os.rmdir(path)
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    try:
        os.chmod(path, 0o700)
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    _remove(entry.path)
                else:
                    os.unlink(entry.path)
        os.rmdir(path)
    except OSError:
        pass


def _wipe(directory: str) -> None:
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    _remove(entry.path)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
    except OSError:
        pass


def _fresh_workdir(cfg: _Config) -> str:
    """(Re)create the case directory: one path per harness, so HOME and TMPDIR are set once."""
    try:
        os.mkdir(cfg.workdir, 0o700)
    except FileExistsError:
        _remove(cfg.workdir)
        try:
            os.mkdir(cfg.workdir, 0o700)
        except FileExistsError:  # a leftover that cannot be removed: carry on elsewhere
            cfg.counter += 1
            cfg.workdir = f"{cfg.scratch}/case-{cfg.tag}-{cfg.counter}"
            os.environ["HOME"] = os.environ["TMPDIR"] = cfg.workdir
            os.mkdir(cfg.workdir, 0o700)
    return cfg.workdir


def _fork(cfg: _Config) -> int:
    """fork(), retrying after a sweep when leftovers hold the process budget; -1 on failure."""
    for attempt in range(3):
        try:
            return os.fork()
        except OSError:
            if attempt == 2:
                return -1
            _sweep(cfg)
            time.sleep(0.01)
    return -1


def _run_case(job: _Job, index: int, cfg: _Config) -> dict[str, Any]:
    """Run one case in a fresh child. OSError here (no directory, no pipes) is the sandbox's."""
    workdir = _fresh_workdir(cfg)
    fds: list[int] = []
    pid = -1
    try:
        out_r, out_w = os.pipe()
        fds += (out_r, out_w)
        res_r, res_w = os.pipe()
        fds += (res_r, res_w)
        os.set_blocking(out_r, False)
        os.set_blocking(res_r, False)
        nproc = _nproc_limit(cfg, job.limits["max_processes"])
        t0 = time.monotonic()
        pid = _fork(cfg)
        if pid == 0:
            _child(job, index, workdir, out_w, res_w, cfg, nproc)
        if pid < 0:
            return {"index": index, "status": "crashed", "output": None, "stdout": "",
                    "error": "could not start the case process (process limit reached?)",
                    "duration_s": 0.0, "peak_memory_kb": 0}
        cfg.current = pid
        for fd in (out_w, res_w):
            fds.remove(fd)
            os.close(fd)
        verdict, status, usage, out, res = _supervise(cfg, pid, out_r, res_r, job.limits, t0)
        return _outcome(job, index, verdict, status, usage, out, res, time.monotonic() - t0)
    finally:
        for fd in fds:
            os.close(fd)
        _sweep(cfg, max(pid, 0))
        cfg.current = 0
        _remove(workdir)
        for directory in cfg.wipe_dirs:
            _wipe(directory)


def _run_job(job: _Job, cfg: _Config) -> list[dict[str, Any]]:
    results = []
    for index in range(len(job.cases)):
        result = _run_case(job, index, cfg)
        results.append(result)
        if job.stop and result["status"] != "ok":
            break
    return results


def _await_frame(cfg: _Config) -> None:
    """Block until the host sends something or hangs up; :class:`_HostGone` if our parent dies
    first (a host whose stdin pipe leaked into another process never hangs up)."""
    poller = select.poll()
    poller.register(_HOST_IN, select.POLLIN)
    timeout_ms = _WATCH_MS if cfg.parent > 1 else -1
    while not poller.poll(timeout_ms):
        if _host_gone(cfg):
            raise _HostGone("our parent process died")


def _serve(cfg: _Config, stdout: Any) -> int:
    while True:
        _await_frame(cfg)
        try:
            raw = _read_frame(_HOST_IN)
        except EOFError:
            return 1
        if raw is None:
            return 0
        try:
            if not raw:
                raise JobError("frame", f"is empty or larger than {_MAX_FRAME} bytes")
            job = parse_job(raw)
        except JobError as exc:
            reply: dict[str, Any] = {"cases": [], "error": str(exc)}
        else:
            del raw  # the encoded job holds the expected answers: drop it before forking
            if job is None:
                reply = {"cases": [], "error": None, "info": cfg.info}
            else:
                try:
                    reply = {"cases": _run_job(job, cfg), "error": None}
                except OSError as exc:  # no case directory, no pipes: the sandbox is broken
                    reply = {"cases": [], "error": f"harness: cannot run cases: {exc}"}
            del job
        _write_frame(stdout, reply)


# ----------------------------------------------------------------------------- isolation setup


class _Fatal(Exception):
    """Setup failed in a way that makes serving unsafe."""


class _HostGone(Exception):
    """The host hung up or our parent died: nobody will read an answer, so stop."""


def _host_gone(cfg: _Config) -> bool:
    """Whether the parent we started under has died (we were re-parented).

    Only meaningful when that parent is an ordinary process: in a PID namespace or as a
    container's init the parent is outside (``getppid`` is 0) and others watch it for us.
    """
    return cfg.parent > 1 and os.getppid() != cfg.parent


class _Config:
    def __init__(self, argv: list[str]) -> None:
        import argparse

        parser = argparse.ArgumentParser(prog="_harness.py", description=__doc__.split("\n")[0])
        parser.add_argument("--uid", type=int)
        parser.add_argument("--gid", type=int)
        for flag in ("--unshare-net", "--pid-ns", "--private-tmp", "--reap-all", "--allow-root"):
            parser.add_argument(flag, action="store_true")
        parser.add_argument("--hide", action="append", default=[])
        parser.add_argument("--wipe", action="append", default=[])
        parser.add_argument("--scratch")
        parser.add_argument("--preload", default=_PRELOAD)
        parser.add_argument("--tmp-size-mb", type=int, default=64)
        ns = parser.parse_args(argv)
        if (ns.uid is None) != (ns.gid is None):
            parser.error("--uid and --gid go together")
        self.uid: int | None = ns.uid
        self.gid: int | None = ns.gid
        self.unshare_net, self.pid_ns, self.private_tmp = ns.unshare_net, ns.pid_ns, ns.private_tmp
        self.reap_all, self.allow_root = ns.reap_all, ns.allow_root
        self.hide: list[str] = ns.hide
        self.wipe: list[str] = ns.wipe
        self.wipe_dirs: list[str] = []  # emptied after every case: private tmp dirs and --wipe
        self.parent = os.getppid()  # checked while waiting: a change means the host died
        self.scratch: str = ns.scratch or os.environ.get("TMPDIR") or "/tmp"
        self.preload = [m for m in ns.preload.split(",") if m]
        self.tmp_size_mb: int = ns.tmp_size_mb
        self.kill_all = ns.reap_all
        self.user_ns = self.in_pid_ns = False
        self.tmp_dirs: list[str] = []
        self.problems: list[str] = []
        self.hidden: list[str] = []
        self.exposed: list[str] = []
        self.namespaces: list[str] = []
        self.nproc_base = self.nproc_seen = 0
        self.nproc_at = -10.0
        self.devnull = -1
        self.max_fd = 1024
        self.counter = 0
        self.workdir = ""
        self.current = 0  # process group of the running case
        self.term_handler = False
        self.tag = os.urandom(4).hex()
        self.info: dict[str, Any] = {}


def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _errno_of(result: int) -> int:
    import ctypes

    return 0 if result == 0 else (ctypes.get_errno() or -1)


def _prctl(libc: Any, option: int, value: int) -> int:
    import ctypes

    zero = ctypes.c_ulong(0)
    return _errno_of(libc.prctl(option, ctypes.c_ulong(value), zero, zero, zero))


def _mount(libc: Any, source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> int:
    import ctypes

    def enc(text: str | None) -> bytes | None:
        return None if text is None else os.fsencode(text)

    return _errno_of(libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags),
                                enc(data)))


def _drop_capabilities(libc: Any) -> None:
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    if libc.capset(ctypes.byref(Header(0x20080522, 0)), (Data * 2)()) != 0:
        raise _Fatal(f"capset failed: {os.strerror(ctypes.get_errno())}")


def _become_init(cfg: _Config) -> None:
    """After unshare(CLONE_NEWPID): fork the namespace's init, which carries on as the harness.

    The original process stays outside as a thin wrapper that holds nothing, forwards SIGTERM as
    SIGKILL and exits with the init's status; the init dies with it (PR_SET_PDEATHSIG), and when
    the init exits the kernel kills everything left in the namespace.
    """
    pid = os.fork()
    if pid == 0:
        cfg.in_pid_ns = cfg.kill_all = True
        cfg.parent = 0  # outside the namespace: the wrapper watches it for us
        return
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)  # the host sees EOF as soon as the init is gone

    def forward(_signum: int, _frame: Any) -> None:
        os.kill(pid, signal.SIGKILL)

    def parent_died(_signum: int, _frame: Any) -> None:
        if _host_gone(cfg):
            os.kill(pid, signal.SIGKILL)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    signal.signal(_PARENT_SIGNAL, parent_died)
    _prctl(_libc(), PR_SET_PDEATHSIG, _PARENT_SIGNAL)
    status = _wait_watching_parent(pid, cfg)
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


def _wait_watching_parent(pid: int, cfg: _Config) -> int:
    """Wait for child ``pid``; SIGKILL it if our parent dies first. Returns its wait status."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = -1
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if _host_gone(cfg):
            os.kill(pid, signal.SIGKILL)
        if pidfd >= 0:
            select.select([pidfd], [], [], _WATCH_MS / 1000)
        else:
            time.sleep(0.05)


def _within(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _blocked_ancestor(path: str, uid: int) -> str | None:
    """The first directory on ``path`` that ``uid`` (an outsider) cannot traverse."""
    current = ""
    for part in path.strip("/").split("/"):
        current += "/" + part
        st = os.stat(current)
        if st.st_uid != uid and not st.st_mode & 0o001:
            return current
    return None


def _interpreter_paths() -> list[str]:
    wanted = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(sys.executable),
              os.path.dirname(os.path.realpath(sys.executable)), *sys.path}
    real = {os.path.realpath(p) for p in wanted if p and os.path.isdir(p)}
    return sorted(p for p in real if not any(p != q and _within(p, q) for q in real))


def _mounts(cfg: _Config, libc: Any) -> None:
    """Private /tmp, empty read-only covers over hidden paths, and /proc for the PID namespace.

    A cover over a directory that holds the interpreter (a pyenv under /root, a venv under the
    home directory) gets the interpreter bound back at the same path, so it stays importable.
    """
    if _mount(libc, None, "/", None, MS_REC | MS_PRIVATE):
        # Without private propagation our mounts would leak into the host: mount nothing.
        cfg.problems.append("cannot make mounts private: no private /tmp, hidden paths or /proc")
        return
    if cfg.private_tmp:
        options = f"mode=1777,size={cfg.tmp_size_mb}m,nr_inodes=16384"
        for directory in _TMP_DIRS:
            if os.path.isdir(directory) and not os.path.islink(directory):
                if _mount(libc, "tmpfs", directory, "tmpfs", MS_NOSUID | MS_NODEV, options):
                    cfg.problems.append(f"cannot mount a private {directory}")
                else:
                    cfg.tmp_dirs.append(directory)
        if "/tmp" in cfg.tmp_dirs:
            cfg.scratch = "/tmp"
    needed = _interpreter_paths()
    system = ("/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc", "/dev", "/proc", "/sys", "/run",
              *_TMP_DIRS)
    covers = {os.path.realpath(p) for p in cfg.hide}
    covers = {c for c in covers if os.path.isdir(c) and not any(_within(s, c) for s in system)}
    if cfg.uid is not None:  # directories the dedicated uid could not even traverse
        covers |= {a for a in (_blocked_ancestor(p, cfg.uid) for p in needed) if a and a != "/"}
    for cover in sorted(c for c in covers if not any(c != o and _within(c, o) for o in covers)):
        binds = [(p, os.open(p, os.O_PATH | os.O_DIRECTORY)) for p in needed if _within(p, cover)]
        flags = MS_NOSUID | MS_NODEV | (0 if binds else MS_RDONLY | MS_NOEXEC)
        failed = _mount(libc, "tmpfs", cover, "tmpfs", flags, "mode=755,size=1m")
        for path, fd in binds:
            if not failed:
                os.makedirs(path, 0o755, exist_ok=True)
                failed = _mount(libc, f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
                cfg.exposed.append(path)
            os.close(fd)
        if binds and not failed:
            failed = _mount(libc, None, cover, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        if failed:
            cfg.problems.append(f"cannot cover {cover}: {os.strerror(failed)}")
        else:
            cfg.hidden.append(cover)
    if cfg.in_pid_ns and _mount(libc, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC):
        cfg.problems.append("cannot mount /proc for the PID namespace")


def _isolate(cfg: _Config) -> None:
    libc = _libc()
    root = os.geteuid() == 0
    want = CLONE_NEWNET if cfg.unshare_net else 0
    if cfg.pid_ns:
        want |= CLONE_NEWPID | CLONE_NEWNS
    if cfg.private_tmp or cfg.hide or cfg.uid is not None:
        want |= CLONE_NEWNS
    got = 0
    if want and root:
        if _errno_of(libc.unshare(want)) == 0:
            got = want
        else:
            for flag in (CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWPID):
                if want & flag and _errno_of(libc.unshare(flag)) == 0:
                    got |= flag
    elif want:
        uid, gid = os.getuid(), os.getgid()
        err = _errno_of(libc.unshare(CLONE_NEWUSER | want))
        if err == 0:
            for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                               ("gid_map", f"{gid} {gid} 1")):
                with open(f"/proc/self/{name}", "w") as fh:
                    fh.write(text)
            got, cfg.user_ns = want, True
        else:
            cfg.problems.append(f"no user namespace ({os.strerror(err)}): no network, PID or "
                                "mount isolation")
    names = {CLONE_NEWNET: "net", CLONE_NEWNS: "mount", CLONE_NEWPID: "pid"}
    cfg.namespaces = [n for f, n in names.items() if got & f] + (["user"] if cfg.user_ns else [])
    cfg.problems += [f"could not unshare the {n} namespace" for f, n in names.items()
                     if want & f and not got & f]
    if got & CLONE_NEWPID:
        _become_init(cfg)
    if got & CLONE_NEWNS:
        _mounts(cfg, libc)
    for name in cfg.preload:  # before the uid drop, which may cut us off from the library
        try:
            __import__(name)
        except ImportError:
            cfg.problems.append(f"cannot preload {name}")
    if cfg.uid is not None and cfg.gid is not None:
        uid, gid = cfg.uid, cfg.gid
        if os.geteuid() == 0:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
        if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
            raise _Fatal(f"could not switch to uid {uid}, gid {gid}")
    if os.geteuid() == 0 and not cfg.allow_root:
        raise _Fatal("refusing to run candidates as root: pass --uid/--gid (or --allow-root)")
    if cfg.reap_all and os.getuid() == 0:
        raise _Fatal("--reap-all as root would kill every process on the machine")
    if cfg.user_ns:
        _drop_capabilities(libc)
    _prctl(libc, PR_SET_NO_NEW_PRIVS, 1)  # setuid programs cannot give candidates privileges
    _prctl(libc, PR_SET_DUMPABLE, 0)  # same-uid candidates cannot ptrace us or open our fds
    if cfg.in_pid_ns:
        _prctl(libc, PR_SET_PDEATHSIG, signal.SIGKILL)  # after the uid change, which clears it
    elif _prctl(libc, PR_SET_CHILD_SUBREAPER, 1):
        cfg.problems.append("cannot become a child subreaper: orphans may escape the sweep")
    if cfg.kill_all or cfg.user_ns:
        cfg.nproc_base = _count_uid_processes(os.getuid()) + (cfg.user_ns and cfg.in_pid_ns)


def _prepare(cfg: _Config) -> None:
    if not os.access(os.path.dirname(json.__file__), os.R_OK | os.X_OK):
        cfg.problems.append(f"uid {os.getuid()} cannot read the standard library: candidates "
                            "can import only preloaded modules")
    cfg.devnull = os.open(os.devnull, os.O_RDWR)
    # What every case child would otherwise set up itself (see _child).
    cfg.workdir = f"{cfg.scratch}/case-{cfg.tag}"
    os.environ.clear()
    os.environ.update(PATH=_PATH, LANG="C.UTF-8", HOME=cfg.workdir, TMPDIR=cfg.workdir)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversized writes raise instead of killing
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace",  # noqa: SIM115
                      buffering=1, closefd=False)
    sys.stdout = sys.stderr  # in a case child fd 2 is the capture pipe: prints land there
    sys.stdin = io.StringIO()  # input() in a case sees end of file
    sys.argv = ["<candidate>"]
    cfg.max_fd = max(min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 65536), 64)
    cfg.wipe_dirs = list(cfg.tmp_dirs)
    for directory in cfg.wipe:
        if os.path.realpath(directory) == "/":
            raise _Fatal("--wipe / would empty the whole filesystem")
        if os.path.isdir(directory) and directory not in cfg.wipe_dirs:
            cfg.wipe_dirs.append(directory)
    cfg.info = {
        "uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid(),
        "namespaces": cfg.namespaces,
        "network_isolated": "net" in cfg.namespaces,
        "pid_namespace": cfg.in_pid_ns,
        "private_tmp": cfg.tmp_dirs, "wiped_per_case": cfg.wipe_dirs,
        "hidden": cfg.hidden, "exposed": cfg.exposed,
        "reap": "kill-all" if cfg.kill_all else "descendants",
        "nproc": "exact" if cfg.nproc_base else "estimated",
        "scratch": cfg.scratch, "python": sys.version.split()[0], "problems": cfg.problems,
    }
    gc.freeze()  # children then never touch (copy) the parent's objects during collections


def main(argv: list[str] | None = None) -> int:
    """Serve jobs on stdin/stdout until EOF; returns the exit status."""
    cfg = _Config(sys.argv[1:] if argv is None else list(argv))
    stdout = sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print can never corrupt the protocol
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    os.umask(0o022)  # the directories built to expose the interpreter must be traversable
    try:
        _isolate(cfg)
    except (_Fatal, OSError) as exc:
        sys.stderr.write(f"harness: {exc}\n")
        return 2
    os.umask(0o077)
    try:
        _prepare(cfg)
    except _Fatal as exc:
        sys.stderr.write(f"harness: {exc}\n")
        return 2
    _sweep(cfg)  # leftovers of an earlier harness that had this uid
    # (an init with a handler could be signalled by candidates; pid 1 is also the case of a
    # container's harness, e.g. DockerSandbox)
    if not cfg.in_pid_ns and os.getpid() != 1:

        def terminate(_signum: int, _frame: Any) -> None:
            _sweep(cfg, cfg.current)
            os._exit(143)

        def parent_died(_signum: int, _frame: Any) -> None:
            if _host_gone(cfg):
                _sweep(cfg, cfg.current)
                os._exit(1)

        signal.signal(signal.SIGTERM, terminate)
        signal.signal(_PARENT_SIGNAL, parent_died)
        cfg.term_handler = True
        if cfg.parent > 1:  # after the uid change, which clears it
            _prctl(_libc(), PR_SET_PDEATHSIG, _PARENT_SIGNAL)
    try:
        return _serve(cfg, stdout)
    except _HostGone as exc:
        sys.stderr.write(f"harness: {exc}: exiting\n")
        return 1
    finally:
        _sweep(cfg)


if __name__ == "__main__":
    sys.exit(main())
