"""``auto-dev evolve``: evolve one standalone function against a JSON test file.

::

    auto-dev evolve PATH.py --entrypoint NAME --tests TESTS.json [--budget N] [--seed S] [--json]

TESTS.json is a list of ``{"args": [...], "kwargs": {...}, "expected": ...}``. Results are
compared after JSON normalisation (tuples, generators and other iterables become lists), floats
within a small tolerance. The run is offline (AST repair operators) unless an LLM model is
configured. The original program's own outcome comes first (cases passed, a count per case
status, the first failure). With ``--json`` the last line on stdout is one JSON object
(``best_code``, ``pass_rate``, ``passed``, ``total``, ``evaluations``, ``improved``, ``seconds``,
``seed``: that outcome, ``rng_seed``, ``llm_calls``, ``llm_calls_wasted``,
``deadline_saved_s`` and more). Failed model calls are never only logged:
``llm_errors`` lists them (kind, model, message, count), ``llm_health`` counts calls and shows
the circuit breakers, a warning line says so, and when no call was answered ``strategy`` says
the run fell back to the AST operators.

Exit codes: 0 whenever the run completed (improved or not), 2 for bad input (the file, the test
file, an option), 1 when the sandbox itself failed, 130 / 143 when stopped by Ctrl-C / SIGTERM
(after closing the sandbox). Also runnable as ``python -m auto_dev.cli.evolve``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from auto_dev.cli._common import fail_reported, reported_settings, search_progress_bar

if TYPE_CHECKING:
    from rich.console import Console

    from auto_dev.cli._seed_outcome import SeedOutcome
    from auto_dev.evolution.mutators import MutatorPlan
    from auto_dev.evolution.records import SearchResult
    from auto_dev.payloads import PayloadLimits
    from auto_dev.sandbox.base import Case

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def evolve(
    path: Annotated[Path, typer.Argument(help="Python file that defines the function.",
                                         show_default=False)],
    entrypoint: Annotated[str, typer.Option("--entrypoint", "-e",
                                            help="Name of the function to evolve.")],
    tests: Annotated[Path, typer.Option("--tests", "-t", help="JSON list of test cases.")],
    budget: Annotated[int | None, typer.Option(
        "--budget", "-b", min=0, help="Candidate evaluations to spend.",
        show_default="AUTO_DEV_EVOLUTION_BUDGET, else 200")] = None,
    seed: Annotated[int, typer.Option("--seed", "-s", help="Random seed.")] = 0,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object last.")]
    = False,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", min=0.01, help="Per-case time limit in seconds.",
        show_default="AUTO_DEV_CASE_TIMEOUT_S, else 2")] = None,
    memory_mb: Annotated[int | None, typer.Option(
        "--memory-mb", min=16, help="Per-case memory limit in MiB.",
        show_default="AUTO_DEV_CASE_MEMORY_MB, else 256")] = None,
    sandbox: Annotated[str | None, typer.Option(
        "--sandbox", help="Backend: auto, docker or process.",
        show_default="AUTO_DEV_SANDBOX, else auto")] = None,
    islands: Annotated[int | None, typer.Option(
        "--islands", min=1, max=64, help="Number of islands.",
        show_default="AUTO_DEV_EVOLUTION_ISLANDS, else 3")] = None,
    offline: Annotated[bool, typer.Option(
        "--offline", help="Use the AST repair operators even if an LLM is configured.")] = False,
    keep_improving: Annotated[bool, typer.Option(
        "--keep-improving", help="After every case passes, spend the rest of the budget on "
        "latency, memory and size.")] = False,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the best program to this file.", show_default=False)]
    = None,
) -> None:
    """Evolve a standalone function against a JSON test file."""
    from auto_dev._exceptions import AutoDevError, ValidationError
    from auto_dev.cli._signals import CommandInterrupted, run_stoppable

    settings = reported_settings(json_output)
    try:
        from auto_dev.payloads import PayloadLimits

        code = _read_program(path, entrypoint)
        cases = load_tests(tests, PayloadLimits.from_settings(settings))
        from auto_dev.sandbox.base import Limits

        limits = Limits(timeout_s=timeout if timeout is not None else settings.case_timeout_s,
                        memory_mb=memory_mb if memory_mb is not None else settings.case_memory_mb)
    except ValidationError as exc:
        fail_reported(str(exc), EXIT_BAD_INPUT, json_output, exc.field)
    from auto_dev.cli._seed_outcome import SeedOutcome

    seed_outcome = SeedOutcome(cases)
    try:
        result, plan, backend, reason = run_stoppable(_evolve(
            code, entrypoint, cases, seed_outcome=seed_outcome, limits=limits,
            budget=budget if budget is not None else settings.evolution_budget, seed=seed,
            sandbox_mode=sandbox if sandbox is not None else settings.sandbox,
            workers=settings.sandbox_workers,
            islands=islands if islands is not None else max(settings.evolution_islands, 1),
            settings=settings, offline=offline, keep_improving=keep_improving,
            progress=not json_output,
        ))
    except ValidationError as exc:
        fail_reported(str(exc), EXIT_BAD_INPUT, json_output, exc.field)
    except AutoDevError as exc:
        fail_reported(_named_by_flag(str(exc), sandbox), EXIT_FAILED, json_output, None)
    except CommandInterrupted as exc:
        fail_reported(f"{exc}: stopped, sandbox closed", exc.exit_code, json_output, None)
    reason = _named_by_flag(reason, sandbox)
    if output is not None:
        try:
            output.write_text(result.best.code, encoding="utf-8")
        except OSError as exc:
            fail_reported(f"--output: cannot write {output}: {exc.strerror}", EXIT_FAILED,
                          json_output, "output")
    from auto_dev.evolution.diff import unified_diff

    diff = unified_diff(code, result.best.code, fromfile=str(path), tofile="best")
    strategy = plan.strategy_for(result.llm)  # says so when an unusable LLM left AST alone
    warning = llm_warning(result, strategy)
    if json_output:
        if warning:
            from rich.console import Console
            from rich.markup import escape

            Console(stderr=True, highlight=False).print(
                f"[bold yellow]warning:[/] {escape(warning)}", soft_wrap=True)
        payload = {**result.to_dict(), "sandbox": backend, "sandbox_reason": reason,
                   "strategy": strategy, "planned_strategy": plan.strategy,
                   "llm_warning": warning, "diff": diff, "path": str(path),
                   "entrypoint": entrypoint, "budget": budget if budget is not None
                   else settings.evolution_budget, "rng_seed": seed,
                   "seed": seed_outcome.to_dict()}
        print(json.dumps(_finite(payload), sort_keys=True))
    else:
        from rich.console import Console

        console = Console()
        seed_outcome.render(console)
        _render(console, result, strategy, warning, backend, reason, diff)


def load_tests(path: Path, limits: PayloadLimits | None = None) -> list[Case]:
    """Read TESTS.json; any problem raises ValidationError naming the element and field.

    The values are JSON within ``limits`` (default: the default settings): nesting depth and
    integer digits are bounded, NaN and infinities are refused.
    """
    from auto_dev._exceptions import ValidationError
    from auto_dev.payloads import PayloadLimits, parse_json_text
    from auto_dev.sandbox.base import Case

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ValidationError("--tests", f"file {str(path)!r} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError("--tests", f"cannot read {str(path)!r}: {exc}") from exc
    try:
        data = parse_json_text("tests", text, limits or PayloadLimits())
    except ValidationError as exc:
        if exc.field != "tests":
            raise  # a path inside the document, e.g. tests[3].args[0]
        raise ValidationError("--tests", f"{path} {exc.problem}") from None
    if not isinstance(data, list):
        raise ValidationError("tests", f"must be a JSON list of test objects, got "
                                       f"{type(data).__name__}")
    if not data:
        raise ValidationError("tests", "is empty: at least one test case is needed")
    return [Case.from_dict(item, where=f"tests[{i}]") for i, item in enumerate(data)]


def _read_program(path: Path, entrypoint: str) -> str:
    from auto_dev._exceptions import ValidationError
    from auto_dev.evolution.dedup import SyntaxProblem, defines, parse

    try:
        code = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ValidationError("path", f"file {str(path)!r} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError("path", f"cannot read {str(path)!r}: {exc}") from exc
    if not entrypoint.isidentifier():
        raise ValidationError("--entrypoint", f"{entrypoint!r} is not a Python identifier")
    tree = parse(code)
    if isinstance(tree, SyntaxProblem):
        raise ValidationError("path", f"{path}: {tree}")
    if not defines(tree, entrypoint):
        import ast

        names = [s.name for s in tree.body if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)]
        raise ValidationError("--entrypoint", f"{entrypoint!r} is not defined in {path} "
                              f"(functions there: {', '.join(names) or 'none'})")
    return code


async def _evolve(
    code: str, entrypoint: str, cases: list[Case], *, seed_outcome: SeedOutcome | None = None,
    limits: Any, budget: int, seed: int,
    sandbox_mode: str, workers: int | None, islands: int, settings: Any, offline: bool,
    keep_improving: bool, progress: bool,
) -> tuple[SearchResult, MutatorPlan, str, str]:
    from auto_dev.evolution.mutators import build_mutators
    from auto_dev.evolution.program import Program
    from auto_dev.evolution.records import SearchHooks
    from auto_dev.evolution.search import EvolutionSearch, SearchConfig
    from auto_dev.sandbox.factory import create_sandbox

    client = None
    if not offline and settings is not None and settings.effective_llm().configured:
        # The cost ledger lands in the configured database, migrated like every other use.
        from auto_dev.db import Database
        from auto_dev.llm.factory import build_client

        database = Database(settings.database_url)
        database.upgrade()
        client = build_client(settings, database)
    plan = build_mutators(settings, offline=offline, client=client)
    choice = create_sandbox(sandbox_mode, workers=workers)
    box = choice.sandbox
    # Concurrency unset: the search keeps as many candidates in flight as the sandbox has slots.
    config = SearchConfig(n_islands=islands, continue_after_solved=keep_improving)
    try:
        with search_progress_bar(progress, entrypoint, budget, len(cases), "cases") as on_progress:
            search = EvolutionSearch(
                Program(code=code, entrypoint=entrypoint), cases, box, list(plan.mutators),
                mix=plan.weights, budget=budget, rng_seed=seed, limits=limits, config=config,
                hooks=SearchHooks(on_progress=on_progress,
                                  on_seed=seed_outcome.record if seed_outcome else None),
            )
            result = await search.run()
    finally:
        await box.aclose()
        for closable in (*plan.mutators, client):
            closer = getattr(closable, "aclose", None)
            if closer is not None:
                await closer()
    return result, plan, choice.backend, choice.reason


def llm_warning(result: SearchResult, strategy: str) -> str | None:
    """One line about the run's failed LLM calls (kind, model, message, count), or None."""
    llm = result.llm
    if llm is None or not llm.errors:
        return None
    total = llm.calls_answered + llm.calls_failed
    if not llm.usable:
        return (f"the LLM was unusable (none of {total} calls answered): {llm.describe()}. "
                f"Mutators used: {strategy}")
    return f"LLM errors ({llm.calls_answered} of {total} calls answered): {llm.describe()}"


def _render(console: Console, result: SearchResult, strategy: str, warning: str | None,
            backend: str, reason: str, diff: str) -> None:
    from rich.markup import escape
    from rich.syntax import Syntax
    from rich.table import Table

    if warning:
        console.print(f"[bold yellow]warning:[/] {escape(warning)}", soft_wrap=True)

    if result.solved and result.improved:
        verdict = "[bold green]repaired: every case passes[/]"
    elif result.stop_reason == "seed_passes":
        verdict = "[green]the original already passes every case[/]"
    elif result.improved:
        verdict = "[yellow]improved, not every case passes[/]"
    else:
        verdict = "[red]no improvement found[/]"
    table = Table(title="auto-dev evolve", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("result", verdict)
    table.add_row("pass rate", f"{result.seed_passed}/{result.total} -> "
                               f"{result.passed}/{result.total} ({result.pass_rate:.0%})")
    table.add_row("evaluations", str(result.evaluations))
    table.add_row("seconds", f"{result.seconds:.2f}")
    table.add_row("stopped", result.stop_reason)
    if result.best_record is not None:
        table.add_row("fix", f"{result.best_record.operator}: "
                             f"{result.best_record.proposal.description}")
        table.add_row("lineage", " -> ".join(result.lineage))
    table.add_row("mutators", escape(strategy))
    if result.llm is not None and result.llm.used:
        table.add_row("llm calls", f"{result.llm.calls_answered} answered, "
                                   f"{result.llm.calls_failed} failed")
    if result.llm_calls:
        table.add_row("model calls", f"{result.llm_calls} ({result.llm_calls_wasted} answers "
                                     "filtered before evaluation)")
    if result.deadline_cuts:
        table.add_row("deadlines", f"{result.deadline_cuts} looping or slow cases cut early, "
                                   f"~{result.deadline_saved_s:.1f} s of sandbox time saved "
                                   f"({result.deadline_rechecks} re-checks at the full limit)")
    table.add_row("sandbox", f"{backend} ({reason})")
    console.print(table)
    if diff:
        console.print(Syntax(diff, "diff", theme="ansi_dark", background_color="default"))


def _named_by_flag(text: str, sandbox_flag: str | None) -> str:
    """The sandbox factory says the mode came from ``AUTO_DEV_SANDBOX``; when ``--sandbox``
    chose it, say that instead (in the reason shown and in a refusal)."""
    if sandbox_flag is None:
        return text
    from auto_dev.sandbox.factory import ENV_MODE

    mode = sandbox_flag.strip().lower()
    return text.replace(f"{ENV_MODE}={mode}", f"--sandbox {mode}")


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: replace them with null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command("evolve", help="Evolve a standalone function against a JSON test file.")(evolve)


def main() -> None:
    """Entry point for ``python -m auto_dev.cli.evolve``."""
    app()


if __name__ == "__main__":
    main()
