"""``Idempotency-Key``: a retried POST records nothing twice and gets the first response."""

from __future__ import annotations

import concurrent.futures
from datetime import timedelta

from sqlalchemy import update

from auto_dev.models import IdempotentResponse, utcnow
from auto_dev.queries.tokens import Role
from tests.server._support import Service

EPISODE = {"agent": "agent-1", "task": "t", "success": False, "error_trace": "boom"}


class TestIdempotencyKeys:
    """Keys are per tenant, bound to one request, and kept for the configured time."""

    def test_a_retry_records_nothing_and_replays_the_first_response(self, fresh: Service
                                                                     ) -> None:
        with fresh.client("acme", Role.INGEST) as client:
            first = client.post("/v1/episodes", json=[EPISODE, EPISODE],
                                headers={"Idempotency-Key": "k-1"})
            again = client.post("/v1/episodes", json=[EPISODE, EPISODE],
                                headers={"Idempotency-Key": "k-1"})
        assert first.status_code == again.status_code == 201
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        assert fresh.counts("acme")["episodes"] == 2

    def test_the_same_key_with_another_body_is_a_conflict(self, fresh: Service) -> None:
        with fresh.client("acme", Role.INGEST) as client:
            assert client.post("/v1/episodes", json=EPISODE,
                               headers={"Idempotency-Key": "k-2"}).status_code == 201
            conflict = client.post("/v1/episodes", json={**EPISODE, "task": "other"},
                                   headers={"Idempotency-Key": "k-2"})
            other_path = client.post("/v1/skill-executions", headers={"Idempotency-Key": "k-2"},
                                     json={"agent": "a", "skill_name": "s", "success": True,
                                           "execution_seconds": 1.0})
        for response in (conflict, other_path):
            assert response.status_code == 409
            assert response.json()["field"] == "Idempotency-Key"
        assert fresh.counts("acme")["episodes"] == 1

    def test_keys_are_per_tenant(self, fresh: Service) -> None:
        for tenant in ("acme", "beta"):
            with fresh.client(tenant, Role.INGEST) as client:
                response = client.post("/v1/episodes", json=EPISODE,
                                       headers={"Idempotency-Key": "shared"})
                assert response.status_code == 201
                assert "idempotent-replayed" not in response.headers
        assert fresh.counts("acme")["episodes"] == fresh.counts("beta")["episodes"] == 1

    def test_a_failed_request_keeps_no_key(self, fresh: Service) -> None:
        with fresh.client("acme", Role.INGEST) as client:
            bad = client.post("/v1/episodes", json={**EPISODE, "success": "no"},
                              headers={"Idempotency-Key": "k-3"})
            assert bad.status_code == 422
            good = client.post("/v1/episodes", json=EPISODE, headers={"Idempotency-Key": "k-3"})
            assert good.status_code == 201 and "idempotent-replayed" not in good.headers
        assert fresh.counts("acme")["idempotent"] == 1

    def test_concurrent_retries_record_once(self, fresh: Service) -> None:
        def post(_: int) -> tuple[int, str]:
            with fresh.client("acme", Role.INGEST) as client:
                response = client.post("/v1/episodes", json=EPISODE,
                                       headers={"Idempotency-Key": "race"})
                return response.status_code, response.json()["episode_id"]

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(post, range(16)))
        assert {status for status, _ in results} == {201}
        assert len({episode for _, episode in results}) == 1
        assert fresh.counts("acme")["episodes"] == 1

    def test_an_expired_key_records_again(self, fresh: Service) -> None:
        with fresh.client("acme", Role.INGEST) as client:
            client.post("/v1/episodes", json=EPISODE, headers={"Idempotency-Key": "old"})
            ttl = fresh.autodev.settings.server_idempotency_ttl_s
            with fresh.database.session() as session:
                session.execute(update(IdempotentResponse).values(
                    created_at=utcnow() - timedelta(seconds=ttl + 1)))
            again = client.post("/v1/episodes", json=EPISODE, headers={"Idempotency-Key": "old"})
        assert again.status_code == 201 and "idempotent-replayed" not in again.headers
        assert fresh.counts("acme")["episodes"] == 2

    def test_a_malformed_key_is_refused(self, fresh: Service) -> None:
        with fresh.client("acme", Role.INGEST) as client:
            response = client.post("/v1/episodes", json=EPISODE,
                                   headers={"Idempotency-Key": "x" * 201})
        assert response.status_code == 422
        assert response.json()["field"] == "Idempotency-Key"
        assert fresh.counts("acme")["episodes"] == 0
