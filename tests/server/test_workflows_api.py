"""The workflow review API through real HTTP: register, list, show, versions, tasks and
rollback as a reviewer of one tenant, and the structural diff of a workflow variant."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from auto_dev.models import AuditEntry, WorkflowVersion
from auto_dev.queries.tokens import Role
from auto_dev.workflows.diff import structural_diff
from tests.server._support import Service, seed_workflow, service, snapshot, workflow_doc


@pytest.fixture
def world(database_url: str) -> Iterator[tuple[Service, list[dict[str, Any]]]]:
    """A service whose tenant acme has tool inc and workflow triage (v1, v2 active)."""
    with service(database_url) as running:
        yield running, seed_workflow(running.autodev, "acme")


def _active(svc: Service, tenant: str = "acme") -> list[int]:
    with svc.database.session(readonly=True) as session:
        return list(session.scalars(select(WorkflowVersion.version).where(
            WorkflowVersion.tenant_id == tenant, WorkflowVersion.is_active.is_(True))))


class TestRegister:
    """POST /v1/workflows: new, changed and identical definitions; bad ones write nothing."""

    def test_new_changed_identical(self, world: tuple[Service, list[dict[str, Any]]]) -> None:
        svc, _ = world
        doc = workflow_doc("refund")
        with svc.client("acme", Role.REVIEWER) as client:
            first = client.post("/v1/workflows", json=doc)
            assert first.status_code == 201
            assert first.json() == {"name": "refund", "version": 1, "created": True}
            again = client.post("/v1/workflows", json=doc)
            assert again.status_code == 200 and again.json()["created"] is False
            changed = client.post("/v1/workflows", json=workflow_doc("refund", timeout_s=2))
            assert changed.status_code == 201 and changed.json()["version"] == 2
            actor = svc.names[("acme", Role.REVIEWER)]
            audit = client.get("/v1/audit", params={"actor": actor}).json()["items"]
        assert [(e["action"], e["reason"]) for e in audit] == [
            ("workflow.version_registered", "refund v2"), ("workflow.registered", "refund v1")]

    @pytest.mark.parametrize(("doc", "field"), [
        ({"name": "bad", "steps": [{"id": "a", "set": {"v": 1}}, {"id": "b", "set": {"v": 2}},
                                   {"id": "c", "tool": "inc", "retry": {"max_attempts": 99}}]},
         "workflow.steps[2].retry.max_attempts"),
        ({**workflow_doc("bad"), "steps": [{"id": "x", "tool": "rm_rf"}]},
         "workflow.steps[0].tool"),
        ({"name": "bad", "steps": [{"id": "a", "set": {"v": 1}}, {"id": "a", "set": {"v": 2}}]},
         "workflow.steps[1].id"),
        ({"name": "bad", "steps": [{"id": "a", "when": "steps.[", "set": {"v": 1}}]},
         "workflow.steps[0].when"),
        ([workflow_doc("bad")], "workflow"),
    ], ids=["retry", "unknown-tool", "duplicate-id", "expression", "not-an-object"])
    def test_bad_definitions_name_the_field(self, world: tuple[Service, list[dict[str, Any]]],
                                            doc: Any, field: str) -> None:
        svc, _ = world
        before = snapshot(svc.autodev, "acme")
        with svc.client("acme", Role.ADMIN) as client:
            answer = client.post("/v1/workflows", json=doc)
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["field"] == field
        assert snapshot(svc.autodev, "acme") == before

    def test_an_ingest_token_cannot_register(self, world: tuple[Service, list[dict[str, Any]]]
                                             ) -> None:
        svc, _ = world
        with svc.client("acme", Role.INGEST) as client:
            assert client.post("/v1/workflows", json=workflow_doc("x")).status_code == 403
        with svc.client("acme", Role.REVIEWER) as client:
            assert client.get("/v1/workflows/x").status_code == 404


class TestRead:
    """List with paging, show, versions and one version with its definition."""

    def test_list_pages_by_name(self, world: tuple[Service, list[dict[str, Any]]]) -> None:
        svc, _ = world
        for name in ("alpha", "zulu"):
            svc.autodev.register_workflow(workflow_doc(name), actor="setup", tenant_id="acme")
        with svc.client("acme", Role.REVIEWER) as client:
            everything = client.get("/v1/workflows").json()
            pages = [client.get("/v1/workflows", params={"limit": 2, "offset": n}).json()
                     for n in (0, 2, 4)]
            bad = client.get("/v1/workflows", params={"limit": 0})
        assert [w["name"] for w in everything["items"]] == ["alpha", "triage", "zulu"]
        assert everything["total"] == 3
        assert [[w["name"] for w in p["items"]] for p in pages] == [
            ["alpha", "triage"], ["zulu"], []]
        assert all(p["total"] == 3 for p in pages)
        triage = everything["items"][1]
        assert (triage["active_version"], triage["versions"], triage["tasks"]) == (2, 2, 0)
        assert bad.status_code == 422 and bad.json()["field"] == "limit"

    def test_show_versions_and_one_version(self, world: tuple[Service, list[dict[str, Any]]]
                                           ) -> None:
        svc, (first, second) = world
        with svc.client("acme", Role.REVIEWER) as client:
            shown = client.get("/v1/workflows/triage").json()
            versions = client.get("/v1/workflows/triage/versions").json()
            one = client.get("/v1/workflows/triage/versions/1").json()
            missing = client.get("/v1/workflows/triage/versions/9")
            zero = client.get("/v1/workflows/triage/versions/0")
        assert shown["name"] == "triage" and shown["active_version"] == 2
        assert shown["active"]["version"] == 2 and shown["active"]["is_active"] is True
        assert shown["definition"]["steps"][0]["retry"] == second["steps"][0]["retry"]
        assert [(v["version"], v["is_active"], v["source"]) for v in versions["items"]] == [
            (1, False, "user"), (2, True, "user")]
        assert versions["total"] == 2
        assert one["version"] == 1 and one["definition"]["steps"] == first["steps"]
        assert missing.status_code == 404
        assert zero.status_code == 422 and zero.json()["field"] == "version"


class TestTasks:
    """Tasks come from the facade and from episodes of the workflow that carry ``expected``."""

    def test_tasks_page_oldest_first(self, world: tuple[Service, list[dict[str, Any]]]
                                     ) -> None:
        svc, _ = world
        svc.autodev.add_workflow_task("triage", {"x": 1}, 2, tenant_id="acme")
        with svc.client("acme", Role.INGEST) as client:
            run = client.post("/v1/episodes", json={
                "agent": "a1", "task": "triage 5", "success": False, "workflow": "triage",
                "inputs": {"x": 5}, "expected": 6, "output": 7})
            assert run.status_code == 201
        with svc.client("acme", Role.REVIEWER) as client:
            tasks = client.get("/v1/workflows/triage/tasks").json()
            second = client.get("/v1/workflows/triage/tasks",
                                params={"limit": 1, "offset": 1}).json()
            count = client.get("/v1/workflows/triage").json()["tasks"]
        assert [(t["input"], t["expected"], t["source"]) for t in tasks["items"]] == [
            ({"x": 1}, 2, "user"), ({"x": 5}, 6, "episode")]
        assert tasks["items"][1]["episode_id"] == run.json()["episode_id"]
        assert tasks["total"] == 2 == count
        assert [t["input"] for t in second["items"]] == [{"x": 5}]


class TestRollback:
    """A reviewer re-activates an older version with a reason; it is audited in their name."""

    def test_rollback_with_reason(self, world: tuple[Service, list[dict[str, Any]]]) -> None:
        svc, _ = world
        before = snapshot(svc.autodev, "acme")
        with svc.client("acme", Role.REVIEWER) as client:
            no_reason = client.post("/v1/workflows/triage/rollback", json={"version": 1})
            blank = client.post("/v1/workflows/triage/rollback",
                                json={"version": 1, "reason": ""})
            active = client.post("/v1/workflows/triage/rollback",
                                 json={"version": 2, "reason": "already"})
            unknown = client.post("/v1/workflows/triage/rollback",
                                  json={"version": 7, "reason": "x"})
            assert snapshot(svc.autodev, "acme") == before
            done = client.post("/v1/workflows/triage/rollback",
                               json={"version": 1, "reason": "v2 loops in production"})
        assert no_reason.status_code == 422 and no_reason.json()["field"] == "reason"
        assert blank.status_code == 422 and blank.json()["field"] == "reason"
        assert active.status_code == 422 and active.json()["field"] == "version"
        assert unknown.status_code == 404
        assert done.status_code == 200, done.text
        assert (done.json()["from_version"], done.json()["to_version"]) == (2, 1)
        assert _active(svc) == [1]
        with svc.database.session(readonly=True) as session:
            entry = session.execute(select(AuditEntry.actor, AuditEntry.reason).where(
                AuditEntry.tenant_id == "acme",
                AuditEntry.action == "workflow.rolled_back")).one()
        assert tuple(entry) == (svc.names[("acme", Role.REVIEWER)], "v2 loops in production")

    def test_default_is_the_previous_version(self, world: tuple[Service, list[dict[str, Any]]]
                                             ) -> None:
        svc, _ = world
        with svc.client("acme", Role.REVIEWER) as client:
            done = client.post("/v1/workflows/triage/rollback", json={"reason": "back"})
            nothing_older = client.post("/v1/workflows/triage/rollback", json={"reason": "x"})
        assert done.status_code == 200 and done.json()["to_version"] == 1
        assert nothing_older.status_code == 422 and nothing_older.json()["field"] == "name"
        assert _active(svc) == [1]


class TestVariantCandidate:
    """GET /v1/candidates/{id} of a workflow variant carries the structural diff's lines."""

    def test_structural_diff_against_the_active_version(
            self, world: tuple[Service, list[dict[str, Any]]]) -> None:
        svc, (_, active) = world
        autodev = svc.autodev
        autodev.configure_tenant("acme", actor="setup", reason="test setup", enabled=True,
                                 workflows=True)
        autodev.set_maturity("agent-1", "auto_dev.workflows", "supervised", actor="setup",
                             reason="test setup", tenant_id="acme")
        variant = workflow_doc("triage", timeout_s=3)
        variant["steps"].append({"id": "note", "set": {"done": True}})
        with autodev.database.session() as session:
            row = autodev.store.create_workflow_variant(
                session, tenant_id="acme", name="triage", definition=variant,
                agent_id="agent-1", operator="wf.add_step")
            candidate_id = row.id
        with svc.client("acme", Role.REVIEWER) as client:
            shown = client.get(f"/v1/candidates/{candidate_id}").json()
            listed = client.get("/v1/candidates", params={"kind": "workflow_variant"}).json()
        expected = structural_diff(active, variant).render_lines()
        assert shown["structural_diff"] == expected
        assert any(line.startswith("+ added step note") for line in expected)
        assert any("retry" in line for line in expected)  # the variant dropped v2's retry
        assert shown["diff_base"] == "triage v2 (active)"
        assert [c["id"] for c in listed["items"]] == [candidate_id]
