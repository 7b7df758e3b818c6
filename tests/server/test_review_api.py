"""The review API through real HTTP: candidates, tools, episodes, agents, runs, schedules,
audit and tokens, as a reviewer or an admin of one tenant."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from auto_dev.models import EvolutionRun, ReviewDecision, ToolMutation, ToolVersion
from auto_dev.queries.tokens import Role
from tests.server._support import FIXED_CODE, Service, seed_review_world, service

EPISODE = {"agent": "agent-1", "task": "add one", "success": False, "tool_name": "inc",
           "inputs": {"args": [1]}, "expected": 2, "error_trace": "AssertionError"}


@pytest.fixture
def world(database_url: str) -> Iterator[tuple[Service, dict[str, str]]]:
    """A service whose tenant acme has tool inc and three candidates (passed, approved,
    failed)."""
    with service(database_url) as running:
        yield running, seed_review_world(running.autodev, "acme")


def _status(svc: Service, candidate_id: str) -> str:
    with svc.database.session(readonly=True) as session:
        row = session.get(ToolMutation, candidate_id)
        assert row is not None
        return row.status


class TestCandidates:
    """List, filter and page candidates; show one; approve, reject and promote."""

    def test_list_filters_and_pages(self, world: tuple[Service, dict[str, str]]) -> None:
        svc, ids = world
        with svc.client("acme", Role.REVIEWER) as client:
            everything = client.get("/v1/candidates").json()
            assert everything["total"] == 3
            assert {c["id"] for c in everything["items"]} == set(ids.values())
            newest_first = [c["created_at"] for c in everything["items"]]
            assert newest_first == sorted(newest_first, reverse=True)
            passed = client.get("/v1/candidates", params={"status": "passed"}).json()
            assert [c["id"] for c in passed["items"]] == [ids["passed"]]
            queue = client.get("/v1/candidates",
                               params=[("status", "passed"), ("status", "approved")]).json()
            assert {c["id"] for c in queue["items"]} == {ids["passed"], ids["approved"]}
            assert client.get("/v1/candidates", params={"target": "inc"}).json()["total"] == 3
            assert client.get("/v1/candidates", params={"target": "nope"}).json()["total"] == 0
            assert client.get("/v1/candidates",
                              params={"kind": "skill_candidate"}).json()["total"] == 0
            pages = [client.get("/v1/candidates", params={"limit": 1, "offset": n}).json()
                     for n in range(4)]
            assert [len(p["items"]) for p in pages] == [1, 1, 1, 0]
            assert [p["items"][0]["id"] for p in pages[:3]] == [
                c["id"] for c in everything["items"]]
            bad = client.get("/v1/candidates", params={"status": "sideways"})
            assert bad.status_code == 422 and bad.json()["field"] == "status"
            assert client.get("/v1/candidates", params={"limit": 0}).status_code == 422
            assert client.get("/v1/candidates", params={"kind": "x"}).json()["field"] == "kind"

    def test_show_has_the_diff_objectives_cases_and_lineage(
            self, world: tuple[Service, dict[str, str]]) -> None:
        svc, ids = world
        with svc.client("acme", Role.REVIEWER) as client:
            detail = client.get(f"/v1/candidates/{ids['passed'][:8]}").json()
        assert detail["summary"]["id"] == ids["passed"]
        assert "-    return x + 2" in detail["diff"] and "+    return x + 1" in detail["diff"]
        assert detail["diff_base"] == "inc v1 (active)"
        assert {o["name"] for o in detail["objectives"]} >= {"pass_rate"}
        assert detail["cases"][0]["status"] == "ok"
        assert detail["lineage"][0]["id"] == ids["passed"]

    def test_approve_then_promote_as_the_token(self, world: tuple[Service, dict[str, str]]
                                               ) -> None:
        svc, ids = world
        actor = svc.names[("acme", Role.REVIEWER)]
        with svc.client("acme", Role.REVIEWER) as client:
            approved = client.post(f"/v1/candidates/{ids['passed']}/approve",
                                   json={"reason": "fixes the off-by-one"})
            assert approved.status_code == 200 and approved.json()["status"] == "approved"
            promoted = client.post(f"/v1/candidates/{ids['passed']}/promote")
            assert promoted.status_code == 200, promoted.text
            assert promoted.json()["version"] == 2
            again = client.post(f"/v1/candidates/{ids['passed']}/promote")
            assert again.status_code == 409
        assert svc.autodev.active_code("inc", tenant_id="acme") == FIXED_CODE + "# passed\n"
        with svc.database.session(readonly=True) as session:
            decisions = session.scalars(select(ReviewDecision).where(
                ReviewDecision.candidate_id == ids["passed"])).all()
            assert [(d.decision, d.actor) for d in decisions][-2:] == [
                ("approved", actor), ("promoted", actor)]
            assert decisions[-2].reason == "fixes the off-by-one"

    def test_reject_needs_a_reason_and_is_final(self, world: tuple[Service, dict[str, str]]
                                                ) -> None:
        svc, ids = world
        with svc.client("acme", Role.REVIEWER) as client:
            missing = client.post(f"/v1/candidates/{ids['passed']}/reject", json={})
            assert missing.status_code == 422 and missing.json()["field"] == "reason"
            assert _status(svc, ids["passed"]) == "passed"
            rejected = client.post(f"/v1/candidates/{ids['passed']}/reject",
                                   json={"reason": "changes behaviour on negatives"})
            assert rejected.json()["status"] == "rejected"
            assert client.post(f"/v1/candidates/{ids['passed']}/approve").status_code == 409
            # Approving a failed candidate is not a move the lifecycle allows.
            assert client.post(f"/v1/candidates/{ids['failed']}/approve").status_code == 409
        assert _status(svc, ids["passed"]) == "rejected"

    def test_decision_bodies_are_checked(self, world: tuple[Service, dict[str, str]]) -> None:
        svc, ids = world
        with svc.client("acme", Role.REVIEWER) as client:
            url = f"/v1/candidates/{ids['passed']}/approve"
            assert client.post(url, json={"reason": 5}).json()["field"] == "reason"
            assert client.post(url, json={"why": "x"}).json()["field"] == "why"
            assert client.post(url, content=b"reason=x", headers={
                "content-type": "application/x-www-form-urlencoded"}).status_code == 415
            assert client.post("/v1/candidates/abc/approve").json()["field"] == "candidate_id"
            assert client.post("/v1/candidates/ffffffff/approve").status_code == 404
        assert _status(svc, ids["passed"]) == "passed"


class TestTools:
    """List and show tools, their versions, and roll one back."""

    def test_list_show_versions_rollback(self, world: tuple[Service, dict[str, str]]) -> None:
        svc, ids = world
        actor = svc.names[("acme", Role.REVIEWER)]
        with svc.client("acme", Role.REVIEWER) as client:
            tools = client.get("/v1/tools").json()
            assert [(t["name"], t["active_version"], t["pending_candidates"])
                    for t in tools["items"]] == [("inc", 1, 2)]
            assert client.post(f"/v1/candidates/{ids['approved']}/promote").status_code == 200
            shown = client.get("/v1/tools/inc").json()
            assert shown["tool"]["active_version"] == 2
            assert shown["active_code"] == FIXED_CODE + "# approved\n"
            versions = client.get("/v1/tools/inc/versions").json()["items"]
            assert [(v["version"], v["is_active"]) for v in versions] == [(1, False), (2, True)]
            assert client.post("/v1/tools/inc/rollback", json={}).json()["field"] == "reason"
            rolled = client.post("/v1/tools/inc/rollback", json={"reason": "regressed"})
            assert rolled.status_code == 200, rolled.text
            assert (rolled.json()["from_version"], rolled.json()["to_version"]) == (2, 1)
            assert client.get("/v1/tools/nope").status_code == 404
            assert client.post("/v1/tools/nope/rollback",
                               json={"reason": "x"}).status_code == 404
        assert _status(svc, ids["approved"]) == "rolled_back"
        with svc.database.session(readonly=True) as session:
            active = session.scalars(select(ToolVersion).where(
                ToolVersion.tenant_id == "acme", ToolVersion.is_active.is_(True))).one()
            assert active.version == 1
            decision = session.scalars(select(ReviewDecision).where(
                ReviewDecision.candidate_id == ids["approved"],
                ReviewDecision.decision == "rolled_back")).one()
            assert decision.actor == actor


class TestEpisodesAndAgents:
    """Episodes as the platform reported them; agents and their maturity."""

    def test_episodes_list_filter_page_show(self, fresh: Service) -> None:
        with fresh.client("acme", Role.INGEST) as client:
            ids = client.post("/v1/episodes", json=[
                EPISODE, {**EPISODE, "success": True, "agent": "agent-2"},
                {**EPISODE, "segments": [{"tool_name": "inc", "inputs": {"args": [1]},
                                          "output": 3}]}]).json()["episode_ids"]
        with fresh.client("acme", Role.REVIEWER) as client:
            listed = client.get("/v1/episodes").json()
            assert listed["total"] == 3
            assert {e["id"] for e in listed["items"]} == set(ids)
            assert client.get("/v1/episodes", params={"success": "true"}).json()["total"] == 1
            assert client.get("/v1/episodes", params={"agent": "agent-2"}).json()["items"][0][
                "id"] == ids[1]
            assert client.get("/v1/episodes", params={"tool": "inc"}).json()["total"] == 3
            assert len(client.get("/v1/episodes", params={"limit": 2}).json()["items"]) == 2
            shown = client.get(f"/v1/episodes/{ids[2]}").json()
            assert shown["segments"][0]["output"] == 3
            assert shown["details"]["inputs"] == {"args": [1]}
            assert client.get("/v1/episodes/nope").status_code == 404
            assert client.get("/v1/episodes", params={"limit": 501}).status_code == 422

    def test_agents_and_maturity(self, world: tuple[Service, dict[str, str]]) -> None:
        svc, _ = world
        admin = svc.names[("acme", Role.ADMIN)]
        with svc.client("acme", Role.REVIEWER) as client:
            agents = client.get("/v1/agents").json()["items"]
            assert [a["key"] for a in agents] == ["agent-1"]
            assert agents[0]["maturities"]["auto_dev.alpha_evolver"] == "supervised"
            standing = client.get("/v1/agents/agent-1").json()
            alpha = next(c for c in standing["capabilities"]
                         if c["capability"] == "auto_dev.alpha_evolver")
            assert alpha["maturity"] == "supervised" and "needs" in alpha
            assert client.get("/v1/agents/nobody").status_code == 404
        with svc.client("acme", Role.ADMIN) as client:
            url = "/v1/agents/agent-1/maturity"
            changed = client.put(url, json={"capability": "alpha_evolver",
                                            "maturity": "autonomous", "reason": "trusted"})
            assert changed.json() == {"agent": "agent-1", "capability": "auto_dev.alpha_evolver",
                                      "before": "supervised", "maturity": "autonomous"}
            assert client.put(url, json={"capability": "alpha_evolver", "maturity": "guru",
                                         "reason": "x"}).json()["field"] == "maturity"
            assert client.put(url, json={"capability": "nonsense", "maturity": "student",
                                         "reason": "x"}).json()["field"] == "capability"
            assert client.put(url, json={"capability": "alpha_evolver",
                                         "maturity": "student"}).json()["field"] == "reason"
            audit = client.get("/v1/audit", params={"action": "capability.set_maturity"}
                               ).json()["items"]
            assert audit[0]["actor"] == admin and audit[0]["reason"] == "trusted"
            assert audit[0]["details"]["after"] == "autonomous"


class TestRunsSchedulesAudit:
    """Runs, schedules and the audit log of the token's tenant."""

    def test_runs_schedules_audit(self, world: tuple[Service, dict[str, str]]) -> None:
        svc, _ = world
        with svc.database.session() as session:
            session.add(EvolutionRun(tenant_id="acme", engine="alpha_evolver", target="inc",
                                     status="completed", budget=10))
        svc.autodev.scheduler.add("alpha_evolver", interval_s=60, target="inc",
                                  tenant_id="acme")
        with svc.client("acme", Role.REVIEWER) as client:
            runs = client.get("/v1/runs").json()
            assert [(r["engine"], r["status"]) for r in runs["items"]] == [
                ("alpha_evolver", "completed")]
            assert client.get("/v1/runs", params={"status": "failed"}).json()["total"] == 0
            schedules = client.get("/v1/schedules").json()["items"]
            assert [(s["id"], s["interval_s"]) for s in schedules] == [
                ("alpha_evolver.inc", 60.0)]
            audit = client.get("/v1/audit").json()
            assert audit["total"] >= 1
            times = [e["created_at"] for e in audit["items"]]
            assert times == sorted(times, reverse=True)


class TestTokensApi:
    """An admin manages the tenant's tokens over HTTP."""

    def test_create_list_revoke(self, fresh: Service) -> None:
        with fresh.client("acme", Role.ADMIN) as client:
            created = client.post("/v1/tokens", json={"role": "ingest", "name": "platform-x"})
            assert created.status_code == 201
            token, token_id = created.json()["token"], created.json()["id"]
            listed = client.get("/v1/tokens").json()["items"]
            assert {t["name"] for t in listed} >= {"platform-x", "acme-admin"}
            assert all("token" not in t for t in listed)
            headers = {"Authorization": f"Bearer {token}"}
            assert client.post("/v1/episodes", json=EPISODE, headers=headers).status_code == 201
            assert client.delete(f"/v1/tokens/{token_id}").json()["revoked_at"] is not None
            assert client.post("/v1/episodes", json=EPISODE, headers=headers).status_code == 401
            assert client.post("/v1/tokens", json={"role": "root"}).json()["field"] == "role"
            own = client.get("/v1/tokens").json()["items"]
            admin_id = next(t["id"] for t in own if t["name"] == "acme-admin")
            assert client.delete(f"/v1/tokens/{admin_id}").status_code == 422


def test_paths_have_no_tenant(tmp_path: Path) -> None:
    """No route takes a tenant from its path: the tenant is always the token's."""
    from auto_dev.server import create_app

    app = create_app()
    paths = [getattr(route, "path", "") for route in app.routes]
    assert paths and not any("tenant" in path for path in paths)


