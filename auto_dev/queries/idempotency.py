"""Reads and writes of the idempotent-response aggregate: the first response to a request sent
with an ``Idempotency-Key``, per tenant.

:meth:`IdempotencyRecords.find` and :meth:`IdempotencyRecords.save` take the caller's session:
the response is saved in the transaction that did the request's writes, so either both are
committed or neither (a retry after a crash finds nothing and records the request once).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from auto_dev._exceptions import ValidationError
from auto_dev.models import IdempotentResponse, utcnow

KEY_MAX = 200


@dataclass(frozen=True, slots=True)
class StoredResponse:
    request_hash: str
    status_code: int
    body: dict[str, Any]
    created_at: datetime


def request_digest(method: str, path: str, body: bytes) -> str:
    """What makes two requests "the same" for a key: the method, the path and the body."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), b"\0", path.encode(), b"\0", body):
        digest.update(part)
    return digest.hexdigest()


def check_key(key: str) -> str:
    if not key or len(key) > KEY_MAX or not key.isprintable() or not key.isascii():
        raise ValidationError("Idempotency-Key", f"must be 1 to {KEY_MAX} printable ASCII "
                              "characters")
    return key


class IdempotencyRecords:
    """Idempotent responses, in the caller's transaction."""

    @staticmethod
    def find(session: Session, tenant_id: str, key: str, *, ttl: timedelta | None = None
             ) -> StoredResponse | None:
        """The response kept for ``key``; one older than ``ttl`` is deleted instead (the key
        can then be used again)."""
        row = session.scalars(select(IdempotentResponse).where(
            IdempotentResponse.tenant_id == tenant_id, IdempotentResponse.key == key)
        ).one_or_none()
        if row is None:
            return None
        if ttl is not None and row.created_at < utcnow() - ttl:
            session.delete(row)
            session.flush()
            return None
        return StoredResponse(row.request_hash, row.status_code, dict(row.body), row.created_at)

    @staticmethod
    def save(session: Session, tenant_id: str, key: str, *, request_hash: str,
             status_code: int, body: dict[str, Any]) -> None:
        session.add(IdempotentResponse(tenant_id=tenant_id, key=key, request_hash=request_hash,
                                       status_code=status_code, body=body))
        session.flush()  # a concurrent request with the same key fails here, not at commit

    @staticmethod
    def forget_older_than(session: Session, age: timedelta) -> int:
        """Delete responses older than ``age`` (a retry after that records again)."""
        result = session.execute(delete(IdempotentResponse).where(
            IdempotentResponse.created_at < utcnow() - age))
        return int(getattr(result, "rowcount", 0) or 0)
