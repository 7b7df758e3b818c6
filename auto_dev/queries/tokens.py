"""Writes and reads of the API-token aggregate: create (the token is returned once), list,
revoke, and authenticate a presented token.

A token is ``adt_`` followed by 32 random bytes (URL-safe base64). Tokens are that random, so
a plain SHA-256 of the token is enough to store (no salt or slow hash needed: there is nothing
to guess), and a lookup by that digest finds it in one indexed read.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import select

from auto_dev._exceptions import NotFoundError, ValidationError
from auto_dev.models import ApiToken, utcnow

if TYPE_CHECKING:
    from auto_dev.db import Database

TOKEN_PREFIX = "adt_"
_NAME_MAX = 200


class Role(StrEnum):
    """What a token may do; each role may do everything the roles before it may."""

    INGEST = "ingest"  # report episodes and skill executions
    REVIEWER = "reviewer"  # read everything of the tenant, decide on candidates, roll back
    ADMIN = "admin"  # change maturity, manage the tenant's tokens

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank

    @classmethod
    def parse(cls, value: object, *, field: str = "role") -> Role:
        try:
            return cls(value if isinstance(value, str) else repr(value))
        except ValueError:
            raise ValidationError(field, f"must be one of {', '.join(r.value for r in cls)}, "
                                  f"got {value!r}") from None


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as listed (never the token itself)."""

    id: str
    tenant_id: str
    name: str
    role: Role
    created_by: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewToken:
    """A token just created: ``token`` is the secret, shown this once."""

    info: TokenInfo
    token: str


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenQueries:
    """The API tokens of every tenant in one database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def create(self, tenant_id: str, role: Role | str, *, name: str | None = None,
               created_by: str = "") -> NewToken:
        """Create a token of ``tenant_id`` (created if missing) with ``role``."""
        level = Role.parse(role)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.database.session() as session:
            self.database.ensure_tenant(session, tenant_id)
            row = ApiToken(tenant_id=tenant_id, role=level.value, token_hash=token_digest(token),
                           name="", created_by=created_by)
            session.add(row)
            session.flush()
            row.name = _check_name(name) if name is not None else f"{level.value}-{row.id[:8]}"
            return NewToken(_info(row), token)

    def list(self, tenant_id: str | None = None, *, include_revoked: bool = True
             ) -> list[TokenInfo]:
        """Tokens of ``tenant_id`` (every tenant's when ``None``), oldest first."""
        with self.database.session(readonly=True) as session:
            query = select(ApiToken).order_by(ApiToken.created_at, ApiToken.id)
            if tenant_id is not None:
                query = query.where(ApiToken.tenant_id == tenant_id)
            if not include_revoked:
                query = query.where(ApiToken.revoked_at.is_(None))
            return [_info(row) for row in session.scalars(query)]

    def revoke(self, token_id: str, *, tenant_id: str | None = None) -> TokenInfo:
        """Revoke a token (of ``tenant_id`` only, when given). Revoking twice is harmless."""
        with self.database.session() as session:
            row = session.get(ApiToken, token_id) if isinstance(token_id, str) else None
            if row is None or (tenant_id is not None and row.tenant_id != tenant_id):
                where = f" in tenant {tenant_id!r}" if tenant_id is not None else ""
                raise NotFoundError(f"token {token_id!r} does not exist{where}")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return _info(row)

    def live(self, token_id: str) -> TokenInfo | None:
        """The token with id ``token_id`` while it is not revoked (a web session re-checks its
        token on every request with this), else ``None``."""
        with self.database.session(readonly=True) as session:
            row = session.get(ApiToken, token_id)
            return None if row is None or row.revoked_at is not None else _info(row)

    def authenticate(self, token: str) -> TokenInfo | None:
        """The live token ``token`` is, or ``None`` (unknown, malformed or revoked)."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
            return None
        digest = token_digest(token)
        with self.database.session(readonly=True) as session:
            row = session.scalars(select(ApiToken).where(ApiToken.token_hash == digest)
                                  ).one_or_none()
            # The index found it by digest; compare again in constant time all the same.
            if row is None or not hmac.compare_digest(row.token_hash, digest):
                return None
            return None if row.revoked_at is not None else _info(row)


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("name", "must be a non-empty string")
    if len(name) > _NAME_MAX or not name.isprintable():
        raise ValidationError("name", f"must be printable and at most {_NAME_MAX} characters")
    return name.strip()


def _info(row: ApiToken) -> TokenInfo:
    return TokenInfo(id=row.id, tenant_id=row.tenant_id, name=row.name, role=Role(row.role),
                     created_by=row.created_by, created_at=row.created_at,
                     revoked_at=row.revoked_at)
