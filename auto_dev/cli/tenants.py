"""``auto-dev tenants show|set``: a tenant's toggles, daily limits, budget and graduation rule.

``set`` takes ``KEY=VALUE`` pairs. Values are JSON where they parse as JSON (``true``, ``20``,
``2.5``, ``null``), else text (``tenant_maturity=supervised``). Nested settings use dotted keys:
``graduation.min_verified_successes=20``, ``capabilities.acme.lint=true``. ``null`` puts a key
back to its default. Everything is validated together before anything is written; a bad value
names its key. Every change is audited with who made it (``--actor``) and why (``--reason``).
"""

from __future__ import annotations

import json
from typing import Any, Optional

import typer

app = typer.Typer(no_args_is_help=True)

_TENANT_HELP = "Tenant (default: AUTO_DEV_TENANT, else 'default')."


@app.command("show")
def show(
    tenant: Optional[str] = typer.Option(None, "--tenant", help=_TENANT_HELP),  # noqa: UP045
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Every setting with its value and default, and today's counts against the limits."""
    from rich.console import Console
    from rich.table import Table

    from auto_dev.cli._common import errors, open_database, tenant_or_default
    from auto_dev.gates.settings import TenantSettings
    from auto_dev.gates.tenant_admin import counts_today, flatten_settings, read_tenant_settings
    from auto_dev.models import utcnow

    tid = tenant_or_default(tenant)
    database = open_database()
    with errors(), database.session(readonly=True) as session:
        current = read_tenant_settings(session, tid)
        today = counts_today(session, tid, utcnow())
    values = flatten_settings(current)
    defaults = flatten_settings(TenantSettings())
    if json_output:
        print(json.dumps({"tenant": tid, "settings": current.model_dump(mode="json"),
                          "today": today}))
        return
    table = Table(title=f"settings of tenant {tid}")
    for column in ("setting", "value", "default"):
        table.add_column(column, no_wrap=column == "setting")
    for key, value in values.items():
        default = defaults.get(key)
        shown = _text(value) if value == default and key in defaults else f"[bold]{_text(value)}[/]"
        table.add_row(key, shown, _text(default) if key in defaults else "-")
    if not current.capabilities:
        table.add_row("capabilities.*", "(none)", "(none)")
    console = Console()
    console.print(table)
    console.print(
        f"today (UTC): {today['candidates']}/{current.daily_candidates_per_tenant} candidates, "
        f"{today['promotions']}/{current.daily_promotions_per_tenant} promotions; LLM budget "
        + (f"{current.daily_budget_usd:g} USD/day" if current.daily_budget_usd is not None
           else "the global setting"), soft_wrap=True)


@app.command("set")
def set_settings(
    pairs: list[str] = typer.Argument(..., help="KEY=VALUE pairs (JSON values; null resets)."),
    reason: str = typer.Option(..., "--reason", help="Why (required, audited)."),
    actor: Optional[str] = typer.Option(  # noqa: UP045
        None, "--actor", help="Who changes them (default: the OS user, or AUTO_DEV_ACTOR)."),
    tenant: Optional[str] = typer.Option(None, "--tenant", help=_TENANT_HELP),  # noqa: UP045
    create: bool = typer.Option(False, "--create", help="Create the tenant if it is missing."),
) -> None:
    """Change toggles, limits, the LLM budget or the graduation rule (validated, audited)."""
    from rich.console import Console
    from rich.table import Table

    from auto_dev.cli._common import default_actor, errors, open_database, tenant_or_default
    from auto_dev.gates.tenant_admin import change_tenant_settings

    tid = tenant_or_default(tenant)
    who = actor or default_actor()
    with errors():
        changes = parse_pairs(pairs)
        database = open_database()
        with database.session() as session:
            result = change_tenant_settings(session, tid, changes, actor=who, reason=reason,
                                            create=create)
    console = Console()
    if result.created:
        console.print(f"created tenant [bold]{tid}[/]")
    if not result.changed:
        console.print(f"nothing changed in tenant {tid}: the settings already had these values")
        return
    table = Table(title=f"settings of tenant {tid} changed")
    for column in ("setting", "before", "after"):
        table.add_column(column, no_wrap=column == "setting")
    for key, (before, after) in result.changed.items():
        table.add_row(key, _text(before), f"[bold]{_text(after)}[/]")
    console.print(table)
    console.print(f"by {who}: {reason.strip()} (audited)", soft_wrap=True)


def parse_pairs(pairs: list[str]) -> dict[str, Any]:
    """``["enabled=true", "tenant_maturity=intern"]`` -> ``{"enabled": True, ...}``."""
    from auto_dev._exceptions import ValidationError

    changes: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValidationError("settings", f"expected KEY=VALUE, got {pair!r}")
        if key in changes:
            raise ValidationError(f"settings.{key}", "is given more than once")
        changes[key] = _value(text.strip())
    return changes


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # not JSON (or absurd JSON): it is text
        return text


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
