"""Repair quality: how many buggy functions ``auto-dev evolve`` repairs offline, and how fast.

Each case in ``benchmarks/repair/`` is a buggy function (``NAME.py``) with its tests
(``NAME.tests.json``); ``cases.json`` names the entrypoint and the kind of bug. For every case
this runs ``auto-dev evolve NAME.py --entrypoint E --tests NAME.tests.json --budget 1000 --json``
as a subprocess (``python -m auto_dev.cli evolve`` when the ``auto-dev`` command is not
installed) and reads the JSON object on its last line.

Baseline, measured in the same run: the same search in-process with an *unprioritised random*
single-edit mutator (uniform operator weights, no systematic enumeration, no failure evidence),
so the ratio shows what the ordering and the cascade buy.

    python benchmarks/repair.py [--budget 1000] [--seed 0] [--only NAME ...] [--no-baseline]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent / "repair"


def _command() -> list[str]:
    exe = shutil.which("auto-dev")
    if exe:
        return [exe, "evolve"]
    return [sys.executable, "-m", "auto_dev.cli", "evolve"]


def run_cli(case: dict[str, str], budget: int, seed: int, sandbox: str) -> dict[str, Any]:
    name = case["name"]
    cmd = [*_command(), str(HERE / f"{name}.py"), "--entrypoint", case["entrypoint"],
           "--tests", str(HERE / f"{name}.tests.json"), "--budget", str(budget), "--seed",
           str(seed), "--json", "--sandbox", sandbox, "--offline"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    wall = time.perf_counter() - started
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr or proc.stdout).strip()[-400:], "wall": wall,
                "exit": proc.returncode}
    data: dict[str, Any] = json.loads(lines[-1])
    data["wall"] = wall
    return data


async def run_baseline(case: dict[str, str], budget: int, seed: int) -> dict[str, Any]:
    from auto_dev.cli.evolve import load_tests
    from auto_dev.evolution.mutators import FAMILY_WEIGHTS, AstMutator
    from auto_dev.evolution.program import Program
    from auto_dev.evolution.search import EvolutionSearch, SearchConfig
    from auto_dev.sandbox.process import ProcessSandbox

    name = case["name"]
    code = (HERE / f"{name}.py").read_text()
    cases = load_tests(HERE / f"{name}.tests.json")
    mutator = AstMutator(systematic=False, crossover_rate=0.0,
                         weights=dict.fromkeys(FAMILY_WEIGHTS, 1.0))
    sandbox = ProcessSandbox(workers=2)
    try:
        search = EvolutionSearch(Program(code=code, entrypoint=case["entrypoint"]), cases,
                                 sandbox, [mutator], budget=budget, rng_seed=seed,
                                 config=SearchConfig(cascade_min_cases=10_000))
        started = time.perf_counter()
        result = await search.run()
        return {"solved": result.solved, "evaluations": result.evaluations,
                "seconds": time.perf_counter() - started}
    finally:
        await sandbox.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--sandbox", default="process")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--json-out", type=Path, default=None,
                        help="also write the per-case figures to this JSON file")
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from auto_dev.logging import configure_logging

    configure_logging("warning")  # the in-process baseline logs to stderr, like the CLI
    console = Console(width=max(Console().width, 150))
    cases = json.loads((HERE / "cases.json").read_text())
    if args.only:
        cases = [c for c in cases if c["name"] in args.only]
    load_start = os.getloadavg()
    console.print(f"[bold]repair benchmark[/]: {len(cases)} cases, budget {args.budget}, seed "
                  f"{args.seed}, sandbox {args.sandbox}, {os.cpu_count()} CPUs, load average "
                  f"{load_start[0]:.2f} at start")
    table = Table()
    for column in ("case", "bug", "repaired?", "evaluations", "search s", "wall s", "fix"):
        table.add_column(column)
    if not args.no_baseline:
        table.add_column("baseline evals")
        table.add_column("baseline s")
    rows: list[dict[str, Any]] = []
    for case in cases:
        ours = run_cli(case, args.budget, args.seed, args.sandbox)
        base = None if args.no_baseline else asyncio.run(
            run_baseline(case, args.budget, args.seed))
        rows.append({"case": case, "ours": ours, "base": base})
        if "error" in ours:
            cells = [case["name"], case["bug"], "[red]ERROR[/]", "-", "-", f"{ours['wall']:.1f}",
                     ours["error"][-80:]]
        else:
            cells = [case["name"], case["bug"],
                     "[green]yes[/]" if ours["solved"] else "[red]no[/]",
                     str(ours["evaluations"]), f"{ours['seconds']:.2f}", f"{ours['wall']:.2f}",
                     f"{ours.get('best_operator') or '-'}"]
        if base is not None:
            cells += [f"{base['evaluations']}{'' if base['solved'] else ' (fail)'}",
                      f"{base['seconds']:.2f}"]
        table.add_row(*cells)
        console.print(f"  {case['name']}: {cells[2]} in {cells[3]} evaluations")
    console.print(table)
    repaired = [r for r in rows if r["ours"].get("solved")]
    seconds = [r["ours"]["seconds"] for r in repaired] or [0.0]
    evals = [r["ours"]["evaluations"] for r in repaired] or [0]
    walls = [r["ours"]["wall"] for r in repaired] or [0.0]
    console.print(f"[bold]repaired {len(repaired)}/{len(rows)}[/] within budget {args.budget}; "
                  f"search time median {statistics.median(seconds):.2f} s, max "
                  f"{max(seconds):.2f} s; wall time with process start median "
                  f"{statistics.median(walls):.2f} s; evaluations median "
                  f"{statistics.median(evals)}")
    if not args.no_baseline:
        base_ok = [r for r in rows if r["base"]["solved"]]
        both = [r for r in rows if r["base"]["solved"] and r["ours"].get("solved")]
        console.print(f"baseline (random single edits, no ordering, no cascade): repaired "
                      f"{len(base_ok)}/{len(rows)}")
        ok = [r for r in rows if "error" not in r["ours"]]
        ours_evals = sum(r["ours"]["evaluations"] for r in ok)
        base_evals = sum(r["base"]["evaluations"] for r in ok)
        ours_s = sum(r["ours"]["seconds"] for r in ok)
        base_s = sum(r["base"]["seconds"] for r in ok)
        console.print(f"evaluations spent over all cases (a failure spends the whole budget): "
                      f"baseline {base_evals}, auto-dev {ours_evals} "
                      f"({base_evals / max(ours_evals, 1):.1f}x); search time baseline "
                      f"{base_s:.1f} s, auto-dev {ours_s:.1f} s "
                      f"({base_s / max(ours_s, 1e-9):.1f}x)")
        if both:
            median_ours = statistics.median(r["ours"]["evaluations"] for r in both)
            median_base = statistics.median(r["base"]["evaluations"] for r in both)
            console.print(f"on the {len(both)} cases both repaired: median evaluations baseline "
                          f"{median_base}, auto-dev {median_ours}")
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(
            [{"case": r["case"]["name"], "solved": bool(r["ours"].get("solved")),
              "evaluations": r["ours"].get("evaluations"), "seconds": r["ours"].get("seconds"),
              "wall": r["ours"]["wall"], "operator": r["ours"].get("best_operator"),
              "baseline": r["base"]} for r in rows], indent=1))
    load_end = os.getloadavg()
    console.print(f"load average {load_end[0]:.2f} at end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
