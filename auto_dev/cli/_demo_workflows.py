"""The demo's workflow chapter: a support workflow repairs itself through the pipeline.

The platform registers three tools and a refund workflow with two faults (a flaky tool without a
retry, a branch on the wrong field), then records a morning of its runs. WorkflowEvolver reacts
to the failures through the cycle pipeline (gate, sandbox, candidate store), offline; a reviewer
reads the structural diff and promotes the variant; a run of the new version succeeds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from auto_dev.cli._demo_chapters import Story


async def refund_workflow_repair(story: Story) -> None:
    """Failing runs of a registered workflow become a reviewed, promoted repair."""
    from rich.rule import Rule

    from auto_dev.cli._demo_story import SUPPORT_WORKFLOW, WORKFLOW_RUNS, WORKFLOW_TOOLS

    autodev, console, tid = story.autodev, story.console, story.tenant
    name = SUPPORT_WORKFLOW["name"]
    console.print(Rule(f"workflows: {name} repairs itself"))
    existing = {t.name for t in autodev.review.list_tools(tid)}
    for tool in (t for t in WORKFLOW_TOOLS if t["name"] not in existing):
        autodev.register_tool(tool["name"], tool["code"], tool["name"],
                              description=tool["description"])
    # A second run in the same tenant keeps what review made live.
    known = {w.name: w.active_version for w in autodev.workflows.summaries(tenant_id=tid)}
    if name not in known:
        autodev.register_workflow(SUPPORT_WORKFLOW, actor="demo-admin")
        console.print(f"registered workflow [bold]{name}[/]: step order calls get_order (flaky, "
                      "no retry), step route switches on steps.order.payment_status == "
                      "'shipped'", highlight=False)
    else:
        console.print(f"workflow [bold]{name}[/] is at v{known[name]} (kept from an earlier "
                      "run of the demo)", highlight=False)
    for run in WORKFLOW_RUNS:
        await autodev.record_episode(**run)
    failed = sum(not r["success"] for r in WORKFLOW_RUNS)
    console.print(f"recorded {len(WORKFLOW_RUNS)} runs of {name}: {failed} failed (shipped orders "
                  "cancelled, one order-service timeout), each with the answer it should have "
                  "given", highlight=False)
    await autodev.drain()  # the failures queued one WorkflowEvolver cycle; it runs now
    story.summary["workflow_runs"] = len(WORKFLOW_RUNS)
    offered = [c for c in autodev.review.list_pending(tid)
               if c.target == name and c.kind == "workflow_variant"]
    if not offered:
        console.print(f"[yellow]no workflow variant offered[/]: {_last_reason(story, name)}",
                      highlight=False)
    else:
        await _review_and_promote(story, offered[0].id)
    await _run_live_version(story)


async def _review_and_promote(story: Story, candidate_id: str) -> None:
    from rich.rule import Rule

    from auto_dev.cli.candidates import render_detail

    autodev, tid = story.autodev, story.tenant
    run = _last_run(story, "refund_support", status="completed")
    if run is not None:
        stats = run.stats or {}
        story.console.print(
            f"workflow_evolver cycle ({stats.get('strategy', '?')}): "
            f"{stats.get('passed_before')}/{stats.get('total')} -> "
            f"{stats.get('passed_after')}/{stats.get('total')} tasks in "
            f"{run.evaluations} evaluations", highlight=False)
    story.console.print(Rule(f"review: workflow_variant {candidate_id[:12]} for refund_support"))
    render_detail(story.console, autodev.review.show(tid, candidate_id))
    autodev.review.approve(tid, candidate_id, actor="demo-reviewer",
                           reason="retry and branch verified against the recorded runs")
    result = await autodev.promote(candidate_id, actor="demo-reviewer", reason="ship it",
                                   tenant_id=tid)
    story.console.print(f"[green]promoted[/] workflow {result.workflow_name}: "
                        f"v{result.previous_version} -> v{result.version} (active)",
                        highlight=False)
    story.summary["workflow_promoted"] = 1


async def _run_live_version(story: Story) -> None:
    """Run the active version for a shipped order, as the platform would, and record it."""
    from auto_dev.cli._demo_story import SUPPORT_WORKFLOW, WORKFLOW_CHECK_INPUT, WORKFLOW_SEED
    from auto_dev.queries import TenantView
    from auto_dev.workflows import SandboxToolInvoker, WorkflowInterpreter
    from auto_dev.workflows.tools import tenant_tools

    autodev, tid = story.autodev, story.tenant
    name = SUPPORT_WORKFLOW["name"]
    active = next(v.version for v in autodev.workflow_versions(name) if v.is_active)
    tools = tenant_tools(TenantView(autodev.database, tid))
    interpreter = WorkflowInterpreter(SandboxToolInvoker(autodev.sandbox, tools), tenant_id=tid)
    run = await interpreter.run(autodev.workflow_definition(name), dict(WORKFLOW_CHECK_INPUT),
                                seed=WORKFLOW_SEED)
    await autodev.record_episode(agent="support-bot", task="Handle the refund request for "
                                 f"order {WORKFLOW_CHECK_INPUT['order_id']}", success=run.ok,
                                 workflow=name, inputs=dict(WORKFLOW_CHECK_INPUT),
                                 output=run.output, error_trace=run.error)
    verdict = "[green]ok[/]" if run.ok else f"[red]failed[/] ({run.error})"
    story.console.print(f"a run of {name} v{active} for order "
                        f"{WORKFLOW_CHECK_INPUT['order_id']}: {verdict}, output {run.output}",
                        highlight=False)
    story.summary["workflow_run"] = f"v{active} " + ("ok" if run.ok else "failed")
    await autodev.drain()


def _last_run(story: Story, target: str, status: str | None = None) -> Any:
    from auto_dev.queries.runs import RunHistory

    page = RunHistory(story.autodev.database, story.tenant).page(
        engine="workflow_evolver", target=target, status=status, limit=1)
    return page.items[0] if page.items else None


def _last_reason(story: Story, target: str) -> str:
    run = _last_run(story, target)
    if run is None:
        return "no cycle ran"
    return str((run.stats or {}).get("reason") or run.error or run.status)
