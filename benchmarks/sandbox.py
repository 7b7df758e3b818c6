"""Sandbox throughput and latency, side by side in one run.

    python benchmarks/sandbox.py [--jobs 2000] [--baseline-runs 8] [--pool-size N] [--concurrency C]

Three ways to run the same trivial candidate (``def double(x): return 2 * x``, one case):

* ``docker pool``: :class:`DockerSandbox`, the warm pool of hardened containers (a fresh forked
  process per case inside a long-lived container);
* ``docker run``: the baseline, one hardened ``docker run --rm -i`` per evaluation with the same
  limits and flags (same image, same harness fed on stdin), i.e. a fresh container every time;
* ``process``: :class:`ProcessSandbox`, the local harness without containers.

For each: evaluations per second under concurrency, p50/p95 latency of single evaluations run
one at a time, and the CPU time one evaluation costs across every process involved (this one, the
sandbox's processes, and for Docker the engine, containerd and the containers' cgroup). The CPU
figure does not depend on what else the machine is doing, so ``2 cores / CPU per evaluation`` is
the rate two otherwise idle cores sustain. Ratios are against the ``docker run`` baseline
measured in this run. Needs a Docker engine and the sandbox image (``auto-dev sandbox
build-image``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from auto_dev.sandbox._docker_spec import BOOTSTRAP, SCRATCH_DIR, WIPE_DIRS, DockerSandboxConfig
from auto_dev.sandbox.base import Case, Limits, SandboxJob
from auto_dev.sandbox.docker import HARNESS_ARGV, DockerSandbox, harness_source
from auto_dev.sandbox.process import ProcessSandbox

JOB = SandboxJob(
    code="def double(x):\n    return 2 * x\n",
    entrypoint="double",
    cases=(Case(args=(21,), expected=42),),
    limits=Limits(timeout_s=2.0),
)


_DOCKER_CGROUP = "/sys/fs/cgroup/cpuacct/docker/cpuacct.usage"  # cgroup v1: all containers
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Figures:
    name: str
    evals_per_s: float
    p50_ms: float
    p95_ms: float
    samples: int
    note: str = ""
    cpu_ms: float | None = None  # CPU time per evaluation, all processes involved


def _pid_cpu(pid: int, children: bool = True) -> float:
    """utime + stime (and, with ``children``, reaped children's) of a process, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    used = int(fields[11]) + int(fields[12])
    if children:
        used += int(fields[13]) + int(fields[14])
    return used / _TICK


def _engine_pids() -> list[int]:
    """dockerd, containerd and the containerd shims."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/comm") as fh:
                    comm = fh.read().strip()
            except OSError:
                continue
            if comm in ("dockerd", "containerd") or comm.startswith("containerd-shim"):
                found.append(int(name))
    return found


def _descendants(root: int) -> list[int]:
    """Live processes below ``root`` (children, their children, ...)."""
    parent: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as fh:
                    parent[int(name)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        kids = [child for child, ppid in parent.items() if ppid == pid]
        found += kids
        frontier += kids
    return found


def _cpu_now(docker: bool) -> float | None:
    """CPU seconds used so far by this process and everything it started (live or reaped), and
    with ``docker`` by the engine and all containers; None when the containers' cgroup cannot
    be read."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    # A live descendant's own reaped children are in its cutime/cstime, not in ours yet.
    total += sum(_pid_cpu(p) for p in _descendants(os.getpid()))
    if docker:
        try:
            with open(_DOCKER_CGROUP) as fh:
                total += int(fh.read()) / 1e9
        except OSError:
            return None
        total += sum(_pid_cpu(p, children=False) for p in _engine_pids())
    return total


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _measure(name: str, one: Callable[[], Awaitable[None]], jobs: int, concurrency: int,
                   latency_samples: int, note: str = "",
                   cpu: Callable[[], float | None] = lambda: None) -> Figures:
    for _ in range(min(20, jobs)):  # warm-up: first forks, page cache, pool start
        await one()
    latencies = []
    for _ in range(latency_samples):
        t0 = time.perf_counter()
        await one()
        latencies.append(time.perf_counter() - t0)
    remaining = jobs

    async def lane() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one()

    cpu0, t0 = cpu(), time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    elapsed, cpu1 = time.perf_counter() - t0, cpu()
    cpu_ms = 1000 * (cpu1 - cpu0) / jobs if cpu0 is not None and cpu1 is not None else None
    return Figures(name, jobs / elapsed, 1000 * _percentile(latencies, 0.5),
                   1000 * _percentile(latencies, 0.95), jobs, note, cpu_ms)


async def _docker_pool(jobs: int, pool_size: int | None, concurrency: int) -> Figures:
    sandbox = DockerSandbox(DockerSandboxConfig(pool_size=pool_size))
    try:
        await sandbox.start()

        async def one() -> None:
            result = await sandbox.run(JOB)
            assert result.all_passed, result

        figures = await _measure("docker pool", one, jobs, concurrency, min(300, jobs),
                                 note=f"{sandbox.config.size} warm containers",
                                 cpu=lambda: _cpu_now(docker=True))
        figures.note += f", {sandbox.pool.replaced} recycled"
        return figures
    finally:
        await sandbox.aclose()


def _docker_run_argv(config: DockerSandboxConfig, uid: int) -> list[str]:
    """The same hardening and limits as a pooled container, as ``docker run`` flags."""
    tmpfs = (f"{SCRATCH_DIR}:rw,noexec,nosuid,nodev,size={config.scratch_mb}m,nr_inodes=16384,"
             "mode=1777")
    return [
        "docker", "run", "--rm", "-i", "--network", "none", "--read-only", "--tmpfs", tmpfs,
        "--ipc", "none", "--sysctl", "kernel.shmmni=0", "--sysctl", "kernel.msgmni=0",
        "--sysctl", "kernel.sem=0 0 0 0", "--sysctl", "fs.mqueue.queues_max=0",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--pids-limit", str(config.pids_limit), "--memory", f"{config.memory_mb}m",
        "--memory-swap", f"{config.memory_mb}m", "--cpus", str(config.cpus),
        "--ulimit", f"nofile={config.open_files}:{config.open_files}", "--log-driver", "none",
        "--user", f"{uid}:{uid}", "--workdir", SCRATCH_DIR, "--hostname", "sandbox",
        "--label", "auto-dev.benchmark=1",
        config.image, "python3", "-I", "-S", "-B", "-c", BOOTSTRAP,
    ]


def _frame(payload: dict[str, object]) -> bytes:
    body = json.dumps(payload).encode()
    return len(body).to_bytes(4, "big") + body


async def _docker_run(runs: int, concurrency: int) -> Figures:
    config = DockerSandboxConfig()
    boot = _frame({"source": harness_source(), "argv": HARNESS_ARGV, "wipe": list(WIPE_DIRS)})
    job = _frame(JOB.to_wire())
    counter = iter(range(300_000, 400_000))

    async def one() -> None:
        proc = await asyncio.create_subprocess_exec(
            *_docker_run_argv(config, next(counter)), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate(boot + job)  # EOF after the job: the harness exits
        size = int.from_bytes(out[:4], "big") if len(out) >= 4 else -1
        reply = json.loads(out[4:4 + size]) if size > 0 else {}
        cases = reply.get("cases") or [{}]
        assert proc.returncode == 0 and cases[0].get("status") == "ok", (out[:200], err[-300:])

    return await _measure("docker run --rm", one, runs, concurrency, max(3, runs // 2),
                          note="one fresh container per evaluation",
                          cpu=lambda: _cpu_now(docker=True))


async def _process(jobs: int, concurrency: int) -> Figures:
    sandbox = ProcessSandbox()
    try:
        async def one() -> None:
            result = await sandbox.run(JOB)
            assert result.all_passed, result

        return await _measure("process", one, jobs, concurrency, min(300, jobs),
                              note=f"{sandbox.workers} local harness workers",
                              cpu=lambda: _cpu_now(docker=False))
    finally:
        await sandbox.aclose()


def ratio_text(pool: Figures, baseline: Figures) -> str:
    text = f"{pool.evals_per_s / baseline.evals_per_s:.0f}x by throughput"
    if pool.cpu_ms and baseline.cpu_ms:
        text += f", {baseline.cpu_ms / pool.cpu_ms:.0f}x by CPU per evaluation"
    return text


def _load() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000, help="evaluations per warm backend")
    parser.add_argument("--baseline-runs", type=int, default=8, help="docker run evaluations")
    parser.add_argument("--pool-size", type=int, default=None, help="warm containers")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="evaluations in flight (default: 2 x pool size)")
    args = parser.parse_args(argv)
    pool_size = args.pool_size or DockerSandboxConfig().size
    concurrency = args.concurrency or 2 * pool_size

    print(f"load before: {_load()}")
    pool = await _docker_pool(args.jobs, args.pool_size, concurrency)
    baseline = await _docker_run(args.baseline_runs, min(concurrency, 2))
    process = await _process(args.jobs, concurrency)
    print(f"load after:  {_load()}")
    print()
    print(f"{'backend':<18}{'evals/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'x base':>8}"
          f"{'CPU ms/eval':>13}{'2-core cap.':>13}  note")
    for fig in (pool, baseline, process):
        ratio = fig.evals_per_s / baseline.evals_per_s
        cpu = f"{fig.cpu_ms:.2f}" if fig.cpu_ms else "n/a"
        cap = f"{2000 / fig.cpu_ms:.0f}/s" if fig.cpu_ms else "n/a"
        print(f"{fig.name:<18}{fig.evals_per_s:>9.1f}{fig.p50_ms:>9.2f}{fig.p95_ms:>9.2f}"
              f"{ratio:>7.1f}x{cpu:>13}{cap:>13}  {fig.note} ({fig.samples} evaluations)")
    print()
    capacity = 2000 / pool.cpu_ms if pool.cpu_ms else None
    ok_rate = pool.evals_per_s >= 200 or (capacity or 0) >= 200
    ok_ratio = pool.evals_per_s >= 40 * baseline.evals_per_s
    cap_text = f", {capacity:.0f}/s on two idle cores by CPU cost" if capacity else ""
    print(f"target >= 200 evals/s with the warm pool on 2 cores: {'met' if ok_rate else 'NOT met'} "
          f"({pool.evals_per_s:.0f}/s measured here{cap_text})")
    print(f"target >= 40x the docker run baseline: {'met' if ok_ratio else 'NOT met'} "
          f"({ratio_text(pool, baseline)})")
    print(f"versus ~5 runs/s for the best-known Python sandbox library reusing one container: "
          f"{pool.evals_per_s / 5:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
