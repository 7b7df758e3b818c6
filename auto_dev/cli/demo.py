"""``auto-dev demo``: the whole loop on embedded defaults, told as a small platform's day.

Failing episodes become events; AlphaEvolver, Memento and WorkflowEvolver react; candidates run
in the sandbox and are scored; the gate decides per agent maturity; a reviewer approves and
promotes; the diff is shown; a promoted version is rolled back to show how; a support workflow
is repaired and promoted. The story's steps are the chapters of
:mod:`auto_dev.cli._demo_chapters`. Each run uses a fresh tenant so it can be repeated against
the same database, and prints that tenant so the review commands can be tried after.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import typer

if TYPE_CHECKING:
    from rich.console import Console


def demo(
    tenant: Optional[str] = typer.Option(  # noqa: UP045 - typer needs Optional
        None, "--tenant", help="Tenant to use (default: a fresh demo-<timestamp> tenant)."),
    budget: int = typer.Option(150, "--budget", min=1,
                               help="Sandbox evaluations per evolution cycle."),
) -> None:
    """Run the end-to-end story on embedded defaults (an SQLite file, the sandbox
    AUTO_DEV_SANDBOX selects: Docker when usable, else local processes; offline unless a
    model is configured)."""
    import asyncio
    import os
    import time

    from rich.console import Console

    from auto_dev.cli._common import configure, errors
    from auto_dev.logging import configure_logging

    console = Console()
    settings = configure()
    if "AUTO_DEV_LOG_LEVEL" not in os.environ:
        # The story shows every gate decision in a table; log lines would only interleave.
        configure_logging("error", settings.log_format)
    started = time.perf_counter()
    with errors():
        summary = asyncio.run(_tell(console, settings, tenant, budget))
    summary["seconds"] = round(time.perf_counter() - started, 1)
    _final_table(console, summary)


async def _tell(console: Console, settings: Any, tenant: str | None, budget: int
                ) -> dict[str, Any]:
    import datetime as dt

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.rule import Rule

    from auto_dev.cli._demo_chapters import CHAPTERS, Story
    from auto_dev.cli._demo_story import WORKFLOW_SEED
    from auto_dev.engines.alpha_evolver import AlphaEvolver
    from auto_dev.engines.memento import Memento
    from auto_dev.engines.workflow_evolver import WorkflowEvolver
    from auto_dev.service import AutoDev

    tid = tenant or "demo-" + dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S-%f")
    autodev = AutoDev(settings.model_copy(update={"tenant": tid}), tenant_id=tid)
    progress = Progress(TextColumn("{task.description:<34}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), console=console)
    story = Story(console=console, autodev=autodev, progress=progress,
                  summary={"tenant": tid, "database": autodev.database.display_url})
    try:
        await autodev.start()
        console.print(Rule(f"auto-dev demo: tenant [bold]{tid}[/]"))
        console.print(f"database: {autodev.database.display_url}", highlight=False)
        # The backend actually chosen (this creates the sandbox), and why.
        console.print(f"sandbox:  [bold]{autodev.sandbox.name}[/] ({autodev.sandbox_reason})",
                      highlight=False)
        console.print(f"mutators: {autodev.context.strategy}", highlight=False)
        story.summary["sandbox"] = autodev.sandbox.name
        cycles: dict[str, Any] = {}

        def on_progress(p: Any) -> None:
            task = cycles.get("alpha_evolver")
            if task is None:
                task = cycles["alpha_evolver"] = progress.add_task("alpha_evolver",
                                                                   total=p.budget)
            progress.update(task, completed=p.evaluations,
                            description=f"alpha_evolver ({p.best_passed}/{p.total} pass)")

        autodev.engines.register(AlphaEvolver(event_budget=budget, on_progress=on_progress),
                                 replace=True)
        autodev.engines.register(Memento(event_budget=budget), replace=True)
        autodev.engines.register(WorkflowEvolver(event_budget=budget, rng_seed=WORKFLOW_SEED),
                                 replace=True)
        for chapter in CHAPTERS:
            await chapter(story)
    finally:
        await autodev.aclose()
    return story.summary


def _final_table(console: Console, summary: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="auto-dev demo: summary")
    table.add_column("what")
    table.add_column("value", justify="right", overflow="fold")
    for key in ("tenant", "database", "sandbox", "episodes", "events_delivered", "candidates",
                "promoted", "graduated", "rolled_back", "workflow_runs", "workflow_promoted",
                "workflow_run", "seconds"):
        table.add_row(key.replace("_", " "), str(summary.get(key, "-")))
    console.print(table)
    console.print(f"next: [bold]AUTO_DEV_TENANT={summary['tenant']} auto-dev candidates list "
                  "--all[/]  or  [bold]auto-dev tools show clamp --tenant "
                  f"{summary['tenant']}[/]", highlight=False)
