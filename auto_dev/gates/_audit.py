"""Writing audit entries, including the ones that must survive the caller's rollback.

An audit entry normally joins the caller's transaction: it commits with the work it explains,
and disappears with it on a rollback (nothing happened, so there is nothing to explain). A gate
*denial* is different: the denial usually raises :class:`~auto_dev.GateDeniedError`, which rolls
the caller's transaction back, and yet "who was refused what, and why" is exactly what an auditor
wants. So a durable entry is also remembered on the session; if the outermost transaction rolls
back, it is written again in a fresh transaction on the same engine right after the rollback
(when the caller's connection has released its locks, so SQLite does not deadlock on itself).
A savepoint rollback re-adds the entries it discarded to the still-open outer transaction.
"""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from auto_dev.gates._queries import get_tenant
from auto_dev.models import AuditEntry, utcnow

log = structlog.get_logger(__name__)

_PENDING = "auto_dev.durable_audit"
_HOOKED = "auto_dev.durable_audit_hooked"


def write_audit(
    session: Session,
    *,
    tenant_id: str,
    actor: str,
    action: str,
    reason: str,
    subject_kind: str | None = None,
    subject_id: str | None = None,
    allowed: bool | None = None,
    details: dict[str, Any] | None = None,
    durable: bool = False,
) -> AuditEntry | None:
    """Add an :class:`AuditEntry` to ``session``; ``durable`` keeps it across a rollback.

    Returns ``None`` (after logging) when the entry cannot be written, e.g. for a tenant that
    does not exist: auditing never turns a decision into a crash.
    """
    values: dict[str, Any] = {
        "tenant_id": tenant_id,
        "actor": (actor or "unknown")[:200],
        "action": action[:100],
        "subject_kind": subject_kind[:32] if subject_kind else None,
        "subject_id": subject_id[:64] if subject_id else None,
        "allowed": allowed,
        "reason": reason,
        "details": _jsonable(details or {}),
        "created_at": utcnow(),
    }
    try:
        if not isinstance(tenant_id, str) or get_tenant(session, tenant_id) is None:
            log.warning("audit_skipped", reason="no such tenant", tenant_id=tenant_id,
                        action=action)
            return None
        entry = AuditEntry(**values)
        session.add(entry)
        if durable:
            _remember(session, values, entry)
        return entry
    except Exception as exc:
        log.error("audit_write_failed", error=str(exc), action=action, tenant_id=tenant_id)
        return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _remember(session: Session, values: dict[str, Any], entry: AuditEntry) -> None:
    pending: list[list[Any]] = session.info.setdefault(_PENDING, [])
    pending.append([values, entry])
    if not session.info.get(_HOOKED):
        session.info[_HOOKED] = True
        event.listen(session, "after_commit", _after_commit)
        event.listen(session, "after_soft_rollback", _after_soft_rollback)


def _after_commit(session: Session) -> None:
    session.info.pop(_PENDING, None)


def _after_soft_rollback(session: Session, previous: SessionTransaction) -> None:
    pending: list[list[Any]] = session.info.get(_PENDING) or []
    if not pending:
        return
    if previous.nested:
        # A savepoint rolled back: the outer transaction lives on; put back what it dropped.
        if session.is_active:
            for item in pending:
                if item[1] not in session:
                    item[1] = AuditEntry(**item[0])
                    session.add(item[1])
        return
    if previous.parent is not None:
        return
    session.info.pop(_PENDING, None)
    try:
        bind = session.get_bind()
    except Exception as exc:
        log.error("durable_audit_lost", error=str(exc), count=len(pending))
        return
    try:
        with Session(bind) as fresh, fresh.begin():
            for values, _entry in pending:
                fresh.add(AuditEntry(**values))
    except Exception as exc:  # the database itself may be what failed
        log.error("durable_audit_lost", error=str(exc), count=len(pending))
