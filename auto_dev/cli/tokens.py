"""``auto-dev tokens create|list|revoke``: the service's bearer tokens.

A token belongs to one tenant and has one role (``ingest`` < ``reviewer`` < ``admin``). Only its
SHA-256 is stored: ``create`` prints the token once, alone on its last line, so a script can take
it with ``tail -n 1``.
"""

from __future__ import annotations

import json
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("create")
def create(
    tenant: str = typer.Option(..., "--tenant", help="The tenant the token acts for."),
    role: str = typer.Option(..., "--role", help="ingest, reviewer or admin."),
    name: Optional[str] = typer.Option(  # noqa: UP045
        None, "--name", help="Who or what uses it (the actor of its decisions); default: "
                             "ROLE-ID."),
) -> None:
    """Create a token; it is printed once, alone on the last line."""
    from rich.console import Console

    from auto_dev.cli._common import default_actor, errors, open_database
    from auto_dev.queries.tokens import TokenQueries

    database = open_database()
    with errors():
        new = TokenQueries(database).create(tenant, role, name=name, created_by=default_actor())
    info = new.info
    Console(stderr=False, highlight=False).print(
        f"token [bold]{info.id}[/] ({info.name}) for tenant {info.tenant_id}, role "
        f"{info.role.value}; it is shown this once:", soft_wrap=True)
    typer.echo(new.token)


@app.command("list")
def list_tokens(
    tenant: Optional[str] = typer.Option(  # noqa: UP045
        None, "--tenant", help="Only this tenant's (default: every tenant's)."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """List tokens (never the tokens themselves): id, tenant, name, role, revoked."""
    from rich.console import Console
    from rich.table import Table

    from auto_dev.cli._common import errors, existing_database
    from auto_dev.queries.tokens import TokenQueries

    with errors():
        rows = TokenQueries(existing_database()).list(tenant)
    if json_output:
        print(json.dumps({"tokens": [
            {"id": r.id, "tenant": r.tenant_id, "name": r.name, "role": r.role.value,
             "created_by": r.created_by, "created_at": r.created_at.isoformat(),
             "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None}
            for r in rows]}))
        return
    if not rows:
        Console().print("no tokens" + (f" in tenant {tenant}" if tenant else ""))
        return
    table = Table(title="API tokens")
    for column in ("id", "tenant", "name", "role", "created", "revoked"):
        table.add_column(column, no_wrap=column == "id")
    for r in rows:
        table.add_row(r.id, r.tenant_id, r.name, r.role.value,
                      r.created_at.strftime("%Y-%m-%d %H:%M"),
                      r.revoked_at.strftime("%Y-%m-%d %H:%M") if r.revoked_at else "-")
    Console().print(table)


@app.command("revoke")
def revoke(token_id: str = typer.Argument(..., help="Token id (from `tokens list`).")) -> None:
    """Revoke a token: requests with it are refused (401) from now on."""
    from rich.console import Console

    from auto_dev.cli._common import errors, existing_database
    from auto_dev.queries.tokens import TokenQueries

    with errors():
        info = TokenQueries(existing_database()).revoke(token_id)
    Console().print(f"token [bold]{info.id}[/] ({info.name}, tenant {info.tenant_id}) revoked")
