"""OpenTelemetry spans as episodes: the mapping behind ``POST /v1/traces``, free of HTTP.

An agent run, as agent instrumentations trace it, is a tree of spans. The outermost *agent
span* of a trace in one export (no agent span above it) becomes one episode:

* agent spans: the gen_ai semantic conventions' ``gen_ai.operation.name = invoke_agent`` (or a
  span name starting ``invoke_agent``), and OpenInference's ``openinference.span.kind`` AGENT
  or CHAIN;
* the agent is ``gen_ai.agent.name`` (OpenInference: ``agent.name``), else the name in an
  ``invoke_agent {name}`` span name, else the resource's ``service.name``; the task is the
  agent's input (``input.value``), else ``gen_ai.agent.description``, else the span name;
* it failed when the span's status is ERROR or ``error.type`` is set; its error trace is the
  ``exception`` event's ``exception.stacktrace``, else its type and message, else the status
  message;
* every tool span below it (``gen_ai.operation.name = execute_tool``, OpenInference TOOL) is a
  segment of the episode (tool name, arguments and result when the opt-in attributes
  ``gen_ai.tool.call.arguments`` / ``gen_ai.tool.call.result`` or ``input.value`` /
  ``output.value`` are there, error, duration) and a skill execution of the episode's agent.

Spans below no agent span are ignored and counted (the response's ``partial_success``). Parents
are looked up within the export only: an agent span and its tools must arrive in one request,
as the SDK's ``BatchSpanProcessor`` sends them (with a ``SimpleSpanProcessor`` each span is a
request of its own, and tool spans, which end first, arrive without their agent span).

Values are made storable here (text without NUL characters or lone surrogates, finite numbers,
bounded nesting, names within their columns), so a hostile attribute cannot fail the episode.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from auto_dev.payloads import NAME_MAX_CHARS

#: Deepest attribute value kept as JSON; anything deeper is kept as its text.
_MAX_VALUE_DEPTH = 16
#: Longest task taken from an agent's input (the rest is cut, marked with an ellipsis).
_MAX_TASK_CHARS = 8192
_AGENT_KINDS = {"AGENT", "CHAIN"}
_TOOL_KIND = "TOOL"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool span below an agent span."""

    path: str
    span_id: str
    tool_name: str
    success: bool
    start_ns: int
    duration_s: float | None
    arguments: Any
    result: Any
    error: str | None

    def segment(self) -> dict[str, Any]:
        inputs = self.arguments if isinstance(self.arguments, dict) else (
            {} if self.arguments is None else {"value": self.arguments})
        segment: dict[str, Any] = {"kind": "tool_call", "tool_name": self.tool_name,
                                   "inputs": inputs, "output": self.result,
                                   "error": self.error}
        if self.duration_s is not None:
            segment["duration_s"] = self.duration_s
        return segment


@dataclass(frozen=True, slots=True)
class TraceEpisode:
    """What one root agent span (and the tool spans below it) records."""

    path: str
    trace_id: str
    span_id: str
    agent: str
    task: str
    success: bool
    error_trace: str | None
    output: Any
    metadata: dict[str, Any]
    tools: list[ToolCall] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The episode's identity across retries of the same export."""
        return f"otlp:{self.trace_id}:{self.span_id}"

    def episode_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``AutoDev.record_episode`` (without the tenant)."""
        failing = [call.tool_name for call in self.tools if not call.success]
        used = {call.tool_name for call in self.tools}
        tool_name = failing[-1] if failing else (next(iter(used)) if len(used) == 1 else None)
        return {"agent": self.agent, "task": self.task, "success": self.success,
                "tool_name": tool_name, "output": self.output,
                "error_trace": self.error_trace,
                "segments": [call.segment() for call in self.tools],
                "metadata": self.metadata}

    def skill_kwargs(self) -> list[dict[str, Any]]:
        """The keyword arguments of ``AutoDev.record_skill_execution``, one per tool span."""
        return [{"agent": self.agent, "skill_name": call.tool_name, "success": call.success,
                 "execution_seconds": call.duration_s or 0.0,
                 "metadata": {"otlp": {"trace_id": self.trace_id, "span_id": call.span_id}}}
                for call in self.tools]


@dataclass(frozen=True, slots=True)
class TraceBatch:
    """An export as episodes, and the spans that became nothing (with why)."""

    episodes: list[TraceEpisode]
    total_spans: int
    ignored_spans: int
    duplicate_spans: int

    @property
    def rejected_spans(self) -> int:
        return self.ignored_spans + self.duplicate_spans

    def rejection_message(self) -> str:
        parts = []
        if self.ignored_spans:
            parts.append(f"{self.ignored_spans} of {self.total_spans} spans belong to no agent "
                         "span (gen_ai invoke_agent, OpenInference AGENT or CHAIN) in this "
                         "export and were ignored")
        if self.duplicate_spans:
            parts.append(f"{self.duplicate_spans} spans repeat a span id of their trace and "
                         "were ignored")
        return "; ".join(parts)


@dataclass(slots=True)
class _SpanView:
    path: str
    span: Span
    attributes: dict[str, Any]
    service: str | None
    scope: str

    @property
    def operation(self) -> str:
        value = self.attributes.get("gen_ai.operation.name")
        return value if isinstance(value, str) else ""

    @property
    def openinference_kind(self) -> str:
        value = self.attributes.get("openinference.span.kind")
        return value.upper() if isinstance(value, str) else ""

    @property
    def is_agent(self) -> bool:
        return (self.operation == "invoke_agent" or self.span.name.startswith("invoke_agent")
                or self.openinference_kind in _AGENT_KINDS)

    @property
    def is_tool(self) -> bool:
        return (self.operation == "execute_tool" or self.span.name.startswith("execute_tool")
                or self.openinference_kind == _TOOL_KIND)

    @property
    def failed(self) -> bool:
        return (self.span.status.code == Status.STATUS_CODE_ERROR
                or self.attributes.get("error.type") not in (None, ""))

    @property
    def duration_s(self) -> float | None:
        start, end = self.span.start_time_unix_nano, self.span.end_time_unix_nano
        return (end - start) / 1e9 if start and end >= start else None


def episodes_from_request(request: ExportTraceServiceRequest) -> TraceBatch:
    """The episodes of an export: one per outermost agent span of each trace."""
    views: dict[tuple[bytes, bytes], _SpanView] = {}
    total = duplicates = 0
    for view in _views(request):
        total += 1
        key = (view.span.trace_id, view.span.span_id)
        if key in views:
            duplicates += 1
            continue
        views[key] = view
    roots: dict[tuple[bytes, bytes], tuple[bytes, bytes] | None] = {}
    for key in views:
        _root_of(key, views, roots)
    tools: dict[tuple[bytes, bytes], list[ToolCall]] = {}
    ignored = 0
    for key, view in views.items():
        root = roots[key]
        if root is None:
            ignored += 1
        elif root != key and view.is_tool:
            tools.setdefault(root, []).append(_tool_call(view))
    episodes = [_episode(views[key], sorted(tools.get(key, []), key=lambda c: c.start_ns))
                for key in views if roots[key] == key]
    return TraceBatch(episodes, total, ignored, duplicates)


def _views(request: ExportTraceServiceRequest) -> Iterator[_SpanView]:
    for r, resource_spans in enumerate(request.resource_spans):
        resource = attributes_of(resource_spans.resource.attributes)
        service = resource.get("service.name")
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            for k, span in enumerate(scope_spans.spans):
                yield _SpanView(f"resourceSpans[{r}].scopeSpans[{s}].spans[{k}]", span,
                                attributes_of(span.attributes),
                                service if isinstance(service, str) else None,
                                scope_spans.scope.name)


def _root_of(key: tuple[bytes, bytes], views: dict[tuple[bytes, bytes], _SpanView],
             roots: dict[tuple[bytes, bytes], tuple[bytes, bytes] | None]
             ) -> tuple[bytes, bytes] | None:
    """The outermost agent span at or above ``key`` in this export (None: there is none).
    Iterative and cycle-safe: a hostile export may make spans their own ancestors."""
    chain: list[tuple[bytes, bytes]] = []
    seen: set[tuple[bytes, bytes]] = set()
    current: tuple[bytes, bytes] | None = key
    known: tuple[bytes, bytes] | None = None
    while current is not None and current in views and current not in seen:
        if current in roots:
            known = roots[current]
            break
        seen.add(current)
        chain.append(current)
        parent = views[current].span.parent_span_id
        current = (current[0], parent) if parent else None
    # Walk back down: the outermost agent span found so far is the root of what is below it.
    root = known
    for item in reversed(chain):
        if root is None and views[item].is_agent:
            root = item
        roots[item] = root
    return roots[key]


def _episode(view: _SpanView, tools: list[ToolCall]) -> TraceEpisode:
    attrs = view.attributes
    named = view.span.name.removeprefix("invoke_agent ") \
        if view.span.name.startswith("invoke_agent ") else ""
    agent = _name(attrs.get("gen_ai.agent.name")) or _name(attrs.get("agent.name")) \
        or _name(named) or _name(view.service) or _name(view.span.name) or "unknown_agent"
    task = _first_text(attrs.get("input.value"), attrs.get("gen_ai.agent.description"),
                       view.span.name) or "(unnamed task)"
    if len(task) > _MAX_TASK_CHARS:
        task = task[:_MAX_TASK_CHARS - 1] + "…"
    failed = view.failed
    output = _json_or_text(attrs.get("output.value", attrs.get("gen_ai.output.messages")))
    trace_id, span_id = view.span.trace_id.hex(), view.span.span_id.hex()
    metadata = {"source": "otlp", "otlp": {
        "key": f"otlp:{trace_id}:{span_id}", "trace_id": trace_id, "span_id": span_id,
        "span_name": _text(view.span.name), "scope": _text(view.scope),
        "service": view.service and _text(view.service),
        "start_unix_nano": view.span.start_time_unix_nano, "duration_s": view.duration_s}}
    return TraceEpisode(
        path=view.path, trace_id=trace_id, span_id=span_id,
        agent=agent, task=task, success=not failed,
        error_trace=_error_of(view, stack=True) if failed else None, output=output,
        metadata=metadata, tools=tools)


def _tool_call(view: _SpanView) -> ToolCall:
    attrs = view.attributes
    name = _name(attrs.get("gen_ai.tool.name")) or _name(attrs.get("tool.name")) \
        or _name(view.span.name.removeprefix("execute_tool").strip()) or "unknown_tool"
    failed = view.failed
    arguments = attrs.get("gen_ai.tool.call.arguments", attrs.get("input.value"))
    result = attrs.get("gen_ai.tool.call.result", attrs.get("output.value"))
    return ToolCall(path=view.path, span_id=view.span.span_id.hex(), tool_name=name,
                    success=not failed, start_ns=view.span.start_time_unix_nano,
                    duration_s=view.duration_s, arguments=_json_or_text(arguments),
                    result=_json_or_text(result),
                    error=_error_of(view, stack=False) if failed else None)


def _error_of(view: _SpanView, *, stack: bool) -> str:
    """The error of a failed span: the last ``exception`` event's stack (``stack``) or its
    type and message, else the status message, else ``error.type``."""
    for event in reversed(view.span.events):
        if event.name != "exception":
            continue
        attrs = attributes_of(event.attributes)
        trace = attrs.get("exception.stacktrace")
        if stack and isinstance(trace, str) and trace.strip():
            return _text(trace)
        kind, message = attrs.get("exception.type"), attrs.get("exception.message")
        described = ": ".join(_text(str(part)) for part in (kind, message) if part)
        if described:
            return described
    return (_text(view.span.status.message) or _text(str(view.attributes.get("error.type", "")))
            or "the span's status is ERROR")


def attributes_of(attributes: Any) -> dict[str, Any]:
    """OTLP key-value pairs as a dict of plain values (a repeated key: the last one wins)."""
    out: dict[str, Any] = {}
    pair: KeyValue
    for pair in attributes:
        out[_text(pair.key)] = _value(pair.value, 0)
    return out


def _value(value: AnyValue, depth: int) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "string_value":
        return _text(value.string_value)
    if which in ("bool_value", "int_value"):
        return getattr(value, which)
    if which == "double_value":
        number = value.double_value
        return number if math.isfinite(number) else str(number)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if depth >= _MAX_VALUE_DEPTH:
        return _text(str(value))[:1000]
    if which == "array_value":
        return [_value(item, depth + 1) for item in value.array_value.values]
    return {_text(pair.key): _value(pair.value, depth + 1) for pair in value.kvlist_value.values}


def _text(value: str) -> str:
    """``value`` as storable text: no NUL characters (PostgreSQL refuses them) and no lone
    surrogates (OTLP/JSON can spell them; UTF-8 cannot)."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def _name(value: Any) -> str:
    """A name for an agent or tool column: printable, within its width; "" if none."""
    if not isinstance(value, str):
        return ""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in _text(value)).strip()
    return cleaned[:NAME_MAX_CHARS]


def _first_text(*values: Any) -> str:
    for value in values:
        if isinstance(value, str) and value.strip():
            return _text(value)
    return ""


def _json_or_text(value: Any) -> Any:
    """Arguments and results are JSON text by convention: kept as JSON when they parse to an
    object or array, else as they came."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            parsed = json.loads(value, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            return value
        if _depth(parsed) <= _MAX_VALUE_DEPTH:
            return _clean(parsed)
    return value


def _clean(value: Any) -> Any:
    """Parsed JSON as storable values: JSON text may spell NUL characters, lone surrogates,
    numbers too large for a float (``1e999``) and integers of thousands of digits."""
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, int):
        return value if abs(value) < 10 ** 300 else str(value)
    if isinstance(value, list):
        return [_clean(item) for item in value]
    return {_text(key): _clean(item) for key, item in value.items()}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest
