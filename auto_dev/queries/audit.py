"""Reads of the audit trail (gate decisions and state changes), scoped to one tenant."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from auto_dev.models import AuditEntry
from auto_dev.queries.paging import Page, check_window, count_of

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from auto_dev.db import Database


def audit_subjects(session: Session, tenant_id: str, action: str,
                   subject_id: str) -> list[AuditEntry]:
    """The tenant's audit entries of ``action`` about ``subject_id``, oldest first."""
    return list(session.scalars(select(AuditEntry).where(
        AuditEntry.tenant_id == tenant_id, AuditEntry.action == action,
        AuditEntry.subject_id == subject_id).order_by(AuditEntry.created_at, AuditEntry.id)))


class AuditLog:
    """The audit entries of one tenant: newest first, filtered and paged."""

    def __init__(self, database: Database, tenant_id: str) -> None:
        self.database = database
        self.tenant_id = tenant_id

    def page(self, *, action: str | None = None, actor: str | None = None,
             subject_id: str | None = None, limit: int = 50, offset: int = 0
             ) -> Page[AuditEntry]:
        limit, offset = check_window(limit, offset)
        query = select(AuditEntry).where(AuditEntry.tenant_id == self.tenant_id)
        for column, value in ((AuditEntry.action, action), (AuditEntry.actor, actor),
                              (AuditEntry.subject_id, subject_id)):
            if value is not None:
                query = query.where(column == value)
        with self.database.session(readonly=True) as session:
            total = count_of(session, query)
            rows = list(session.scalars(query.order_by(AuditEntry.created_at.desc(),
                                                       AuditEntry.id.desc())
                                        .limit(limit).offset(offset)))
            session.expunge_all()  # usable after the read-only session rolls back
        return Page(rows, total, limit, offset)
