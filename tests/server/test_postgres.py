"""The service on PostgreSQL: ingest, idempotent retries racing each other, reviews."""

from __future__ import annotations

import concurrent.futures

import pytest

from auto_dev.queries.tokens import Role
from tests.server._support import seed_review_world, seed_workflow, service

EPISODE = {"agent": "agent-1", "task": "t", "success": False, "error_trace": "boom",
           "tool_name": "inc", "inputs": {"args": [1]}, "expected": 2}


@pytest.mark.postgres
class TestOnPostgres:
    """What SQLite serialises, PostgreSQL runs concurrently: the unique key still wins."""

    def test_ingest_idempotency_and_review(self, postgres_url: str) -> None:
        with service(postgres_url) as svc:
            ids = seed_review_world(svc.autodev, "acme")

            def post(n: int) -> tuple[int, str]:
                with svc.client("acme", Role.INGEST) as client:
                    response = client.post("/v1/episodes", json=[EPISODE, EPISODE],
                                           headers={"Idempotency-Key": f"key-{n % 4}"})
                    return response.status_code, response.text

            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                results = list(pool.map(post, range(24)))
            assert {status for status, _ in results} == {201}, results
            assert len({body for _, body in results}) == 4
            assert svc.counts("acme")["episodes"] == 8
            with svc.client("acme", Role.INGEST) as client:
                bad = client.post("/v1/episodes", json=[EPISODE, {**EPISODE, "task": 1}])
                assert bad.status_code == 422 and bad.json()["field"] == "[1].task"
            assert svc.counts("acme")["episodes"] == 8
            with svc.client("acme", Role.REVIEWER) as client:
                assert client.get("/v1/episodes").json()["total"] == 8
                assert client.post(f"/v1/candidates/{ids['approved']}/promote").status_code == 200
                assert client.get("/v1/tools/inc").json()["tool"]["active_version"] == 2
            with svc.client("beta", Role.ADMIN) as client:
                assert client.get(f"/v1/candidates/{ids['passed']}").status_code == 404
                assert client.get("/v1/episodes").json()["total"] == 0

    def test_workflows_and_signals(self, postgres_url: str) -> None:
        """Register, signal (racing retries of one key), summarise and roll back."""
        with service(postgres_url) as svc:
            seed_workflow(svc.autodev, "acme")
            signal = [{"kind": "feedback", "value": 1.0, "workflow": "triage"},
                      {"kind": "feedback", "value": 0.0, "workflow": "triage"}]

            def post(n: int) -> int:
                with svc.client("acme", Role.INGEST) as client:
                    return client.post("/v1/signals", json=signal,
                                       headers={"Idempotency-Key": f"sig-{n % 3}"}).status_code

            with concurrent.futures.ThreadPoolExecutor(6) as pool:
                assert set(pool.map(post, range(12))) == {201}
            with svc.client("acme", Role.REVIEWER) as client:
                kinds = client.get("/v1/workflows/triage/signals").json()["kinds"]
                assert (kinds["feedback"]["count"], kinds["feedback"]["mean"]) == (6, 0.5)
                back = client.post("/v1/workflows/triage/rollback",
                                   json={"version": 1, "reason": "regressed"})
                assert back.status_code == 200
                assert client.get("/v1/workflows/triage").json()["active_version"] == 1
            with svc.client("beta", Role.ADMIN) as client:
                assert client.get("/v1/workflows/triage").status_code == 404
