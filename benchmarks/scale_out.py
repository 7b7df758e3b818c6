"""Scale-out through Ray: evaluations per second with 1, 2, 4 and 8 actors, and the price of the
hop against the local pool.

Starts a local Ray instance (2 CPUs, no dashboard) and measures, in one run:

* **(a) scaling**: a candidate whose cases each wait 50 ms (``time.sleep(0.05)``, standing for
  remote tool and model calls) evaluated through :class:`~auto_dev.sandbox.ray.RaySandbox` with
  1, 2, 4 and 8 actors of one process-sandbox worker each. Every configuration gets the same
  number of evaluations per actor, all submitted at once: the sandbox keeps one job per slot in
  flight and holds the rest back. Goal: >= 3.5x from 1 to 4 actors, >= 6x at 8.
* **(b) the hop**: a trivial CPU-bound candidate (one case, a small sum) through Ray (one actor
  with a pool of 2 workers) against the same pool used directly
  (:class:`~auto_dev.sandbox.process.ProcessSandbox` with 2 workers) in this process: throughput
  with 8 callers (the pool queues them; Ray keeps 2 in flight, one per slot, and holds the rest
  back) and latency one at a time, as ratios.
* **(c) one search cycle**: the same :class:`~auto_dev.evolution.search.EvolutionSearch` (same
  seed, same problem, same budget; each case waits 50 ms) on 1 and on 4 actors, the search
  keeping as many candidates in flight as the actors have slots, and on 4 actors held to 2 in
  flight (the fixed concurrency the search had before). The runs must settle the same
  candidates (checked); the wall-time ratios are printed. Goal: >= 3x from 1 to 4 actors.

Prints rich tables and the load average (the machine may be shared by other work).

    python benchmarks/scale_out.py [--evals-per-actor 16] [--cases 4] [--hop-evals 600]
                                   [--search-budget 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable

from rich.console import Console
from rich.table import Table

from auto_dev.abc import Mutator, Sandbox
from auto_dev.evolution.program import MutationContext, Program, Proposal
from auto_dev.evolution.search import EvolutionSearch, SearchConfig
from auto_dev.sandbox.base import Case, Limits, SandboxJob
from auto_dev.sandbox.process import ProcessSandbox
from auto_dev.sandbox.ray import RaySandbox

WAITING = "import time\ndef f(i):\n    time.sleep(0.05)\n    return i\n"
TRIVIAL = "def f(n):\n    return sum(i * i for i in range(n))\n"
ACTOR_COUNTS = (1, 2, 4, 8)


def waiting_job(i: int, cases: int) -> SandboxJob:
    return SandboxJob(code=WAITING, entrypoint="f", limits=Limits(timeout_s=5.0),
                      cases=tuple(Case(args=(i,), expected=i) for _ in range(cases)))


def trivial_job(i: int) -> SandboxJob:
    n = 500 + i % 7
    return SandboxJob(code=TRIVIAL, entrypoint="f",
                      cases=(Case(args=(n,), expected=sum(k * k for k in range(n))),))


async def drive(count: int, in_flight: int,
                one: Callable[[int], Awaitable[bool]]) -> tuple[float, list[float]]:
    """Run ``one(i)`` for i < count with at most ``in_flight`` callers; wall time, latencies.
    Every evaluation must pass."""
    gate = asyncio.Semaphore(in_flight)
    latencies: list[float] = []

    async def timed(i: int) -> None:
        async with gate:
            started = time.perf_counter()
            if not await one(i):
                raise SystemExit(f"evaluation {i} did not pass")
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(timed(i) for i in range(count)))
    return time.perf_counter() - started, latencies


async def passes(sandbox: Sandbox, job: SandboxJob) -> bool:
    return (await sandbox.run(job)).all_passed


async def scaling(evals_per_actor: int, cases: int) -> list[tuple[int, int, float, float]]:
    """(actors, evaluations, seconds, evaluations/s) per actor count."""
    rows = []
    for actors in ACTOR_COUNTS:
        box = RaySandbox(actors=actors, slots_per_actor=1, node_sandbox="process")
        try:
            await box.start()
            await drive(actors, actors, lambda i, b=box: passes(b, waiting_job(i, 1)))  # warm
            count = evals_per_actor * actors
            seconds, _ = await drive(count, count,
                                     lambda i, b=box: passes(b, waiting_job(i, cases)))
            stats = box.stats()
            if stats.most_in_flight > box.slots:
                raise SystemExit(f"{stats.most_in_flight} jobs in flight on {box.slots} slots")
        finally:
            await box.aclose()
        rows.append((actors, count, seconds, count / seconds))
    return rows


async def hop(evals: int) -> dict[str, tuple[float, float]]:
    """{"local"|"ray": (evaluations/s with 8 in flight, p50 latency one at a time)}."""
    found = {}
    sandboxes: list[tuple[str, Sandbox]] = [
        ("local", ProcessSandbox(workers=2)),
        ("ray", RaySandbox(actors=1, slots_per_actor=2, node_sandbox="process"))]
    for name, box in sandboxes:
        try:
            await drive(20, 2, lambda i, b=box: passes(b, trivial_job(i)))  # warm: 2 workers
            seconds, _ = await drive(evals, 8, lambda i, b=box: passes(b, trivial_job(i)))
            _, single = await drive(evals // 3, 1, lambda i, b=box: passes(b, trivial_job(i)))
        finally:
            await box.aclose()
        found[name] = (evals / seconds, statistics.median(single))
    return found


class WaitingConstantMutator(Mutator):
    """Proposes ``f(n) = n + K`` for K = 1, 2, ..., each case waiting 50 ms (a remote call)."""

    name = "waiting_constant"

    def __init__(self) -> None:
        self.k = 0

    async def mutate(self, parent: Program, context: MutationContext) -> list[Proposal]:
        proposals = []
        for _ in range(context.max_proposals):
            self.k += 1
            code = f"import time\ndef f(n):\n    time.sleep(0.05)\n    return n + {self.k}\n"
            proposals.append(Proposal(code=code, entrypoint="f", operator="constant",
                                      parent_ids=(parent.id,) if parent.id else ()))
        return proposals


#: Half the cases want n + 9 (a candidate fixes them, and becomes the parent), half n + 1000.
SEARCH_CASES = [Case(args=(n,), expected=n + 9) for n in range(4)] + [
    Case(args=(n,), expected=n + 1000) for n in range(4, 8)]
SEARCH_SEED = "import time\ndef f(n):\n    time.sleep(0.05)\n    return n\n"


async def search_cycle(actors: int, concurrency: int | None, budget: int
                       ) -> tuple[float, Settled, int, int]:
    """(wall seconds of the search, its settled candidates, most jobs in flight, window)."""
    box = RaySandbox(actors=actors, slots_per_actor=1, node_sandbox="process")
    try:
        await box.start()
        # Warm every actor one job at a time (placement takes turns), so that the most jobs
        # in flight the sandbox reports afterwards is the search's own.
        await drive(actors, 1, lambda i: passes(box, waiting_job(i, 1)))
        search = EvolutionSearch(
            Program(code=SEARCH_SEED, entrypoint="f"), SEARCH_CASES, box,
            [WaitingConstantMutator()], budget=budget, rng_seed=11,
            limits=Limits(timeout_s=5.0), config=SearchConfig(concurrency=concurrency),
        )
        started = time.perf_counter()
        result = await search.run()
        seconds = time.perf_counter() - started
        most = box.stats().most_in_flight
    finally:
        await box.aclose()
    if result.evaluations != budget:
        raise SystemExit(f"the search stopped after {result.evaluations} of {budget}")
    window = concurrency if concurrency is not None else box.slots
    settled = [(c.id, c.status, c.passed) for c in result.candidates]
    return seconds, settled, most, window


Settled = list[tuple[str, str, int]]


async def search_cycles(budget: int) -> list[tuple[str, float, int, int, Settled]]:
    """(label, wall seconds, window, most in flight, settled candidates) per configuration."""
    rows = []
    for label, actors, concurrency in (("1 actor", 1, None), ("4 actors, 2 in flight", 4, 2),
                                       ("4 actors", 4, None)):
        seconds, settled, most, window = await search_cycle(actors, concurrency, budget)
        rows.append((label, seconds, window, most, settled))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--evals-per-actor", type=int, default=16)
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--hop-evals", type=int, default=600)
    parser.add_argument("--search-budget", type=int, default=32)
    args = parser.parse_args()

    import logging

    import ray
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    console = Console()
    started = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=80 * 1024 * 1024, configure_logging=False)
    console.print(f"Ray {ray.__version__} started locally in {time.perf_counter() - started:.1f} s"
                  f"; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
    try:
        rows = asyncio.run(scaling(args.evals_per_actor, args.cases))
        hops = asyncio.run(hop(args.hop_evals))
        cycles = asyncio.run(search_cycles(args.search_budget))
    finally:
        ray.shutdown()

    base = rows[0][3]
    table = Table(title=f"(a) Ray scale-out: {args.cases} cases of 50 ms per evaluation, "
                        "one process-sandbox worker per actor")
    for column in ("actors", "evaluations", "seconds", "evaluations/s", "vs 1 actor", "goal"):
        table.add_column(column, justify="right")
    goals = {4: 3.5, 8: 6.0}
    for actors, count, seconds, rate in rows:
        speedup = rate / base
        goal = goals.get(actors)
        verdict = "" if goal is None else (f"[green]>= {goal}x met[/green]" if speedup >= goal
                                           else f"[red]>= {goal}x missed[/red]")
        table.add_row(str(actors), str(count), f"{seconds:.2f}", f"{rate:.1f}",
                      f"{speedup:.2f}x", verdict)
    console.print(table)

    local_rate, local_p50 = hops["local"]
    ray_rate, ray_p50 = hops["ray"]
    table = Table(title="(b) the hop: trivial candidate, a pool of 2 workers used directly or "
                        "through one Ray actor")
    for column in ("path", "evaluations/s (8 callers)", "p50 latency (1 caller)"):
        table.add_column(column, justify="right")
    table.add_row("local pool", f"{local_rate:.0f}", f"{local_p50 * 1000:.2f} ms")
    table.add_row("through Ray", f"{ray_rate:.0f}", f"{ray_p50 * 1000:.2f} ms")
    table.add_row("Ray / local", f"{ray_rate / local_rate:.2f}x",
                  f"{ray_p50 / local_p50:.2f}x (+{(ray_p50 - local_p50) * 1000:.2f} ms)")
    console.print(table)

    table = Table(title=f"(c) one search cycle: budget {args.search_budget}, 8 cases of 50 ms, "
                        "same seed and problem, one process-sandbox worker per actor")
    for column in ("sandbox", "in flight (window)", "most seen", "wall seconds",
                   "vs 1 actor"):
        table.add_column(column, justify="right")
    base_seconds = cycles[0][1]
    for label, seconds, window, most, _ in cycles:
        table.add_row(label, str(window), str(most), f"{seconds:.2f}",
                      f"{base_seconds / seconds:.2f}x")
    console.print(table)
    same = all(row[4] == cycles[0][4] for row in cycles)
    speedup = base_seconds / cycles[2][1]
    verdict = "[green]>= 3x met[/green]" if speedup >= 3 else "[red]>= 3x missed[/red]"
    console.print(f"1 -> 4 actors: {speedup:.2f}x ({verdict}); 4 actors, slots vs 2 in flight: "
                  f"{cycles[1][1] / cycles[2][1]:.2f}x; same candidates settled in every run: "
                  f"{'yes' if same else '[red]NO[/red]'}")
    console.print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
