"""``auto-dev tools list|show|rollback``: tools, their versions and rollback."""

from __future__ import annotations

from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True)

_TENANT_HELP = "Tenant (default: AUTO_DEV_TENANT, else 'default')."


@app.command("list")
def list_tools(
    tenant: Optional[str] = typer.Option(None, "--tenant", help=_TENANT_HELP),  # noqa: UP045
) -> None:
    """List tools with their active version and the candidates awaiting review."""
    from rich.console import Console
    from rich.table import Table

    from auto_dev.cli._common import errors, review_service, tenant_or_default

    tid = tenant_or_default(tenant)
    with errors():
        rows = review_service(readonly=True).list_tools(tid)
    if not rows:
        Console().print(f"no tools in tenant {tid}")
        return
    table = Table(title=f"tools of tenant {tid}")
    for column in ("name", "entrypoint", "active", "versions", "awaiting review", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(row.name, row.entrypoint,
                      f"v{row.active_version}" if row.active_version else "-",
                      str(row.versions), str(row.pending_candidates), row.description)
    Console().print(table)


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Tool name."),
    code: bool = typer.Option(True, "--code/--no-code", help="Print the active code."),
    tenant: Optional[str] = typer.Option(None, "--tenant", help=_TENANT_HELP),  # noqa: UP045
) -> None:
    """A tool's versions (which is active, where each came from) and its active code."""
    from rich.console import Console
    from rich.syntax import Syntax
    from rich.table import Table

    from auto_dev.cli._common import errors, review_service, tenant_or_default

    with errors():
        detail = review_service(readonly=True).show_tool(tenant_or_default(tenant), name)
    console = Console()
    table = Table(title=f"{detail.tool.name} ({detail.tool.entrypoint})")
    for column in ("version", "active", "source", "candidate", "created by", "created"):
        table.add_column(column)
    for v in detail.versions:
        source = v.source + (f" {v.source_id[:12]}" if v.source_id else "")
        table.add_row(f"v{v.version}", "[green]yes[/]" if v.is_active else "",
                      source, v.candidate_status or "-", v.created_by,
                      v.created_at.isoformat(timespec="seconds"))
    console.print(table)
    if code and detail.active_code is not None:
        console.print(Syntax(detail.active_code, "python", theme="ansi_dark", line_numbers=True))


@app.command("rollback")
def rollback(
    name: str = typer.Argument(..., help="Tool name."),
    reason: str = typer.Option(..., "--reason", help="Why (required, recorded)."),
    to_version: Optional[int] = typer.Option(  # noqa: UP045
        None, "--to", min=1, help="Version to re-activate (default: the previous good one)."),
    actor: Optional[str] = typer.Option(  # noqa: UP045
        None, "--actor", help="Who decides (default: the OS user, or AUTO_DEV_ACTOR)."),
    tenant: Optional[str] = typer.Option(None, "--tenant", help=_TENANT_HELP),  # noqa: UP045
) -> None:
    """Re-activate an earlier version of a tool; the candidate it replaces becomes rolled_back."""
    from rich.console import Console

    from auto_dev.cli._common import default_actor, errors, review_service, tenant_or_default

    who = actor or default_actor()
    with errors():
        result = review_service().rollback(tenant_or_default(tenant), name, who, reason,
                                           to_version=to_version)
    extra = (f"; candidate {result.rolled_back_candidate_id[:12]} rolled back"
             if result.rolled_back_candidate_id else "")
    Console().print(f"{result.tool_name}: v{result.from_version} -> v{result.to_version} "
                    f"(active) by {who}{extra}")
