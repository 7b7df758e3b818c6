"""Running the service on uvicorn: ``auto-dev serve``.

SIGTERM (or Ctrl-C) stops it gracefully: uvicorn stops accepting connections, lets in-flight
requests finish (up to ``server_shutdown_timeout_s``), then the app's lifespan closes the
facade (running cycles finish within the worker's drain time or go back to the queue, event
deliveries in flight finish). A stop asked for by a signal and completed is a success: the
process exits 0.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from auto_dev.config import Settings

log = structlog.get_logger(__name__)


def serve(settings: Settings, *, host: str | None = None, port: int | None = None,
          workers: int = 1, access_log: bool = False) -> list[int]:
    """Serve until stopped; returns the signals that stopped it (empty if none did)."""
    import uvicorn

    host = host or settings.server_host
    port = settings.server_port if port is None else port
    common = {"host": host, "port": port, "access_log": access_log, "lifespan": "on",
              "timeout_graceful_shutdown": int(max(1, settings.server_shutdown_timeout_s)),
              "proxy_headers": False, "server_header": False}
    received: list[int] = []

    def remember(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    # uvicorn handles SIGTERM and SIGINT while it runs, restores the handlers it found, then
    # raises the signal again "to trigger the expected behaviour". Finding these handlers, it
    # triggers nothing: the shutdown it did is the behaviour we expect.
    previous = {sig: signal.signal(sig, remember) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if workers > 1:
            # Several processes, each with its own AutoDev on the same database: leases keep
            # cycles and deliveries from running twice. Settings come from the environment.
            uvicorn.run("auto_dev.server.app:create_app_from_environment", factory=True,
                        workers=workers, **common)  # type: ignore[arg-type]
        else:
            from auto_dev.server.app import create_app

            config = uvicorn.Config(create_app(settings), **common)  # type: ignore[arg-type]
            uvicorn.Server(config).run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        log.info("service_stopped_by_signal", signal=signal.Signals(received[0]).name)
    return received
