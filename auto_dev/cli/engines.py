"""``auto-dev engines ...``."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("list")
def list_engines() -> None:
    """List registered engines (built-ins and installed plugins) and their subscriptions."""
    import asyncio

    from rich.console import Console
    from rich.table import Table

    from auto_dev.cli._common import build_autodev, identifier_column
    from auto_dev.db import Database

    async def _run() -> Table:
        # Which engines are registered does not depend on stored data: an in-memory database
        # keeps this read-only command from creating the configured one.
        autodev = build_autodev(database=Database("sqlite://"))
        try:
            engines = list(autodev.engines)
            table = Table(title="learning engines")
            identifier_column(table, "name", (e.name for e in engines))
            identifier_column(table, "capability", (e.capability for e in engines))
            table.add_column("subscribes to")
            table.add_column("class", overflow="fold")
            for engine in engines:
                table.add_row(engine.name, engine.capability,
                              ", ".join(c.__name__ for c in engine.subscriptions),
                              f"{type(engine).__module__}.{type(engine).__qualname__}")
            return table
        finally:
            await autodev.aclose()

    Console().print(asyncio.run(_run()))
