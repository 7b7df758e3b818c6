"""``POST /v1/traces``: OpenTelemetry trace ingest over OTLP/HTTP.

Agent instrumentations export spans with the OTLP HTTP exporter; pointed at this route (with
an ingest token in its headers), every root agent span becomes an episode, and every tool span
below it a segment of that episode and a skill execution (the mapping:
:mod:`auto_dev.server._otlp_spans`). Both OTLP/HTTP encodings are served: binary protobuf
(``application/x-protobuf``) and OTLP/JSON (``application/json``), optionally gzip-compressed;
the response is an ``ExportTraceServiceResponse`` in the request's encoding, whose
``partial_success`` counts the spans that became nothing and says why.

Exporters retry: an episode is known by its trace id and root span id (kept in the episode's
metadata and as an idempotency record of the tenant, for ``server_idempotency_ttl_s`` like every
idempotency key), and a retried export records nothing twice. An export is recorded all or
nothing, in one transaction; a malformed one (bad protobuf, bad JSON, a bad id, too many spans,
a wrong content type) is a 4xx problem naming the field, and writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from auto_dev._exceptions import StorageError, ValidationError
from auto_dev.queries.idempotency import IdempotencyRecords, request_digest
from auto_dev.server import auth
from auto_dev.server._otlp_spans import TraceBatch, TraceEpisode, episodes_from_request
from auto_dev.server._otlp_wire import TooManySpansError, decode_otlp_json, decode_protobuf
from auto_dev.server.bodies import decode_json as parse_json_bytes
from auto_dev.server.bodies import read_raw, too_large
from auto_dev.server.ingest import sqlite_writer, thread_loop
from auto_dev.server.problems import Problem

if TYPE_CHECKING:
    from auto_dev.server.auth import Principal
    from auto_dev.service import AutoDev

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/v1", tags=["ingest"])

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

DESCRIPTION = """\
Send OpenTelemetry spans as OTLP/HTTP, the way the OpenTelemetry SDK's OTLP HTTP exporter does:
`application/x-protobuf` (an `ExportTraceServiceRequest`) or `application/json` (OTLP/JSON:
trace and span ids as hex strings), optionally with `Content-Encoding: gzip`. Point an exporter
here with `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://HOST:PORT/v1/traces` and
`OTEL_EXPORTER_OTLP_TRACES_HEADERS=Authorization=Bearer%20<ingest token>`.

* A root agent span (gen_ai `gen_ai.operation.name=invoke_agent`, or OpenInference
  `openinference.span.kind` AGENT or CHAIN) becomes an episode: the agent is
  `gen_ai.agent.name` (else the resource's `service.name`), the task the agent's `input.value`,
  else `gen_ai.agent.description`, else the span name. It failed when the span's status is ERROR
  or `error.type` is set; the error trace is the `exception` event's `exception.stacktrace`.
* Each tool span below it (`gen_ai.operation.name=execute_tool`, OpenInference TOOL) becomes a
  segment of the episode (`gen_ai.tool.name`; `gen_ai.tool.call.arguments` and
  `gen_ai.tool.call.result`, or `input.value` and `output.value`, when recorded; duration) and
  a skill execution.
* An agent span and its tool spans must arrive in one export (the SDK's `BatchSpanProcessor`).
  Spans below no agent span are ignored and counted in the response's `partialSuccess`.
* A retried export records nothing twice (an episode is known by its trace id and root span id,
  for `server_idempotency_ttl_s`).

The answer is an `ExportTraceServiceResponse` in the request's encoding. Bad protobuf or JSON, a
bad id, more spans than `server_max_batch` or a body over `server_max_body_bytes` get a 4xx
problem JSON naming the field (`resourceSpans[0].scopeSpans[0].spans[3].traceId`) and record
nothing.
"""

_WRITE_RETRIES = 3


@dataclass(frozen=True, slots=True)
class Recorded:
    episodes: int
    skill_executions: int
    already_recorded: int


@router.post(
    "/traces", summary="Ingest OpenTelemetry traces (OTLP/HTTP)", description=DESCRIPTION,
    response_class=Response,
    openapi_extra={"requestBody": {"required": True, "content": {
        PROTOBUF: {"schema": {"type": "string", "format": "binary",
                              "description": "opentelemetry.proto.collector.trace.v1."
                                             "ExportTraceServiceRequest"}},
        JSON: {"schema": {"type": "object", "description": "OTLP/JSON "
                          "ExportTraceServiceRequest (`resourceSpans`)"}}}}},
    responses={200: {"description": "An `ExportTraceServiceResponse`; `partialSuccess` counts "
                                    "the spans that were ignored and says why",
                     "content": {PROTOBUF: {}, JSON: {"example": {}}}},
               400: {"description": "Bad protobuf, JSON or ids (problem JSON, `field`)"},
               413: {"description": "Too large a body or too many spans"},
               422: {"description": "A value the episode store refuses (problem JSON naming "
                                    "the span and the field)"},
               415: {"description": "Neither `application/x-protobuf` nor "
                                    "`application/json`"}},
)
async def post_traces(request: Request,
                      principal: Principal = Depends(auth.ingest)) -> Response:
    autodev: AutoDev = request.app.state.autodev
    settings = autodev.settings
    media = _media_type(request.headers.get("content-type"))
    raw = await read_raw(request, max_bytes=settings.server_max_body_bytes)
    raw = _decompressed(raw, request.headers.get("content-encoding"),
                        max_bytes=settings.server_max_body_bytes)
    export = _decode(raw, media, max_spans=settings.server_max_batch,
                     max_depth=settings.server_max_json_depth)
    batch = episodes_from_request(export)
    recorded = await _record(autodev, principal.tenant_id, batch)
    metrics = request.app.state.metrics
    if recorded.episodes:
        metrics.ingested("episode", recorded.episodes)
    if recorded.skill_executions:
        metrics.ingested("skill_execution", recorded.skill_executions)
    log.info("traces_ingested", tenant=principal.tenant_id, spans=batch.total_spans,
             episodes=recorded.episodes, already_recorded=recorded.already_recorded,
             rejected_spans=batch.rejected_spans)
    return _answer(batch, media)


def _media_type(content_type: str | None) -> str:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media not in (PROTOBUF, JSON):
        raise Problem(415, "unsupported-media-type", f"send Content-Type: {PROTOBUF} or {JSON} "
                      f"(OTLP/HTTP); got {content_type or 'none'!r}", field="Content-Type")
    return media


def _decompressed(raw: bytes, encoding: str | None, *, max_bytes: int) -> bytes:
    """The body without its gzip encoding; inflating past ``max_bytes`` is refused (a small
    body must not become a large one in memory)."""
    name = (encoding or "identity").strip().lower()
    if name == "identity":
        return raw
    if name != "gzip":
        raise Problem(415, "unsupported-media-type", f"Content-Encoding {encoding!r} is not "
                      "supported (send gzip or none)", field="Content-Encoding")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, max_bytes + 1)
    except zlib.error as exc:
        raise Problem(400, "bad-encoding", f"the body is not valid gzip: {exc}",
                      field="Content-Encoding") from None
    if len(body) > max_bytes or inflater.unconsumed_tail:
        raise too_large(max_bytes)
    if not inflater.eof:
        raise Problem(400, "bad-encoding", "the gzip body is truncated",
                      field="Content-Encoding")
    return body


def _decode(raw: bytes, media: str, *, max_spans: int, max_depth: int
            ) -> ExportTraceServiceRequest:
    try:
        if media == PROTOBUF:
            return decode_protobuf(raw, max_spans=max_spans)
        if not raw.strip():
            raise Problem(400, "bad-json", "the body is empty: send an OTLP/JSON "
                          "ExportTraceServiceRequest")
        return decode_otlp_json(parse_json_bytes(raw, max_depth=max_depth), max_spans=max_spans)
    except TooManySpansError as exc:
        raise Problem(413, "too-large", exc.problem, field=exc.field) from None
    except ValidationError as exc:
        raise Problem(400, "bad-otlp", exc.problem, field=exc.field) from None


async def _record(autodev: AutoDev, tenant_id: str, batch: TraceBatch) -> Recorded:
    if not batch.episodes:
        return Recorded(0, 0, 0)
    for attempt in range(_WRITE_RETRIES + 1):
        try:
            return await asyncio.to_thread(_write, autodev, tenant_id, batch)
        except StorageError:
            # A concurrent retry of the same export recorded one of its episodes first (its
            # key won the unique index); once more, that episode is found and skipped.
            if attempt == _WRITE_RETRIES:
                raise
    raise AssertionError("unreachable")


def _write(autodev: AutoDev, tenant_id: str, batch: TraceBatch) -> Recorded:
    """In a worker thread: every new episode of the export and its skill executions, with the
    key that makes a retry find them; one transaction."""
    loop = thread_loop()
    serial = sqlite_writer if autodev.database.is_sqlite else contextlib.nullcontext()
    episodes = executions = known = 0
    with serial, autodev.database.transaction() as session:
        for episode in batch.episodes:
            if IdempotencyRecords.find(session, tenant_id, episode.key) is not None:
                known += 1
                continue
            episode_id = _call(loop, autodev.record_episode(
                **episode.episode_kwargs(), tenant_id=tenant_id), episode)
            for call, kwargs in zip(episode.tools, episode.skill_kwargs(), strict=True):
                _call(loop, autodev.record_skill_execution(**kwargs, tenant_id=tenant_id),
                      episode, path=call.path)
                executions += 1
            IdempotencyRecords.save(
                session, tenant_id, episode.key,
                request_hash=request_digest("POST", "/v1/traces", episode.key.encode()),
                status_code=200, body={"episode_id": episode_id})
            episodes += 1
    return Recorded(episodes, executions, known)


def _call(loop: asyncio.AbstractEventLoop, call: Coroutine[Any, Any, Any],
          episode: TraceEpisode, *, path: str | None = None) -> Any:
    """Run a facade call; its refusal names the span it came from (a segment's: the tool
    span's) and the facade's field."""
    try:
        return loop.run_until_complete(call)
    except ValidationError as exc:
        field = exc.field
        if path is None and field.startswith("segments[") and "]" in field:
            index = int(field[len("segments["):field.index("]")])
            path = episode.tools[index].path
            field = field[field.index("]") + 1:].lstrip(".") or "segment"
        raise Problem(422, "invalid-input", f"{field} {exc.problem}",
                      field=path or episode.path) from None


def _answer(batch: TraceBatch, media: str) -> Response:
    answer = ExportTraceServiceResponse()
    if batch.rejected_spans:
        answer.partial_success.rejected_spans = batch.rejected_spans
        answer.partial_success.error_message = batch.rejection_message()
    if media == PROTOBUF:
        return Response(answer.SerializeToString(), media_type=PROTOBUF)
    body = json_format.MessageToJson(answer, indent=None)
    return Response(body.encode("utf-8"), media_type=JSON)
