"""``POST /v1/episodes`` and ``POST /v1/skill-executions`` through real HTTP."""

from __future__ import annotations

import inspect
import json
import socket
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from auto_dev.models import Episode, EpisodeSegment, EventDelivery, EventRecord, TestCase
from auto_dev.queries.tokens import Role
from auto_dev.server.schemas import EpisodeIn, SkillExecutionIn
from auto_dev.service import AutoDev
from tests.server._support import Service, wait_until

EPISODE = {"agent": "agent-1", "task": "slugify a title", "success": False,
           "tool_name": "slugify", "inputs": {"args": ["A B"]}, "expected": "a-b",
           "error_trace": "Traceback ...\nValueError: bad"}


def _problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["type"] and body["title"] and body["detail"]
    if field is not None:
        assert body.get("field") == field, body
    return dict(body)


class TestBodiesMirrorTheFacade:
    """The ingest bodies have exactly the keyword arguments of the facade's methods."""

    def test_episode_fields_are_record_episode_arguments(self) -> None:
        params = set(inspect.signature(AutoDev.record_episode).parameters) - {"self",
                                                                              "tenant_id"}
        assert set(EpisodeIn.model_fields) == params

    def test_skill_execution_fields_are_record_skill_execution_arguments(self) -> None:
        params = set(inspect.signature(AutoDev.record_skill_execution).parameters) - {
            "self", "tenant_id"}
        assert set(SkillExecutionIn.model_fields) == params


class TestEpisodes:
    """An episode posted is stored in the token's tenant, with its events delivered."""

    def test_one_episode_is_recorded_and_its_event_delivered(self, svc: Service) -> None:
        body = {**EPISODE, "agent": "agent-one", "metadata": {"run": 7},
                "segments": [{"kind": "tool_call", "tool_name": "slugify",
                              "inputs": {"args": ["A B"]}, "output": None, "error": "bad",
                              "duration_s": 0.5}]}
        with svc.client("acme", Role.INGEST) as client:
            response = client.post("/v1/episodes", json=body)
        assert response.status_code == 201, response.text
        episode_id = response.json()["episode_id"]
        with svc.database.session(readonly=True) as session:
            episode = session.get(Episode, episode_id)
            assert episode is not None and episode.tenant_id == "acme"
            assert episode.success is False and episode.tool_name == "slugify"
            assert episode.details["metadata"] == {"run": 7}
            assert episode.details["expected"] == "a-b"
            segments = session.scalars(select(EpisodeSegment).where(
                EpisodeSegment.episode_id == episode_id)).all()
            assert [(s.kind, s.error, s.duration_s) for s in segments] == [
                ("tool_call", "bad", 0.5)]
            event = session.scalars(select(EventRecord).where(
                EventRecord.tenant_id == "acme",
                EventRecord.type == "TaskFailed")).all()
            assert any(e.payload.get("episode_id") == episode_id for e in event)

        def delivered() -> bool:
            with svc.database.session(readonly=True) as session:
                rows = session.scalars(select(EventDelivery.status).join(
                    EventRecord, EventRecord.id == EventDelivery.event_id).where(
                    EventRecord.payload["episode_id"].as_string() == episode_id)).all()
                return bool(rows) and all(s == "delivered" for s in rows)

        wait_until(delivered)

    def test_expected_makes_a_regression_test_of_an_existing_tool(self, fresh: Service
                                                                    ) -> None:
        fresh.autodev.register_tool("inc", "def inc(x):\n    return x + 2\n", "inc",
                                    tenant_id="acme")
        body = {"agent": "a", "task": "t", "success": False, "tool_name": "inc",
                "inputs": {"args": [1]}, "expected": 2}
        with fresh.client("acme", Role.INGEST) as client:
            assert client.post("/v1/episodes", json=body).status_code == 201
        with fresh.database.session(readonly=True) as session:
            tests = session.scalars(select(TestCase).where(TestCase.tenant_id == "acme",
                                                           TestCase.source == "episode")).all()
            assert [(t.args, t.expected) for t in tests] == [([1], 2)]

    def test_a_run_of_a_registered_workflow(self, fresh: Service) -> None:
        """A workflow run is linked to the tenant's workflow; an unknown one is 422 naming
        ``workflow`` and writes nothing."""
        fresh.autodev.register_workflow(
            {"name": "greet", "steps": [{"id": "s", "set": {"x": 1}}]}, actor="alice",
            tenant_id="acme")
        run = {"agent": "a", "task": "t", "success": False, "workflow": "greet",
               "inputs": {"who": "bob"}, "expected": "hi bob"}
        with fresh.client("acme", Role.INGEST) as client:
            assert client.post("/v1/episodes", json=run).status_code == 201
            _problem(client.post("/v1/episodes", json={**run, "workflow": "nope"}), 422,
                     "workflow")
        assert fresh.counts("acme")["episodes"] == 1
        assert [t.expected for t in fresh.autodev.workflows.tasks("greet",
                                                                  tenant_id="acme")] == ["hi bob"]

    def test_a_batch_is_recorded_whole(self, fresh: Service) -> None:
        batch = [{**EPISODE, "task": f"task {i}"} for i in range(5)]
        with fresh.client("acme", Role.INGEST) as client:
            response = client.post("/v1/episodes", json=batch)
        assert response.status_code == 201
        ids = response.json()["episode_ids"]
        assert len(ids) == 5 and len(set(ids)) == 5
        assert fresh.counts("acme")["episodes"] == 5

    def test_a_bad_item_rejects_the_whole_batch_naming_it(self, fresh: Service) -> None:
        batch = [EPISODE, EPISODE, {**EPISODE, "success": "yes"}]
        with fresh.client("acme", Role.INGEST) as client:
            _problem(client.post("/v1/episodes", json=batch), 422, "[2].success")
        assert fresh.counts("acme")["episodes"] == 0

    def test_a_facade_validation_error_rolls_back_the_batch(self, fresh: Service) -> None:
        # Shape-valid, but the facade refuses the inputs of the second item: the first,
        # already written in the same transaction, must go too.
        batch = [EPISODE, {**EPISODE, "inputs": {"args": "not a list"}}]
        with fresh.client("acme", Role.INGEST) as client:
            body = _problem(client.post("/v1/episodes", json=batch), 422)
        assert body["field"].startswith("[1].inputs")
        assert fresh.counts("acme") == {"episodes": 0, "tests": 0, "deliveries": 0,
                                        "idempotent": 0}

    def test_the_tenant_comes_from_the_token_never_the_body(self, fresh: Service) -> None:
        with fresh.client("acme", Role.INGEST) as client:
            _problem(client.post("/v1/episodes", json={**EPISODE, "tenant_id": "beta"}), 422,
                     "tenant_id")
            _problem(client.post("/v1/episodes", json=[{**EPISODE, "tenant_id": "beta"}]),
                     422, "[0].tenant_id")
            # A tenant in the query string or a header is ignored: the episode is acme's.
            assert client.post("/v1/episodes?tenant_id=beta", json=EPISODE,
                               headers={"X-Tenant": "beta"}).status_code == 201
        assert fresh.counts("beta")["episodes"] == 0
        assert fresh.counts("acme")["episodes"] == 1


class TestSkillExecutions:
    """Skill executions are recorded as events of the token's tenant."""

    def test_one_and_a_batch(self, fresh: Service) -> None:
        item = {"agent": "a", "skill_name": "slugify", "success": True,
                "execution_seconds": 0.25}
        with fresh.client("acme", Role.INGEST) as client:
            assert client.post("/v1/skill-executions", json=item).json() == {"recorded": 1}
            assert client.post("/v1/skill-executions", json=[item, item]).json() == {
                "recorded": 2}
            _problem(client.post("/v1/skill-executions",
                                 json=[item, {**item, "execution_seconds": -1}]),
                     422, "[1].execution_seconds")
        with fresh.database.session(readonly=True) as session:
            events = session.scalars(select(EventRecord).where(
                EventRecord.type == "SkillExecuted")).all()
            assert len(events) == 3 and {e.tenant_id for e in events} == {"acme"}


class TestHostileBodies:
    """Malformed, oversized and hostile bodies get 4xx and write nothing."""

    @pytest.mark.parametrize(("content", "headers", "status", "field"), [
        (b"{not json", {}, 400, None),
        (b"", {}, 400, None),
        (b"[]", {}, 422, None),
        (b"42", {}, 422, None),
        (b'"episode"', {}, 422, None),
        (b"[1, 2]", {}, 422, "[0]"),
        (b'{"agent": "a", "task": "t", "success": NaN}', {}, 400, None),
        (b'{"agent": "a", "task": "t", "success": Infinity}', {}, 400, None),
        (json.dumps(EPISODE).encode(), {"content-type": "text/plain"}, 415, "Content-Type"),
        (json.dumps(EPISODE).encode(), {"content-type": "application/x-www-form-urlencoded"},
         415, "Content-Type"),
        (b'{"agent": "a", "task": "t"}', {}, 422, "success"),
        (b'{"agent": "", "task": "t", "success": true}', {}, 422, "agent"),
        (b'{"agent": "a", "task": 5, "success": true}', {}, 422, "task"),
        (b'{"agent": "a", "task": "t", "success": 1}', {}, 422, "success"),
        (b'{"agent": "a", "task": "t", "success": true, "surprise": 1}', {}, 422, "surprise"),
        (b'{"agent": "a", "task": "t", "success": true, "segments": [{"kind": 3}]}', {}, 422,
         "segments[0].kind"),
        (b'{"agent": "a", "task": "t", "success": true, "segments": {"a": 1}}', {}, 422,
         "segments"),
        (b'{"agent": "a", "task": "t", "success": true, "inputs": {"args": 3}}', {}, 422,
         None),
        (b'{"agent": "a", "task": "t", "success": true, "metadata": []}', {}, 422,
         "metadata"),
        ('{"agent": "' + "a" * 201 + '", "task": "t", "success": true}', {}, 422, "agent"),
        (b"\xff\xfe{}", {}, 400, None),
    ])
    def test_refused_and_nothing_written(self, fresh: Service, content: bytes | str,
                                         headers: dict[str, str], status: int,
                                         field: str | None) -> None:
        sent = {"content-type": "application/json", **headers}
        with fresh.client("acme", Role.INGEST) as client:
            _problem(client.post("/v1/episodes", content=content, headers=sent), status, field)
        assert fresh.counts("acme") == {"episodes": 0, "tests": 0, "deliveries": 0,
                                        "idempotent": 0}

    def test_deep_json_is_refused(self, fresh: Service) -> None:
        limit = fresh.autodev.settings.server_max_json_depth
        with fresh.client("acme", Role.INGEST) as client:
            deep = {**EPISODE, "metadata": {"x": _nested(limit)}}
            _problem(client.post("/v1/episodes", json=deep), 400)
            # So deep that the JSON parser itself gives up.
            hostile = b'{"metadata": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
            _problem(client.post("/v1/episodes", content=hostile,
                                 headers={"content-type": "application/json"}), 400)
            # Just within the limit is fine.
            ok = {**EPISODE, "metadata": {"x": _nested(limit - 2)}}
            assert client.post("/v1/episodes", json=ok).status_code == 201
        assert fresh.counts("acme")["episodes"] == 1

    def test_oversized_bodies_are_refused_before_being_read(self, fresh: Service) -> None:
        limit = fresh.autodev.settings.server_max_body_bytes
        big = {**EPISODE, "task": "x" * limit}
        with fresh.client("acme", Role.INGEST) as client:
            _problem(client.post("/v1/episodes", json=big), 413)

            def chunks() -> Any:  # no Content-Length: the stream is counted
                payload = json.dumps(big).encode()
                for start in range(0, len(payload), 65536):
                    yield payload[start:start + 65536]

            _problem(client.post("/v1/episodes", content=chunks(),
                                 headers={"content-type": "application/json"}), 413)
        # Only the headers are sent: the answer comes without waiting for the 100 GB.
        token = fresh.tokens[("acme", Role.INGEST)]
        host, port = fresh.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"POST /v1/episodes HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 99999999999\r\n"
                         b"Authorization: Bearer " + token.encode() + b"\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 413")
        assert fresh.counts("acme")["episodes"] == 0

    def test_too_many_items_in_a_batch(self, database_url: str) -> None:
        from tests.server._support import service

        with service(database_url, server_max_batch=3) as small:
            with small.client("acme", Role.INGEST) as client:
                _problem(client.post("/v1/episodes", json=[EPISODE] * 4), 413)
                assert client.post("/v1/episodes", json=[EPISODE] * 3).status_code == 201
            assert small.counts("acme")["episodes"] == 3

    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(body=st.dictionaries(
        st.sampled_from(["agent", "task", "success", "tool_name", "inputs", "expected",
                         "output", "error_trace", "segments", "metadata", "other"]),
        st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False,
                                                                           allow_infinity=False)
                     | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                     max_leaves=8)))
    def test_any_json_object_gets_201_or_a_4xx_that_wrote_nothing(self, svc: Service,
                                                                  body: dict[str, Any]) -> None:
        before = svc.counts("beta")
        with svc.client("beta", Role.INGEST) as client:
            response = client.post("/v1/episodes", json=body)
        assert response.status_code in (201, 400, 413, 422), response.text
        after = svc.counts("beta")
        if response.status_code == 201:
            assert after["episodes"] == before["episodes"] + 1
        else:
            assert response.json()["status"] == response.status_code
            assert after == before


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value
