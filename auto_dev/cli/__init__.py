"""The ``auto-dev`` command.

Sub-commands live in their own modules and import their heavy dependencies (SQLAlchemy, numpy,
litellm) inside the command functions, so ``auto-dev --help`` stays fast.
"""

from __future__ import annotations

import typer

from auto_dev.cli.agents import app as agents_app
from auto_dev.cli.candidates import app as candidates_app
from auto_dev.cli.cluster import app as cluster_app
from auto_dev.cli.db import app as db_app
from auto_dev.cli.db import init
from auto_dev.cli.demo import demo
from auto_dev.cli.engines import app as engines_app
from auto_dev.cli.evolve import evolve
from auto_dev.cli.llm import app as llm_app
from auto_dev.cli.sandbox import app as sandbox_app
from auto_dev.cli.schedule import app as schedule_app
from auto_dev.cli.schedule import scheduler_app
from auto_dev.cli.serve import serve
from auto_dev.cli.tenants import app as tenants_app
from auto_dev.cli.tokens import app as tokens_app
from auto_dev.cli.tools import app as tools_app
from auto_dev.cli.workflows import app as workflows_app
from auto_dev.cli.workflows_evolve import add_evolve_command

app = typer.Typer(
    name="auto-dev",
    help="auto-dev: a self-improving evolutionary engine for AI agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("auto-dev")
        except PackageNotFoundError:  # running from a source tree that was never installed
            number = "unknown (not installed)"
        typer.echo(f"auto-dev {number}")
        raise typer.Exit()


@app.callback()
def _main(
    _version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                  help="Print the installed auto-dev version and exit."),
) -> None:
    """auto-dev: a self-improving evolutionary engine for AI agents."""


app.command("demo", help="Run the end-to-end story on embedded defaults.")(demo)
app.command("evolve", help="Evolve a standalone function against a JSON test file.")(evolve)
app.command("init", help="Create or migrate the database named by AUTO_DEV_DATABASE_URL.")(init)
app.add_typer(db_app, name="db", help="Database schema: upgrade, current revision.")
app.add_typer(candidates_app, name="candidates", help="Review candidates.")
app.add_typer(tools_app, name="tools", help="Tools, their versions and rollback.")
app.add_typer(schedule_app, name="schedule", help="Manage scheduled evolution cycles.")
app.add_typer(scheduler_app, name="scheduler", help="Run the scheduler.")
app.add_typer(engines_app, name="engines", help="Learning engines.")
app.add_typer(sandbox_app, name="sandbox", help="Sandbox backends: check, build the image.")
app.add_typer(cluster_app, name="cluster", help="The Ray cluster of sandbox=ray: check.")
app.add_typer(llm_app, name="llm", help="The LLM layer: status and spend.")
app.add_typer(agents_app, name="agents", help="Agents' maturity per capability: show, set.")
app.add_typer(tenants_app, name="tenants", help="Tenant settings: toggles, limits, budgets.")
app.command("serve", help="Run the HTTP service (API, events, cycles, scheduler).")(serve)
app.add_typer(tokens_app, name="tokens", help="API tokens of the service: create, list, revoke.")
add_evolve_command(workflows_app)
app.add_typer(workflows_app, name="workflows",
              help="Workflows: validate, run, evolve, register, versions, rollback.")


def main() -> None:
    app()


__all__ = ["app", "main"]
