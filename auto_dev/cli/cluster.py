"""``auto-dev cluster check``: the Ray cluster candidates are evaluated on (``sandbox = "ray"``),
as a table of its nodes, the actors a Ray sandbox puts on them, their slots and the backend of
each actor's pool, with one smoke job run through every actor."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from auto_dev.sandbox.ray_cluster import ClusterReport

app = typer.Typer(no_args_is_help=True)


@app.command("check")
def check(
    address: Annotated[str | None, typer.Option(
        "--address", help="host:port of the head, ray://host:port, auto or local.",
        show_default="AUTO_DEV_RAY_ADDRESS, else a cluster on this machine, else a new local "
        "instance")] = None,
    actors: Annotated[int | None, typer.Option(
        "--actors", min=1, help="Actors to start, spread over the nodes.",
        show_default="AUTO_DEV_RAY_ACTORS, else one per node")] = None,
    slots: Annotated[int | None, typer.Option(
        "--slots", min=1, help="Warm workers in each actor's pool.",
        show_default="AUTO_DEV_SANDBOX_WORKERS, else the node's CPUs")] = None,
    node_sandbox: Annotated[str | None, typer.Option(
        "--node-sandbox", help="Each actor's pool: auto, docker or process.",
        show_default="AUTO_DEV_RAY_NODE_SANDBOX, else auto")] = None,
    smoke: Annotated[bool, typer.Option(
        help="Run one trivial job through every actor.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")
                       ] = False,
) -> None:
    """Show the Ray cluster: nodes, actors, slots and backend on each; exit 1 unless every
    actor started (and passed its smoke job)."""
    from rich.markup import escape

    from auto_dev._exceptions import AutoDevError, ValidationError
    from auto_dev.cli._common import EXIT_BAD_INPUT, EXIT_FAILED, configure, fail
    from auto_dev.sandbox._ray_layout import RaySandboxConfig
    from auto_dev.sandbox.ray_cluster import check_cluster

    settings = configure()
    try:
        config = RaySandboxConfig(
            address=address if address is not None else settings.ray_address,
            actors=actors if actors is not None else settings.ray_actors,
            slots_per_actor=slots if slots is not None else settings.sandbox_workers,
            node_sandbox=node_sandbox if node_sandbox is not None else settings.ray_node_sandbox,
            image=settings.sandbox_image)
    except ValidationError as exc:
        fail(escape(str(exc)), code=EXIT_BAD_INPUT)
    try:
        report = check_cluster(config, smoke=smoke)
    except AutoDevError as exc:  # fail() prints rich markup: "[ray]" must stay as written
        fail(escape(f"cannot check the Ray cluster: {exc}"), code=EXIT_FAILED)
    if as_json:
        typer.echo(json.dumps(_as_dict(report), indent=2))
    else:
        _print_table(report)
    raise typer.Exit(0 if report.usable else EXIT_FAILED)


def _print_table(report: ClusterReport) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"Ray cluster {report.address} (Ray {report.ray_version})")
    for column in ("node", "address", "alive", "CPUs", "actors", "slots", "backend", "smoke"):
        table.add_column(column, overflow="fold")
    for node in report.nodes:
        smoke = [f"[red]actor {a.index}: {escape(a.error)}[/red]" if a.error else
                 f"actor {a.index}: ok {a.smoke_s * 1000:.0f} ms" if a.smoke_s is not None
                 else f"actor {a.index}: not run" for a in node.actors]
        table.add_row(
            f"{node.hostname} ({node.node_id[:8]})", node.address,
            "[green]yes[/green]" if node.alive else "[red]no[/red]", f"{node.cpus:g}",
            str(len(node.actors)), str(node.slots), ", ".join(node.backends) or "-",
            "\n".join(smoke) or "-")
    console = Console()
    console.print(table)
    alive = sum(1 for node in report.nodes if node.alive)
    verdict = "[green]usable[/green]" if report.usable else "[red]not usable[/red]"
    console.print(f"{alive} alive node(s), {len(report.actors)} actor(s), {report.slots} sandbox "
                  f"slot(s): {verdict}")


def _as_dict(report: ClusterReport) -> dict[str, object]:
    return {
        "address": report.address, "ray_version": report.ray_version, "usable": report.usable,
        "slots": report.slots,
        "nodes": [{"node_id": n.node_id, "address": n.address, "hostname": n.hostname,
                   "alive": n.alive, "cpus": n.cpus, "memory_gb": round(n.memory_gb, 2),
                   "slots": n.slots, "backends": n.backends,
                   "actors": [{"index": a.index, "pid": a.pid, "backend": a.backend,
                               "slots": a.slots, "smoke_s": a.smoke_s, "error": a.error}
                              for a in n.actors]}
                  for n in report.nodes],
    }
