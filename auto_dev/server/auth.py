"""Bearer tokens and roles: who is asking, for which tenant, allowed to do what.

The tenant of every request is the token's tenant, and nothing else: no route reads a tenant
from the path, the query or the body. A missing, malformed, unknown or revoked token is 401; a
token whose role is below what the route needs is 403. Roles are ordered: ``ingest`` <
``reviewer`` < ``admin``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request

from auto_dev.queries.tokens import Role, TokenInfo, TokenQueries
from auto_dev.server.problems import Problem

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="auto-dev"'}


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: a live token of ``tenant_id``. ``actor`` names it in decisions and audits."""

    token_id: str
    tenant_id: str
    role: Role
    actor: str

    @classmethod
    def of(cls, info: TokenInfo) -> Principal:
        return cls(info.id, info.tenant_id, info.role, info.name)


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise Problem(401, "unauthorized", "send a token: Authorization: Bearer <token>",
                      headers=_CHALLENGE)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "unauthorized", "the Authorization header must be 'Bearer <token>'",
                      headers=_CHALLENGE)
    return token.strip()


def require(role: Role) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that authenticates the request and needs at least ``role``."""

    async def dependency(request: Request) -> Principal:
        token = bearer_token(request)
        tokens: TokenQueries = request.app.state.tokens
        info = await asyncio.to_thread(tokens.authenticate, token)
        if info is None:
            raise Problem(401, "unauthorized", "the token is unknown or revoked",
                          headers=_CHALLENGE)
        principal = Principal.of(info)
        if not principal.role.allows(role):
            raise Problem(403, "forbidden", f"this needs a {role.value} token; this one is "
                          f"{principal.role.value}")
        request.state.principal = principal
        return principal

    dependency.__name__ = f"require_{role.value}"
    return dependency


ingest = require(Role.INGEST)
reviewer = require(Role.REVIEWER)
admin = require(Role.ADMIN)
