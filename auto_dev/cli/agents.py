"""``auto-dev agents list|show|set-maturity``: where each agent stands with the capability gates.

Maturity grows and shrinks from recorded usage (see ``GraduationSettings``); ``show`` prints the
evidence since the last change, the Wilson lower bound against the thresholds and what the next
level needs. ``set-maturity`` is an admin's decision: it needs a reason and is audited with who
made it. Agents are named by key (or id).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Optional

import typer

if TYPE_CHECKING:
    from auto_dev.gates.agent_report import AgentStanding

app = typer.Typer(no_args_is_help=True)

_TENANT_HELP = "Tenant (default: AUTO_DEV_TENANT, else 'default')."
_ACTOR_HELP = "Who decides (default: the OS user, or AUTO_DEV_ACTOR)."
_JSON_HELP = "Print one JSON object instead of a table."


@app.command("list")
def list_agents(
    tenant: Optional[str] = typer.Option(None, "--tenant", help=_TENANT_HELP),  # noqa: UP045
    json_output: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """The tenant's agents, their maturity per capability and how much usage they have."""
    from rich.console import Console
    from rich.table import Table

    from auto_dev.cli._common import errors, open_database, tenant_or_default
    from auto_dev.gates.agent_report import list_agents as query

    tid = tenant_or_default(tenant)
    database = open_database()
    with errors(), database.session(readonly=True) as session:
        rows = query(session, tid)
    if json_output:
        print(json.dumps({"tenant": tid, "agents": [
            {"id": r.agent_id, "key": r.key, "created_at": r.created_at.isoformat(),
             "uses": r.uses, "last_used": r.last_used.isoformat() if r.last_used else None,
             "maturity": {c: m.value for c, m in r.maturities.items()}} for r in rows]}))
        return
    if not rows:
        Console().print(f"no agents in tenant {tid}")
        return
    table = Table(title=f"agents of tenant {tid}")
    table.add_column("agent", no_wrap=True)
    table.add_column("id", no_wrap=True)
    table.add_column("maturity (any other capability: student)")
    table.add_column("uses", justify="right")
    table.add_column("last used (UTC)", no_wrap=True)
    for r in rows:
        levels = ", ".join(f"{_short(c)} {m.value}" for c, m in r.maturities.items()) or "-"
        table.add_row(r.key, r.agent_id[:12], levels, str(r.uses),
                      r.last_used.strftime("%Y-%m-%d %H:%M") if r.last_used else "-")
    Console().print(table)


@app.command("show")
def show(
    agent: str = typer.Argument(..., help="Agent key or id."),
    tenant: Optional[str] = typer.Option(None, "--tenant", help=_TENANT_HELP),  # noqa: UP045
    json_output: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Per capability: maturity, evidence since the last change (verified successes / uses),
    the Wilson lower bound against the thresholds, and what the next level needs."""
    from auto_dev.cli._common import errors, open_database, tenant_or_default
    from auto_dev.gates.agent_report import agent_standing
    from auto_dev.gates.capability import Gatekeeper

    tid = tenant_or_default(tenant)
    database = open_database()
    with errors(), database.session(readonly=True) as session:
        standing = agent_standing(session, Gatekeeper(), tid, agent)
    if json_output:
        print(json.dumps(_standing_json(standing)))
    else:
        _render(standing)


def _standing_json(standing: AgentStanding) -> dict[str, Any]:
    rule = standing.rule
    return {
        "tenant": standing.tenant_id, "id": standing.agent_id, "key": standing.key,
        "rule": rule.model_dump(mode="json"),
        "capabilities": [{
            "capability": c.capability, "maturity": c.maturity.value,
            "since": c.since.isoformat() if c.since else None,
            "required": c.required.value if c.required else None,
            "enabled": c.enabled, "may_use": c.may_use,
            "verified_successes": c.verified_successes, "samples": c.samples,
            "lower_bound": round(c.lower_bound, 6),
            "next_level": c.next_level.value if c.next_level else None,
            "successes_to_graduate": c.successes_to_graduate,
            "failures_to_demote": c.failures_to_demote, "needs": c.needs(rule),
        } for c in standing.capabilities],
    }


def _render(standing: AgentStanding) -> None:
    from rich.console import Console
    from rich.table import Table

    rule = standing.rule
    console = Console()
    table = Table(title=f"agent {standing.key} ({standing.agent_id[:12]}) in tenant "
                        f"{standing.tenant_id}")
    table.add_column("capability", no_wrap=True)
    for column in ("maturity", "evidence since", "next move"):
        table.add_column(column)
    for c in standing.capabilities:
        if c.required is None:
            gate = "requirement unknown here"
        else:
            verdict = "[green]may use[/]" if c.may_use else "[red]may not use[/]"
            gate = f"{verdict}: needs {c.required.value}" + ("" if c.enabled else ", off")
        since = c.since.strftime("%Y-%m-%d %H:%M") if c.since else "the start"
        evidence = (f"{since}: {c.verified_successes}/{c.samples} verified, "
                    f"bound {c.lower_bound:.3f}")
        if c.next_level is None:
            moves = ["top level"]
        elif c.successes_to_graduate is None:
            moves = [f"cannot reach {c.next_level.value} (window too small)"]
        else:
            moves = [f"{c.next_level.value} after {c.successes_to_graduate} successes"]
        if c.failures_to_demote is not None:
            moves.append(f"{c.maturity.next_down().value} after {c.failures_to_demote} failures")
        table.add_row(_short(c.capability), f"[bold]{c.maturity.value}[/]\n{gate}", evidence,
                      "\n".join(moves))
    console.print(table)
    console.print(
        "Next move: verified successes (or failures) in a row that would move the maturity. "
        f"Rule: up one level with >= {rule.min_verified_successes} verified successes and a "
        f"Wilson lower bound >= {rule.promote_lower_bound}; down one level when >= "
        f"{rule.min_samples_for_demotion} uses give a bound < {rule.demote_lower_bound} "
        f"({rule.confidence:.0%} confidence, the last {rule.window} uses since the last "
        "change).", soft_wrap=True)


def _short(capability: str) -> str:
    """Built-in capabilities without their ``auto_dev.`` prefix (set-maturity accepts both)."""
    return capability.removeprefix("auto_dev.")


@app.command("set-maturity")
def set_maturity(
    agent: str = typer.Argument(..., help="Agent key or id."),
    capability: str = typer.Argument(
        ..., help="Capability, e.g. auto_dev.alpha_evolver (or alpha_evolver)."),
    level: str = typer.Argument(..., help="student, intern, supervised or autonomous."),
    reason: str = typer.Option(..., "--reason", help="Why (required, audited)."),
    actor: Optional[str] = typer.Option(None, "--actor", help=_ACTOR_HELP),  # noqa: UP045
    tenant: Optional[str] = typer.Option(None, "--tenant", help=_TENANT_HELP),  # noqa: UP045
) -> None:
    """Set an agent's maturity for a capability by hand (audited; evidence restarts)."""
    from rich.console import Console

    from auto_dev._exceptions import ValidationError
    from auto_dev.cli._common import default_actor, errors, open_database, tenant_or_default
    from auto_dev.gates._maturity import Maturity
    from auto_dev.gates.agent_report import resolve_capability
    from auto_dev.gates.capability import Gatekeeper

    tid = tenant_or_default(tenant)
    who = actor or default_actor()
    database = open_database()
    with errors():
        if not reason.strip():
            raise ValidationError("reason", "must say why the maturity changes")
        target = Maturity.parse(level, field="level")
        gatekeeper = Gatekeeper()
        with database.session() as session:
            name = resolve_capability(session, gatekeeper, tid, capability)
            before = gatekeeper.set_maturity(session, tenant_id=tid, agent_id=agent,
                                             capability=name, maturity=target, actor=who,
                                             reason=reason.strip())
    Console().print(f"agent [bold]{agent}[/]: {name} {before.value} -> [bold]{target.value}[/] "
                    f"(by {who}: {reason.strip()})", soft_wrap=True)
