"""``auto-dev workflows validate|run``: check and run a workflow document.

::

    auto-dev workflows validate WF.json [--tools tools.py] [--tenant T]
    auto-dev workflows run WF.json --input '{...}' [--tools tools.py] [--seed S] [--json]

Tools come from ``--tools tools.py`` (each public top-level function is a tool; the file is
parsed, never imported, and its functions run in the sandbox) or, without it, from the tenant's
registered tools (their active versions). LLM steps use the configured model (offline: they
fail with a clear error, which a ``catch`` may handle).

Exit codes: 0 valid / the run succeeded; 1 the run ended ``ok=False`` (a step failed, a limit
was reached) or the sandbox failed; 2 bad input (the document, ``--input``, the tools file),
with an error naming the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from auto_dev.cli._common import fail_reported

if TYPE_CHECKING:
    from rich.console import Console
    from rich.tree import Tree

    from auto_dev.abc import Sandbox
    from auto_dev.config import Settings
    from auto_dev.db import Database
    from auto_dev.workflows import StepTrace, WorkflowRun

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

app = typer.Typer(no_args_is_help=True)

_TENANT_HELP = "Tenant whose registered tools are used (default: AUTO_DEV_TENANT, else 'default')."
_TOOLS_HELP = ("Python file whose public top-level functions are the tools (parsed, never "
               "imported). Default: the tenant's registered tools.")
_PREVIEW_CHARS = 80

WorkflowArg = Annotated[Path, typer.Argument(help="The workflow document (JSON).",
                                             show_default=False)]
ToolsOpt = Annotated[Path | None, typer.Option("--tools", help=_TOOLS_HELP, show_default=False)]
TenantOpt = Annotated[str | None, typer.Option("--tenant", help=_TENANT_HELP, show_default=False)]


@app.command("validate")
def validate(path: WorkflowArg, tools: ToolsOpt = None, tenant: TenantOpt = None) -> None:
    """Check a workflow document: schema, unique ids, expressions, known tools, nesting.

    Exit 0 when valid, 2 with an error naming the field otherwise. Custom step kinds are
    registered in Python (StepKinds); here none is known, so a custom step is refused.
    """
    from rich.console import Console
    from rich.markup import escape

    from auto_dev._exceptions import AutoDevError, ValidationError
    from auto_dev.workflows import validate_workflow, walk_steps

    try:
        doc = load_workflow_file(path)
        names = _tool_names(tools, tenant)
        checked = validate_workflow(doc, tools=names, kinds=frozenset())
    except ValidationError as exc:
        fail_reported(str(exc), EXIT_BAD_INPUT, False, exc.field)
    except AutoDevError as exc:
        fail_reported(str(exc), EXIT_FAILED, False, None)
    used = sorted({s.step["tool"] for s in walk_steps(checked) if "tool" in s.step})
    steps = sum(1 for _ in walk_steps(checked))
    Console(highlight=False).print(
        f"[green]valid[/]: {escape(checked['name'])} ({steps} steps; tools: "
        f"{escape(', '.join(used)) or 'none'})", soft_wrap=True)


@app.command("run")
def run(
    path: WorkflowArg,
    input_text: Annotated[str, typer.Option(
        "--input", "-i", help="The run's input: a JSON object, or @FILE to read one.")] = "{}",
    tools: ToolsOpt = None,
    seed: Annotated[int, typer.Option("--seed", "-s", help="Seed of the tools' randomness.")]
    = 0,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print the run as one JSON object, last on stdout.")] = False,
    tenant: TenantOpt = None,
) -> None:
    """Run a workflow and print its trace as a tree, then its output.

    Exit 0 when the run succeeded, 1 when it ended with an error (a step failed, a limit was
    reached; the trace says where) or the sandbox failed, 2 for bad input (the document, the
    input, the tools file) with an error naming the field.
    """
    from auto_dev._exceptions import AutoDevError, ValidationError
    from auto_dev.cli._signals import CommandInterrupted, run_stoppable

    try:
        doc = load_workflow_file(path)
        run_input = parse_input(input_text)
        sources = load_tools_source(tools) if tools is not None else None
    except ValidationError as exc:
        fail_reported(str(exc), EXIT_BAD_INPUT, json_output, exc.field)
    if sources is None:
        from auto_dev.cli._common import existing_database

        # The tenant's tools live in an existing database: never create one just to find it
        # empty (exit 1 naming the database when it is missing).
        existing_database().dispose()
    try:
        result = run_stoppable(_run(doc, run_input, sources, seed, tenant))
    except ValidationError as exc:
        fail_reported(str(exc), EXIT_BAD_INPUT, json_output, exc.field)
    except AutoDevError as exc:
        fail_reported(str(exc), EXIT_FAILED, json_output, None)
    except CommandInterrupted as exc:
        fail_reported(f"{exc}: stopped, sandbox closed", exc.exit_code, json_output, None)
    if json_output:
        print(json.dumps(result.to_dict(), sort_keys=True, default=str))
    else:
        from rich.console import Console

        render_run(Console(highlight=False), doc.get("name", "workflow"), result)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FAILED)


# -- loading ---------------------------------------------------------------------------------------


def load_workflow_file(path: Path) -> dict[str, Any]:
    """The JSON document at ``path`` (not yet validated); a problem names ``workflow``."""
    from auto_dev._exceptions import ValidationError
    from auto_dev.payloads import PayloadLimits, parse_json_text

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValidationError("workflow", f"file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError("workflow", f"cannot read {str(path)!r}: {exc}") from None
    doc = parse_json_text("workflow", text, PayloadLimits())
    if not isinstance(doc, dict):
        raise ValidationError("workflow", f"{path} must hold a JSON object, got "
                                          f"{type(doc).__name__}")
    return doc


def parse_input(text: str) -> dict[str, Any]:
    """``--input``: a JSON object, or ``@FILE`` holding one; a problem names ``input``."""
    from auto_dev._exceptions import ValidationError
    from auto_dev.payloads import PayloadLimits, parse_json_text

    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValidationError("input", f"cannot read {text[1:]!r}: {exc}") from None
    value = parse_json_text("input", text, PayloadLimits())
    if not isinstance(value, dict):
        raise ValidationError("input", f"must be a JSON object, got {type(value).__name__}")
    return value


def load_tools_source(path: Path) -> dict[str, str]:
    """``--tools``: tool name -> source (see :func:`auto_dev.workflows.load_tools_file`)."""
    from auto_dev.workflows import load_tools_file

    return load_tools_file(path)


def tenant_tool_sources(database: Database, tenant_id: str) -> dict[str, str]:
    """The active code of every registered tool of ``tenant_id`` that a workflow can name."""
    from auto_dev.queries import TenantView
    from auto_dev.workflows.tools import tool_source

    view = TenantView(database, tenant_id)
    sources: dict[str, str] = {}
    for name, _description in view.tools.catalogue():
        if not name.isidentifier():
            continue  # a workflow names tools by identifier: this one cannot be named
        program = view.tools.snapshot(name).program
        sources[name] = tool_source(name, program.code, program.entrypoint)
    return sources


def _tool_names(tools: Path | None, tenant: str | None) -> frozenset[str]:
    if tools is not None:
        return frozenset(load_tools_source(tools))
    from auto_dev.cli._common import existing_database, tenant_or_default
    from auto_dev.queries import TenantView

    view = TenantView(existing_database(), tenant_or_default(tenant))
    return frozenset(name for name, _ in view.tools.catalogue())


# -- running ---------------------------------------------------------------------------------------


async def _run(doc: dict[str, Any], run_input: dict[str, Any], sources: dict[str, str] | None,
               seed: int, tenant: str | None) -> WorkflowRun:
    from auto_dev.cli._common import build_autodev, configure, tenant_or_default

    if sources is not None:
        settings = configure()
        return await _run_with_file_tools(doc, run_input, sources, seed, settings)
    tenant_id = tenant_or_default(tenant)
    autodev = build_autodev()
    try:
        tenant_sources = tenant_tool_sources(autodev.database, tenant_id)
        return await _interpret(doc, run_input, seed, autodev.sandbox, tenant_sources,
                                autodev.llm, tenant_id)
    finally:
        await autodev.aclose()


async def _run_with_file_tools(doc: dict[str, Any], run_input: dict[str, Any],
                               sources: dict[str, str], seed: int,
                               settings: Settings) -> WorkflowRun:
    from auto_dev.sandbox.factory import create_sandbox

    llm = None
    if settings.effective_llm().configured and _has_llm_steps(doc):
        # The cost ledger lands in the configured database, migrated like every other use.
        from auto_dev.db import Database
        from auto_dev.llm.factory import build_client

        database = Database(settings.database_url)
        database.upgrade()
        llm = build_client(settings, database, tenant_id=settings.tenant)
    box = create_sandbox(settings.sandbox, workers=settings.sandbox_workers).sandbox
    try:
        return await _interpret(doc, run_input, seed, box, sources, llm, settings.tenant)
    finally:
        await box.aclose()
        closer = getattr(llm, "aclose", None)
        if closer is not None:
            await closer()


async def _interpret(doc: dict[str, Any], run_input: dict[str, Any], seed: int, box: Sandbox,
                     sources: dict[str, str], llm: Any, tenant_id: str) -> WorkflowRun:
    from auto_dev.workflows import SandboxToolInvoker, WorkflowInterpreter

    interpreter = WorkflowInterpreter(SandboxToolInvoker(box, sources), llm=llm,
                                      tenant_id=tenant_id)
    return await interpreter.run(doc, run_input, seed=seed)


def _has_llm_steps(doc: dict[str, Any]) -> bool:
    from auto_dev.workflows import walk_steps

    return any("llm" in location.step for location in walk_steps(doc))


# -- printing --------------------------------------------------------------------------------------


def render_run(console: Console, name: str, result: WorkflowRun) -> None:
    """The trace as a tree (status, attempts, duration, cost, output or error per step), then
    the outcome and the output."""
    from rich.markup import escape
    from rich.tree import Tree

    status = "[green]ok[/]" if result.ok else "[red]failed[/]"
    tree = Tree(f"[bold]{escape(str(name))}[/] {status}: {result.steps_executed} steps, "
                f"{result.seconds:.2f}s" + _cost_text(result.cost_usd, result.tokens))
    for step in result.trace:
        _add_step(tree, step)
    console.print(tree)
    if result.ok:
        console.print("[bold]output:[/] " + escape(_json_text(result.output)), soft_wrap=True)
    else:
        where = f" at step {result.error_step}" if result.error_step else ""
        console.print(f"[bold red]error{escape(where)}:[/] {escape(result.error or '')}",
                      soft_wrap=True)


def _add_step(parent: Tree, step: StepTrace) -> None:
    from rich.markup import escape

    if step.skipped:
        label = f"[dim]- {escape(step.id)} ({escape(step.kind)}) skipped[/]"
    else:
        if step.error is None:
            mark = "[green]ok[/]"
        elif step.kind != "catch" and any(c.kind == "catch" and c.error is None
                                          for c in step.children):
            mark = "[yellow]recovered[/]"
        else:
            mark = "[red]failed[/]"
        attempts = f", {step.attempts} attempts" if step.attempts > 1 else ""
        label = (f"{mark} [bold]{escape(step.id)}[/] ({escape(step.kind)}{attempts}, "
                 f"{step.duration_s * 1000:.0f} ms{_cost_text(step.cost_usd, step.tokens)})")
        if step.error is not None:
            label += f" [red]{escape(_preview(step.error))}[/]"
        if step.error is None or step.kind == "catch" or "recovered" in mark:
            label += f" -> {escape(_preview(_json_text(step.output)))}"
    node = parent.add(label)
    for child in step.children:
        _add_step(node, child)


def _cost_text(cost_usd: float, tokens: int) -> str:
    return f", {tokens} tokens, ${cost_usd:.4f}" if tokens or cost_usd else ""


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _preview(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _PREVIEW_CHARS else text[:_PREVIEW_CHARS - 3] + "..."


def _add_registry_commands() -> None:
    # The stored-workflow commands (register, list, show, versions, rollback, signals) live in
    # their own module; they join this app here.
    from auto_dev.cli.workflows_registry import add_registry_commands

    add_registry_commands(app)


_add_registry_commands()
