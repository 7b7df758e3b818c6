"""Plumbing shared by the CLI's sub-commands: settings, logging, the database, error reporting.

Imports of SQLAlchemy and the rest of auto-dev happen inside the functions, so that importing a
command module (``auto-dev --help``) stays cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    from rich.table import Table

    from auto_dev.candidates.review import ReviewService
    from auto_dev.config import Settings
    from auto_dev.db import Database
    from auto_dev.service import AutoDev

T = TypeVar("T")

#: Exit codes: 1 for a refused or failed operation, 2 for bad input (as click does for usage).
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def settings() -> Settings:
    """The settings from ``AUTO_DEV_*`` and ``AUTO_DEV_CONFIG``; a bad setting exits with 2."""
    from auto_dev._exceptions import ConfigurationError
    from auto_dev.config import load_settings

    try:
        return load_settings()
    except ConfigurationError as exc:
        fail(f"configuration error: {exc}", code=EXIT_BAD_INPUT)


def reported_settings(json_output: bool) -> Settings:
    """The settings for a command whose failures :func:`fail_reported` reports (a bad setting
    exits with 2 naming ``settings``), with logging configured unless the main CLI (or a test
    harness) already did."""
    import structlog

    from auto_dev._exceptions import ConfigurationError
    from auto_dev.config import load_settings
    from auto_dev.logging import configure_logging

    try:
        current = load_settings()
    except ConfigurationError as exc:
        fail_reported(f"configuration error: {exc}", EXIT_BAD_INPUT, json_output, "settings")
    if not structlog.is_configured():
        configure_logging(current.log_level, current.log_format)
    return current


def configure() -> Settings:
    """Load the settings and configure logging from them (logs go to stderr)."""
    from auto_dev.logging import configure_logging

    current = settings()
    configure_logging(current.log_level, current.log_format)
    return current


def open_database(migrate: bool = True, *, create: bool = True) -> Database:
    """Load settings, configure logging, open the database and (by default) migrate it.

    With ``create=False`` a missing SQLite file is an error (exit 1, naming the path) and
    nothing is created: for commands that only make sense on an existing database.
    """
    from auto_dev.db import Database

    current = configure()
    with errors():
        database = Database(current.database_url, create=create)
        if migrate:
            database.upgrade()
    return database


def existing_database() -> Database:
    """The configured database for a read-only command: never created, never migrated. A
    missing database or a schema this auto-dev cannot read is a one-line error (exit 1)."""
    database = open_database(migrate=False, create=False)
    with errors():
        database.require_current()
    return database


def review_service(database: Database | None = None, *, readonly: bool = False
                   ) -> ReviewService:
    """A :class:`ReviewService` over the configured database, with a bus recording events.

    The database must exist (a candidate or tool cannot be found in a database that does not);
    ``readonly`` commands also leave its schema alone (see :func:`existing_database`).
    """
    from auto_dev.candidates.review import ReviewService
    from auto_dev.candidates.store import CandidateStore
    from auto_dev.events import EventBus
    from auto_dev.gates.capability import Gatekeeper
    from auto_dev.gates.usage import UsageRecorder

    db = database or (existing_database() if readonly else open_database(create=False))
    gatekeeper, bus = Gatekeeper(), EventBus(db)
    # Review verdicts are maturity evidence: subscribing the recorder here gives them a
    # delivery, which the next process running the bus delivers (AutoDev.start() recovers it).
    UsageRecorder(db, gatekeeper).attach(bus)
    store = CandidateStore(db, gatekeeper, bus=bus)
    return ReviewService(db, store)


def build_autodev(**kwargs: Any) -> AutoDev:
    """The :class:`AutoDev` facade over the configured database (migrated)."""
    from auto_dev.service import AutoDev

    current = configure()
    with errors():
        return AutoDev(current, **kwargs)


def run_with_autodev(fn: Callable[[AutoDev], T], **kwargs: Any) -> T:
    """Call ``fn(autodev)`` inside an event loop, then close the facade (draining events)."""

    async def _run() -> T:
        autodev = build_autodev(**kwargs)
        try:
            with errors():
                return fn(autodev)
        finally:
            await autodev.aclose()

    return asyncio.run(_run())


def tenant_or_default(tenant: str | None) -> str:
    """``--tenant`` when given, else the configured default tenant."""
    return tenant if tenant else settings().tenant


def default_actor() -> str:
    """Who is running the command: the OS user (``AUTO_DEV_ACTOR`` overrides it)."""
    override = os.environ.get("AUTO_DEV_ACTOR")
    if override and override.strip():
        return override.strip()
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def identifier_column(table: Table, header: str, values: Iterable[str], **kwargs: Any) -> None:
    """Add a column of names people copy (ids, capabilities, tool names): always on one line
    and at full width, so that at 80 columns the other columns wrap instead of these being cut
    short with an ellipsis."""
    widest = max([len(header), *(len(v) for v in values)])
    table.add_column(header, no_wrap=True, min_width=widest, **kwargs)


def pass_rate_text(value: float | None) -> str:
    """A pass rate as every command shows it: a percentage (``-`` when unknown)."""
    return "-" if value is None else f"{value:.0%}"


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print ``message`` to stderr and exit with ``code``."""
    from rich.console import Console

    Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {message}",
                                                soft_wrap=True)
    raise typer.Exit(code)


def fail_reported(message: str, code: int, json_output: bool, field: str | None) -> NoReturn:
    """Print ``message`` to stderr and, with ``--json``, one JSON object naming the field on
    stdout (the last line a script reads); then exit with ``code``."""
    import json

    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {escape(message)}",
                                                soft_wrap=True)
    if json_output:
        print(json.dumps({"error": message, "field": field, "exit_code": code}))
    raise typer.Exit(code)


@contextlib.contextmanager
def search_progress_bar(enabled: bool, name: str, budget: int, total: int, unit: str
                        ) -> Iterator[Callable[[Any], None] | None]:
    """A rich progress bar on stderr for a search of ``budget`` evaluations, yielding its
    ``on_progress`` callback (anything with ``evaluations``, ``best_passed`` and ``total``);
    ``unit`` names what ``total`` counts (cases, tasks)."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("[bold]evolving[/] {task.description}"), BarColumn(),
               TextColumn("{task.fields[evals]}/{task.total:.0f} evaluations"),
               TextColumn(f"best {{task.fields[best]}} {unit}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(name, total=max(budget, 1), best=f"?/{total}", evals=0)

        def on_progress(p: Any) -> None:
            # A solved run stops early: the bar fills, the count says what was spent.
            done = p.evaluations if p.best_passed < p.total else max(budget, 1)
            bar.update(task, completed=done, best=f"{p.best_passed}/{p.total}",
                       evals=p.evaluations)

        yield on_progress


@contextlib.contextmanager
def errors() -> Iterator[None]:
    """Turn auto-dev's errors into a one-line message and an exit code (no traceback)."""
    from auto_dev._exceptions import AutoDevError, ValidationError

    try:
        yield
    except ValidationError as exc:
        fail(str(exc), code=EXIT_BAD_INPUT)
    except AutoDevError as exc:
        fail(str(exc), code=EXIT_FAILED)
