"""The span mapper alone: whatever attributes and parent links an export holds, it returns
episodes the facade accepts, the same through protobuf and OTLP/JSON."""

from __future__ import annotations

import base64
import copy

from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from auto_dev.payloads import PayloadLimits, check_episode, check_skill_execution
from auto_dev.server._otlp_spans import episodes_from_request
from auto_dev.server._otlp_wire import decode_otlp_json

_KEYS = st.sampled_from([
    "gen_ai.operation.name", "gen_ai.agent.name", "gen_ai.agent.description",
    "gen_ai.tool.name", "gen_ai.tool.call.arguments", "gen_ai.tool.call.result",
    "openinference.span.kind", "input.value", "output.value", "error.type", "tool.name",
    "agent.name", "service.name", "x"])
_TEXT = st.text(max_size=30) | st.sampled_from(
    ["invoke_agent", "execute_tool", "AGENT", "CHAIN", "TOOL", "{\"a\": 1}", "[1e999]",
     "{\"\\u0000\": \"\\ud800\"}", "\x00", "x" * 300])


def _any_value() -> st.SearchStrategy[AnyValue]:
    leaves = st.one_of(
        _TEXT.map(lambda v: AnyValue(string_value=v)),
        st.booleans().map(lambda v: AnyValue(bool_value=v)),
        st.integers(-(2 ** 63), 2 ** 63 - 1).map(lambda v: AnyValue(int_value=v)),
        st.floats().map(lambda v: AnyValue(double_value=v)),
        st.binary(max_size=8).map(lambda v: AnyValue(bytes_value=v)))
    return st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(
            lambda items: AnyValue(array_value={"values": items})),
        st.lists(st.tuples(_KEYS, inner), max_size=3).map(
            lambda pairs: AnyValue(kvlist_value={"values": [KeyValue(key=k, value=v)
                                                            for k, v in pairs]}))),
        max_leaves=8)


@st.composite
def _exports(draw: st.DrawFn) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    for key, value in draw(st.lists(st.tuples(_KEYS, _any_value()), max_size=3)):
        resource.resource.attributes.add(key=key, value=value)
    spans = resource.scope_spans.add().spans
    count = draw(st.integers(1, 8))
    ids = [bytes([0] * 7 + [n + 1]) for n in range(count)]
    for n in range(count):
        span = spans.add(trace_id=b"\x01" * 16, span_id=ids[n],
                         name=draw(_TEXT), start_time_unix_nano=draw(st.integers(0, 10 ** 12)),
                         end_time_unix_nano=draw(st.integers(0, 10 ** 12)))
        parent = draw(st.none() | st.sampled_from(ids))  # cycles included
        if parent is not None:
            span.parent_span_id = parent
        span.status.code = draw(st.sampled_from([0, 1, 2]))
        for key, value in draw(st.lists(st.tuples(_KEYS, _any_value()), max_size=5)):
            span.attributes.add(key=key, value=value)
        if draw(st.booleans()):
            event = span.events.add(name="exception")
            for key, value in draw(st.lists(st.tuples(st.sampled_from(
                    ["exception.stacktrace", "exception.type", "exception.message"]),
                    _any_value()), max_size=3)):
                event.attributes.add(key=key, value=value)
    return request


class TestMapper:
    """Whatever attributes and parent links an export holds, the mapper returns episodes the
    facade accepts, and accounts for every span."""

    @settings(max_examples=150, deadline=None)
    @given(_exports())
    def test_random_exports_map_to_acceptable_episodes(
            self, request: ExportTraceServiceRequest) -> None:
        batch = episodes_from_request(request)
        spans = request.resource_spans[0].scope_spans[0].spans
        assert batch.total_spans == len(spans)
        assert batch.duplicate_spans == 0
        assert batch.ignored_spans <= batch.total_spans
        assert len(batch.episodes) <= batch.total_spans - batch.ignored_spans
        limits = PayloadLimits()
        for episode in batch.episodes:
            check_episode(limits, **episode.episode_kwargs())
            for kwargs in episode.skill_kwargs():
                check_skill_execution(limits, **kwargs)
        # Round trip through OTLP/JSON keeps the mapping.
        as_json = json_format.MessageToDict(request)
        for span in as_json["resourceSpans"][0]["scopeSpans"][0]["spans"]:
            for name in ("traceId", "spanId", "parentSpanId"):
                if name in span:
                    span[name] = base64.b64decode(span[name]).hex()
        again = episodes_from_request(decode_otlp_json(copy.deepcopy(as_json), max_spans=100))
        assert [e.episode_kwargs() for e in again.episodes] == \
            [e.episode_kwargs() for e in batch.episodes]

    def test_only_the_outermost_agent_span_is_an_episode(self) -> None:
        request = ExportTraceServiceRequest()
        spans = request.resource_spans.add().scope_spans.add().spans
        outer, inner, tool = (bytes([0] * 7 + [n]) for n in (1, 2, 3))
        kind = [KeyValue(key="openinference.span.kind", value=AnyValue(string_value="CHAIN"))]
        spans.add(trace_id=b"\x02" * 16, span_id=outer, name="outer", attributes=kind)
        spans.add(trace_id=b"\x02" * 16, span_id=inner, parent_span_id=outer, name="inner",
                  attributes=kind)
        spans.add(trace_id=b"\x02" * 16, span_id=tool, parent_span_id=inner,
                  name="execute_tool t", status={"code": Status.STATUS_CODE_ERROR})
        batch = episodes_from_request(request)
        [episode] = batch.episodes
        assert episode.span_id == outer.hex()
        assert [(c.tool_name, c.success) for c in episode.tools] == [("t", False)]
        assert batch.rejected_spans == 0

    def test_the_agent_name_falls_back_to_the_span_name_then_the_service(self) -> None:
        request = ExportTraceServiceRequest()
        resource = request.resource_spans.add()
        resource.resource.attributes.add(key="service.name",
                                         value=AnyValue(string_value="svc"))
        spans = resource.scope_spans.add().spans
        spans.add(trace_id=b"\x03" * 16, span_id=b"\x00" * 7 + b"\x01",
                  name="invoke_agent planner")
        spans.add(trace_id=b"\x03" * 16, span_id=b"\x00" * 7 + b"\x02", name="plan",
                  attributes=[KeyValue(key="gen_ai.operation.name",
                                       value=AnyValue(string_value="invoke_agent"))])
        agents = [e.agent for e in episodes_from_request(request).episodes]
        assert agents == ["planner", "svc"]
