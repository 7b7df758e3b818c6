"""Workflow benchmark: how many broken workflows ``workflows evolve`` repairs offline, and what
the interpreter costs per step against calling the same tools directly in the same sandbox.

1. **Suite check.** Every case in ``benchmarks/workflows/`` (see its README) is checked first:
   its ``fixed.json`` passes every task at seed 0 and its ``workflow.json`` fails some.
2. **Repairs.** Each case is evolved exactly as ``auto-dev workflows evolve WF.json --tasks
   TASKS.json --tools tools.py --budget 300 --seed 0 --offline --sandbox process`` evolves it:
   the same :func:`~auto_dev.workflows.search.evolve_workflow` over a
   :class:`~auto_dev.workflows.tools.SandboxToolInvoker` on a fresh two-worker
   :class:`~auto_dev.sandbox.process.ProcessSandbox` per case (its start-up counted in the wall
   time, as the command's would be). It runs in-process rather than through a subprocess with
   ``--json``: the figures are then the search's own, not Python start-up and imports (about a
   second per case on this machine), and the per-case results come as objects; the command
   itself is covered by ``tests/cli/test_workflows_evolve.py``. Prints per case: repaired,
   tasks passed before -> after, evaluations, wall seconds and the kept edits; then totals.
3. **Interpreter overhead.** One workflow of ``--steps`` tool steps (each step passes the
   previous step's output on) against the same ``--steps`` tool calls sent directly as sandbox
   jobs (the same seeded source and arguments the invoker sends), alternating ``--rounds``
   times in one sandbox; the ratio of the median times is the interpreter's cost per step. The
   interpreter alone (an in-memory tool invoker, no sandbox) is timed too, in microseconds per
   step.

    python benchmarks/workflows.py [--budget 300] [--seed 0] [--only CASE ...] [--steps 20]
                                   [--rounds 15] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent / "workflows"
# Measure the checkout this script belongs to, not whatever auto_dev is installed.
sys.path.insert(0, str(HERE.parent.parent))

ECHO_TOOL = "def bump(x):\n    return {\"n\": x[\"n\"] + 1}\n"


@dataclass
class Repair:
    """One ``workflows evolve`` run of one case."""

    case: str
    faults: int
    repaired: bool
    before: int
    after: int
    total: int
    evaluations: int
    wall_s: float
    stop: str
    edits: list[str]


def _case_dirs(only: list[str] | None) -> list[Path]:
    dirs = sorted(d for d in HERE.iterdir() if d.is_dir() and (d / "workflow.json").exists())
    return [d for d in dirs if not only or d.name in only]


async def check_suite(dirs: list[Path]) -> list[str]:
    """Problems with the suite (empty when every fix passes and every broken workflow fails)."""
    from auto_dev.sandbox.process import ProcessSandbox
    from auto_dev.workflows.interpreter import WorkflowInterpreter
    from auto_dev.workflows.search import evolve_workflow, load_tasks_file
    from auto_dev.workflows.tools import SandboxToolInvoker, load_tools_file

    problems = []
    sandbox = ProcessSandbox(workers=2)
    try:
        for case in dirs:
            interpreter = WorkflowInterpreter(SandboxToolInvoker(
                sandbox, load_tools_file(case / "tools.py")))
            tasks = load_tasks_file(case / "tasks.json")
            for label, want_all in (("fixed", True), ("workflow", False)):
                doc = json.loads((case / f"{label}.json").read_text())
                # Budget 0: the original's evaluation only, with the search's task seeds.
                result = await evolve_workflow(doc, tasks, interpreter=interpreter, budget=0)
                if result.solved != want_all:
                    problems.append(f"{case.name}: {label}.json passes {result.passed}/"
                                    f"{result.total} tasks")
    finally:
        await sandbox.aclose()
    return problems


async def repair(case: Path, budget: int, seed: int) -> Repair:
    from auto_dev.sandbox.process import ProcessSandbox
    from auto_dev.workflows.interpreter import WorkflowInterpreter
    from auto_dev.workflows.search import evolve_workflow, load_tasks_file
    from auto_dev.workflows.tools import SandboxToolInvoker, load_tools_file

    started = time.perf_counter()
    doc = json.loads((case / "workflow.json").read_text())
    tasks = load_tasks_file(case / "tasks.json")
    tools = load_tools_file(case / "tools.py")
    sandbox = ProcessSandbox(workers=2)
    try:
        interpreter = WorkflowInterpreter(SandboxToolInvoker(sandbox, tools))
        result = await evolve_workflow(doc, tasks, interpreter=interpreter, budget=budget,
                                       seed=seed, concurrency=2)
    finally:
        await sandbox.aclose()
    meta = json.loads((case / "case.json").read_text())
    return Repair(case=case.name, faults=int(meta["faults"]), repaired=result.solved,
                  before=result.original_passed, after=result.passed, total=result.total,
                  evaluations=result.evaluations, wall_s=time.perf_counter() - started,
                  stop=result.stop_reason, edits=list(result.lineage))


def chain_workflow(steps: int) -> dict[str, Any]:
    """``steps`` tool steps, each passing the previous step's output on."""
    chain = [{"id": "s0", "tool": "bump", "args": {"x": "${input.start}"}}]
    chain += [{"id": f"s{i}", "tool": "bump", "args": {"x": f"${{steps.s{i - 1}}}"}}
              for i in range(1, steps)]
    return {"name": "chain", "input": {"required": ["start"]}, "steps": chain,
            "output": f"steps.s{steps - 1}"}


async def overhead(steps: int, rounds: int) -> dict[str, float]:
    """Median seconds per step: direct sandbox jobs, the same calls through the interpreter,
    and the interpreter over in-memory tools."""
    from auto_dev.abc import ToolInvoker
    from auto_dev.sandbox.base import Case, Limits, SandboxJob
    from auto_dev.sandbox.process import ProcessSandbox
    from auto_dev.workflows.interpreter import WorkflowInterpreter, derive_seed
    from auto_dev.workflows.tools import DEFAULT_TOOL_TIMEOUT_S, SandboxToolInvoker, seeded_source

    class InMemoryTools(ToolInvoker):
        """The tool ``bump`` called in this process: the interpreter's cost without a sandbox."""

        def names(self) -> frozenset[str]:
            return frozenset({"bump"})

        async def invoke(self, tool: str, args: dict[str, Any], *, timeout_s: float | None,
                         seed: int) -> Any:
            return {"n": args["x"]["n"] + 1}

    doc = chain_workflow(steps)
    sandbox = ProcessSandbox(workers=2)
    direct: list[float] = []
    through: list[float] = []
    alone: list[float] = []
    try:
        interpreter = WorkflowInterpreter(SandboxToolInvoker(sandbox, {"bump": ECHO_TOOL}))
        in_memory = WorkflowInterpreter(InMemoryTools())
        limits = Limits(timeout_s=DEFAULT_TOOL_TIMEOUT_S)

        async def run_direct() -> None:
            value = {"n": 0}
            for i in range(steps):
                job = SandboxJob(seeded_source(ECHO_TOOL, derive_seed(0, f"s{i}", (), 1)),
                                 entrypoint="bump",
                                 cases=(Case(kwargs={"x": value}, has_expected=False),),
                                 limits=limits)
                result = await sandbox.run(job)
                value = result.cases[0].output
            assert value == {"n": steps}, value

        async def run_workflow(interp: Any) -> None:
            run = await interp.run(doc, {"start": {"n": 0}}, seed=0)
            assert run.ok and run.output == {"n": steps}, run.error

        await run_direct()  # warm both paths up
        await run_workflow(interpreter)
        for _ in range(rounds):
            for sink, action in ((direct, run_direct), (through,
                                                        lambda: run_workflow(interpreter))):
                started = time.perf_counter()
                await action()
                sink.append((time.perf_counter() - started) / steps)
            started = time.perf_counter()
            await run_workflow(in_memory)
            alone.append((time.perf_counter() - started) / steps)
    finally:
        await sandbox.aclose()
    return {"direct_s": statistics.median(direct), "workflow_s": statistics.median(through),
            "interpreter_only_s": statistics.median(alone)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None, help="case names")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from auto_dev.logging import configure_logging

    configure_logging("warning")
    console = Console(width=max(Console().width, 140))
    dirs = _case_dirs(args.only)
    problems = asyncio.run(check_suite(dirs))
    if problems:
        for problem in problems:
            console.print(f"[red]suite problem:[/] {problem}")
        return 1
    console.print(f"[bold]workflow benchmark[/]: {len(dirs)} broken workflows (every fixed.json "
                  f"passes its tasks, every workflow.json fails some), budget {args.budget}, "
                  f"seed {args.seed}, offline operators, process sandbox; {os.cpu_count()} "
                  f"CPUs, load average {os.getloadavg()[0]:.2f} at start")
    runs: list[Repair] = []
    for case in dirs:
        run = asyncio.run(repair(case, args.budget, args.seed))
        runs.append(run)
        console.print(f"  {run.case:30} {'repaired' if run.repaired else 'NOT repaired':12} "
                      f"{run.evaluations:4} evaluations {run.wall_s:6.1f} s")
    table = Table(title=f"workflows evolve, offline, budget {args.budget}")
    for column in ("case", "faults", "repaired", "tasks passed", "evaluations", "wall s",
                   "kept edits"):
        table.add_column(column)
    for run in runs:
        table.add_row(run.case, str(run.faults), "yes" if run.repaired else "[red]no[/]",
                      f"{run.before}/{run.total} -> {run.after}/{run.total}",
                      str(run.evaluations), f"{run.wall_s:.1f}",
                      "\n".join(e.split(":")[0] for e in run.edits) or "-")
    repaired = [r for r in runs if r.repaired]
    table.add_section()
    table.add_row("total", "", f"{len(repaired)}/{len(runs)}",
                  f"{sum(r.before for r in runs)}/{sum(r.total for r in runs)} -> "
                  f"{sum(r.after for r in runs)}/{sum(r.total for r in runs)}",
                  str(sum(r.evaluations for r in runs)), f"{sum(r.wall_s for r in runs):.1f}",
                  "")
    console.print(table)
    if runs:
        console.print(f"repaired {len(repaired)}/{len(runs)} within budget {args.budget}; "
                      f"median wall {statistics.median(r.wall_s for r in runs):.1f} s, "
                      f"slowest {max(r.wall_s for r in runs):.1f} s")
    figures = asyncio.run(overhead(args.steps, args.rounds))
    ratio = figures["workflow_s"] / figures["direct_s"]
    console.print(f"[bold]interpreter overhead[/] ({args.steps} tool steps, median of "
                  f"{args.rounds} rounds, process sandbox): direct sandbox jobs "
                  f"{figures['direct_s'] * 1e3:.2f} ms/call, through the workflow "
                  f"{figures['workflow_s'] * 1e3:.2f} ms/step -> interpreter per-step cost "
                  f"[bold]{ratio:.2f}x direct[/]; the interpreter alone (in-memory tools) "
                  f"{figures['interpreter_only_s'] * 1e6:.0f} us/step")
    if args.json_out is not None:
        args.json_out.write_text(json.dumps({"repairs": [asdict(r) for r in runs],
                                             "overhead": {**figures, "ratio": ratio}},
                                            indent=1))
    console.print(f"load average {os.getloadavg()[0]:.2f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
