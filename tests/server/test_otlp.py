"""``POST /v1/traces``: real spans from the OpenTelemetry SDK, sent by its OTLP HTTP exporter to
the running service, become episodes, segments and skill executions; OTLP/JSON with hex ids,
OpenInference spans, retries, hostile bodies and tokens."""

from __future__ import annotations

import concurrent.futures
import gzip
import json
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode
from sqlalchemy import select

from auto_dev.models import EventRecord
from auto_dev.queries.tokens import Role
from tests.server._support import Service, service

TRACE = "5b8efff798038103d269b633813fc60c"
ROOT = "eee19b7ec3c1b174"
TOOL = "aaa19b7ec3c1b175"


def _lookup(city: str) -> str:
    raise KeyError(f"no weather for {city}")


def run_agent(provider: TracerProvider, agent: str, *, fail: bool) -> None:
    """A gen_ai agent invocation with two tool calls; with ``fail`` the second tool raises and
    the agent span records the exception."""
    tracer = provider.get_tracer("test.agent")
    with tracer.start_as_current_span(f"invoke_agent {agent}", attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent,
            "gen_ai.agent.description": "answers weather questions"}) as root:
        with tracer.start_as_current_span("chat gpt-x", attributes={
                "gen_ai.operation.name": "chat"}):
            pass
        with tracer.start_as_current_span("execute_tool geocode", attributes={
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "geocode",
                "gen_ai.tool.call.arguments": json.dumps({"city": "Oslo"}),
                "gen_ai.tool.call.result": json.dumps({"lat": 59.9, "lon": 10.7})}):
            pass
        try:
            with tracer.start_as_current_span("execute_tool weather", attributes={
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": "weather"}) as tool:
                if fail:
                    _lookup("Oslo")
                tool.set_attribute("gen_ai.tool.call.result", "sunny")
        except KeyError as exc:
            root.record_exception(exc)
            root.set_status(Status(StatusCode.ERROR, str(exc)))


def recorded_spans(agent: str, *, fail: bool, service_name: str = "weather-service"
                   ) -> Sequence[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    run_agent(provider, agent, fail=fail)
    provider.shutdown()
    return memory.get_finished_spans()


def exporter(svc: Service, tenant: str = "acme", role: Role = Role.INGEST) -> OTLPSpanExporter:
    return OTLPSpanExporter(endpoint=f"{svc.url}/v1/traces",
                            headers={"Authorization": f"Bearer {svc.tokens[(tenant, role)]}"},
                            timeout=30)


def episodes_of(svc: Service, agent: str, tenant: str = "acme") -> list[dict[str, Any]]:
    """The agent's episodes in full, as the review API shows them."""
    with svc.client(tenant, Role.REVIEWER) as client:
        page = client.get("/v1/episodes", params={"agent": agent}).json()
        return [client.get(f"/v1/episodes/{item['id']}").json() for item in page["items"]]


def skill_events(svc: Service, agent: str, tenant: str = "acme") -> list[dict[str, Any]]:
    with svc.database.session(readonly=True) as session:
        payloads = session.scalars(select(EventRecord.payload).where(
            EventRecord.tenant_id == tenant, EventRecord.type == "SkillExecuted")).all()
    return [p for p in payloads if p.get("agent_id") == agent]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def post(svc: Service, body: bytes, content_type: str, *, tenant: str = "acme",
         role: Role = Role.INGEST, **headers: str) -> httpx.Response:
    with svc.client(tenant, role) as client:
        return client.post("/v1/traces", content=body,
                           headers={"Content-Type": content_type, **headers})


def otlp_json(spans: list[dict[str, Any]], service_name: str = "json-service") -> dict[str, Any]:
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name",
                                     "value": {"stringValue": service_name}}]},
        "scopeSpans": [{"scope": {"name": "hand.written"}, "spans": spans}]}]}


def json_agent(agent: str, trace: str = TRACE) -> list[dict[str, Any]]:
    """A hand-written OTLP/JSON agent span with one failing tool span, per the OTLP spec: hex
    ids, 64-bit integers as strings, enums as numbers."""
    return [
        {"traceId": trace, "spanId": ROOT, "parentSpanId": "", "name": "invoke_agent",
         "kind": 1, "startTimeUnixNano": "1700000000000000000",
         "endTimeUnixNano": "1700000002000000000",
         "attributes": [
             {"key": "gen_ai.operation.name", "value": {"stringValue": "invoke_agent"}},
             {"key": "gen_ai.agent.name", "value": {"stringValue": agent}},
             {"key": "error.type", "value": {"stringValue": "TimeoutError"}}],
         "status": {"code": 2, "message": "the tool timed out"}},
        {"traceId": trace, "spanId": TOOL, "parentSpanId": ROOT, "name": "execute_tool fetch",
         "kind": "SPAN_KIND_INTERNAL", "startTimeUnixNano": "1700000000500000000",
         "endTimeUnixNano": "1700000001750000000",
         "attributes": [
             {"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}},
             {"key": "gen_ai.tool.name", "value": {"stringValue": "fetch"}},
             {"key": "gen_ai.tool.call.arguments",
              "value": {"stringValue": "{\"url\": \"https://example.org\"}"}},
             {"key": "retries", "value": {"intValue": "3"}}],
         "events": [{"timeUnixNano": "1700000001700000000", "name": "exception",
                     "attributes": [
                         {"key": "exception.type", "value": {"stringValue": "TimeoutError"}},
                         {"key": "exception.message", "value": {"stringValue": "10 s"}}]}],
         "status": {"code": "STATUS_CODE_ERROR"}},
    ]


@pytest.fixture(scope="module")
def failing_and_passing(svc: Service) -> Iterator[tuple[str, str]]:
    """Two agents traced through the SDK's batch processor and exporter: one whose second tool
    raises, one that succeeds."""
    failing, passing = unique("failing"), unique("passing")
    provider = TracerProvider(resource=Resource.create({"service.name": "weather-service"}))
    provider.add_span_processor(BatchSpanProcessor(exporter(svc)))
    run_agent(provider, failing, fail=True)
    run_agent(provider, passing, fail=False)
    assert provider.force_flush(30_000)
    provider.shutdown()
    yield failing, passing


class TestSdkExport:
    """Spans emitted by the SDK and exported over OTLP/HTTP protobuf become episodes."""

    def test_a_failing_agent_is_a_failed_episode_with_its_stack(
            self, svc: Service, failing_and_passing: tuple[str, str]) -> None:
        failing, _ = failing_and_passing
        [episode] = episodes_of(svc, failing)
        assert episode["success"] is False
        assert episode["task"] == "answers weather questions"
        trace = episode["error_trace"]
        assert "Traceback (most recent call last)" in trace
        assert "KeyError" in trace and "no weather for Oslo" in trace and "_lookup" in trace
        assert episode["tool_name"] == "weather"
        segments = episode["segments"]
        assert [s["tool_name"] for s in segments] == ["geocode", "weather"]
        assert segments[0]["inputs"] == {"city": "Oslo"}
        assert segments[0]["output"] == {"lat": 59.9, "lon": 10.7}
        assert segments[0]["error"] is None
        assert "no weather for Oslo" in segments[1]["error"]
        assert all(s["duration_s"] is not None and s["duration_s"] >= 0 for s in segments)
        otlp = episode["details"]["metadata"]["otlp"]
        assert len(otlp["trace_id"]) == 32 and len(otlp["span_id"]) == 16
        assert otlp["service"] == "weather-service"

    def test_a_passing_agent_is_a_successful_episode(
            self, svc: Service, failing_and_passing: tuple[str, str]) -> None:
        _, passing = failing_and_passing
        [episode] = episodes_of(svc, passing)
        assert episode["success"] is True and episode["error_trace"] is None
        assert [s["output"] for s in episode["segments"]] == [{"lat": 59.9, "lon": 10.7},
                                                              "sunny"]

    def test_each_tool_span_is_a_skill_execution(
            self, svc: Service, failing_and_passing: tuple[str, str]) -> None:
        failing, passing = failing_and_passing
        failed = sorted((e["skill_name"], e["success"]) for e in skill_events(svc, failing))
        assert failed == [("geocode", True), ("weather", False)]
        passed = sorted((e["skill_name"], e["success"]) for e in skill_events(svc, passing))
        assert passed == [("geocode", True), ("weather", True)]
        assert all(e["execution_seconds"] >= 0 for e in skill_events(svc, failing))

    def test_the_other_tenant_sees_none_of_it(
            self, svc: Service, failing_and_passing: tuple[str, str]) -> None:
        failing, passing = failing_and_passing
        for agent in (failing, passing):
            assert episodes_of(svc, agent, tenant="beta") == []
            assert skill_events(svc, agent, tenant="beta") == []

    def test_a_retried_export_is_stored_once(self, svc: Service) -> None:
        agent = unique("retried")
        spans = recorded_spans(agent, fail=True)
        sender = exporter(svc)
        for _ in range(3):
            assert sender.export(spans) == SpanExportResult.SUCCESS
        assert len(episodes_of(svc, agent)) == 1
        assert len(skill_events(svc, agent)) == 2

    def test_the_same_trace_in_another_tenant_is_its_own(self, svc: Service) -> None:
        agent = unique("shared")
        spans = recorded_spans(agent, fail=False)
        assert exporter(svc, "acme").export(spans) == SpanExportResult.SUCCESS
        assert exporter(svc, "beta").export(spans) == SpanExportResult.SUCCESS
        assert len(episodes_of(svc, agent, "acme")) == 1
        assert len(episodes_of(svc, agent, "beta")) == 1

    def test_the_answer_is_an_export_response_counting_ignored_spans(
            self, svc: Service) -> None:
        agent = unique("partial")
        memory = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        with provider.get_tracer("t").start_as_current_span("GET /health"):
            pass
        run_agent(provider, agent, fail=False)
        provider.shutdown()
        body = encode_spans(memory.get_finished_spans()).SerializeToString()
        response = post(svc, body, "application/x-protobuf")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-protobuf"
        answer = ExportTraceServiceResponse.FromString(response.content)
        assert answer.partial_success.rejected_spans == 1
        assert "no agent span" in answer.partial_success.error_message
        assert len(episodes_of(svc, agent)) == 1

    def test_the_readme_environment_configures_the_exporter(
            self, svc: Service, monkeypatch: pytest.MonkeyPatch) -> None:
        agent = unique("env")
        token = svc.tokens[("acme", Role.INGEST)]
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{svc.url}/v1/traces")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", f"Authorization=Bearer%20{token}")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip")
        sender = OTLPSpanExporter()
        assert sender.export(recorded_spans(agent, fail=False)) == SpanExportResult.SUCCESS
        assert len(episodes_of(svc, agent)) == 1

    def test_the_route_is_documented(self, svc: Service) -> None:
        with svc.client() as client:
            operation = client.get("/openapi.json").json()["paths"]["/v1/traces"]["post"]
        assert set(operation["requestBody"]["content"]) == {"application/x-protobuf",
                                                            "application/json"}
        assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" in operation["description"]

    def test_gzip_bodies_are_read(self, svc: Service) -> None:
        agent = unique("gzip")
        body = encode_spans(recorded_spans(agent, fail=False)).SerializeToString()
        response = post(svc, gzip.compress(body), "application/x-protobuf",
                        **{"Content-Encoding": "gzip"})
        assert response.status_code == 200, response.text
        assert len(episodes_of(svc, agent)) == 1


class TestOtlpJson:
    """OTLP/JSON as the spec writes it: hex ids, string integers, enums by number or name."""

    def test_a_hand_written_export_is_recorded(self, svc: Service) -> None:
        agent = unique("json")
        trace = uuid.uuid4().hex
        response = post(svc, json.dumps(otlp_json(json_agent(agent, trace))).encode(),
                        "application/json")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        assert response.json() == {}
        [episode] = episodes_of(svc, agent)
        assert episode["success"] is False
        assert episode["error_trace"] == "the tool timed out"
        assert episode["details"]["metadata"]["otlp"]["trace_id"] == trace
        assert episode["details"]["metadata"]["otlp"]["span_id"] == ROOT
        [segment] = episode["segments"]
        assert segment["tool_name"] == "fetch"
        assert segment["inputs"] == {"url": "https://example.org"}
        assert segment["error"] == "TimeoutError: 10 s"
        assert segment["duration_s"] == pytest.approx(1.25)

    def test_snake_case_names_and_retries(self, svc: Service) -> None:
        agent = unique("snake")
        spans = json_agent(agent, uuid.uuid4().hex)
        for span in spans:
            span["trace_id"] = span.pop("traceId")
            span["span_id"] = span.pop("spanId")
        body = json.dumps(otlp_json(spans)).encode()
        for _ in range(2):
            assert post(svc, body, "application/json").status_code == 200
        assert len(episodes_of(svc, agent)) == 1

    def test_partial_success_in_json(self, svc: Service) -> None:
        orphan = {"traceId": uuid.uuid4().hex, "spanId": TOOL, "name": "execute_tool x",
                  "attributes": [{"key": "gen_ai.operation.name",
                                  "value": {"stringValue": "execute_tool"}}]}
        response = post(svc, json.dumps(otlp_json([orphan])).encode(), "application/json")
        assert response.status_code == 200
        partial = response.json()["partialSuccess"]
        assert partial["rejectedSpans"] == "1"
        assert "ignored" in partial["errorMessage"]


@pytest.mark.postgres
class TestRetriesRacing:
    """On PostgreSQL, concurrent copies of one export race; the unique key keeps one."""

    def test_concurrent_copies_record_one_episode(self, postgres_url: str) -> None:
        with service(postgres_url, tenants=("acme",)) as pg:
            agent = unique("race")
            body = encode_spans(recorded_spans(agent, fail=True)).SerializeToString()

            def send(_: int) -> int:
                return post(pg, body, "application/x-protobuf").status_code

            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(send, range(16)))
            assert statuses == [200] * 16
            assert len(episodes_of(pg, agent)) == 1
            assert len(skill_events(pg, agent)) == 2


class TestOpenInference:
    """OpenInference AGENT/CHAIN and TOOL spans map like their gen_ai counterparts."""

    def test_agent_and_tool_spans(self, svc: Service) -> None:
        agent = unique("oi")
        memory = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({"service.name": agent}))
        provider.add_span_processor(SimpleSpanProcessor(memory))
        tracer = provider.get_tracer("openinference.instrumentation.test")
        with tracer.start_as_current_span("AgentExecutor", attributes={
                "openinference.span.kind": "AGENT", "input.value": "book a table for two"}), \
            tracer.start_as_current_span("RunnableSequence", attributes={
                "openinference.span.kind": "CHAIN"}), \
            tracer.start_as_current_span("search", attributes={
                "openinference.span.kind": "TOOL", "tool.name": "search",
                "input.value": "{\"q\": \"restaurants\"}", "output.value": "three found"}):
            pass
        provider.shutdown()
        assert exporter(svc).export(memory.get_finished_spans()) == SpanExportResult.SUCCESS
        [episode] = episodes_of(svc, agent)
        assert episode["success"] is True
        assert "book a table for two" in json.dumps(episode)
        [segment] = episode["segments"]
        assert (segment["tool_name"], segment["inputs"], segment["output"]) == (
            "search", {"q": "restaurants"}, "three found")
        assert [e["skill_name"] for e in skill_events(svc, agent)] == ["search"]


def _count(svc: Service) -> dict[str, int]:
    return svc.counts("acme")


class TestHostileBodies:
    """Malformed, oversized and mistyped exports: 4xx problem JSON naming the field, nothing
    written."""

    @pytest.mark.parametrize(("body", "content_type", "status", "field"), [
        (b"\x0a\xff\xff\xff\xff\x0f", "application/x-protobuf", 400, "body"),
        (b"garbage", "application/x-protobuf", 400, "body"),
        (b"{not json", "application/json", 400, None),
        (b"[" * 5000 + b"]" * 5000, "application/json", 400, None),
        (b"[]", "application/json", 400, "body"),
        (b'{"resourceSpans": {}}', "application/json", 400, "resourceSpans"),
        (b"{}", "text/plain", 415, "Content-Type"),
    ], ids=["truncated-protobuf", "garbage-protobuf", "bad-json", "deep-json", "json-array",
            "object-for-list", "wrong-content-type"])
    def test_malformed_bodies(self, svc: Service, body: bytes, content_type: str, status: int,
                              field: str | None) -> None:
        before = _count(svc)
        response = post(svc, body, content_type)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json().get("field") == field
        assert _count(svc) == before

    @pytest.mark.parametrize(("change", "field"), [
        (lambda spans: spans[1].update(traceId="zz" * 16), "spans[1].traceId"),
        (lambda spans: spans[1].update(spanId="abc"), "spans[1].spanId"),
        (lambda spans: spans[0].update(traceId="0" * 32), "spans[0].traceId"),
        (lambda spans: spans[1].pop("spanId"), "spans[1].spanId"),
        (lambda spans: spans[1].update(startTimeUnixNano="soon"), "spans[1].startTimeUnixNano"),
        (lambda spans: spans[1]["attributes"][3]["value"].update(intValue=[1]),
         "spans[1].attributes[3].value.intValue"),
        (lambda spans: spans[1]["events"][0].update(attributes="x"),
         "spans[1].events[0].attributes"),
        (lambda spans: spans[0].update(status={"code": {"a": 1}}), "spans[0].status.code"),
    ], ids=["hex", "short-id", "zero-id", "missing-id", "time", "attribute", "event", "enum"])
    def test_wrong_types_name_the_field(self, svc: Service, change: Any, field: str) -> None:
        spans = json_agent(unique("typed"), uuid.uuid4().hex)
        change(spans)
        before = _count(svc)
        response = post(svc, json.dumps(otlp_json(spans)).encode(), "application/json")
        assert response.status_code == 400, response.text
        assert response.json()["field"] == f"resourceSpans[0].scopeSpans[0].{field}"
        assert _count(svc) == before

    def test_bad_ids_in_protobuf_name_the_span(self, svc: Service) -> None:
        request = ExportTraceServiceRequest()
        spans = request.resource_spans.add().scope_spans.add().spans
        spans.add(trace_id=bytes.fromhex(TRACE), span_id=bytes.fromhex(ROOT), name="a")
        spans.add(trace_id=b"short", span_id=bytes.fromhex(TOOL), name="b")
        response = post(svc, request.SerializeToString(), "application/x-protobuf")
        assert response.status_code == 400
        assert response.json()["field"] == "resourceSpans[0].scopeSpans[0].spans[1].traceId"

    def test_too_many_spans(self, database_url: str) -> None:
        with service(database_url, tenants=("acme",), server_max_batch=3) as small:
            spans = json_agent(unique("many"))
            extra = [dict(spans[1], spanId=f"{n:016x}") for n in range(1, 3)]
            before = small.counts("acme")
            response = post(small, json.dumps(otlp_json(spans + extra)).encode(),
                            "application/json")
            assert response.status_code == 413
            assert response.json()["field"] == "resourceSpans"
            assert "at most 3" in response.json()["detail"]
            assert small.counts("acme") == before

    def test_oversized_and_gzip_bombs(self, database_url: str) -> None:
        with service(database_url, tenants=("acme",), server_max_body_bytes=4096) as small:
            before = small.counts("acme")
            assert post(small, b"\0" * 5000, "application/x-protobuf").status_code == 413
            bomb = gzip.compress(b"\0" * 1_000_000)
            response = post(small, bomb, "application/x-protobuf",
                            **{"Content-Encoding": "gzip"})
            assert response.status_code == 413
            assert post(small, b"not gzip", "application/x-protobuf",
                        **{"Content-Encoding": "gzip"}).status_code == 400
            assert small.counts("acme") == before

    def test_what_the_facade_refuses_names_the_span(self, database_url: str) -> None:
        with service(database_url, tenants=("acme",), max_task_chars=14,
                     max_payload_bytes=1024) as small:
            before = small.counts("acme")
            spans = json_agent(unique("long-task"), uuid.uuid4().hex)
            spans[0]["attributes"].append({"key": "input.value",
                                           "value": {"stringValue": "a task far too long"}})
            response = post(small, json.dumps(otlp_json(spans)).encode(), "application/json")
            assert response.status_code == 422, response.text
            assert response.json()["field"] == "resourceSpans[0].scopeSpans[0].spans[0]"
            assert response.json()["detail"].startswith("task ")
            spans = json_agent(unique("big-result"), uuid.uuid4().hex)
            spans[1]["attributes"].append({"key": "gen_ai.tool.call.result",
                                           "value": {"stringValue": "r" * 2000}})
            response = post(small, json.dumps(otlp_json(spans)).encode(), "application/json")
            assert response.status_code == 422, response.text
            assert response.json()["field"] == "resourceSpans[0].scopeSpans[0].spans[1]"
            assert small.counts("acme") == before

    @settings(max_examples=30, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.binary(max_size=200))
    def test_random_protobuf_never_fails_the_server(self, svc: Service, body: bytes) -> None:
        response = post(svc, body, "application/x-protobuf")
        assert response.status_code in (200, 400), response.text


class TestRoles:
    """Only a live token may send traces, and its tenant is where they go."""

    def test_no_token_or_an_unknown_one_is_refused(self, svc: Service) -> None:
        before = _count(svc)
        body = json.dumps(otlp_json(json_agent(unique("anon"), uuid.uuid4().hex))).encode()
        for headers in ({}, {"Authorization": "Bearer adt_unknown"}):
            with svc.client(headers=headers) as client:
                response = client.post("/v1/traces", content=body,
                                       headers={"Content-Type": "application/json"})
            assert response.status_code == 401
        assert _count(svc) == before

    def test_an_exporter_without_a_token_fails(self, svc: Service) -> None:
        agent = unique("no-token")
        sender = OTLPSpanExporter(endpoint=f"{svc.url}/v1/traces", timeout=10)
        assert sender.export(recorded_spans(agent, fail=False)) == SpanExportResult.FAILURE
        assert episodes_of(svc, agent) == []

    @pytest.mark.parametrize("role", [Role.INGEST, Role.REVIEWER, Role.ADMIN],
                             ids=lambda r: r.value)
    def test_every_role_from_ingest_up_may_send(self, svc: Service, role: Role) -> None:
        # Roles are cumulative (ingest < reviewer < admin), as on /v1/episodes.
        agent = unique(role.value)
        response = post(svc, json.dumps(otlp_json(json_agent(agent, uuid.uuid4().hex))
                                        ).encode(), "application/json", role=role)
        assert response.status_code == 200
        assert len(episodes_of(svc, agent)) == 1
