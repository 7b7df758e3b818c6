"""``auto-dev demo``: the whole loop on embedded defaults, told as a small platform's day.

Failing episodes become events; AlphaEvolver and Memento react; candidates run in the sandbox
and are scored; the gate decides per agent maturity; a reviewer approves and promotes; the diff
is shown; a promoted version is rolled back. Each run uses a fresh tenant so it can be repeated
against the same database, and prints that tenant so the review commands can be tried after.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from auto_dev.service import AutoDev


def demo(
    tenant: Optional[str] = typer.Option(  # noqa: UP045 - typer needs Optional
        None, "--tenant", help="Tenant to use (default: a fresh demo-<timestamp> tenant)."),
    budget: int = typer.Option(150, "--budget", min=1,
                               help="Sandbox evaluations per evolution cycle."),
) -> None:
    """Run the end-to-end story on embedded defaults (SQLite file, process sandbox, offline)."""
    import asyncio
    import os
    import time

    from rich.console import Console

    from auto_dev.cli._common import configure, errors
    from auto_dev.logging import configure_logging

    console = Console()
    settings = configure()
    if "AUTO_DEV_LOG_LEVEL" not in os.environ:
        # The story shows every gate decision in a table; log lines would only interleave.
        configure_logging("error", settings.log_format)
    started = time.perf_counter()
    with errors():
        summary = asyncio.run(_story(console, settings, tenant, budget))
    summary["seconds"] = round(time.perf_counter() - started, 1)
    _final_table(console, summary)


async def _story(console: Console, settings: Any, tenant: str | None, budget: int
                 ) -> dict[str, Any]:
    import datetime as dt

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.rule import Rule

    from auto_dev.cli._demo_story import AGENTS, EPISODES, TENANT_SETTINGS, TOOLS
    from auto_dev.engines.alpha_evolver import AlphaEvolver
    from auto_dev.engines.memento import Memento
    from auto_dev.service import AutoDev

    tid = tenant or "demo-" + dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S-%f")
    autodev = AutoDev(settings.model_copy(update={"tenant": tid}), tenant_id=tid)
    summary: dict[str, Any] = {"tenant": tid, "database": autodev.database.display_url}
    try:
        await autodev.start()
        console.print(Rule(f"auto-dev demo: tenant [bold]{tid}[/]"))
        console.print(f"database: {autodev.database.display_url}")
        console.print(f"sandbox:  [bold]{autodev.sandbox.name}[/] ({autodev.sandbox_reason})")
        console.print(f"mutators: {autodev.context.strategy}")

        progress = Progress(TextColumn("{task.description:<34}"), BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(), console=console)
        cycles: dict[str, Any] = {}

        def on_progress_for(label: str) -> Callable[[Any], None]:
            def update(p: Any) -> None:
                task = cycles.get(label)
                if task is None:
                    task = cycles[label] = progress.add_task(label, total=p.budget)
                progress.update(task, completed=p.evaluations,
                                description=f"{label} ({p.best_passed}/{p.total} pass)")
            return update

        autodev.engines.register(
            AlphaEvolver(event_budget=budget, on_progress=on_progress_for("alpha_evolver")),
            replace=True)
        autodev.engines.register(Memento(event_budget=budget), replace=True)

        # 1. The platform's tools and agents; the tenant opts in (everything defaults to off).
        autodev.configure_tenant(**TENANT_SETTINGS)
        # A second run in the same tenant keeps what review made live (register_tool never
        # replaces code): what was rejected or rolled back then stays closed.
        existing = {t.name for t in autodev.review.list_tools(tid)}
        for tool in (t for t in TOOLS if t["name"] not in existing):
            autodev.register_tool(tool["name"], tool["code"], tool["entrypoint"],
                                  description=tool["description"], tests=tool["tests"])
        for agent, levels in AGENTS.items():
            for capability, maturity in levels.items():
                autodev.set_maturity(agent, capability, maturity, actor="demo-admin",
                                     reason="demo setup")
        _tools_table(console, autodev, "the platform's tools (with real bugs)")

        # 2. A day of episodes: each is stored and emitted as an event in one transaction;
        #    the engines react in the background while episodes keep arriving.
        events_seen: list[str] = []
        autodev.events.on_task_fail(lambda e: events_seen.append(type(e).__name__),
                                    name="demo.audience")
        autodev.events.on_task_success(lambda e: events_seen.append(type(e).__name__),
                                       name="demo.audience.success")
        with progress:
            task = progress.add_task("recording episodes", total=len(EPISODES))
            for episode in EPISODES:
                fields = {k: v for k, v in episode.items() if k != "task"}
                await autodev.record_episode(task=episode["task"], **fields)
                # Each failure's cycle runs before the next episode, so the story (a trainee
                # refused, then a trusted agent's cycle) reads the same on every machine.
                await autodev.drain()
                progress.advance(task)
        summary["episodes"] = len(EPISODES)
        summary["events_delivered"] = len(events_seen)

        # 3. What the gate decided, per agent maturity.
        _gate_table(console, autodev)

        # 4. Candidates with their objective vectors.
        pending = _candidates_table(console, autodev)
        summary["candidates"] = len(autodev.review.list_candidates(tid))

        # 5. A reviewer approves and promotes each passed candidate; the diff is shown.
        from auto_dev import StaleCandidateError
        from auto_dev.cli.candidates import render_detail

        promoted: list[str] = []
        for candidate in pending:
            detail = autodev.review.show(tid, candidate.id)
            console.print(Rule(f"review: {candidate.kind} {candidate.id[:12]} "
                               f"for {candidate.target}"))
            render_detail(console, detail)
            autodev.review.approve(tid, candidate.id, actor="demo-reviewer",
                                   reason="fix verified against the failing episodes")
            try:
                # A candidate made against a version that another promotion replaced is
                # re-evaluated against the new active version first, and refused if it is no
                # longer better.
                result = await autodev.promote(candidate.id, actor="demo-reviewer",
                                               reason="ship it", tenant_id=tid)
            except StaleCandidateError as exc:
                console.print(f"[yellow]not promoted[/] {candidate.target}: {exc}")
                continue
            promoted.append(candidate.target)
            console.print(f"[green]promoted[/] {candidate.target}: v{result.previous_version} "
                          f"-> v{result.version} (active)"
                          + (f"; {result.reevaluated}" if result.reevaluated else ""))
        summary["promoted"] = len(promoted)

        # 6. The agents use the new versions; then one promotion is rolled back on request.
        for name in promoted:
            await autodev.record_skill_execution(agent="support-bot", skill_name=name,
                                                 success=True, execution_seconds=0.01)
        rolled = None
        if "clamp" in promoted:
            rolled = autodev.review.rollback(tid, "clamp", actor="demo-reviewer",
                                             reason="product wants the old behaviour back")
            undone = str(rolled.rolled_back_candidate_id)[:12]
            console.print(f"[yellow]rolled back[/] clamp: v{rolled.from_version} -> "
                          f"v{rolled.to_version} (candidate {undone} is now rolled_back)")
        summary["rolled_back"] = 1 if rolled else 0
        await autodev.drain()
        _tools_table(console, autodev, "tools after review")
        summary["sandbox"] = autodev.sandbox.name
    finally:
        await autodev.aclose()
    return summary


def _tools_table(console: Console, autodev: AutoDev, title: str) -> None:
    from rich.table import Table

    table = Table(title=title)
    for column in ("tool", "active version", "versions", "pending review", "description"):
        table.add_column(column)
    for tool in autodev.review.list_tools(autodev.tenant_id):
        table.add_row(tool.name, f"v{tool.active_version}", str(tool.versions),
                      str(tool.pending_candidates), tool.description)
    console.print(table)


def _gate_table(console: Console, autodev: AutoDev) -> None:
    from rich.table import Table
    from sqlalchemy import select

    from auto_dev.models import AuditEntry

    table = Table(title="capability gate decisions (each logged and audited)")
    for column in ("agent", "capability", "action", "decision", "reason"):
        table.add_column(column)
    with autodev.database.session(readonly=True) as session:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.tenant_id == autodev.tenant_id,
                                     AuditEntry.action == "gate.run_cycle")
            .order_by(AuditEntry.created_at)
        ).all()
        for row in rows:
            table.add_row(row.actor.removeprefix("agent:"), str(row.details.get("capability")),
                          "run_cycle",
                          "[green]allow[/]" if row.allowed else "[red]deny[/]", row.reason)
    console.print(table)


def _candidates_table(console: Console, autodev: AutoDev) -> list[Any]:
    from rich.table import Table

    rows = autodev.review.list_candidates(autodev.tenant_id)
    shown = [c for c in rows if c.status != "failed"]
    table = Table(title="candidates (objective vector from the sandbox)",
                  caption=f"{len(rows) - len(shown)} more evaluated and rejected mutations are "
                          "kept for lineage (auto-dev candidates list --all)")
    for column in ("id", "kind", "target", "made by", "status", "pass rate", "latency ms",
                   "peak KiB", "size"):
        table.add_column(column)
    for c in shown:
        o = c.objectives
        table.add_row(c.id[:12], c.kind, c.target, c.operator, c.status,
                      f"{o.get('pass_rate', 0):.0%}", f"{1000 * o.get('latency_s', 0):.2f}",
                      f"{o.get('peak_memory_kb', 0):.0f}", f"{o.get('code_size', 0):.0f}")
    console.print(table)
    return [c for c in rows if c.status == "passed"]


def _final_table(console: Console, summary: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="auto-dev demo: summary")
    table.add_column("what")
    table.add_column("value", justify="right")
    for key in ("tenant", "database", "sandbox", "episodes", "events_delivered", "candidates",
                "promoted", "rolled_back", "seconds"):
        table.add_row(key.replace("_", " "), str(summary.get(key, "-")))
    console.print(table)
    console.print(f"next: [bold]AUTO_DEV_TENANT={summary['tenant']} auto-dev candidates list "
                  "--all[/]  or  [bold]auto-dev tools show clamp --tenant "
                  f"{summary['tenant']}[/]")
