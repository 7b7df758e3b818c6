"""Orchestration overhead of the evolution loop, and its memory over a long run.

An instant mutator (each proposal a new trivial program) and an instant in-memory sandbox (it
decides from the code text, never executes anything) isolate the loop's own cost: filtering,
hashing, cascade bookkeeping, population updates and hooks. The baseline, measured in the same
run, is a bare loop that sends the same jobs straight to the same sandbox, so the ratio is the
price of the machinery per candidate. Resident memory is sampled along a long run to show it
stays flat (no copy of the population per step). The database side is the lead's end-to-end
benchmark; this one has no I/O.

    python benchmarks/search_overhead.py [--candidates 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
from typing import ClassVar

from auto_dev.abc import Mutator, Sandbox
from auto_dev.evolution.program import MutationContext, Program, Proposal
from auto_dev.evolution.records import SearchHooks, SearchProgress
from auto_dev.evolution.search import EvolutionSearch, SearchConfig
from auto_dev.sandbox.base import Case, CaseResult, CaseStatus, SandboxJob, SandboxResult


class InstantSandbox(Sandbox):
    """Every case fails instantly (so the run never stops early)."""

    name: ClassVar[str] = "instant"

    async def run(self, job: SandboxJob) -> SandboxResult:
        cases = tuple(CaseResult(index=i, status=CaseStatus.WRONG_ANSWER, duration_s=1e-5,
                                 peak_memory_kb=1000) for i in range(len(job.cases)))
        return SandboxResult(backend=self.name, cases=cases, total=len(job.cases))


class InstantMutator(Mutator):
    """Each proposal is a new distinct program."""

    name: ClassVar[str] = "instant"

    def __init__(self) -> None:
        self.n = 0

    async def mutate(self, parent: Program, context: MutationContext) -> list[Proposal]:
        out = []
        for _ in range(context.max_proposals):
            self.n += 1
            out.append(Proposal(code=f"def f(x):\n    return x + {self.n}\n", entrypoint="f",
                                operator="instant", parent_ids=(parent.id or "",)))
        return out


CASES = [Case(args=(i,), expected=-1) for i in range(4)]


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def bare_loop(n: int) -> float:
    sandbox = InstantSandbox()
    started = time.perf_counter()
    for k in range(n):
        await sandbox.run(SandboxJob(code=f"def f(x):\n    return x + {k}\n", entrypoint="f",
                                     cases=tuple(CASES)))
    return time.perf_counter() - started


async def search_loop(n: int, samples: list[tuple[int, float]]) -> tuple[float, float, int]:
    def on_progress(p: SearchProgress) -> None:
        if p.evaluations % max(n // 10, 1) < 4:
            samples.append((p.evaluations, rss_mb()))

    search = EvolutionSearch(
        Program(code="def f(x):\n    return x\n", entrypoint="f"), CASES, InstantSandbox(),
        [InstantMutator()], budget=n, hooks=SearchHooks(on_progress=on_progress),
        config=SearchConfig(keep_candidate_stats=False),
    )
    started = time.perf_counter()
    result = await search.run()
    return time.perf_counter() - started, result.sandbox_seconds, result.evaluations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=5000)
    args = parser.parse_args()
    n = args.candidates
    from auto_dev.logging import configure_logging

    configure_logging("warning")
    print(f"search overhead: {n} candidates, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}")
    bare = asyncio.run(bare_loop(n))
    samples: list[tuple[int, float]] = []
    total, sandbox_s, evaluations = asyncio.run(search_loop(n, samples))
    loop_only = total - sandbox_s
    print(f"bare loop (sandbox calls only): {n / bare:,.0f} candidates/s")
    print(f"evolution search, end to end:   {evaluations / total:,.0f} candidates/s "
          f"({total / bare:.1f}x the bare loop's time)")
    print(f"evolution search, excluding sandbox time: {evaluations / loop_only:,.0f} "
          f"candidates/s ({loop_only / evaluations * 1e6:.0f} us of orchestration per candidate)")
    print("resident memory along the run (evaluations: MB): "
          + ", ".join(f"{e}: {m:.1f}" for e, m in samples))
    if len(samples) >= 2:
        print(f"growth from the first to the last sample: {samples[-1][1] - samples[0][1]:+.1f} "
              f"MB; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MB")
    print(f"load average {os.getloadavg()[0]:.2f} at end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
