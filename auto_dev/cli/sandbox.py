"""``auto-dev sandbox ...``: which backend is usable, and building the sandbox image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(no_args_is_help=True)

_BASE_IMAGE = "python:3.12-slim"
_METHODS = ("auto", "dockerfile", "offline")


@app.command("check")
def check(
    image: str = typer.Option(None, help="Sandbox image (default: $AUTO_DEV_SANDBOX_IMAGE or "
                              "auto-dev-sandbox:latest)."),
    smoke: bool = typer.Option(True, help="Also run one trivial job on every usable backend."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Report which sandbox backend is usable here and why; exit 1 if the selected one is not."""
    from rich.console import Console
    from rich.table import Table

    from auto_dev.sandbox.factory import check_backends

    statuses = check_backends(image, smoke=smoke)
    if as_json:
        typer.echo(json.dumps([{"backend": s.backend, "usable": s.usable, "reason": s.reason,
                                "details": s.details} for s in statuses], indent=2))
    else:
        table = Table(title="sandbox backends")
        for column in ("backend", "usable", "why", "details"):
            table.add_column(column, overflow="fold")
        for s in statuses:
            table.add_row(
                s.backend,
                "[green]yes[/green]" if s.usable else "[red]no[/red]",
                s.reason,
                "\n".join(f"{k}: {v}" for k, v in s.details.items()),
            )
        Console().print(table)
    selected = statuses[-1]
    raise typer.Exit(0 if selected.usable else 1)


@app.command("build-image")
def build_image(
    image: str = typer.Option(None, help="Tag to build (default: $AUTO_DEV_SANDBOX_IMAGE or "
                              "auto-dev-sandbox:latest)."),
    method: str = typer.Option("auto", help="auto (Dockerfile where pulling works, else "
                               "offline), dockerfile, or offline (debootstrap + docker import)."),
) -> None:
    """Build the sandbox image: from the Dockerfile where pulling works, offline otherwise."""
    from rich.console import Console

    from auto_dev.sandbox.factory import docker_status, resolve_image

    console = Console()
    image = resolve_image(image)
    if method not in _METHODS:
        console.print(f"[red]--method must be one of {', '.join(_METHODS)}[/red]")
        raise typer.Exit(2)
    status = docker_status(image)
    if not status.usable and "image" not in status.reason:
        console.print(f"[red]cannot build: {status.reason}[/red]")
        raise typer.Exit(1)
    if method in ("auto", "dockerfile"):
        can_pull, why = _can_pull(_BASE_IMAGE)
        if can_pull:
            try:
                _build_from_dockerfile(image, console)
            except RuntimeError as exc:
                if method == "dockerfile":
                    console.print(f"[red]Dockerfile build failed: {exc}[/red]")
                    raise typer.Exit(1) from None
                console.print(f"[yellow]Dockerfile build failed ({exc}); building offline[/yellow]")
            else:
                _report_built(image, console)
                return
        elif method == "dockerfile":
            console.print(f"[red]cannot pull {_BASE_IMAGE}: {why}[/red]")
            raise typer.Exit(1)
        else:
            console.print(f"[yellow]{_BASE_IMAGE} cannot be pulled ({why}): building offline "
                          "from Debian packages[/yellow]")
    code = _build_offline(image, console)
    if code != 0:
        console.print(f"[red]offline build failed (exit {code})[/red]")
        raise typer.Exit(code)
    _report_built(image, console)


def _can_pull(reference: str) -> tuple[bool, str]:
    """Whether the base image is here or its registry answers (a manifest lookup, no download)."""
    from auto_dev.sandbox._docker_pool import docker_client

    api = docker_client(timeout=20)
    try:
        try:
            api.inspect_image(reference)
            return True, "present locally"
        except Exception:
            pass
        try:
            api.inspect_distribution(reference)
            return True, "registry reachable"
        except Exception as exc:
            text = getattr(exc, "explanation", None) or str(exc)
            return False, str(text).strip()[:200]
    finally:
        api.close()


def _build_from_dockerfile(image: str, console: Any) -> None:
    """``docker build`` of the packaged Dockerfile, streaming the build log."""
    from auto_dev.sandbox._docker_pool import docker_client

    api = docker_client(timeout=600)
    with tempfile.TemporaryDirectory(prefix="auto-dev-image-") as context:
        shutil.copyfile(_resource("Dockerfile"), Path(context) / "Dockerfile")
        with console.status(f"building {image} from the Dockerfile") as spinner:
            for chunk in api.build(path=context, tag=image, rm=True, forcerm=True, pull=True,
                                   decode=True):
                if "error" in chunk:
                    raise RuntimeError(str(chunk["error"]).strip())
                line = str(chunk.get("stream") or chunk.get("status") or "").strip()
                if line.startswith("Step "):
                    console.print(f"[cyan]{line}[/cyan]")
                elif line:
                    spinner.update(f"building {image}: {line[:100]}")
    api.close()


def _build_offline(image: str, console: Any) -> int:
    """Run build_image.sh (debootstrap + docker import), streaming its progress."""
    if os.geteuid() != 0:
        console.print("[red]the offline build runs debootstrap, which needs root[/red]")
        return 1
    if shutil.which("debootstrap") is None:
        console.print("[red]debootstrap is not installed (apt-get install -y debootstrap)[/red]")
        return 1
    script = _resource("build_image.sh")
    proc = subprocess.Popen(["bash", str(script), image], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert proc.stdout is not None
    with console.status(f"building {image} offline") as spinner:
        for raw in proc.stdout:
            line = raw.rstrip()
            if line.startswith("==>"):
                console.print(f"[cyan]{line}[/cyan]")
            elif line.startswith(("E:", "W:", "build_image.sh:")):
                console.print(f"[yellow]{line}[/yellow]")
            elif line:
                spinner.update(f"building {image} offline: {line[:100]}")
    return proc.wait()


def _resource(name: str) -> Path:
    import importlib.resources

    path = importlib.resources.files("auto_dev.sandbox").joinpath(name)
    return Path(str(path))


def _report_built(image: str, console: Any) -> None:
    from auto_dev.sandbox.factory import docker_status

    status = docker_status(image)
    colour = "green" if status.usable else "red"
    console.print(f"[{colour}]{status.reason}[/{colour}]")
    if not status.usable:
        raise typer.Exit(1)
