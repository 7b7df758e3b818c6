"""``auto-dev llm status`` and ``auto-dev llm spend``.

Neither imports litellm: status reads the configuration and rebuilds each deployment's circuit
breaker from the ledger; spend sums the ledger.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from auto_dev.cli._common import EXIT_BAD_INPUT, configure, errors, fail

if TYPE_CHECKING:
    from auto_dev.config import Settings
    from auto_dev.db import Database

app = typer.Typer(no_args_is_help=True, help="The LLM layer: status and spend.")


def _ledger_database(settings: Settings) -> Database | None:
    """The database if it has the auto-dev schema, else ``None``."""
    from auto_dev._exceptions import AutoDevError
    from auto_dev.db import Database

    try:
        database = Database(settings.database_url, create=False)
        if database.is_sqlite and not database.is_memory:
            # Do not create an empty database file just to find it has no ledger.
            path = database.url.database or ""
            if not path.startswith("file:") and not Path(path).exists():
                return None
        if database.current_revision() is None:
            return None
        return database
    except AutoDevError:
        return None


@app.command("status")
def status(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Deployments, fallbacks and circuit breaker states (offline mode when none is set)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from auto_dev.llm import ledger
    from auto_dev.llm.breaker import CircuitBreaker
    from auto_dev.llm.deployments import parse_deployments

    settings = configure()
    llm = settings.effective_llm()
    console = Console()
    if not llm.configured:
        if as_json:
            console.print_json(json.dumps({"configured": False, "deployments": []}))
        else:
            console.print(
                "offline mode: no model configured (set AUTO_DEV_LLM_MODEL, or \\[llm] in the "
                "file named by AUTO_DEV_CONFIG); engines use the AST mutator."
            )
        return
    with errors():
        table = parse_deployments(llm)
    database = _ledger_database(settings)
    history: dict[str, list[tuple[float, bool]]] = {}
    last_errors: dict[str, str] = {}
    if database is not None:
        ids = [d.id for d in table.deployments]
        history = ledger.deployment_outcomes(database, ids)
        last_errors = ledger.latest_failures(database, ids)
    rows: list[dict[str, Any]] = []
    for deployment in table.deployments:
        breaker = CircuitBreaker(llm.circuit_failure_threshold, llm.circuit_cooldown_s)
        breaker.replay(history.get(deployment.id, []))
        snap = breaker.snapshot()
        rows.append(
            {
                **deployment.describe(),
                "default": deployment.group == table.default_group,
                "fallbacks": list(table.fallbacks.get(deployment.group, ())),
                "circuit": snap.state.value,
                "consecutive_failures": snap.consecutive_failures,
                "retry_in_s": round(snap.retry_in_s, 1),
                "last_error": _last_error(last_errors.get(deployment.id)),
            }
        )
    if as_json:
        console.print_json(
            json.dumps({"configured": True, "ledger": database is not None, "deployments": rows})
        )
        return
    view = Table(title="LLM deployments")
    for column in ("Group", "Deployment", "Model", "API base", "Fallbacks", "Circuit",
                   "Failures", "Last error"):
        view.add_column(column)
    colours = {"closed": "green", "half_open": "yellow", "open": "red"}
    for row in rows:
        circuit = row["circuit"].replace("_", "-")
        if row["circuit"] == "open":
            circuit += f" ({row['retry_in_s']}s)"
        view.add_row(
            row["group"] + (" (default)" if row["default"] else ""),
            row["id"],
            row["model"],
            row["api_base"] or "-",
            ", ".join(row["fallbacks"]) or "-",
            f"[{colours[row['circuit']]}]{circuit}[/]",
            str(row["consecutive_failures"]),
            escape(f"{last['kind']}: {last['message']}") if (last := row["last_error"]) else "-",
        )
    console.print(view)
    if database is None:
        console.print("(no ledger yet: circuit states start closed; run `auto-dev init`)")


def _last_error(text: str | None) -> dict[str, str] | None:
    """A deployment's last failed call as ``{"kind", "message"}`` (None when it answered)."""
    if not text:
        return None
    from auto_dev.llm.health import clip_message, stored_error_kind

    kind = stored_error_kind(text)
    message = text.split(":", 1)[1].strip() if ":" in text else text
    return {"kind": str(kind), "message": clip_message(message)}


@app.command("spend")
def spend(
    tenant: str | None = typer.Option(None, "--tenant", help="Only this tenant."),
    day: str | None = typer.Option(None, "--date", help="UTC day YYYY-MM-DD (default: today)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Spend by tenant, model and engine for one UTC day, from the ledger."""
    from rich.console import Console
    from rich.table import Table

    from auto_dev.llm import ledger
    from auto_dev.llm.budget import BudgetGuard

    settings = configure()
    since = ledger.utc_day_start()
    if day is not None:
        try:
            parsed = date.fromisoformat(day)
        except ValueError:
            fail(f"--date: {day!r} is not a YYYY-MM-DD date", code=EXIT_BAD_INPUT)
        since = datetime(parsed.year, parsed.month, parsed.day, tzinfo=UTC)
    database = _ledger_database(settings)
    if database is None:
        fail(f"no auto-dev database at {settings.database_url}: run `auto-dev init` first")
    rows = ledger.spend(database, since=since, until=since + timedelta(days=1), tenant_id=tenant)
    guard = BudgetGuard(database, settings.effective_llm())
    tenants = sorted({r.tenant_id for r in rows} | ({tenant} if tenant else set()))
    budgets = {t: guard.limit_for_stored(t) for t in tenants}
    totals = {t: sum(r.cost_usd for r in rows if r.tenant_id == t) for t in tenants}
    console = Console()
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "day": since.date().isoformat(),
                    "rows": [r.to_dict() for r in rows],
                    "tenants": {
                        t: {"cost_usd": totals[t], "budget_usd": budgets[t]} for t in tenants
                    },
                }
            )
        )
        return
    view = Table(title=f"LLM spend on {since.date().isoformat()} (UTC)")
    for column in ("Tenant", "Model", "Engine", "Calls", "Errors", "Cache hits", "In flight",
                   "Prompt tokens", "Completion tokens", "Cost (USD)"):
        justify = "right" if column not in {"Tenant", "Model", "Engine"} else "left"
        view.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        view.add_row(r.tenant_id, r.model, r.engine or "-", str(r.calls), str(r.errors),
                     str(r.cache_hits), str(r.in_flight), str(r.prompt_tokens),
                     str(r.completion_tokens), f"{r.cost_usd:.6f}")
    console.print(view)
    if not rows:
        console.print("no model calls recorded for this day")
    for t in tenants:
        budget = budgets[t]
        limit = f" of ${budget:.2f} budget" if budget is not None else " (no budget)"
        console.print(f"tenant {t}: ${totals[t]:.6f}{limit}", highlight=False)
