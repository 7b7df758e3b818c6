"""``auto-dev schedule add|list|remove`` and ``auto-dev scheduler run``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import typer

if TYPE_CHECKING:
    from auto_dev.service import AutoDev

app = typer.Typer(no_args_is_help=True)
scheduler_app = typer.Typer(no_args_is_help=True)

_TENANT_HELP = "Tenant (default: AUTO_DEV_TENANT, else 'default')."


@app.command("add")
def add(
    engine: str = typer.Argument(..., help="Engine name, e.g. alpha_evolver."),
    every: Optional[float] = typer.Option(  # noqa: UP045 - typer needs Optional
        None, "--every", help="Interval in seconds.",
        show_default="AUTO_DEV_SCHEDULER_INTERVAL_S, else 3600"),
    target: Optional[str] = typer.Option(  # noqa: UP045
        None, "--target", help="A tool name; default: every tool with recent failures."
    ),
    budget: int = typer.Option(100, "--budget", help="Sandbox evaluations per cycle."),
    schedule_id: Optional[str] = typer.Option(None, "--id", help="Schedule id."),  # noqa: UP045
    tenant: Optional[str] = typer.Option(None, "--tenant", help=_TENANT_HELP),  # noqa: UP045
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

    from auto_dev.cli._common import run_with_autodev, settings, tenant_or_default

    interval = every if every is not None else settings().scheduler_interval_s

    def _add(autodev: AutoDev) -> str:
        row = autodev.scheduler.add(engine, interval_s=interval, target=target, budget=budget,
                                    schedule_id=schedule_id)
        return row.id

    tid = tenant_or_default(tenant)
    sid = run_with_autodev(_add, tenant_id=tid)
    Console().print(f"schedule [bold]{sid}[/] added to tenant {tid}")


@app.command("list")
def list_schedules(
    tenant: Optional[str] = typer.Option(None, "--tenant", help=_TENANT_HELP),  # noqa: UP045
) -> None:
    """List schedules with their interval, budget and last run."""
    from rich.console import Console
    from rich.table import Table

    from auto_dev.cli._common import existing_database, run_with_autodev, tenant_or_default

    tid = tenant_or_default(tenant)
    rows = run_with_autodev(lambda autodev: autodev.scheduler.schedules(),
                            database=existing_database(), migrate=False, tenant_id=tid)
    table = Table(title=f"schedules of tenant {tid}")
    for column in ("id", "engine", "target", "every (s)", "budget", "enabled", "last run"):
        table.add_column(column)
    for row in rows:
        table.add_row(row.id, row.engine, row.target or "(recent failures)",
                      f"{row.interval_s:g}", str(row.budget), "yes" if row.enabled else "no",
                      row.last_run_at.isoformat(timespec="seconds") if row.last_run_at else "-")
    Console().print(table)


@app.command("remove")
def remove(
    schedule_id: str = typer.Argument(..., help="Schedule id."),
    tenant: Optional[str] = typer.Option(None, "--tenant", help=_TENANT_HELP),  # noqa: UP045
) -> None:
    """Remove a schedule and its job."""
    from rich.console import Console

    from auto_dev.cli._common import open_database, run_with_autodev, tenant_or_default

    run_with_autodev(lambda autodev: autodev.scheduler.remove(schedule_id),
                     database=open_database(create=False), tenant_id=tenant_or_default(tenant))
    Console().print(f"schedule [bold]{schedule_id}[/] removed")


@scheduler_app.command("run")
def run(
    duration: Optional[float] = typer.Option(  # noqa: UP045
        None, "--duration", help="Stop after this many seconds (default: run until Ctrl-C)."
    ),
    once: bool = typer.Option(False, "--once", help="Fire every schedule once now, then exit."),
    tenant: Optional[str] = typer.Option(None, "--tenant", help=_TENANT_HELP),  # noqa: UP045
) -> None:
    """Run the scheduler: fire each schedule on its interval (jobs live in the database).

    Ctrl-C or SIGTERM stops it cleanly (exit status 130 or 143)."""
    from rich.console import Console
    from rich.table import Table

    from auto_dev.cli._common import build_autodev, tenant_or_default
    from auto_dev.cli._signals import CommandInterrupted, run_stoppable

    console = Console()
    tid = tenant_or_default(tenant)

    async def _run() -> None:
        autodev = build_autodev(tenant_id=tid)
        await autodev.start()
        try:
            if once:
                table = Table(title="scheduled cycles")
                for column in ("engine", "target", "status", "evaluations", "offered", "reason"):
                    table.add_column(column)
                for result in await autodev.scheduler.fire_all():
                    table.add_row(result.engine, result.target, result.status,
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
        run_stoppable(_run())
    except CommandInterrupted as exc:  # Ctrl-C or SIGTERM: _run() closed everything first
        console.print(f"scheduler stopped ({exc.signal_name})")
        raise typer.Exit(exc.exit_code) from None
