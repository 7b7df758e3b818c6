"""Emitting the candidate store's events through the bus, in the caller's transaction.

The event classes are typed values from :mod:`auto_dev._event_types` (a leaf module, so the
store does not import the bus machinery). Anything the bus raises propagates, so the caller's
transaction rolls back with the change it was announcing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from auto_dev._event_types import Event


def emit(bus: Any, session: Session, event: Event) -> None:
    """``bus.emit(session, event)``; without a bus (a bare store in tests) nothing is sent."""
    if bus is not None:
        bus.emit(session, event)
