"""ProcessSandbox throughput versus starting ``python -c`` for every evaluation.

One evaluation = one job with one case of a trivial candidate (``x + 1``), checked against its
expected value. Both sides run the same number of evaluations in flight (``--concurrency``):

* **sandbox**: :class:`auto_dev.sandbox.process.ProcessSandbox` (warm fork-server workers; each
  case still runs in a freshly forked, rlimited child in a fresh temporary directory).
* **baseline**: a new ``python -c RUNNER`` per evaluation, with a cleared environment, a fresh
  temporary working directory and the same rlimits applied by the runner before it executes the
  candidate. ``--baseline-flags`` chooses the interpreter flags (default none: plain
  ``python -c``; ``-I -S`` is the cheapest start Python offers).

Prints evaluations per second, p50/p95 latency, the speed-up, and the load average (the machine
may be shared). Because a shared machine skews wall-clock rates, it also prints the CPU time each
side spent per evaluation (this process and all its children, workers and cases included) and the
rate that would give on all CPUs of an otherwise idle machine.

    python benchmarks/process_sandbox.py [--evals 3000] [--baseline-evals 300] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time

from auto_dev.sandbox.base import Case, Limits, SandboxJob
from auto_dev.sandbox.process import ProcessSandbox

CODE = "def solve(x):\n    return x + 1\n"
LIMITS = Limits(timeout_s=2.0, memory_mb=256)

RUNNER = r"""
import json, resource, sys
job = json.loads(sys.stdin.buffer.read())
lim = job["limits"]
mib = 1024 * 1024
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
resource.setrlimit(resource.RLIMIT_CPU, (int(lim["cpu_s"]), int(lim["cpu_s"]) + 1))
resource.setrlimit(resource.RLIMIT_FSIZE, (lim["file_size_mb"] * mib,) * 2)
resource.setrlimit(resource.RLIMIT_AS, (lim["memory_mb"] * mib,) * 2)
case = job["cases"][0]
namespace = {"__name__": "__candidate__"}
exec(compile(job["code"], "<candidate>", "exec"), namespace)
output = namespace[job["entrypoint"]](*case["args"], **case["kwargs"])
sys.stdout.write(json.dumps({"output": output, "ok": output == case["expected"]}))
"""


def job_for(i: int) -> SandboxJob:
    return SandboxJob(code=CODE, entrypoint="solve", cases=(Case(args=(i,), expected=i + 1),),
                      limits=LIMITS)


async def drive(n: int, concurrency: int, one: object) -> tuple[float, list[float]]:
    """Run ``one(i)`` for i < n with ``concurrency`` in flight; wall time and latencies."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def timed(i: int) -> None:
        async with gate:
            t0 = time.perf_counter()
            await one(i)  # type: ignore[operator]
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(timed(i) for i in range(n)))
    return time.perf_counter() - started, latencies


async def sandbox_side(n: int, concurrency: int, workers: int | None) -> tuple[float, list[float]]:
    async with ProcessSandbox(workers=workers) as sandbox:
        info = await sandbox.describe()
        print(f"sandbox: {info['workers']} workers, uid {info['uid']}, "
              f"namespaces {info['namespaces']}, reap {info['reap']}")
        # Warm every worker before timing.
        await asyncio.gather(*(sandbox.run(job_for(i)) for i in range(2 * info["workers"])))

        async def one(i: int) -> None:
            result = await sandbox.run(job_for(i))
            if not result.all_passed:
                raise SystemExit(f"sandbox evaluation {i} failed: {result}")

        return await drive(n, concurrency, one)


async def baseline_side(n: int, concurrency: int, flags: list[str]) -> tuple[float, list[float]]:
    async def one(i: int) -> None:
        workdir = tempfile.mkdtemp(prefix="auto-dev-baseline-")
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, *flags, "-c", RUNNER, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, env={"PATH": "/usr/local/bin:/usr/bin:/bin"},
                cwd=workdir,
            )
            out, _ = await proc.communicate(json.dumps(job_for(i).to_wire()).encode())
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if proc.returncode != 0 or not json.loads(out)["ok"]:
            raise SystemExit(f"baseline evaluation {i} failed: {out!r}")

    return await drive(n, concurrency, one)


def cpu_seconds() -> float:
    """CPU time of this process and of every child it has reaped (workers, their cases)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def summary(label: str, n: int, wall: float, latencies: list[float], cpu: float) -> float:
    rate = n / wall
    cuts = statistics.quantiles(latencies, n=100)
    per_eval = cpu / n
    idle_rate = (os.cpu_count() or 1) / per_eval
    print(f"{label:<24} {rate:8.1f} evals/s  p50 {cuts[49] * 1000:7.2f} ms  "
          f"p95 {cuts[94] * 1000:7.2f} ms  cpu {per_eval * 1000:6.2f} ms/eval "
          f"(= {idle_rate:7.1f} evals/s on idle cpus)  [{n} in {wall:.2f} s]")
    return rate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--evals", type=int, default=3000)
    parser.add_argument("--baseline-evals", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None, help="default: os.cpu_count()")
    parser.add_argument("--baseline-flags", default="", help='e.g. "-I -S"')
    args = parser.parse_args()
    flags = args.baseline_flags.split()
    print(f"cpus {os.cpu_count()}, load average before {os.getloadavg()}, "
          f"concurrency {args.concurrency}")
    cpu0 = cpu_seconds()
    wall, lat = await sandbox_side(args.evals, args.concurrency, args.workers)
    cpu1 = cpu_seconds()  # the sandbox is closed: its workers (and their cases) are reaped
    fast = summary("ProcessSandbox", args.evals, wall, lat, cpu1 - cpu0)
    wall, lat = await baseline_side(args.baseline_evals, args.concurrency, flags)
    slow = summary(f"python {' '.join([*flags, '-c'])}", args.baseline_evals, wall, lat,
                   cpu_seconds() - cpu1)
    print(f"speed-up: {fast / slow:.1f}x   load average after {os.getloadavg()}")


if __name__ == "__main__":
    asyncio.run(main())
