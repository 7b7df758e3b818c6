"""Emitting the gates' events through the bus, in the caller's transaction.

The event classes live in :mod:`auto_dev.events`; they are looked up by name so that the gates
package does not import the bus machinery at module load. An event class that does not exist is
logged and skipped (not every deployment has every event); anything else the bus raises
propagates, so the caller's transaction rolls back with the change it was announcing.
"""

from __future__ import annotations

import importlib
from typing import Any

import structlog
from sqlalchemy.orm import Session

log = structlog.get_logger(__name__)


def _event_class(name: str) -> Any:
    try:
        module = importlib.import_module("auto_dev.events")
    except ImportError:
        return None
    return getattr(module, name, None)


def emit(bus: Any, session: Session, name: str, **fields: Any) -> None:
    """Build event ``name`` from ``fields`` and ``bus.emit(session, event)`` it (no bus: no-op).

    A field the event does not declare is a bug here, and raises (rolling the change back).
    """
    if bus is None:
        return
    cls = _event_class(name)
    if cls is None:
        log.warning("event_class_missing", event=name)
        return
    bus.emit(session, cls(**fields))
