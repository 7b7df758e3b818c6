"""The chapters of ``auto-dev demo``: each is one step of the story, told to the console.

A chapter is ``async def chapter(story: Story) -> None``; :data:`CHAPTERS` is the order they are
told in. To tell more (maturity graduating from real usage, say), write a chapter and put it
in the tuple: chapters share what they learn through :class:`Story` (``promoted`` tools, the
``summary`` printed at the end).

Every table keeps names people copy (ids, capabilities, tools) whole on an 80-column terminal:
the other columns wrap instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from auto_dev.service import AutoDev


@dataclass
class Story:
    """What the chapters share."""

    console: Console
    autodev: AutoDev
    progress: Progress
    summary: dict[str, Any] = field(default_factory=dict)
    #: Candidates offered for review (passed), in the order the table listed them.
    offered: list[Any] = field(default_factory=list)
    #: Tools whose candidate a reviewer promoted.
    promoted: list[str] = field(default_factory=list)

    @property
    def tenant(self) -> str:
        return self.autodev.tenant_id


Chapter = Callable[[Story], Awaitable[None]]


# -- the chapters --------------------------------------------------------------------------------


async def set_the_stage(story: Story) -> None:
    """The platform's tools and agents; the tenant opts in (everything defaults to off)."""
    from auto_dev.cli._demo_story import AGENTS, TENANT_SETTINGS, TOOLS

    autodev = story.autodev
    autodev.configure_tenant(**TENANT_SETTINGS)
    # A second run in the same tenant keeps what review made live (register_tool never
    # replaces code): what was rejected or rolled back then stays closed.
    existing = {t.name for t in autodev.review.list_tools(story.tenant)}
    for tool in (t for t in TOOLS if t["name"] not in existing):
        autodev.register_tool(tool["name"], tool["code"], tool["entrypoint"],
                              description=tool["description"], tests=tool["tests"])
    for agent, levels in AGENTS.items():
        for capability, maturity in levels.items():
            autodev.set_maturity(agent, capability, maturity, actor="demo-admin",
                                 reason="demo setup")
    tools_table(story, "the platform's tools (with real bugs)")


async def a_day_of_episodes(story: Story) -> None:
    """Each episode is stored and emitted as an event in one transaction; the engines react
    in the background while episodes keep arriving."""
    from auto_dev.cli._demo_story import EPISODES

    autodev = story.autodev
    events_seen: list[str] = []
    autodev.events.on_task_fail(lambda e: events_seen.append(type(e).__name__),
                                name="demo.audience")
    autodev.events.on_task_success(lambda e: events_seen.append(type(e).__name__),
                                   name="demo.audience.success")
    with story.progress:
        task = story.progress.add_task("recording episodes", total=len(EPISODES))
        for episode in EPISODES:
            fields = {k: v for k, v in episode.items() if k != "task"}
            await autodev.record_episode(task=episode["task"], **fields)
            # The cycles this failure queued run before the next episode, so the story (a
            # trainee refused, then a trusted agent's cycle) reads the same on every machine.
            await autodev.drain()
            story.progress.advance(task)
    story.summary["episodes"] = len(EPISODES)
    story.summary["events_delivered"] = len(events_seen)


async def the_gate_decides(story: Story) -> None:
    """Which cycles the capability gate let run, per agent maturity and target."""
    from rich import box
    from rich.table import Table

    from auto_dev.cli._common import identifier_column

    decisions = Counter(cycle_decisions(story.autodev))
    table = Table(title="capability gate: may this agent's failures start a cycle?",
                  caption="each decision is logged and audited (repeats counted once)",
                  box=box.SIMPLE_HEAD)
    identifier_column(table, "agent", (d.agent for d in decisions))
    identifier_column(table, "target / capability",
                      [d.target for d in decisions] + [d.capability for d in decisions])
    table.add_column("decision", no_wrap=True)
    table.add_column("reason", overflow="fold")
    for d, times in decisions.items():
        verdict = "[green]allow[/]" if d.allowed else "[red]deny[/]"
        table.add_row(d.agent, f"{d.target}\n[dim]{d.capability}[/]",
                      verdict + (f" x{times}" if times > 1 else ""), d.reason)
    story.console.print(table)


async def candidates_offered(story: Story) -> None:
    """Candidates with their objective vectors; the passed ones wait for a reviewer."""
    from rich import box
    from rich.table import Table

    from auto_dev.cli._common import identifier_column, pass_rate_text

    rows = story.autodev.review.list_candidates(story.tenant)
    shown = [c for c in rows if c.status != "failed"]
    table = Table(title="candidates (objective vector from the sandbox)", box=box.SIMPLE_HEAD,
                  caption=f"{len(rows) - len(shown)} more evaluated and rejected mutations are "
                          "kept for lineage (auto-dev candidates list --all)")
    identifier_column(table, "id", (c.id[:12] for c in shown))
    identifier_column(table, "target / kind", [c.target for c in shown] + [c.kind for c in shown])
    identifier_column(table, "made by / status", (c.operator for c in shown))
    table.add_column("pass", justify="right", no_wrap=True)
    table.add_column("latency\nmemory\nsize", justify="right", no_wrap=True)
    for c in shown:
        o = c.objectives
        table.add_row(c.id[:12], f"{c.target}\n[dim]{c.kind}[/]", f"{c.operator}\n{c.status}",
                      pass_rate_text(o.get("pass_rate")),
                      f"{1000 * o.get('latency_s', 0):.2f} ms\n"
                      f"{o.get('peak_memory_kb', 0):.0f} KiB\nsize {o.get('code_size', 0):.0f}")
    story.console.print(table)
    story.summary["candidates"] = len(rows)
    story.offered = [c for c in rows if c.status == "passed"]


async def review_and_promote(story: Story) -> None:
    """A reviewer reads each passed candidate (diff, objectives, cases, lineage), approves
    and promotes it."""
    from rich.rule import Rule

    from auto_dev import StaleCandidateError
    from auto_dev.cli.candidates import render_detail

    review = story.autodev.review
    for candidate in story.offered:
        story.console.print(Rule(f"review: {candidate.kind} {candidate.id[:12]} "
                                 f"for {candidate.target}"))
        render_detail(story.console, review.show(story.tenant, candidate.id))
        review.approve(story.tenant, candidate.id, actor="demo-reviewer",
                       reason="fix verified against the failing episodes")
        try:
            # One made against a version another promotion replaced is re-evaluated against
            # the new active version first, and refused if it is no longer better.
            result = await story.autodev.promote(candidate.id, actor="demo-reviewer",
                                                 reason="ship it", tenant_id=story.tenant)
        except StaleCandidateError as exc:
            story.console.print(f"[yellow]not promoted[/] {candidate.target}: {exc}",
                                highlight=False)
            continue
        story.promoted.append(candidate.target)
        story.console.print(f"[green]promoted[/] {candidate.target}: v{result.previous_version} "
                            f"-> v{result.version} (active)"
                            + (f"; {result.reevaluated}" if result.reevaluated else ""))
    for name in story.promoted:  # the agents use the new versions
        await story.autodev.record_skill_execution(agent="support-bot", skill_name=name,
                                                   success=True, execution_seconds=0.01)
    story.summary["promoted"] = len(story.promoted)


async def trust_is_earned(story: Story) -> None:
    """The promoted fixes serve the platform. Every verified success of a version an engine
    made for an agent is evidence for that agent, and the gate moves its maturity by the
    documented rule (Wilson lower bound over the uses since its last change): nobody calls
    set_maturity here."""
    from rich import box
    from rich.table import Table

    from auto_dev.cli._common import identifier_column
    from auto_dev.cli._demo_story import GRADUATES

    autodev = story.autodev
    rows: list[tuple[str, str, str, str]] = []
    for agent, capability, tool, user in GRADUATES:
        if tool not in story.promoted:
            continue
        before = _standing(autodev, agent, capability)
        needed = before.successes_to_graduate or 0
        for n in range(needed):
            await autodev.record_episode(agent=user, task=f"use {tool} (#{n + 1})",
                                         success=True, tool_name=tool)
        await autodev.drain()
        after = _standing(autodev, agent, capability)
        moved = after.maturity > before.maturity
        story.summary["graduated"] = story.summary.get("graduated", 0) + int(moved)
        rows.append((f"{agent}\n[dim]{capability}[/]",
                     f"{before.maturity.value}\n-> " + (f"[green]{after.maturity.value}[/]"
                                                        if moved else after.maturity.value),
                     f"{before.verified_successes}/{before.samples} verified, lower bound "
                     f"{before.lower_bound:.2f}", f"{needed} uses of {tool}"))
    table = Table(title="maturity earned from real usage (no set_maturity)", box=box.SIMPLE_HEAD,
                  caption="the usage recorder counts each use of a promoted fix for the agent "
                          "it was made for; the gate graduates by the documented rule")
    identifier_column(table, "agent / capability",
                      [a for a, c, _t, _u in GRADUATES] + [c for _a, c, _t, _u in GRADUATES])
    table.add_column("maturity", no_wrap=True)
    table.add_column("evidence before", overflow="fold")
    table.add_column("then", overflow="fold")
    for row in rows:
        table.add_row(*row)
    story.console.print(table)


def _standing(autodev: AutoDev, agent: str, capability: str) -> Any:
    from auto_dev.gates.agent_report import agent_standing

    with autodev.database.session() as session:
        standing = agent_standing(session, autodev.gates, autodev.tenant_id, agent)
    return next(c for c in standing.capabilities if c.capability == capability)


async def roll_back_to_show_how(story: Story) -> None:
    """The clamp fix is correct; it is rolled back anyway, to show how a reviewer undoes a
    promotion. The demo says so, and the recorded reason says so too."""
    from rich.rule import Rule

    from auto_dev.cli._demo_story import ROLLBACK_REASON, ROLLBACK_TOOL

    story.summary["rolled_back"] = 0
    if ROLLBACK_TOOL not in story.promoted:
        return
    story.console.print(Rule(f"rollback (a demonstration): {ROLLBACK_TOOL}"))
    story.console.print(f"The {ROLLBACK_TOOL} fix passed review and is correct. To show how a "
                        "reviewer undoes a promotion (as after a regression in production), "
                        "the demo rolls it back now.", highlight=False)
    rolled = story.autodev.review.rollback(story.tenant, ROLLBACK_TOOL, actor="demo-reviewer",
                                           reason=ROLLBACK_REASON)
    undone = str(rolled.rolled_back_candidate_id)[:12]
    story.console.print(f"[yellow]rolled back[/] {ROLLBACK_TOOL}: v{rolled.from_version} -> "
                        f"v{rolled.to_version} (candidate {undone} is now rolled_back)\n"
                        f"recorded reason: {ROLLBACK_REASON!r}", highlight=False)
    story.summary["rolled_back"] = 1
    await story.autodev.drain()
    tools_table(story, "tools after review")


async def workflows_repair_themselves(story: Story) -> None:
    """A support workflow's failing runs become a reviewed, promoted repair (see
    :mod:`auto_dev.cli._demo_workflows`)."""
    from auto_dev.cli._demo_workflows import refund_workflow_repair as chapter

    await chapter(story)


CHAPTERS: tuple[Chapter, ...] = (
    set_the_stage,
    a_day_of_episodes,
    the_gate_decides,
    candidates_offered,
    review_and_promote,
    trust_is_earned,
    roll_back_to_show_how,
    workflows_repair_themselves,
)


# -- shared tables and reads ---------------------------------------------------------------------


def tools_table(story: Story, title: str) -> None:
    """The tenant's tools with their active version and what awaits review."""
    from rich import box
    from rich.table import Table

    from auto_dev.cli._common import identifier_column

    tools = story.autodev.review.list_tools(story.tenant)
    table = Table(title=title, box=box.SIMPLE_HEAD)
    identifier_column(table, "tool", (t.name for t in tools))
    for column in ("active", "versions", "awaiting review"):
        table.add_column(column, justify="right")
    table.add_column("description", overflow="fold")
    for tool in tools:
        table.add_row(tool.name, f"v{tool.active_version}", str(tool.versions),
                      str(tool.pending_candidates), tool.description)
    story.console.print(table)


@dataclass(frozen=True)
class CycleDecision:
    """One gate decision on starting a cycle, with the cycle's target."""

    agent: str
    capability: str
    target: str
    allowed: bool
    reason: str


def cycle_decisions(autodev: AutoDev) -> list[CycleDecision]:
    """The tenant's ``run_cycle`` gate decisions, oldest first, each with its target.

    The audit entry names the capability, not the target; the cycle's run row names the
    target. A cycle inserts its run and asks the gate with no await in between, so a
    decision belongs to the latest run of the capability's engine started before it (a
    capability no engine has, like background evolution, to the latest run of any engine).
    """
    from sqlalchemy import select

    from auto_dev.models import AuditEntry, EvolutionRun

    engine_of = {engine.capability: engine.name for engine in autodev.engines}
    tid = autodev.tenant_id
    with autodev.database.session(readonly=True) as session:
        audits = session.execute(
            select(AuditEntry.actor, AuditEntry.details, AuditEntry.allowed, AuditEntry.reason,
                   AuditEntry.created_at)
            .where(AuditEntry.tenant_id == tid, AuditEntry.action == "gate.run_cycle")
            .order_by(AuditEntry.created_at, AuditEntry.id)).all()
        runs = session.execute(
            select(EvolutionRun.engine, EvolutionRun.target, EvolutionRun.started_at)
            .where(EvolutionRun.tenant_id == tid)
            .order_by(EvolutionRun.started_at)).all()
    out: list[CycleDecision] = []
    for actor, details, allowed, reason, at in audits:
        capability = str((details or {}).get("capability"))
        engine = engine_of.get(capability)
        before = [r.target for r in runs
                  if r.started_at <= at and (engine is None or r.engine == engine)]
        out.append(CycleDecision(agent=actor.removeprefix("agent:"), capability=capability,
                                 target=before[-1] if before else "-",
                                 allowed=bool(allowed), reason=reason or ""))
    return out
