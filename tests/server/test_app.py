"""The app itself: health and readiness, the OpenAPI document, problem JSON for unknown routes,
and Prometheus metrics."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from auto_dev.models import EvolutionRun, LLMCall, utcnow
from auto_dev.queries.tokens import Role
from tests.server._support import Service, seed_review_world, service


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


class TestHealth:
    """/healthz says the process answers; /readyz checks what the service needs."""

    def test_ready_with_every_check(self, database_url: str) -> None:
        with service(database_url, scheduler=True) as svc, svc.client() as client:
            assert client.get("/healthz").json() == {"status": "alive"}
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.text
            checks = ready.json()["checks"]
            assert set(checks) == {"database", "migrations", "sandbox", "scheduler",
                                   "cycle_worker"}
            assert all(c["ok"] for c in checks.values())
            assert checks["sandbox"]["detail"].startswith("scripted")

    def test_not_ready_without_the_scheduler(self, fresh: Service) -> None:
        with fresh.client() as client:
            response = client.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "not ready"
        assert body["checks"]["scheduler"] == {"ok": False, "detail": "not running"}
        assert body["checks"]["database"]["ok"]

    def test_not_ready_when_the_schema_is_behind(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'old.db'}"
        with service(url, scheduler=True) as svc:
            with svc.database.session() as session:
                from sqlalchemy import text

                session.execute(text("UPDATE alembic_version SET version_num = '0001'"))
            with svc.client() as client:
                response = client.get("/readyz")
        assert response.status_code == 503
        assert "0001" in response.json()["checks"]["migrations"]["detail"]


class TestDocumentsAndErrors:
    """The OpenAPI document describes the ingest bodies; unknown routes are problem JSON."""

    def test_openapi_documents_ingest_bodies(self, fresh: Service) -> None:
        with fresh.client() as client:
            schema = client.get("/openapi.json").json()
        body = schema["paths"]["/v1/episodes"]["post"]["requestBody"]["content"][
            "application/json"]["schema"]
        assert body["oneOf"][0] == {"$ref": "#/components/schemas/EpisodeIn"}
        episode = schema["components"]["schemas"]["EpisodeIn"]
        assert set(episode["required"]) == {"agent", "task", "success"}
        assert "SegmentIn" in schema["components"]["schemas"]
        assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        for path in ("/v1/skill-executions", "/v1/candidates/{candidate_id}/approve",
                     "/v1/tools/{name}/rollback", "/healthz", "/readyz", "/metrics"):
            assert path in schema["paths"]

    def test_unknown_route_and_method(self, fresh: Service) -> None:
        with fresh.client("acme", Role.ADMIN) as client:
            missing = client.get("/v1/nothing-here")
            wrong = client.delete("/v1/episodes")
        assert missing.status_code == 404 and wrong.status_code == 405
        for response in (missing, wrong):
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["status"] == response.status_code


class TestMetrics:
    """Prometheus metrics: request counters from the routes, the rest from the database."""

    def test_counters_and_database_figures(self, fresh: Service) -> None:
        ids = seed_review_world(fresh.autodev, "acme")
        with fresh.database.session() as session:
            now = utcnow()
            session.add(EvolutionRun(tenant_id="acme", engine="alpha_evolver", target="inc",
                                     status="completed", budget=1,
                                     started_at=now - timedelta(seconds=12), finished_at=now))
            session.add(LLMCall(tenant_id="acme", model="openai/gpt-x", status="ok",
                                cost_usd=0.25, prompt_tokens=100, completion_tokens=20))
            session.add(LLMCall(tenant_id="acme", model="openai/gpt-x", status="error",
                                error="timeout"))
        with fresh.client("acme", Role.INGEST) as client:
            client.post("/v1/episodes", json=[{"agent": "a", "task": "t", "success": True}] * 3)
            client.post("/v1/episodes", json={"agent": "a", "task": "t", "success": "x"})
        with fresh.client("acme", Role.REVIEWER) as client:
            assert client.post(f"/v1/candidates/{ids['approved']}/promote").status_code == 200
            metrics = client.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        samples = _samples(metrics.text)
        assert samples[("autodev_ingested_total", (("kind", "episode"),))] == 3
        assert samples[("autodev_http_requests_total", (
            ("method", "POST"), ("route", "/v1/episodes"), ("status", "422")))] == 1
        assert samples[("autodev_http_requests_total", (
            ("method", "POST"), ("route", "/v1/episodes"), ("status", "201")))] == 1
        assert samples[("autodev_api_decisions_total", (("decision", "promoted"),))] == 1
        assert samples[("autodev_database_up", ())] == 1
        assert samples[("autodev_candidates", (("kind", "tool_mutation"),
                                               ("status", "promoted")))] == 1
        assert samples[("autodev_candidates", (("kind", "tool_mutation"),
                                               ("status", "failed")))] == 1
        assert samples[("autodev_review_decisions_total", (("decision", "promoted"),))] == 1
        assert samples[("autodev_cycle_jobs", (("status", "queued"),))] >= 0
        assert ("autodev_event_deliveries", (("status", "delivered"),)) in samples
        assert samples[("autodev_cycle_duration_seconds_count", (("engine", "alpha_evolver"),))
                       ] == 1
        assert samples[("autodev_cycle_duration_seconds_bucket", (
            ("engine", "alpha_evolver"), ("le", "5.0")))] == 0
        assert samples[("autodev_cycle_duration_seconds_bucket", (
            ("engine", "alpha_evolver"), ("le", "15.0")))] == 1
        assert 11.9 < samples[("autodev_cycle_duration_seconds_sum",
                               (("engine", "alpha_evolver"),))] < 12.1
        assert samples[("autodev_llm_calls_total", (("model", "openai/gpt-x"),
                                                    ("status", "error")))] == 1
        assert samples[("autodev_llm_cost_usd_total", (("model", "openai/gpt-x"),))] == 0.25
        assert samples[("autodev_llm_tokens_total", (("kind", "prompt"),
                                                     ("model", "openai/gpt-x")))] == 100
        # Route templates, never raw ids: one series for every candidate.
        assert "/v1/candidates/{candidate_id}/promote" in metrics.text
        assert ids["approved"] not in metrics.text

    def test_a_scrape_answers_when_the_database_does_not(self, fresh: Service) -> None:
        original = fresh.autodev.events.stats

        def broken(*_: object) -> dict[str, int]:
            from auto_dev._exceptions import StorageError

            raise StorageError("database down")

        fresh.autodev.events.stats = broken  # type: ignore[method-assign]
        try:
            with fresh.client() as client:
                response = client.get("/metrics")
        finally:
            fresh.autodev.events.stats = original  # type: ignore[method-assign]
        assert response.status_code == 200
        assert _samples(response.text)[("autodev_database_up", ())] == 0
