"""``auto-dev workflows register|list|show|versions|rollback|signals``: stored workflows.

::

    auto-dev workflows register WF.json [--actor A] [--tenant T]
    auto-dev workflows list [--tenant T]
    auto-dev workflows show NAME [--version N] [--tenant T]
    auto-dev workflows versions NAME [--tenant T]
    auto-dev workflows rollback NAME VERSION --reason R [--actor A] [--tenant T]
    auto-dev workflows signals NAME [--version N] [--tenant T]

Added to the ``workflows`` app of :mod:`auto_dev.cli.workflows` by :func:`add_registry_commands`.
Exit codes: 0 done, 1 refused or failed, 2 bad input (an error naming the field).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.table import Table

    from auto_dev.queries.workflows import WorkflowVersionInfo
    from auto_dev.workflows.registry import WorkflowRegistry

_TENANT_HELP = "Tenant (default: AUTO_DEV_TENANT, else 'default')."
_ACTOR_HELP = "Who decides (default: the OS user, or AUTO_DEV_ACTOR)."

NameArg = Annotated[str, typer.Argument(help="The workflow's name.", show_default=False)]
TenantOpt = Annotated[str | None, typer.Option("--tenant", help=_TENANT_HELP, show_default=False)]
ActorOpt = Annotated[str | None, typer.Option("--actor", help=_ACTOR_HELP, show_default=False)]
VersionOpt = Annotated[int | None, typer.Option("--version", min=1, show_default=False,
                                                help="A version (default: the active one).")]


def _registry(tenant: str | None, *, readonly: bool = False) -> WorkflowRegistry:
    """A registry over the configured database (which must exist), for ``tenant``."""
    from auto_dev.cli._common import review_service, settings, tenant_or_default
    from auto_dev.payloads import PayloadLimits
    from auto_dev.workflows.registry import WorkflowRegistry

    review = review_service(readonly=readonly)
    return WorkflowRegistry(review.database, review.store, bus=review.store.bus,
                            limits=PayloadLimits.from_settings(settings()),
                            tenant_id=tenant_or_default(tenant))


def register(
    path: Annotated[Path, typer.Argument(help="The workflow document (JSON).",
                                         show_default=False)],
    actor: ActorOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Register a workflow: validated against the schema and the tenant's tools; a changed
    definition becomes the next active version, an identical one changes nothing."""
    from rich.console import Console
    from rich.markup import escape

    from auto_dev.cli._common import default_actor, errors
    from auto_dev.cli.workflows import load_workflow_file

    with errors():
        doc = load_workflow_file(path)
        registry = _registry(tenant)
        before = _active_number(registry, doc.get("name"))
        version = registry.register(doc, actor=actor or default_actor())
    note = "unchanged" if before == version else "registered"
    Console(highlight=False).print(f"{escape(str(doc['name']))}: v{version} (active), {note}")


def _active_number(registry: WorkflowRegistry, name: object) -> int | None:
    from auto_dev._exceptions import AutoDevError

    if not isinstance(name, str):
        return None
    try:
        return next((v.version for v in registry.versions(name) if v.is_active), None)
    except AutoDevError:
        return None  # not registered yet (or not readable: register says why)


def list_workflows(tenant: TenantOpt = None) -> None:
    """List the tenant's workflows with their active version, versions and tasks."""
    from rich.console import Console
    from rich.table import Table

    from auto_dev.cli._common import errors, identifier_column

    with errors():
        registry = _registry(tenant, readonly=True)
        rows = registry.summaries()
    console = Console(highlight=False)
    if not rows:
        console.print(f"no workflows in tenant {registry.tenant_id}")
        return
    table = Table(title=f"workflows of tenant {registry.tenant_id}")
    identifier_column(table, "name", [r.name for r in rows])
    for column in ("active", "versions", "tasks", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(row.name, f"v{row.active_version}" if row.active_version else "-",
                      str(row.versions), str(row.tasks), row.description)
    console.print(table)


def versions(name: NameArg, tenant: TenantOpt = None) -> None:
    """A workflow's versions: which is active, where each came from, who made it."""
    from rich.console import Console

    from auto_dev.cli._common import errors

    with errors():
        rows = _registry(tenant, readonly=True).versions(name)
    Console(highlight=False).print(_versions_table(name, rows))


def _versions_table(name: str, rows: list[WorkflowVersionInfo]) -> Table:
    from rich.table import Table

    table = Table(title=name)
    for column in ("version", "active", "source", "candidate", "created by", "created"):
        table.add_column(column)
    for v in rows:
        table.add_row(f"v{v.version}", "[green]yes[/]" if v.is_active else "", v.source,
                      v.candidate_id[:12] if v.candidate_id else "-", v.created_by,
                      v.created_at.isoformat(timespec="seconds"))
    return table


def show(name: NameArg, version: VersionOpt = None, tenant: TenantOpt = None) -> None:
    """A workflow's versions and the definition of its active version (or --version)."""
    from rich.console import Console
    from rich.syntax import Syntax

    from auto_dev.cli._common import errors

    with errors():
        registry = _registry(tenant, readonly=True)
        rows = registry.versions(name)
        definition = registry.definition(name, version=version)
    console = Console(highlight=False)
    console.print(_versions_table(name, rows))
    shown = version or next((v.version for v in rows if v.is_active), None)
    console.print(f"definition of v{shown}:")
    console.print(Syntax(json.dumps(definition, indent=2, ensure_ascii=False), "json",
                         theme="ansi_dark"))


def rollback(
    name: NameArg,
    version: Annotated[int, typer.Argument(min=1, help="The version to re-activate.",
                                           show_default=False)],
    reason: Annotated[str, typer.Option("--reason", help="Why (required, recorded).",
                                        show_default=False)],
    actor: ActorOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Re-activate an earlier (or later) version of a workflow, audited with who and why."""
    from rich.console import Console
    from rich.markup import escape

    from auto_dev.cli._common import default_actor, errors

    who = actor or default_actor()
    with errors():
        result = _registry(tenant).rollback(name, version, actor=who, reason=reason)
    extra = (f"; variant {result.rolled_back_candidate_id[:12]} rolled back"
             if result.rolled_back_candidate_id else "")
    Console(highlight=False).print(
        f"{escape(result.name)}: v{result.from_version} -> v{result.to_version} (active) by "
        f"{escape(who)}{extra}")


def signals(name: NameArg, version: VersionOpt = None, tenant: TenantOpt = None) -> None:
    """The signals recorded against a workflow version, per kind: count, mean, min, max."""
    from rich.console import Console
    from rich.table import Table

    from auto_dev.cli._common import errors

    with errors():
        summary = _registry(tenant, readonly=True).signal_summary(workflow=name,
                                                                  version=version)
    console = Console(highlight=False)
    if not summary.kinds:
        console.print(f"no signals for {name} v{summary.version}")
        return
    table = Table(title=f"signals of {name} v{summary.version}")
    for column in ("kind", "count", "mean", "min", "max", "last"):
        table.add_column(column)
    for stats in summary.kinds.values():
        table.add_row(stats.kind, str(stats.count), f"{stats.mean:.4g}", f"{stats.minimum:.4g}",
                      f"{stats.maximum:.4g}", stats.last_at.isoformat(timespec="seconds"))
    console.print(table)


def add_registry_commands(app: typer.Typer) -> None:
    """Add the stored-workflow commands to the ``workflows`` app."""
    app.command("register")(register)
    app.command("list")(list_workflows)
    app.command("show")(show)
    app.command("versions")(versions)
    app.command("rollback")(rollback)
    app.command("signals")(signals)
