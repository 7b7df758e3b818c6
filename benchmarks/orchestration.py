"""Engine orchestration speed and memory, measured side by side in one run.

1. Throughput: an AlphaEvolver cycle with an instant mutator and trivial tests, end to end:
   gate, run lock, search (filters, population, scoring), and every evaluated candidate written
   to a SQLite file. Compared with a baseline measured in the same run: the same candidates sent
   straight to the same sandbox with no engine and no database. Done twice: with an instant
   sandbox (pure orchestration cost) and with the real ProcessSandbox.
2. Memory: a 5,000-candidate cycle, resident memory sampled every 500 evaluations.

Targets (issue #2): >= 100 candidates/s end to end; RSS < 300 MB and flat over 5,000.

Run: python benchmarks/orchestration.py [--candidates N] [--memory-candidates N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import tempfile
import time
from typing import Any, ClassVar

from auto_dev import AutoDev, load_settings
from auto_dev._testing_sandbox import ScriptedSandbox
from auto_dev.abc import Mutator, Sandbox
from auto_dev.engines.alpha_evolver import AlphaEvolver
from auto_dev.evolution.program import MutationContext, Program, Proposal
from auto_dev.evolution.search import SearchConfig
from auto_dev.sandbox.base import Case, SandboxJob
from auto_dev.sandbox.process import ProcessSandbox

SEED = "def f(x):\n    return x\n"
# Unreachable expectations: every candidate is evaluated and rejected, so the run uses its
# whole budget and every candidate is written.
TESTS = [{"args": [1], "expected": -1}, {"args": [2], "expected": -2}]


class InstantMutator(Mutator):
    """Proposes ``return x + k`` for k = 1, 2, ...: unique, valid, instant."""

    name: ClassVar[str] = "instant"

    def __init__(self) -> None:
        self.k = 0

    async def mutate(self, parent: Program, context: MutationContext) -> list[Proposal]:
        out = []
        for _ in range(context.max_proposals):
            self.k += 1
            out.append(Proposal(code=f"def f(x):\n    return x + {self.k}\n", entrypoint="f",
                                operator="instant.add", parent_ids=(parent.id or "",)))
        return out


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _script(code: str, case: Case) -> Any:
    # Decide the "return value" from the code text; nothing is executed.
    k = int(code.rsplit("+", 1)[1]) if "+" in code else 0
    return case.args[0] + k


async def engine_run(sandbox: Sandbox, n: int, samples: list[tuple[int, float]] | None = None
                     ) -> tuple[float, int, int]:
    """Candidates/s of one AlphaEvolver cycle; returns (rate, evaluations, rows written)."""
    from sqlalchemy import func, select

    from auto_dev.models import ToolMutation

    folder = tempfile.mkdtemp()
    settings = load_settings(database_url=f"sqlite:///{folder}/bench.db", tenant="bench",
                             log_level="error")
    autodev = AutoDev(settings, sandbox=sandbox, builtin_engines=False, load_plugins=False)

    def progress(p: Any) -> None:
        if samples is not None and p.evaluations % 500 == 0 and (
                not samples or samples[-1][0] != p.evaluations):
            samples.append((p.evaluations, rss_mb()))

    engine = AlphaEvolver(config=SearchConfig(batch_size=8, concurrency=2,
                                              keep_candidate_stats=False),
                          on_progress=progress)
    autodev.engines.register(engine)
    autodev.context.mutators = [InstantMutator()]
    autodev.context.mutator_weights = [1.0]
    autodev.configure_tenant(enabled=True, alpha_evolver=True)
    autodev.set_maturity("bot", "auto_dev.alpha_evolver", "supervised")
    autodev.register_tool("f", SEED, "f", tests=TESTS)
    started = time.perf_counter()
    result = await engine.run_cycle("f", n, agent="bot")
    seconds = time.perf_counter() - started
    with autodev.database.session() as session:
        rows = session.scalar(select(func.count()).select_from(ToolMutation)) or 0
    await autodev.aclose()
    assert result.status == "completed", result.reason
    return result.evaluations / seconds, result.evaluations, rows


async def baseline_run(sandbox: Sandbox, n: int) -> float:
    """Candidates/s sending the same jobs straight to the sandbox, two at a time."""
    cases = tuple(Case.from_dict(t) for t in TESTS)
    jobs = [SandboxJob(code=f"def f(x):\n    return x + {k}\n", entrypoint="f", cases=cases)
            for k in range(1, n + 1)]
    semaphore = asyncio.Semaphore(2)

    async def one(job: SandboxJob) -> None:
        async with semaphore:
            await sandbox.run(job)

    started = time.perf_counter()
    await asyncio.gather(*(one(j) for j in jobs))
    return n / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=2000)
    parser.add_argument("--memory-candidates", type=int, default=5000)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")

    rows = []
    instant = ScriptedSandbox(_script)
    base = await baseline_run(instant, args.candidates)
    rate, evaluations, written = await engine_run(instant, args.candidates)
    rows.append(("instant sandbox", rate, base, evaluations, written))

    process = ProcessSandbox()
    try:
        await baseline_run(process, 50)  # warm the workers
        base = await baseline_run(process, min(args.candidates, 1000))
        rate, evaluations, written = await engine_run(process, min(args.candidates, 1000))
        rows.append(("ProcessSandbox", rate, base, evaluations, written))
    finally:
        await process.aclose()

    print("\nthroughput: one AlphaEvolver cycle, every evaluated candidate written (SQLite file)")
    print(f"{'sandbox':<18}{'engine cand/s':>15}{'baseline cand/s':>17}{'engine/baseline':>17}"
          f"{'evaluated':>11}{'rows':>7}")
    for name, rate, base, evaluations, written in rows:
        print(f"{name:<18}{rate:>15.0f}{base:>17.0f}{rate / base:>17.2f}{evaluations:>11}"
              f"{written:>7}")
    print("target: >= 100 candidates/s end to end")

    samples: list[tuple[int, float]] = []
    before = rss_mb()
    await engine_run(ScriptedSandbox(_script), args.memory_candidates, samples)
    print(f"\nmemory: {args.memory_candidates}-candidate cycle, RSS before {before:.0f} MB")
    print(f"{'evaluations':>12}{'RSS MB':>10}")
    for evaluations, mb in samples:
        print(f"{evaluations:>12}{mb:>10.1f}")
    if len(samples) >= 2:
        growth = samples[-1][1] - samples[0][1]
        peak = max(mb for _, mb in samples)
        print(f"peak {peak:.1f} MB (target < 300), growth from first to last sample "
              f"{growth:+.1f} MB over {samples[-1][0] - samples[0][0]} evaluations")


if __name__ == "__main__":
    asyncio.run(main())
