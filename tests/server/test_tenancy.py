"""The cross-tenant matrix: a token of tenant acme, whatever its role, reading or writing
anything of tenant beta through any endpoint: no success, 404 or 403, and nothing of beta
changes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from auto_dev.queries.tokens import Role, TokenQueries
from tests.server._support import (
    ENDPOINTS,
    ROLES,
    Endpoint,
    Service,
    seed_review_world,
    seed_workflow,
    send,
    snapshot,
)


@pytest.fixture(scope="module")
def two_tenants(svc: Service) -> Iterator[tuple[Service, dict[str, str]]]:
    """acme and beta each with tool inc and candidates; beta also has a tool, an agent, an
    episode and a token acme has nothing like."""
    seed_review_world(svc.autodev, "acme")
    beta = seed_review_world(svc.autodev, "beta")
    svc.autodev.register_tool("beta_only", "def beta_only():\n    return 1\n", "beta_only",
                              tenant_id="beta")
    svc.autodev.set_maturity("beta-agent", "auto_dev.alpha_evolver", "intern", actor="setup",
                             reason="setup", tenant_id="beta")
    with svc.client("beta", Role.INGEST) as client:
        episode = client.post("/v1/episodes", json={"agent": "beta-agent", "task": "secret",
                                                    "success": False}).json()["episode_id"]
    token = TokenQueries(svc.database).create("beta", "admin", name="beta-ops").info.id
    seed_workflow(svc.autodev, "beta", "beta_flow")
    names = {"candidate": beta["passed"], "tool": "beta_only", "episode": episode,
             "agent": "beta-agent", "token": token, "approved": beta["approved"],
             "failed": beta["failed"], "workflow": "beta_flow"}
    yield svc, names


def _named(endpoint: Endpoint) -> bool:
    return endpoint.named


class TestCrossTenantMatrix:
    """Zero successes for a token of one tenant on the rows of another."""

    @pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if _named(e)],
                             ids=lambda e: f"{e.method} {e.path}")
    @pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value)
    def test_naming_a_row_of_another_tenant(self, two_tenants: tuple[Service, dict[str, str]],
                                            endpoint: Endpoint, role: Role) -> None:
        svc, beta = two_tenants
        before = snapshot(svc.autodev, "beta")
        candidates = [beta["candidate"], beta["approved"], beta["failed"],
                      beta["candidate"][:8]]  # a unique prefix too
        names: list[dict[str, str]] = [{**beta, "candidate": c} for c in candidates]
        with svc.client("acme", role) as client:
            for values in names:
                response = send(client, endpoint, **values)
                expected = 404 if role.allows(endpoint.role) else 403
                assert response.status_code == expected, (values, response.text)
                assert "secret" not in response.text
        assert snapshot(svc.autodev, "beta") == before

    @pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if not _named(e)],
                             ids=lambda e: f"{e.method} {e.path}")
    @pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value)
    def test_lists_and_writes_stay_in_the_token_tenant(
            self, two_tenants: tuple[Service, dict[str, str]], endpoint: Endpoint,
            role: Role) -> None:
        svc, beta = two_tenants
        before = snapshot(svc.autodev, "beta")
        with svc.client("acme", role) as client:
            response = send(client, endpoint)
        if not role.allows(endpoint.role):
            assert response.status_code == 403
        else:
            assert response.status_code in (200, 201), response.text
            text = response.text
            for value in (beta["candidate"], beta["approved"], beta["failed"], beta["episode"],
                          beta["token"], "beta_only", "beta-agent", "beta-ops", "secret",
                          "beta_flow"):
                assert value not in text, (endpoint.path, value)
            if endpoint.method == "GET" and "items" in response.json():
                assert all(_tenant_free(item) for item in response.json()["items"])
        assert snapshot(svc.autodev, "beta") == before

    def test_beta_still_sees_its_own(self, two_tenants: tuple[Service, dict[str, str]]
                                     ) -> None:
        """The matrix can fail: the same requests with beta's own token find the rows."""
        svc, beta = two_tenants
        with svc.client("beta", Role.ADMIN) as client:
            assert client.get(f"/v1/candidates/{beta['candidate']}").status_code == 200
            assert client.get(f"/v1/episodes/{beta['episode']}").json()["task"] == "secret"
            assert client.get("/v1/tools/beta_only").status_code == 200
            assert client.get("/v1/agents/beta-agent").status_code == 200
            assert client.get("/v1/workflows/beta_flow").json()["active_version"] == 2
            signal = client.post("/v1/signals", json={"kind": "feedback", "value": 1.0,
                                                      "workflow": "beta_flow"})
            assert signal.status_code == 201
            tokens = [t["id"] for t in client.get("/v1/tokens").json()["items"]]
            assert beta["token"] in tokens


def _tenant_free(item: Any) -> bool:
    return not (isinstance(item, dict) and item.get("tenant_id") not in (None, "acme"))
