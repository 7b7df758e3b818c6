"""Repair benchmark: the search against the search before issue 11, both measured in this run.

Each case in ``benchmarks/repair/`` is a buggy function (``NAME.py``) with its tests
(``NAME.tests.json``) and a hand-fixed version (``fixed/NAME.py``); ``cases.json`` names the
entrypoint, the bug and the set: ``one-edit`` or ``two-edit``. The suite is checked first (every
fixed version passes all its tests, every buggy one fails some).

Two searches run every case, in-process, exactly as ``auto-dev evolve --offline`` runs one
(process sandbox with two workers, two candidates at a time):

* **baseline**: ``SearchConfig.legacy()``, the search before adaptive per-case deadlines, composed
  edits and model-call waste control (one timeout for every case, from the seed's slowest
  passing case);
* **current**: ``SearchConfig()``.

Offline (AST operators, ``--budget`` evaluations) it reports per set: programs repaired, median
evaluations of the repaired ones, median and maximum wall time per program, total sandbox
seconds. With a scripted model (``auto_dev.testing.OneEditLLM``: one random edit of the program
it is shown, at most ``--llm-calls`` calls per program) it reports model calls per repair
(all calls over all programs, divided by the programs repaired), for the model alone and for the
default mix (half model, half AST operators), over ``--llm-seeds`` model seeds.

Goals (issue 11): no program over 60 s offline; at least 70% of the two-edit set repaired
offline within budget 1000; at least 30% fewer model calls per repair.

    python benchmarks/repair.py [--budget 1000] [--seed 0] [--only NAME ...] [--set SET]
                                [--llm-calls 200] [--llm-seeds 2] [--no-llm] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent / "repair"
# Measure the checkout this script belongs to, not whatever auto_dev is installed.
sys.path.insert(0, str(HERE.parent.parent))
SETS = ("one-edit", "two-edit")
MODES = ("baseline", "current")


@dataclass
class Run:
    """One search of one case."""

    case: str
    set: str
    mode: str
    kind: str  # "offline", "model" or "mix"
    solved: bool
    evaluations: int
    wall_s: float
    sandbox_s: float
    llm_calls: int = 0
    llm_calls_wasted: int = 0
    deadline_saved_s: float = 0.0
    deadline_rechecks: int = 0
    operator: str | None = None
    model_seed: int = 0


def _config(mode: str) -> Any:
    from auto_dev.evolution.search import SearchConfig

    return SearchConfig.legacy(concurrency=2) if mode == "baseline" else SearchConfig(
        concurrency=2)


async def verify(cases: Sequence[dict[str, str]]) -> list[str]:
    """Problems with the suite (empty when every fixed version passes and every buggy fails)."""
    from auto_dev.cli.evolve import load_tests
    from auto_dev.sandbox.base import Limits, SandboxJob
    from auto_dev.sandbox.process import ProcessSandbox

    problems = []
    sandbox = ProcessSandbox(workers=2)
    try:
        for case in cases:
            tests = tuple(load_tests(HERE / f"{case['name']}.tests.json"))
            for label, path, want_all in (("fixed", HERE / "fixed" / f"{case['name']}.py", True),
                                          ("buggy", HERE / f"{case['name']}.py", False)):
                result = await sandbox.run(SandboxJob(code=path.read_text(),
                                                      entrypoint=case["entrypoint"], cases=tests,
                                                      limits=Limits(timeout_s=2.0)))
                if result.all_passed != want_all:
                    problems.append(f"{case['name']}: the {label} version passes "
                                    f"{result.passed}/{result.total}")
    finally:
        await sandbox.aclose()
    return problems


async def search(case: dict[str, str], mode: str, kind: str, budget: int, seed: int,
                 llm_calls: int, model_seed: int = 0) -> Run:
    from auto_dev.cli.evolve import load_tests
    from auto_dev.evolution.mutators import AstMutator
    from auto_dev.evolution.program import Program
    from auto_dev.evolution.search import EvolutionSearch
    from auto_dev.llm.mutator import LLMMutator
    from auto_dev.sandbox.base import Limits
    from auto_dev.sandbox.process import ProcessSandbox
    from auto_dev.testing import OneEditLLM

    name = case["name"]
    code = (HERE / f"{name}.py").read_text()
    tests = load_tests(HERE / f"{name}.tests.json")
    model = OneEditLLM(seed=model_seed, max_calls=llm_calls)
    mutators: list[Any] = [AstMutator()]
    mix = None
    if kind == "model":
        mutators = [LLMMutator(model)]
    elif kind == "mix":
        mutators, mix = [LLMMutator(model), AstMutator()], [0.5, 0.5]
    started = time.perf_counter()
    sandbox = ProcessSandbox(workers=2)
    try:
        result = await EvolutionSearch(
            Program(code=code, entrypoint=case["entrypoint"]), tests, sandbox, mutators,
            mix=mix, budget=budget, rng_seed=seed, limits=Limits(timeout_s=2.0),
            config=_config(mode)).run()
    finally:
        await sandbox.aclose()
    return Run(case=name, set=case["set"], mode=mode, kind=kind, solved=result.solved,
               evaluations=result.evaluations, wall_s=time.perf_counter() - started,
               sandbox_s=result.sandbox_seconds, llm_calls=len(model.calls),
               llm_calls_wasted=result.llm_calls_wasted,
               deadline_saved_s=result.deadline_saved_s,
               deadline_rechecks=result.deadline_rechecks,
               operator=result.best_record.operator if result.best_record else None,
               model_seed=model_seed)


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None, help="case names")
    parser.add_argument("--set", choices=SETS, default=None)
    parser.add_argument("--llm-calls", type=int, default=200)
    parser.add_argument("--llm-seeds", type=int, default=2)
    parser.add_argument("--no-llm", action="store_true")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from auto_dev.logging import configure_logging

    configure_logging("warning")
    console = Console(width=max(Console().width, 150))
    cases = json.loads((HERE / "cases.json").read_text())
    if args.only:
        cases = [c for c in cases if c["name"] in args.only]
    if args.set:
        cases = [c for c in cases if c["set"] == args.set]
    problems = asyncio.run(verify(cases))
    if problems:
        for problem in problems:
            console.print(f"[red]suite problem:[/] {problem}")
        return 1
    sizes = {s: sum(c["set"] == s for c in cases) for s in SETS}
    console.print(f"[bold]repair benchmark[/]: {len(cases)} cases ({sizes['one-edit']} one-edit, "
                  f"{sizes['two-edit']} two-edit; every fixed version passes, every buggy one "
                  f"fails), budget {args.budget}, seed {args.seed}, {os.cpu_count()} CPUs, "
                  f"load average {os.getloadavg()[0]:.2f} at start")
    runs: list[Run] = []
    for case in cases:
        for mode in MODES:
            run = asyncio.run(search(case, mode, "offline", args.budget, args.seed, 0))
            runs.append(run)
            console.print(f"  offline {mode:8} {case['name']:15} "
                          f"{'repaired' if run.solved else 'NOT repaired':12} "
                          f"{run.evaluations:4} evaluations {run.wall_s:6.1f} s "
                          f"(sandbox {run.sandbox_s:6.1f} s) {run.operator or ''}")
    kinds = [] if args.no_llm else ["model", "mix"]
    for kind in kinds:
        for case in cases:
            for model_seed in range(args.llm_seeds):
                for mode in MODES:
                    run = asyncio.run(search(case, mode, kind, args.budget, args.seed,
                                             args.llm_calls, model_seed))
                    runs.append(run)
                    console.print(f"  {kind:7} {mode:8} {case['name']:15} seed {model_seed} "
                                  f"{'repaired' if run.solved else 'NOT repaired':12} "
                                  f"{run.llm_calls:4} calls ({run.llm_calls_wasted} wasted) "
                                  f"{run.evaluations:4} evaluations {run.wall_s:6.1f} s")
    _report(console, Table, runs, cases, args)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps([asdict(r) for r in runs], indent=1))
    console.print(f"load average {os.getloadavg()[0]:.2f} at end")
    return 0


def _report(console: Any, table_cls: Any, runs: list[Run], cases: list[dict[str, str]],
            args: argparse.Namespace) -> None:
    offline = table_cls(title=f"offline (AST operators, budget {args.budget})")
    for column in ("set", "search", "repaired", "median evaluations (repaired)",
                   "median wall s", "max wall s", "total sandbox s", "deadline s saved (est.)"):
        offline.add_column(column)
    figures: dict[tuple[str, str], list[Run]] = {}
    for set_name in SETS:
        for mode in MODES:
            rows = [r for r in runs if r.kind == "offline" and r.set == set_name and r.mode == mode]
            if not rows:
                continue
            figures[(set_name, mode)] = rows
            repaired = [r for r in rows if r.solved]
            offline.add_row(set_name, mode, f"{len(repaired)}/{len(rows)}",
                            f"{_median([r.evaluations for r in repaired]):.0f}",
                            f"{_median([r.wall_s for r in rows]):.2f}",
                            f"{max(r.wall_s for r in rows):.1f}",
                            f"{sum(r.sandbox_s for r in rows):.1f}",
                            f"{sum(r.deadline_saved_s for r in rows):.1f}")
    console.print(offline)
    slowest = {mode: max((r for r in runs if r.kind == "offline" and r.mode == mode),
                         key=lambda r: r.wall_s, default=None) for mode in MODES}
    for mode, run in slowest.items():
        if run is not None:
            console.print(f"slowest program, {mode}: {run.case} {run.wall_s:.1f} s")
    calls: dict[tuple[str, str], float] = {}
    llm_kinds = sorted({r.kind for r in runs} - {"offline"})
    if llm_kinds:
        model = table_cls(title=f"scripted model (one random edit per call, at most "
                                f"{args.llm_calls} calls per program, {args.llm_seeds} model "
                                "seed(s))")
        for column in ("mutators", "search", "repaired", "model calls", "wasted (filtered)",
                       "calls per repair", "median wall s"):
            model.add_column(column)
        for kind in llm_kinds:
            for mode in MODES:
                rows = [r for r in runs if r.kind == kind and r.mode == mode]
                repaired = sum(r.solved for r in rows)
                total = sum(r.llm_calls for r in rows)
                calls[(kind, mode)] = total / repaired if repaired else float("inf")
                model.add_row("model only" if kind == "model" else "model 50% + AST 50%", mode,
                              f"{repaired}/{len(rows)}", str(total),
                              str(sum(r.llm_calls_wasted for r in rows)),
                              f"{calls[(kind, mode)]:.1f}",
                              f"{_median([r.wall_s for r in rows]):.2f}")
        console.print(model)
    console.print("[bold]goals[/]")
    current = [r for r in runs if r.kind == "offline" and r.mode == "current"]
    if current:
        worst = max(r.wall_s for r in current)
        console.print(f"  no program over 60 s offline: slowest {worst:.1f} s -> "
                      f"{'met' if worst <= 60 else 'NOT met'}")
    two = figures.get(("two-edit", "current"))
    if two:
        share = sum(r.solved for r in two) / len(two)
        console.print(f"  >= 70% of the two-edit set repaired offline: {share:.0%} -> "
                      f"{'met' if share >= 0.7 else 'NOT met'}")
    for kind in llm_kinds:
        base, cur = calls[(kind, "baseline")], calls[(kind, "current")]
        cut = 1 - cur / base if base and base != float("inf") else float("nan")
        label = "model only" if kind == "model" else "model 50% + AST 50%"
        console.print(f"  >= 30% fewer model calls per repair ({label}): {base:.1f} -> {cur:.1f}"
                      f" ({cut:.0%} fewer) -> {'met' if cut >= 0.3 else 'NOT met'}")


if __name__ == "__main__":
    raise SystemExit(main())
