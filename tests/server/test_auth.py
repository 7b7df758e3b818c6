"""Tokens and roles: 401 without a live token, 403 below the role a route needs, on every
endpoint; ``auto-dev tokens`` creates, lists and revokes them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from auto_dev.models import ApiToken
from auto_dev.queries.tokens import Role, TokenQueries
from tests.server._support import (
    ENDPOINTS,
    ROLES,
    Service,
    seed_review_world,
    send,
    service,
    snapshot,
)

NAMES = {"candidate": "ffffffffffff", "tool": "no-such-tool", "episode": "no-such-episode",
         "agent": "no-such-agent", "token": "no-such-token", "workflow": "no-such-workflow"}


@pytest.fixture(scope="module")
def seeded(svc: Service) -> Iterator[Service]:
    seed_review_world(svc.autodev, "acme")
    yield svc


class TestAuthentication:
    """No token, a malformed header, an unknown or revoked token: 401, nothing done."""

    @pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
    def test_every_api_route_needs_a_token(self, seeded: Service, endpoint: object) -> None:
        before = snapshot(seeded.autodev, "acme")
        revoked = TokenQueries(seeded.database).create("acme", "admin")
        TokenQueries(seeded.database).revoke(revoked.info.id)
        for headers in ({}, {"Authorization": "Basic YTpi"}, {"Authorization": "Bearer"},
                        {"Authorization": "Bearer adt_unknown"},
                        {"Authorization": f"Bearer {revoked.token}"},
                        {"Authorization": seeded.tokens[("acme", Role.ADMIN)]}):
            with seeded.client(headers=headers) as client:
                response = send(client, endpoint, **NAMES)  # type: ignore[arg-type]
            assert response.status_code == 401, (headers, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.headers["content-type"] == "application/problem+json"
        after = snapshot(seeded.autodev, "acme")
        after["tokens"] = [t for t in after["tokens"] if t[0] != revoked.info.id]
        assert after == before

    def test_operations_routes_need_no_token(self, seeded: Service) -> None:
        with seeded.client() as client:
            assert client.get("/healthz").status_code == 200
            assert client.get("/metrics").status_code == 200
            assert client.get("/openapi.json").status_code == 200


class TestRoles:
    """ingest < reviewer < admin, on every endpoint."""

    @pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
    @pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value)
    def test_role_matrix(self, seeded: Service, endpoint: object, role: Role) -> None:
        needed = endpoint.role  # type: ignore[attr-defined]
        before = snapshot(seeded.autodev, "acme")
        with seeded.client("acme", role) as client:
            response = send(client, endpoint, **NAMES)  # type: ignore[arg-type]
        if role.allows(needed):
            # Past authentication and authorisation: a success, or a 404 for the names that do
            # not exist (nothing else).
            assert response.status_code in (200, 201, 404), response.text
        else:
            assert response.status_code == 403, response.text
            assert needed.value in response.json()["detail"]
            assert snapshot(seeded.autodev, "acme") == before


class TestTokenStore:
    """Tokens are stored hashed, tenant-bound, and revocable."""

    def test_only_the_digest_is_stored(self, database_url: str) -> None:
        from auto_dev.db import Database

        queries = TokenQueries(Database(database_url))
        new = queries.create("acme", "reviewer", name="rita")
        with queries.database.session(readonly=True) as session:
            row = session.scalars(select(ApiToken)).one()
            stored = [getattr(row, c.key) for c in ApiToken.__table__.columns]
            assert row.token_hash == hashlib.sha256(new.token.encode()).hexdigest()
            assert (row.tenant_id, row.role, row.name) == ("acme", "reviewer", "rita")
        assert new.token not in repr(stored)
        assert queries.authenticate(new.token) is not None
        assert queries.authenticate(new.token + "x") is None
        queries.revoke(new.info.id)
        assert queries.authenticate(new.token) is None
        with pytest.raises(Exception, match="does not exist in tenant 'beta'"):
            queries.revoke(new.info.id, tenant_id="beta")

    def test_roles_are_ordered(self) -> None:
        assert [r.value for r in ROLES] == ["ingest", "reviewer", "admin"]
        assert Role.ADMIN.allows(Role.REVIEWER) and Role.REVIEWER.allows(Role.INGEST)
        assert not Role.INGEST.allows(Role.REVIEWER)
        assert not Role.REVIEWER.allows(Role.ADMIN)


class TestTokensCli:
    """``auto-dev tokens create|list|revoke``."""

    def test_create_list_revoke(self, database_url: str, monkeypatch: pytest.MonkeyPatch
                                ) -> None:
        from auto_dev.cli import app

        monkeypatch.setenv("AUTO_DEV_DATABASE_URL", database_url)
        monkeypatch.setenv("COLUMNS", "200")
        runner = CliRunner()
        created = runner.invoke(app, ["tokens", "create", "--tenant", "acme", "--role",
                                      "reviewer", "--name", "rita"])
        assert created.exit_code == 0, created.output
        token = created.stdout.strip().splitlines()[-1]
        assert token.startswith("adt_") and " " not in token
        listed = runner.invoke(app, ["tokens", "list", "--json"])
        rows = json.loads(listed.stdout)["tokens"]
        assert [(r["tenant"], r["name"], r["role"], r["revoked_at"]) for r in rows] == [
            ("acme", "rita", "reviewer", None)]
        assert token not in listed.stdout
        bad = runner.invoke(app, ["tokens", "create", "--tenant", "acme", "--role", "root"])
        assert bad.exit_code == 2 and "role" in bad.stderr
        revoked = runner.invoke(app, ["tokens", "revoke", rows[0]["id"]])
        assert revoked.exit_code == 0
        from auto_dev.db import Database

        assert TokenQueries(Database(database_url)).authenticate(token) is None
        assert runner.invoke(app, ["tokens", "revoke", "nope"]).exit_code == 1

    def test_a_cli_token_works_against_the_service(self, database_url: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
        from auto_dev.cli import app

        monkeypatch.setenv("AUTO_DEV_DATABASE_URL", database_url)
        created = CliRunner().invoke(app, ["tokens", "create", "--tenant", "acme", "--role",
                                           "ingest"])
        token = created.stdout.strip().splitlines()[-1]
        with service(database_url, tenants=()) as svc, svc.client(headers={
                "Authorization": f"Bearer {token}"}) as client:
            response = client.post("/v1/episodes", json={"agent": "a", "task": "t",
                                                         "success": True})
            assert response.status_code == 201
            assert client.get("/v1/episodes").status_code == 403
