"""``auto-dev serve``: the HTTP service (ingest, review API, health, metrics) with event
delivery, the cycle worker and the scheduler, in one process."""

from __future__ import annotations

from typing import Optional

import typer


def serve(
    host: Optional[str] = typer.Option(  # noqa: UP045 - typer needs Optional
        None, "--host", help="Address to listen on.",
        show_default="AUTO_DEV_SERVER_HOST, else 127.0.0.1"),
    port: Optional[int] = typer.Option(  # noqa: UP045
        None, "--port", min=0, max=65535, help="Port to listen on.",
        show_default="AUTO_DEV_SERVER_PORT, else 8080"),
    workers: int = typer.Option(
        1, "--workers", min=1, max=64,
        help="Processes serving the same database (leases keep their work apart)."),
    access_log: bool = typer.Option(False, "--access-log", help="Log every request."),
) -> None:
    """Serve the API and run event delivery, the cycle worker and the scheduler until SIGTERM
    or Ctrl-C, which drain in-flight requests and cycles, then exit 0.

    Create tokens first: `auto-dev tokens create --tenant T --role ingest`."""
    from auto_dev.cli._common import configure, errors
    from auto_dev.server.runner import serve as run

    current = configure()
    with errors():
        run(current, host=host, port=port, workers=workers, access_log=access_log)
