"""The HTTP service's own rows: API tokens and the responses kept for idempotent retries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from auto_dev.models.base import Base, UTCDateTime, created_column, id_column, tenant_column


class ApiToken(Base):
    """A bearer token of one tenant with one role. Only the token's SHA-256 is stored: the
    token itself is shown once, when it is created."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
        Index("ix_api_tokens_tenant", "tenant_id"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    role: Mapped[str] = mapped_column(String(20), nullable=False)  # ingest | reviewer | admin
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_by: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    created_at: Mapped[datetime] = created_column()
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class IdempotentResponse(Base):
    """The first response to a POST sent with an ``Idempotency-Key``: a retry with the same key
    (in the same tenant) gets it again and records nothing; the same key with another body is
    refused. Stored in the transaction that did the request's writes."""

    __tablename__ = "idempotent_responses"
    __table_args__ = (
        UniqueConstraint("tenant_id", "key", name="uq_idempotent_responses_tenant_key"),
        Index("ix_idempotent_responses_created", "created_at"),
    )

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    key: Mapped[str] = mapped_column(String(200), nullable=False)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    status_code: Mapped[int] = mapped_column(Integer, nullable=False)
    body: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    created_at: Mapped[datetime] = created_column()
