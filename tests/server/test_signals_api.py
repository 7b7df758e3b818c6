"""Feedback signals through real HTTP: ``POST /v1/signals`` (one, a batch, idempotent
retries, bad input naming the field with nothing written) and the per-version summaries of
workflows and tools."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from auto_dev.models import EventRecord, VersionSignal
from auto_dev.queries.tokens import Role
from auto_dev.server.schemas import SignalIn
from auto_dev.service import AutoDev
from tests.server._support import Service, seed_workflow, service, snapshot


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, _sqlite_template: Any
          ) -> Iterator[Service]:
    """One service: acme has tool inc and workflow triage (v1, v2 active); beta has
    workflow hidden. Tests use distinct kinds so that they do not see each other's signals."""
    import shutil

    path = tmp_path_factory.mktemp("signals") / "auto_dev.db"
    shutil.copyfile(_sqlite_template, path)
    with service(f"sqlite:///{path}") as running:
        seed_workflow(running.autodev, "acme")
        seed_workflow(running.autodev, "beta", "hidden")
        yield running


def _signals(svc: Service, tenant: str = "acme") -> int:
    with svc.database.session(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(VersionSignal).where(
            VersionSignal.tenant_id == tenant)) or 0)


def _summary(svc: Service, path: str, **params: Any) -> dict[str, Any]:
    with svc.client("acme", Role.REVIEWER) as client:
        answer = client.get(path, params=params)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


class TestRecord:
    """One signal, a batch, a named version, a tool's signal; each announced to the watch."""

    def test_one_and_a_batch_on_the_active_version(self, world: Service) -> None:
        with world.client("acme", Role.INGEST) as client:
            one = client.post("/v1/signals", json={"kind": "feedback", "value": 1,
                                                   "workflow": "triage", "agent": "a1",
                                                   "metadata": {"user": "u7"}})
            batch = client.post("/v1/signals", json=[
                {"kind": "feedback", "value": -1.0, "workflow": "triage"},
                {"kind": "business_value", "value": 12.5, "workflow": "triage"}])
        assert one.status_code == 201 and set(one.json()) == {"signal_id"}
        assert batch.status_code == 201 and len(batch.json()["signal_ids"]) == 2
        summary = _summary(world, "/v1/workflows/triage/signals")
        assert (summary["target_kind"], summary["target"], summary["version"]) == (
            "workflow", "triage", 2)
        assert summary["kinds"]["feedback"]["count"] == 2
        assert summary["kinds"]["feedback"]["mean"] == 0.0
        assert (summary["kinds"]["feedback"]["min"], summary["kinds"]["feedback"]["max"]) == (
            -1.0, 1.0)
        assert summary["kinds"]["business_value"]["mean"] == 12.5
        with world.database.session(readonly=True) as session:
            events = session.scalar(select(func.count()).select_from(EventRecord).where(
                EventRecord.tenant_id == "acme", EventRecord.type == "SignalRecorded"))
        assert events == 3

    def test_a_named_version_and_a_tool(self, world: Service) -> None:
        with world.client("acme", Role.INGEST) as client:
            old = client.post("/v1/signals", json={"kind": "csat", "value": 4,
                                                   "workflow": "triage", "version": 1})
            tool = client.post("/v1/signals", json={"kind": "csat", "value": 3.5,
                                                    "tool": "inc"})
        assert old.status_code == 201 and tool.status_code == 201
        v1 = _summary(world, "/v1/workflows/triage/signals", version=1)
        assert v1["version"] == 1 and list(v1["kinds"]) == ["csat"]
        assert (v1["kinds"]["csat"]["count"], v1["kinds"]["csat"]["mean"]) == (1, 4.0)
        assert "csat" not in _summary(world, "/v1/workflows/triage/signals")["kinds"]
        tools = _summary(world, "/v1/tools/inc/signals")
        assert (tools["target_kind"], tools["version"]) == ("tool", 1)
        assert tools["kinds"]["csat"]["count"] == 1 and tools["kinds"]["csat"]["mean"] == 3.5

    def test_summaries_of_what_is_not_there(self, world: Service) -> None:
        with world.client("acme", Role.REVIEWER) as client:
            assert client.get("/v1/workflows/nope/signals").status_code == 404
            assert client.get("/v1/workflows/triage/signals",
                              params={"version": 9}).status_code == 404
            assert client.get("/v1/tools/nope/signals").status_code == 404
            assert client.get("/v1/workflows/hidden/signals").status_code == 404  # beta's


class TestIdempotency:
    """An ``Idempotency-Key`` makes a retried POST record nothing twice."""

    def test_retry_records_once_and_another_body_is_409(self, world: Service) -> None:
        body = [{"kind": "retry_probe", "value": 1.0, "workflow": "triage"}] * 2
        headers = {"Idempotency-Key": "signals-retry-1"}
        before = _signals(world)
        with world.client("acme", Role.INGEST) as client:
            first = client.post("/v1/signals", json=body, headers=headers)
            again = client.post("/v1/signals", json=body, headers=headers)
            other = client.post("/v1/signals", json=body[:1], headers=headers)
        assert first.status_code == again.status_code == 201
        assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
        assert other.status_code == 409 and other.json()["field"] == "Idempotency-Key"
        assert _signals(world) == before + 2


class TestBadInput:
    """A bad signal is 422 (404 for a target the tenant lacks) naming the field; nothing is
    written, not even the good items of its batch."""

    @pytest.mark.parametrize(("body", "status", "field"), [
        ({"value": 1.0, "workflow": "triage"}, 422, "kind"),
        ({"kind": "", "value": 1.0, "workflow": "triage"}, 422, "kind"),
        ({"kind": "feedback", "value": "high", "workflow": "triage"}, 422, "value"),
        ({"kind": "feedback", "value": True, "workflow": "triage"}, 422, "value"),
        ('{"kind": "feedback", "value": 1e400, "workflow": "triage"}', 422, "value"),
        ({"kind": "feedback", "value": 1.0}, 422, "tool"),
        ({"kind": "feedback", "value": 1.0, "workflow": "triage", "tool": "inc"}, 422,
         "workflow"),
        ({"kind": "feedback", "value": 1.0, "workflow": "triage", "version": 0}, 422,
         "version"),
        ({"kind": "feedback", "value": 1.0, "workflow": "triage", "metadata": []}, 422,
         "metadata"),
        ({"kind": "feedback", "value": 1.0, "workflow": "triage", "tenant_id": "beta"}, 422,
         "tenant_id"),
        ({"kind": "feedback", "value": 1.0, "workflow": "triage", "colour": "red"}, 422,
         "colour"),
        ({"kind": "feedback", "value": 1.0, "workflow": "nope"}, 404, "workflow"),
        ({"kind": "feedback", "value": 1.0, "workflow": "hidden"}, 404, "workflow"),
        ({"kind": "feedback", "value": 1.0, "tool": "nope"}, 404, "tool"),
        ({"kind": "feedback", "value": 1.0, "workflow": "triage", "version": 9}, 404,
         "version"),
        ([{"kind": "feedback", "value": 1.0, "workflow": "triage"},
          {"kind": "feedback", "value": None, "workflow": "triage"}], 422, "[1].value"),
        ([{"kind": "feedback", "value": 1.0, "workflow": "triage"},
          {"kind": "feedback", "value": 1.0, "workflow": "hidden"}], 404, "[1].workflow"),
    ])
    def test_field_named_and_nothing_written(self, world: Service, body: Any, status: int,
                                             field: str) -> None:
        before, beta = snapshot(world.autodev, "acme"), snapshot(world.autodev, "beta")
        with world.client("acme", Role.INGEST) as client:
            if isinstance(body, str):  # JSON that Python's encoder would not write
                answer = client.post("/v1/signals", content=body,
                                     headers={"Content-Type": "application/json"})
            else:
                answer = client.post("/v1/signals", json=body)
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["field"] == field
        assert snapshot(world.autodev, "acme") == before
        assert snapshot(world.autodev, "beta") == beta

    @settings(max_examples=25, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(value=st.one_of(st.none(), st.booleans(), st.text(max_size=5),
                           st.integers(min_value=-10**300, max_value=10**300),
                           st.floats(allow_nan=False, allow_infinity=False),
                           st.lists(st.integers(), max_size=2)))
    def test_any_value_is_recorded_or_refused_by_name(self, world: Service, value: Any
                                                      ) -> None:
        """A finite number (not a boolean) is recorded as a float; anything else is 422 on
        ``value`` and writes nothing."""
        before = _signals(world)
        with world.client("acme", Role.INGEST) as client:
            answer = client.post("/v1/signals", json={"kind": "prop", "value": value,
                                                      "workflow": "triage"})
        if isinstance(value, int | float) and not isinstance(value, bool):  # finite, as drawn
            assert answer.status_code == 201, answer.text
            assert _signals(world) == before + 1
        else:
            assert answer.status_code == 422, answer.text
            assert answer.json()["field"] == "value"
            assert _signals(world) == before


class TestContract:
    """The body mirrors ``AutoDev.record_signal`` and is documented in the OpenAPI schema."""

    def test_body_mirrors_the_facade_and_is_documented(self, world: Service) -> None:
        params = set(inspect.signature(AutoDev.record_signal).parameters) - {"self",
                                                                             "tenant_id"}
        assert set(SignalIn.model_fields) == params
        with world.client() as client:
            schema = client.get("/openapi.json").json()
        body = schema["paths"]["/v1/signals"]["post"]["requestBody"]["content"][
            "application/json"]["schema"]
        assert body["oneOf"][0] == {"$ref": "#/components/schemas/SignalIn"}
        assert set(schema["components"]["schemas"]["SignalIn"]["required"]) == {"kind",
                                                                                 "value"}
        for path in ("/v1/workflows", "/v1/workflows/{name}/rollback",
                     "/v1/workflows/{name}/versions/{version}", "/v1/tools/{name}/signals"):
            assert path in schema["paths"]
