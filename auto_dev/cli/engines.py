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

    from auto_dev.cli._common import build_autodev

    async def _run() -> Table:
        autodev = build_autodev()
        try:
            table = Table(title="learning engines")
            for column in ("name", "capability", "subscribes to", "class"):
                table.add_column(column)
            for engine in autodev.engines:
                table.add_row(engine.name, engine.capability,
                              ", ".join(c.__name__ for c in engine.subscriptions),
                              f"{type(engine).__module__}.{type(engine).__qualname__}")
            return table
        finally:
            await autodev.aclose()

    Console().print(asyncio.run(_run()))
