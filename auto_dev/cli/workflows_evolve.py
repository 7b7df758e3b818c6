"""``auto-dev workflows evolve``: evolve a workflow against a JSON task file.

::

    auto-dev workflows evolve WF.json --tasks TASKS.json [--tools tools.py] [--budget N]
                              [--seed S] [--json] [--sandbox MODE] [--offline] [--tenant T]
                              [-o BEST.json]

TASKS.json is a list of ``{"input": {...}, "expected": ...}`` (``expected`` compared as
``auto-dev evolve`` compares; a task without it passes when the run succeeds). Tools come from
``--tools`` (each public top-level function of the file is a tool) or, without it, from the
tenant's registered tools (their active versions). Tools run in the configured sandbox. The
search is offline (the workflow operators) unless an LLM is configured, which then also
rewrites prompts and edits the JSON (``--offline`` turns that off).

Prints a table of the result, each task before and after (why it failed), and the structural
diff of the best workflow. With ``--json`` the last line on stdout is one JSON object
(``best_workflow``, ``pass_rate``, ``passed``, ``total``, ``evaluations``, ``improved``,
``seconds``, ``cost_usd``, ``original_passed``, ``stop_reason``, per-task results, the front,
``diff`` and more).

Exit codes: 0 whenever the run completed (improved or not), 2 for a bad workflow, tools or
tasks file or option (the error names the field, e.g. ``workflow.steps[1].retry`` or
``tasks[3].input``), 1 when the sandbox itself failed (or, without ``--tools``, there is no
database), 130 / 143 when stopped by Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from auto_dev.cli._common import fail_reported, reported_settings, search_progress_bar

if TYPE_CHECKING:
    from rich.console import Console

    from auto_dev.abc import Sandbox
    from auto_dev.config import Settings
    from auto_dev.workflows.search import (
        TaskResult,
        WorkflowSearchResult,
        WorkflowTask,
    )

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
DEFAULT_BUDGET = 300


def workflows_evolve(
    path: Annotated[Path, typer.Argument(help="The workflow's JSON file.", show_default=False)],
    tasks: Annotated[Path, typer.Option("--tasks", "-t", help="JSON list of tasks.")],
    tools: Annotated[Path | None, typer.Option(
        "--tools", help="Python file whose public functions are the tools.",
        show_default="the tenant's registered tools")] = None,
    budget: Annotated[int, typer.Option("--budget", "-b", min=0,
                                        help="Variant evaluations to spend.")] = DEFAULT_BUDGET,
    seed: Annotated[int, typer.Option("--seed", "-s", help="Random seed.")] = 0,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object last.")]
    = False,
    sandbox: Annotated[str | None, typer.Option(
        "--sandbox", help="Backend: auto, docker or process.",
        show_default="AUTO_DEV_SANDBOX, else auto")] = None,
    offline: Annotated[bool, typer.Option(
        "--offline", help="Only the offline operators, even if an LLM is configured.")] = False,
    tenant: Annotated[str | None, typer.Option(
        "--tenant", help="Tenant whose registered tools to use (without --tools).",
        show_default="AUTO_DEV_TENANT")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the best workflow to this file.", show_default=False)]
    = None,
) -> None:
    """Evolve a workflow against a JSON task file."""
    from auto_dev._exceptions import AutoDevError, ValidationError
    from auto_dev.cli._signals import CommandInterrupted, run_stoppable

    settings = reported_settings(json_output)
    try:
        from auto_dev.cli.workflows import load_tools_source, load_workflow_file
        from auto_dev.payloads import PayloadLimits
        from auto_dev.workflows.search import load_tasks_file

        doc = load_workflow_file(path)
        task_list = load_tasks_file(tasks, PayloadLimits.from_settings(settings))
        sources = load_tools_source(tools) if tools is not None else None
        if sources is not None:
            from auto_dev.workflows import validate_workflow

            doc = validate_workflow(doc, tools=sources)  # before the sandbox starts
    except ValidationError as exc:
        fail_reported(str(exc), EXIT_BAD_INPUT, json_output, exc.field)
    if sources is None:
        from auto_dev.cli._common import existing_database

        # The tenant's tools live in an existing database: never create one just to find it
        # empty (exit 1 naming the database when it is missing), as ``workflows run`` does.
        existing_database().dispose()
    try:
        result, backend, reason, strategy = run_stoppable(_evolve(
            doc, task_list, sources, settings=settings, tenant=tenant, budget=budget,
            seed=seed, sandbox_mode=sandbox, offline=offline, progress=not json_output))
    except ValidationError as exc:
        fail_reported(str(exc), EXIT_BAD_INPUT, json_output, exc.field)
    except AutoDevError as exc:
        fail_reported(str(exc), EXIT_FAILED, json_output, None)
    except CommandInterrupted as exc:
        fail_reported(f"{exc}: stopped, sandbox closed", exc.exit_code, json_output, None)
    from auto_dev.cli.evolve import _named_by_flag

    reason = _named_by_flag(reason, sandbox)
    if output is not None:
        try:
            output.write_text(json.dumps(result.best, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            fail_reported(f"--output: cannot write {output}: {exc.strerror}", EXIT_FAILED,
                          json_output, "output")
    from auto_dev.workflows.diff import structural_diff

    diff = structural_diff(result.original, result.best).render_lines()
    if json_output:
        payload = {**result.to_dict(), "diff": diff, "path": str(path), "budget": budget,
                   "rng_seed": seed, "sandbox": backend, "sandbox_reason": reason,
                   "strategy": strategy}
        print(json.dumps(payload, sort_keys=True, default=str))
        return
    from rich.console import Console

    console = Console()
    _render(console, result, diff, backend, reason, strategy)


async def _evolve(
    doc: dict[str, Any], tasks: list[WorkflowTask], sources: dict[str, str] | None, *,
    settings: Settings, tenant: str | None, budget: int, seed: int, sandbox_mode: str | None,
    offline: bool, progress: bool,
) -> tuple[WorkflowSearchResult, str, str, str]:
    """Open what the run needs (the tenant's tools and model through the facade without
    ``--tools``; else the configured sandbox and model), evolve, close everything."""
    from auto_dev.cli._common import build_autodev, tenant_or_default
    from auto_dev.cli.workflows import tenant_tool_sources
    from auto_dev.sandbox.factory import create_sandbox

    autodev = None
    llm: Any = None
    owned: Sandbox | None = None  # a sandbox this command opened (not the facade's)
    try:
        if sources is None:
            autodev = build_autodev()
            tenant_id = tenant_or_default(tenant)
            sources = tenant_tool_sources(autodev.database, tenant_id)
            llm = autodev.llm
        else:
            tenant_id = settings.tenant
            if settings.effective_llm().configured and _has_llm_steps(doc):
                # LLM steps need the model even offline; the ledger is the configured database.
                from auto_dev.db import Database
                from auto_dev.llm.factory import build_client

                database = Database(settings.database_url)
                database.upgrade()
                llm = build_client(settings, database, tenant_id=tenant_id)
        if sandbox_mode is None and autodev is not None:
            box, backend, reason = autodev.sandbox, autodev.sandbox.name, autodev.sandbox_reason
        else:
            choice = create_sandbox(sandbox_mode or settings.sandbox,
                                    workers=settings.sandbox_workers)
            owned = box = choice.sandbox
            backend, reason = choice.backend, choice.reason
        model_operators = (_model_operators(llm, tenant_id) if llm is not None and not offline
                           else [])
        strategy = ("offline operators + " + ", ".join(type(o).__name__ for o in model_operators)
                    if model_operators else "offline operators")
        from auto_dev.workflows import SandboxToolInvoker, WorkflowInterpreter
        from auto_dev.workflows.search import evolve_workflow

        workers = getattr(box, "workers", None)
        interpreter = WorkflowInterpreter(SandboxToolInvoker(box, sources), llm=llm,
                                          tenant_id=tenant_id)
        with search_progress_bar(progress, str(doc.get("name", "workflow")), budget,
                                 len(tasks), "tasks") as on_progress:
            result = await evolve_workflow(
                doc, tasks, interpreter=interpreter, budget=budget, seed=seed,
                model_operators=model_operators, on_progress=on_progress,
                concurrency=max(2, workers if isinstance(workers, int) else 2))
    finally:
        if owned is not None:
            await owned.aclose()
        if autodev is not None:
            await autodev.aclose()  # closes its own sandbox and model
        else:
            closer = getattr(llm, "aclose", None)
            if closer is not None:
                await closer()
    return result, backend, reason, strategy


def _has_llm_steps(doc: dict[str, Any]) -> bool:
    from auto_dev.workflows import walk_steps

    return any("llm" in location.step for location in walk_steps(doc))


def _model_operators(llm: Any, tenant_id: str) -> list[Any]:
    from auto_dev.workflows.operators import LLMWorkflowEdit, ReflectivePromptRewrite

    return [ReflectivePromptRewrite(llm, tenant_id=tenant_id),
            LLMWorkflowEdit(llm, tenant_id=tenant_id)]


def _render(console: Console, result: WorkflowSearchResult, diff: list[str], backend: str,
            reason: str, strategy: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    if result.stop_reason == "already_passing":
        verdict = "[green]the workflow already solves every task[/]"
    elif result.solved:
        verdict = "[bold green]repaired: every task passes[/]"
    elif result.improved:
        verdict = "[yellow]improved, not every task passes[/]"
    else:
        verdict = "[red]no improvement found[/]"
    table = Table(title="auto-dev workflows evolve", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("result", verdict)
    table.add_row("tasks passed", f"{result.original_passed}/{result.total} -> "
                                  f"{result.passed}/{result.total} ({result.pass_rate:.0%})")
    table.add_row("evaluations", str(result.evaluations))
    table.add_row("seconds", f"{result.seconds:.2f}")
    table.add_row("LLM cost", f"${result.cost_usd:.4f}")
    table.add_row("stopped", result.stop_reason)
    if result.lineage:
        table.add_row("fixes", escape("\n".join(result.lineage)))
    table.add_row("front", f"{len(result.front)} variant(s)")
    table.add_row("operators", escape(strategy))
    table.add_row("sandbox", escape(f"{backend} ({reason})"))
    console.print(table)
    tasks = Table(title="tasks", title_justify="left")
    for column in ("task", "before", "after", "why it failed"):
        tasks.add_column(column)
    for before, after in zip(result.original_tasks, result.tasks, strict=True):
        failed = after if not after.passed else before if not before.passed else None
        tasks.add_row(escape(after.task.label(after.index)), _mark(before.passed),
                      _mark(after.passed), escape(_why(failed)) if failed else "")
    console.print(tasks)
    if diff:
        console.print("[bold]changes[/]")
        for line in diff:
            console.print(f"  {escape(line)}", soft_wrap=True)


def _mark(passed: bool) -> str:
    return "[green]pass[/]" if passed else "[red]fail[/]"


def _why(result: TaskResult, limit: int = 90) -> str:
    """One line on why a task failed: the run's error, or the output against the expected."""
    if result.error:
        text = result.error.strip().splitlines()[-1]
        if result.run.error_step:
            text = f"step {result.run.error_step}: {text}"
    else:
        text = (f"got {json.dumps(result.output, default=str)}, expected "
                f"{json.dumps(result.task.expected, default=str)}")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def add_evolve_command(app: typer.Typer) -> None:
    """Add ``evolve`` to the ``workflows`` sub-app."""
    app.command("evolve", help="Evolve a workflow against a JSON task file.")(workflows_evolve)
