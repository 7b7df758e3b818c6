"""``auto-dev candidates list|show|approve|reject|promote|prune``: human review from the terminal.

Candidates are named by id or by a unique prefix of it (``list`` prints 12 characters). Every
decision is recorded with who (``--actor``, default: the OS user) and why (``--reason``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from auto_dev.candidates.review import CandidateDetail

app = typer.Typer(no_args_is_help=True)

_TENANT_HELP = "Tenant (default: AUTO_DEV_TENANT, else 'default')."
_ACTOR_HELP = "Who decides (default: the OS user, or AUTO_DEV_ACTOR)."


def _actor(actor: str | None) -> str:
    from auto_dev.cli._common import default_actor

    return actor or default_actor()


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}"


def _short(value: Any, limit: int = 60) -> str:
    import json

    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@app.command("list")
def list_candidates(
    tenant: Optional[str] = typer.Option(None, "--tenant", help=_TENANT_HELP),  # noqa: UP045
    kind: Optional[str] = typer.Option(  # noqa: UP045
        None, "--kind", help="tool_mutation, skill_candidate or workflow_variant."),
    status: Optional[list[str]] = typer.Option(  # noqa: UP045
        None, "--status", help="Only these statuses (repeatable)."),
    show_all: bool = typer.Option(False, "--all", help="Every status, not only pending review."),
    limit: int = typer.Option(50, "--limit", min=1, help="Show the newest N rows."),
) -> None:
    """List candidates waiting for review (passed: approve/reject; approved: promote)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from auto_dev.candidates.review import PENDING_REVIEW
    from auto_dev.cli._common import (
        errors,
        identifier_column,
        pass_rate_text,
        review_service,
        tenant_or_default,
    )

    tid = tenant_or_default(tenant)
    statuses = status or (None if show_all else list(PENDING_REVIEW))
    with errors():
        service = review_service(readonly=True)
        rows = service.list_candidates(tid, kind=kind, statuses=statuses, limit=limit)
        total = service.count_candidates(tid, kind=kind, statuses=statuses)
    console = Console()
    if not rows:
        console.print(f"no candidates {'' if show_all else 'awaiting review '}in tenant {tid}")
        return
    title = f"candidates of tenant {tid}" + ("" if show_all or status else " awaiting review")
    caption = (f"showing the newest {len(rows)} of {total}; use --limit N to see more"
               if total > len(rows) else f"{total} in all")
    # Two facts per cell (target over kind, operator over agent) so that the table fits 80
    # columns without cutting anything short.
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, show_edge=False)
    identifier_column(table, "id", (row.id[:12] for row in rows))
    table.add_column("target / kind", overflow="fold")
    table.add_column("status", overflow="fold")
    table.add_column("operator / agent", overflow="fold")
    table.add_column("pass", justify="right", no_wrap=True)
    table.add_column("created", overflow="fold")
    for row in rows:
        table.add_row(row.id[:12], f"{row.target}\n[dim]{row.kind}[/]", row.status,
                      f"{row.operator}\n[dim]{row.agent or '-'}[/]",
                      pass_rate_text(row.objectives.get("pass_rate")),
                      row.created_at.strftime("%Y-%m-%d\n%H:%M UTC"))
    console.print(table)


@app.command("show")
def show(
    candidate_id: str = typer.Argument(..., help="Candidate id or unique prefix."),
    tenant: Optional[str] = typer.Option(None, "--tenant", help=_TENANT_HELP),  # noqa: UP045
) -> None:
    """The diff against the active version, the objective vector against the parent's, the
    per-case sandbox results, the lineage and the decisions so far."""
    from rich.console import Console

    from auto_dev.cli._common import errors, review_service, tenant_or_default

    with errors():
        detail = review_service(readonly=True).show(tenant_or_default(tenant), candidate_id)
    render_detail(Console(), detail)


def render_detail(console: Console, detail: CandidateDetail) -> None:
    """Print a candidate for a reviewer."""
    from rich.panel import Panel
    from rich.syntax import Syntax
    from rich.table import Table
    from rich.tree import Tree

    from auto_dev.cli._common import pass_rate_text

    s = detail.summary
    head = (f"[bold]{s.kind}[/] {s.id}\nstatus [bold]{s.status}[/]   target [bold]{s.target}"
            f"[/]   operator {s.operator}   agent {s.agent or '-'}\ncapability "
            f"{detail.capability}   created {s.created_at.isoformat(timespec='seconds')}")
    for key, value in detail.extra.items():
        if value:
            head += f"\n{key.replace('_', ' ')}: {_short(value, 200)}"
    console.print(Panel(head, title="candidate", expand=False))

    console.print(f"[bold]diff[/] against {detail.diff_base}")
    if detail.diff.strip():
        console.print(Syntax(detail.diff, "diff", theme="ansi_dark", word_wrap=True))
    else:
        console.print("(no difference)")

    objectives = Table(title="objectives: candidate vs parent")
    for column in ("objective", "candidate", "parent", "change", "better"):
        objectives.add_column(column)
    for row in detail.objectives:
        # The pass rate reads as a percentage here as in every list.
        fmt = pass_rate_text if row.name == "pass_rate" else _fmt
        change = "-"
        if row.candidate is not None and row.parent is not None:
            delta = row.candidate - row.parent
            change = f"{delta:+.0%}" if row.name == "pass_rate" else f"{delta:+.6g}"
        mark = {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}[row.better]
        label = f"{row.name} ({row.direction})" if row.direction else row.name
        objectives.add_row(label, fmt(row.candidate), fmt(row.parent), change, mark)
    console.print(objectives if detail.objectives else "no objective vector recorded")

    ev = detail.evaluation
    if ev is None:
        console.print("not evaluated yet")
    else:
        cases = Table(title=f"sandbox results: {ev['passed']}/{ev['total']} passed on "
                            f"{ev['backend']} in {ev['duration_s']:.3f} s, peak "
                            f"{ev['peak_memory_kb']} KiB")
        for column in ("#", "status", "seconds", "inputs", "expected", "output / error"):
            cases.add_column(column)
        for case in detail.cases:
            colour = "green" if case.status == "ok" else "red"
            cases.add_row(str(case.index), f"[{colour}]{case.status}[/]",
                          f"{case.duration_s:.4f}",
                          _short(case.inputs) if case.inputs is not None else "?",
                          _short(case.expected) if case.inputs is not None else "?",
                          _short(case.error if case.error else case.output))
        console.print(cases)

    tree = Tree("[bold]lineage[/]")
    node = tree
    for step in detail.lineage:
        text = f"{step.label} [dim]{step.id[:12]}[/]"
        if step.operator:
            text += f"  op={step.operator}"
        if step.status:
            text += f"  [{step.status}]"
        if step.note:
            text += f"  ({step.note})"
        node = node.add(text)
    console.print(tree)

    if detail.decisions:
        decisions = Table(title="decisions")
        for column in ("when", "decision", "by", "why"):
            decisions.add_column(column)
        for d in detail.decisions:
            decisions.add_row(d.created_at.isoformat(timespec="seconds"), d.decision, d.actor,
                              d.reason or "-")
        console.print(decisions)


@app.command("approve")
def approve(
    candidate_id: str = typer.Argument(..., help="Candidate id or unique prefix."),
    reason: str = typer.Option("", "--reason", help="Why (recorded)."),
    actor: Optional[str] = typer.Option(None, "--actor", help=_ACTOR_HELP),  # noqa: UP045
    tenant: Optional[str] = typer.Option(None, "--tenant", help=_TENANT_HELP),  # noqa: UP045
) -> None:
    """Approve a passed candidate (it can then be promoted)."""
    from rich.console import Console

    from auto_dev.cli._common import errors, review_service, tenant_or_default

    who = _actor(actor)
    with errors():
        row = review_service().approve(tenant_or_default(tenant), candidate_id, who, reason)
    Console().print(f"candidate [bold]{row.id[:12]}[/] ({row.target}) approved by {who}")


@app.command("reject")
def reject(
    candidate_id: str = typer.Argument(..., help="Candidate id or unique prefix."),
    reason: str = typer.Option(..., "--reason", help="Why (required, recorded)."),
    actor: Optional[str] = typer.Option(None, "--actor", help=_ACTOR_HELP),  # noqa: UP045
    tenant: Optional[str] = typer.Option(None, "--tenant", help=_TENANT_HELP),  # noqa: UP045
) -> None:
    """Reject a passed or approved candidate."""
    from rich.console import Console

    from auto_dev.cli._common import errors, review_service, tenant_or_default

    who = _actor(actor)
    with errors():
        row = review_service().reject(tenant_or_default(tenant), candidate_id, who, reason)
    Console().print(f"candidate [bold]{row.id[:12]}[/] ({row.target}) rejected by {who}")


@app.command("promote")
def promote(
    candidate_id: str = typer.Argument(..., help="Candidate id or unique prefix."),
    reason: str = typer.Option("", "--reason", help="Why (recorded)."),
    actor: Optional[str] = typer.Option(None, "--actor", help=_ACTOR_HELP),  # noqa: UP045
    tenant: Optional[str] = typer.Option(None, "--tenant", help=_TENANT_HELP),  # noqa: UP045
) -> None:
    """Promote an approved candidate: it becomes the tool's new active version.

    A candidate made against a version that is no longer active is first re-evaluated in the
    sandbox against the active version and the tool's current tests, and promoted only if it is
    still better (otherwise nothing changes and the reason is printed).
    """
    import asyncio

    from rich.console import Console

    from auto_dev.candidates.promotion import PromotionResult
    from auto_dev.cli._common import build_autodev, errors, tenant_or_default

    who = _actor(actor)
    tid = tenant_or_default(tenant)

    async def _promote() -> PromotionResult:
        autodev = build_autodev(builtin_engines=False, load_plugins=False)
        try:
            return await autodev.promote(candidate_id, actor=who, reason=reason, tenant_id=tid)
        finally:
            await autodev.aclose()

    with errors():
        result = asyncio.run(_promote())
    console = Console()
    if result.reevaluated:
        console.print(f"candidate [bold]{result.candidate_id[:12]}[/] {result.reevaluated}")
    if result.version is not None:
        before = f"v{result.previous_version}" if result.previous_version else "nothing"
        console.print(f"promoted [bold]{result.candidate_id[:12]}[/]: "
                      f"{result.tool_name or result.workflow_name} "
                      f"v{result.version} is active (was {before}), by {who}")
    else:
        console.print(f"promoted [bold]{result.candidate_id[:12]}[/] ({result.kind}) by {who}")


@app.command("prune")
def prune(
    older_than: Optional[int] = typer.Option(  # noqa: UP045
        None, "--older-than", min=0, metavar="DAYS",
        help="Prune candidates closed more than DAYS days ago (default: the "
             "candidate_retention_days setting, AUTO_DEV_CANDIDATE_RETENTION_DAYS, 30)."),
    status: str = typer.Option("failed,rejected", "--status",
                               help="Closed statuses to prune, comma-separated."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count, delete nothing."),
    actor: Optional[str] = typer.Option(None, "--actor", help=_ACTOR_HELP),  # noqa: UP045
    tenant: Optional[str] = typer.Option(None, "--tenant", help=_TENANT_HELP),  # noqa: UP045
) -> None:
    """Delete old closed candidates (failed, rejected) and their evaluations, in one
    transaction. Candidates waiting for review or live, ancestors of anything kept, and those
    of running cycles are never deleted; rejected changes stay remembered."""
    from rich.console import Console
    from rich.table import Table

    from auto_dev.cli._common import errors, review_service, settings, tenant_or_default

    tid = tenant_or_default(tenant)
    days = older_than if older_than is not None else settings().candidate_retention_days
    with errors():
        result = review_service().prune(tid, older_than_days=days, actor=_actor(actor),
                                        statuses=status.split(","), dry_run=dry_run)
    verb = "would delete" if result.dry_run else "deleted"
    table = Table(title=f"{verb}: {'/'.join(result.statuses)} candidates of tenant {tid} closed "
                        f"before {result.cutoff:%Y-%m-%d %H:%M} UTC ({days} day(s))")
    for column in ("kind", "candidates", "evaluations", "kept (ancestors of kept rows)"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for count in result.counts:
        table.add_row(count.kind, str(count.candidates), str(count.evaluations),
                      str(count.kept_as_ancestors))
    table.add_row("[bold]total[/]", f"[bold]{result.candidates}[/]",
                  f"[bold]{result.evaluations}[/]",
                  str(sum(c.kept_as_ancestors for c in result.counts)))
    Console().print(table)
