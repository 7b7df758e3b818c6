"""``auto-dev schedule add|list|remove`` and ``auto-dev scheduler run``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import typer

if TYPE_CHECKING:
    from auto_dev.service import AutoDev

app = typer.Typer(no_args_is_help=True)
scheduler_app = typer.Typer(no_args_is_help=True)


@app.command("add")
def add(
    engine: str = typer.Argument(..., help="Engine name, e.g. alpha_evolver."),
    every: float = typer.Option(3600.0, "--every", help="Interval in seconds."),
    target: Optional[str] = typer.Option(  # noqa: UP045 - typer needs Optional
        None, "--target", help="A tool name; default: every tool with recent failures."
    ),
    budget: int = typer.Option(100, "--budget", help="Sandbox evaluations per cycle."),
    schedule_id: Optional[str] = typer.Option(None, "--id", help="Schedule id."),  # noqa: UP045
) -> None:
    """Schedule ENGINE's cycle every --every seconds."""
    from auto_dev._exceptions import ValidationError
    from auto_dev.cli import _common
    from auto_dev.scheduler import check_interval

    try:  # before the database is opened: a refused interval creates nothing
        if every is not None:
            check_interval(every, _common.settings())
    except ValidationError as exc:
        _common.fail(f"--every: {exc.problem}", code=_common.EXIT_BAD_INPUT)
    from rich.console import Console

    from auto_dev.cli._common import run_with_autodev

    def _add(autodev: AutoDev) -> str:
        row = autodev.scheduler.add(engine, interval_s=every, target=target, budget=budget,
                                    schedule_id=schedule_id)
        return row.id

    sid = run_with_autodev(_add)
    Console().print(f"schedule [bold]{sid}[/] added")


@app.command("list")
def list_schedules() -> None:
    """List schedules with their interval, budget and last run."""
    from rich.console import Console
    from rich.table import Table

    from auto_dev.cli._common import run_with_autodev

    rows = run_with_autodev(lambda autodev: autodev.scheduler.schedules())
    table = Table(title="schedules")
    for column in ("id", "engine", "target", "every (s)", "budget", "enabled", "last run"):
        table.add_column(column)
    for row in rows:
        table.add_row(row.id, row.engine, row.target or "(recent failures)",
                      f"{row.interval_s:g}", str(row.budget), "yes" if row.enabled else "no",
                      row.last_run_at.isoformat(timespec="seconds") if row.last_run_at else "-")
    Console().print(table)


@app.command("remove")
def remove(schedule_id: str = typer.Argument(..., help="Schedule id.")) -> None:
    """Remove a schedule and its job."""
    from rich.console import Console

    from auto_dev.cli._common import run_with_autodev

    run_with_autodev(lambda autodev: autodev.scheduler.remove(schedule_id))
    Console().print(f"schedule [bold]{schedule_id}[/] removed")


@scheduler_app.command("run")
def run(
    duration: Optional[float] = typer.Option(  # noqa: UP045
        None, "--duration", help="Stop after this many seconds (default: run until Ctrl-C)."
    ),
    once: bool = typer.Option(False, "--once", help="Fire every schedule once now, then exit."),
) -> None:
    """Run the scheduler: fire each schedule on its interval (jobs live in the database)."""
    import asyncio

    from rich.console import Console
    from rich.table import Table

    from auto_dev.cli._common import build_autodev

    console = Console()

    async def _run() -> None:
        autodev = build_autodev()
        await autodev.start()
        try:
            if once:
                table = Table(title="scheduled cycles")
                for column in ("schedule", "target", "status", "evaluations", "offered", "reason"):
                    table.add_column(column)
                for row in autodev.scheduler.schedules():
                    for result in await autodev.scheduler.run_schedule(row.id):
                        table.add_row(row.id, result.target, result.status,
                                      str(result.evaluations), str(len(result.offered_ids)),
                                      result.reason)
                console.print(table)
            else:
                console.print(f"scheduler running with {len(autodev.scheduler.schedules())} "
                              "schedule(s); Ctrl-C stops it")
                await autodev.scheduler.run_forever(duration_s=duration)
        finally:
            await autodev.aclose()

    try:
        asyncio.run(_run())
    except KeyboardInterrupt:
        console.print("scheduler stopped")
