"""``auto-dev init`` and ``auto-dev db ...``: the schema is created only by the migration."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("upgrade")
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Migrate the database to REVISION (default: the newest)."""
    from rich.console import Console

    from auto_dev.cli._common import errors, open_database

    database = open_database(migrate=False)
    with errors():  # an unknown revision is one line and exit 2, not a traceback
        database.upgrade(revision)
    Console().print(f"database at revision [bold]{database.current_revision()}[/]")


@app.command("current")
def current() -> None:
    """Print the database's current revision."""
    from rich.console import Console

    from auto_dev.cli._common import open_database

    database = open_database(migrate=False, create=False)
    Console().print(database.current_revision() or "(empty database)")


def init() -> None:
    """Create or migrate the database named by AUTO_DEV_DATABASE_URL."""
    from rich.console import Console

    from auto_dev.cli._common import open_database, settings

    database = open_database(migrate=True)
    Console().print(
        f"auto-dev database ready: {settings().database_url} "
        f"(revision {database.current_revision()})"
    )
