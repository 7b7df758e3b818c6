"""``AutoDevClient`` and ``AsyncAutoDevClient``: reporting to a real service, retries with one
idempotency key per call, errors as auto-dev's own."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from auto_dev._exceptions import NotFoundError, ValidationError
from auto_dev.client import AsyncAutoDevClient, AutoDevClient, RetryPolicy, ServiceError
from auto_dev.queries.tokens import Role
from tests.server._support import Service, seed_workflow, service

FAST = RetryPolicy(attempts=4, backoff_s=0.001, max_backoff_s=0.01)


@pytest.fixture
def running(database_url: str) -> Iterator[Service]:
    with service(database_url) as svc:
        yield svc


class _LoseFirstAnswers(httpx.BaseTransport):
    """Forwards to the real service, but drops the first ``n`` answers (the requests were
    handled; the client sees a read timeout), as a flaky network does."""

    def __init__(self, n: int) -> None:
        self.inner = httpx.HTTPTransport()
        self.n = n
        self.keys: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.keys.append(request.headers.get("idempotency-key"))
        response = self.inner.handle_request(request)
        if self.n > 0:
            self.n -= 1
            response.read()
            raise httpx.ReadTimeout("answer lost", request=request)
        return response


class TestAgainstTheService:
    """The three-line report, batches, review calls and errors."""

    def test_report_in_three_lines(self, running: Service) -> None:
        client = AutoDevClient(running.url, token=running.tokens[("acme", Role.INGEST)])
        episode = client.record_episode(agent="a1", task="slugify", success=False,
                                        tool_name="slugify", inputs={"args": ["A B"]},
                                        error_trace="ValueError")
        client.record_skill_execution(agent="a1", skill_name="slugify", success=True,
                                      execution_seconds=0.2)
        ids = client.record_episodes([{"agent": "a1", "task": "t", "success": True}] * 2)
        client.close()
        assert len(ids) == 2 and episode not in ids
        assert running.counts("acme")["episodes"] == 3

    def test_a_lost_answer_is_retried_and_recorded_once(self, running: Service) -> None:
        transport = _LoseFirstAnswers(2)
        with AutoDevClient(running.url, token=running.tokens[("acme", Role.INGEST)],
                           retry=FAST, transport=transport) as client:
            episode = client.record_episode(agent="a1", task="t", success=True)
        assert len(transport.keys) == 3 and len(set(transport.keys)) == 1
        assert transport.keys[0] is not None
        assert running.counts("acme")["episodes"] == 1
        with running.client("acme", Role.REVIEWER) as http:
            assert http.get(f"/v1/episodes/{episode}").status_code == 200

    def test_errors_are_auto_devs_own(self, running: Service) -> None:
        with AutoDevClient(running.url, token=running.tokens[("acme", Role.INGEST)]) as client:
            with pytest.raises(ValidationError) as bad:
                client.record_episode(agent="a1", task="t", success="maybe")
            assert bad.value.field == "success"
            with pytest.raises(ServiceError) as forbidden:
                client.candidates()
            assert forbidden.value.status == 403
            assert forbidden.value.problem["type"] == "/problems/forbidden"
        with AutoDevClient(running.url, token=running.tokens[("acme", Role.REVIEWER)]) as client:
            assert client.candidates()["total"] == 0
            with pytest.raises(NotFoundError):
                client.decide("ffffffff", "approve")
        with pytest.raises(ServiceError) as unauthorised, \
                AutoDevClient(running.url, token="adt_wrong") as client:
            client.record_episode(agent="a1", task="t", success=True)
        assert unauthorised.value.status == 401

    async def test_async_client(self, running: Service) -> None:
        async with AsyncAutoDevClient(running.url,
                                      token=running.tokens[("beta", Role.INGEST)]) as client:
            episode = await client.record_episode(agent="a1", task="t", success=True)
            await client.record_skill_execution(agent="a1", skill_name="s", success=False,
                                                execution_seconds=1.5)
            with pytest.raises(ValidationError):
                await client.record_episodes([])
        assert len(episode) == 32
        assert running.counts("beta")["episodes"] == 1


class TestSignalsAndWorkflows:
    """Signals on a workflow version, retried without being recorded twice; workflow reads."""

    def test_sync_signals_survive_lost_answers(self, running: Service) -> None:
        seed_workflow(running.autodev, "acme")
        transport = _LoseFirstAnswers(1)
        with AutoDevClient(running.url, token=running.tokens[("acme", Role.INGEST)],
                           retry=FAST, transport=transport) as client:
            first = client.record_signal(kind="feedback", value=1, workflow="triage",
                                         agent="a1", metadata={"user": "u1"})
            batch = client.record_signals([{"kind": "business_value", "value": 3.0,
                                            "workflow": "triage", "version": 1}] * 2)
            with pytest.raises(ValidationError) as bad:
                client.record_signal(kind="feedback", value="good", workflow="triage")
            with pytest.raises(NotFoundError):
                client.record_signal(kind="feedback", value=1.0, workflow="nope")
        assert bad.value.field == "value"
        assert len(transport.keys) >= 2 and transport.keys[0] == transport.keys[1]
        assert len({first, *batch}) == 3
        with AutoDevClient(running.url, token=running.tokens[("acme", Role.REVIEWER)]
                           ) as reader:
            active = reader.workflow_signals("triage")
            old = reader.workflow_signals("triage", version=1)
            listed = reader.workflows(limit=10)
            shown = reader.workflow("triage")
        assert active["kinds"]["feedback"]["count"] == 1  # once, although sent twice
        assert old["kinds"]["business_value"]["count"] == 2
        assert [w["name"] for w in listed["items"]] == ["triage"]
        assert shown["active_version"] == 2 and shown["definition"]["name"] == "triage"

    async def test_async_signals(self, running: Service) -> None:
        seed_workflow(running.autodev, "beta", "flow")
        async with AsyncAutoDevClient(running.url,
                                      token=running.tokens[("beta", Role.ADMIN)]) as client:
            one = await client.record_signal(kind="csat", value=4.5, workflow="flow")
            two = await client.record_signals([{"kind": "csat", "value": 3.5,
                                                "tool": "inc"}])
            summary = await client.workflow_signals("flow")
            listed = await client.workflows()
            shown = await client.workflow("flow")
            with pytest.raises(NotFoundError):
                await client.workflow("acme-only")
        assert one not in two and summary["kinds"]["csat"]["mean"] == 4.5
        assert listed["total"] == 1 and shown["versions"] == 2


class TestRetries:
    """What is retried, with which key, and when the client gives up."""

    def test_5xx_and_429_are_retried_with_the_same_key(self) -> None:
        seen: list[str | None] = []
        answers = iter([503, 429, 201])

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request.headers.get("idempotency-key"))
            status = next(answers)
            if status == 201:
                return httpx.Response(201, json={"episode_id": "e1"})
            return httpx.Response(status, headers={"Retry-After": "0"},
                                  json={"status": status, "detail": "busy"})

        with AutoDevClient("http://svc", token="adt_x", retry=FAST,
                           transport=httpx.MockTransport(handler)) as client:
            assert client.record_episode(agent="a", task="t", success=True) == "e1"
        assert len(seen) == 3 and len(set(seen)) == 1 and seen[0]

    def test_gives_up_after_the_last_attempt(self) -> None:
        calls = []

        def handler(request: httpx.Request) -> httpx.Response:
            calls.append(request)
            return httpx.Response(503, json={"status": 503, "detail": "down"})

        with AutoDevClient("http://svc", token="adt_x", retry=FAST,
                           transport=httpx.MockTransport(handler)) as client, \
                pytest.raises(ServiceError) as failed:
            client.record_episode(agent="a", task="t", success=True)
        assert failed.value.status == 503 and len(calls) == FAST.attempts

    def test_a_decision_is_not_repeated_after_it_may_have_happened(self) -> None:
        calls = []

        def handler(request: httpx.Request) -> httpx.Response:
            calls.append(request)
            raise httpx.ReadTimeout("slow", request=request)

        with AutoDevClient("http://svc", token="adt_x", retry=FAST,
                           transport=httpx.MockTransport(handler)) as client, \
                pytest.raises(ServiceError):
            client.decide("abcd1234", "approve")
        assert len(calls) == 1

    def test_connection_refused_is_retried_then_reported(self) -> None:
        with AutoDevClient("http://127.0.0.1:9", token="adt_x", retry=FAST,
                           timeout_s=1) as client, pytest.raises(ServiceError) as failed:
            client.decide("abcd1234", "approve")
        assert failed.value.status == 0

    def test_a_token_is_required(self) -> None:
        with pytest.raises(ValidationError) as missing:
            AutoDevClient("http://svc", token=" ")
        assert missing.value.field == "token"
