"""The auto-dev HTTP service (``auto-dev serve``): ingest, review API, health and metrics.

:func:`create_app` builds the FastAPI application over one :class:`~auto_dev.service.AutoDev`;
:func:`serve` runs it on uvicorn until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

from auto_dev.server.app import create_app
from auto_dev.server.runner import serve

__all__ = ["create_app", "serve"]
