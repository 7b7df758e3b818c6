"""Sandbox throughput and latency, side by side in one run.

    python benchmarks/sandbox.py [--jobs 2000] [--baseline-runs 8] [--pool-size N] [--concurrency C]

Three ways to run the same trivial candidate (``def double(x): return 2 * x``, one case):

* ``docker pool``: :class:`DockerSandbox`, the warm pool of hardened containers (a fresh forked
  process per case inside a long-lived container);
* ``docker run``: the baseline, one hardened ``docker run --rm -i`` per evaluation with the same
  limits and flags (same image, same harness fed on stdin), i.e. a fresh container every time;
* ``process``: :class:`ProcessSandbox`, the local harness without containers.

For each: evaluations per second under concurrency, and p50/p95 latency of single evaluations
run one at a time. Ratios are against the ``docker run`` baseline measured in this run. Needs a
Docker engine and the sandbox image (``auto-dev sandbox build-image``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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


@dataclass
class Figures:
    name: str
    evals_per_s: float
    p50_ms: float
    p95_ms: float
    samples: int
    note: str = ""


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _measure(name: str, one: Callable[[], Awaitable[None]], jobs: int, concurrency: int,
                   latency_samples: int, note: str = "") -> Figures:
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

    t0 = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return Figures(name, jobs / elapsed, 1000 * _percentile(latencies, 0.5),
                   1000 * _percentile(latencies, 0.95), jobs, note)


async def _docker_pool(jobs: int, pool_size: int | None, concurrency: int) -> Figures:
    sandbox = DockerSandbox(DockerSandboxConfig(pool_size=pool_size))
    try:
        await sandbox.start()

        async def one() -> None:
            result = await sandbox.run(JOB)
            assert result.all_passed, result

        figures = await _measure("docker pool", one, jobs, concurrency, min(300, jobs),
                                 note=f"{sandbox.config.size} warm containers")
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
                          note="one fresh container per evaluation")


async def _process(jobs: int, concurrency: int) -> Figures:
    sandbox = ProcessSandbox()
    try:
        async def one() -> None:
            result = await sandbox.run(JOB)
            assert result.all_passed, result

        return await _measure("process", one, jobs, concurrency, min(300, jobs),
                              note=f"{sandbox.workers} local harness workers")
    finally:
        await sandbox.aclose()


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
    print(f"{'backend':<18}{'evals/s':>10}{'p50 ms':>10}{'p95 ms':>10}{'x baseline':>12}  note")
    for fig in (pool, baseline, process):
        ratio = fig.evals_per_s / baseline.evals_per_s
        print(f"{fig.name:<18}{fig.evals_per_s:>10.1f}{fig.p50_ms:>10.2f}{fig.p95_ms:>10.2f}"
              f"{ratio:>11.1f}x  {fig.note} ({fig.samples} evaluations)")
    print()
    ok_rate = pool.evals_per_s >= 200
    ok_ratio = pool.evals_per_s >= 40 * baseline.evals_per_s
    print(f"target >= 200 evals/s with the warm pool: {'met' if ok_rate else 'NOT met'} "
          f"({pool.evals_per_s:.0f}/s)")
    print(f"target >= 40x the docker run baseline:    {'met' if ok_ratio else 'NOT met'} "
          f"({pool.evals_per_s / baseline.evals_per_s:.0f}x)")
    print(f"versus ~5 runs/s for the best-known Python sandbox library reusing one container: "
          f"{pool.evals_per_s / 5:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
