"""``POST /v1/episodes`` and ``POST /v1/skill-executions``: what agent platforms report.

A body is one object or a JSON list of them (a batch, recorded all or nothing). With an
``Idempotency-Key`` header, a retry of the same request (same key in the same tenant, same
method, path and body) records nothing and gets the first response again
(``Idempotent-Replayed: true``); the same key with another body is 409.

The writes of one request, and its idempotent response, are one transaction
(:meth:`Database.transaction`) run in a worker thread, so a slow commit never holds up the
event loop. The facade's methods are coroutines that do not wait on anything; each worker
thread runs them on an event loop of its own, and the commit happens after they return,
outside that loop, so the events they emitted are dispatched by the service's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from auto_dev._exceptions import NotFoundError, StorageError, ValidationError
from auto_dev.queries.idempotency import IdempotencyRecords, check_key, request_digest
from auto_dev.server import auth
from auto_dev.server.bodies import read_json
from auto_dev.server.problems import Problem, from_error, join_field, loc_to_field
from auto_dev.server.schemas import EpisodeIn, SkillExecutionIn, json_body

if TYPE_CHECKING:
    from auto_dev.server.auth import Principal
    from auto_dev.service import AutoDev

router = APIRouter(prefix="/v1", tags=["ingest"])

_REPLAYED = "Idempotent-Replayed"
_thread_loops = threading.local()
#: SQLite has one writer at a time: requests queue here rather than in SQLite's busy handler,
#: whose sleeps (up to 100 ms each) make the tail latency of concurrent writers seconds long.
sqlite_writer = threading.Lock()


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int
    body: dict[str, Any]
    replayed: bool = False
    recorded: int = 0


@router.post(
    "/episodes", status_code=201, summary="Report episodes",
    openapi_extra=json_body(EpisodeIn, batch=True),
    responses={201: {"description": "Recorded: `{\"episode_id\": ...}`, or "
                                    "`{\"episode_ids\": [...]}` for a batch"}},
)
async def post_episodes(request: Request,
                        principal: Principal = Depends(auth.ingest)) -> JSONResponse:
    """Record one episode (a JSON object) or a batch (a JSON list, all or nothing). Each
    emits `TaskFailed` or `TaskSucceeded` to the engines."""
    autodev: AutoDev = request.app.state.autodev

    def call(item: EpisodeIn) -> Coroutine[Any, Any, Any]:
        return autodev.record_episode(**item.facade_kwargs(), tenant_id=principal.tenant_id)

    def respond(ids: list[Any], batch: bool) -> dict[str, Any]:
        return {"episode_ids": ids} if batch else {"episode_id": ids[0]}

    return await ingest_items(request, principal, EpisodeIn, call, respond, kind="episode")


@router.post(
    "/skill-executions", status_code=201, summary="Report skill executions",
    openapi_extra=json_body(SkillExecutionIn, batch=True),
    responses={201: {"description": "Recorded: `{\"recorded\": n}`"}},
)
async def post_skill_executions(request: Request,
                                principal: Principal = Depends(auth.ingest)) -> JSONResponse:
    """Record one skill execution (a JSON object) or a batch (a JSON list, all or nothing)."""
    autodev: AutoDev = request.app.state.autodev

    def call(item: SkillExecutionIn) -> Coroutine[Any, Any, Any]:
        return autodev.record_skill_execution(**item.facade_kwargs(),
                                              tenant_id=principal.tenant_id)

    def respond(results: list[Any], batch: bool) -> dict[str, Any]:
        return {"recorded": len(results)}

    return await ingest_items(request, principal, SkillExecutionIn, call, respond,
                         kind="skill_execution")


async def ingest_items(request: Request, principal: Principal, model: type[Any],
                       call: Callable[[Any], Coroutine[Any, Any, Any]],
                       respond: Callable[[list[Any], bool], dict[str, Any]], *, kind: str
                       ) -> JSONResponse:
    """Read a body of ``model`` items (one or a batch), ``call`` the facade for each in one
    transaction with the request's idempotent response, and answer ``respond(results,
    batch)`` (201). Counts ``kind`` in the ingest metrics."""
    autodev: AutoDev = request.app.state.autodev
    settings = autodev.settings
    key = _idempotency_key(request)
    body = await read_json(request, max_bytes=settings.server_max_body_bytes,
                           max_depth=settings.server_max_json_depth)
    batch = isinstance(body.value, list)
    items = _parse_items(model, body.value, max_batch=settings.server_max_batch)
    digest = request_digest(request.method, request.url.path, body.raw)
    ttl = timedelta(seconds=settings.server_idempotency_ttl_s)

    def write() -> Outcome:
        return _write(autodev, principal.tenant_id, key, digest, ttl,
                      [functools.partial(call, item) for item in items],
                      lambda results: respond(results, batch), batch=batch)

    try:
        outcome = await asyncio.to_thread(write)
    except StorageError:
        if key is None:
            raise
        # Another request with the same key committed first (its insert won the unique
        # index): answer as a retry of it.
        outcome = await asyncio.to_thread(_replay, autodev, principal.tenant_id, key, digest)
    if outcome.recorded:
        request.app.state.metrics.ingested(kind, outcome.recorded)
    headers = {_REPLAYED: "true"} if outcome.replayed else {}
    return JSONResponse(outcome.body, status_code=outcome.status, headers=headers)


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    try:
        return check_key(key.strip())
    except ValidationError as exc:
        raise from_error(exc) from None


def _parse_items(model: type[BaseModel], value: Any, *, max_batch: int) -> list[Any]:
    if isinstance(value, dict):
        return [_parse_one(model, value, prefix="")]
    if not isinstance(value, list):
        raise Problem(422, "invalid-input", "the body must be a JSON object, or a list of "
                      f"them for a batch (got {type(value).__name__})")
    if not value:
        raise Problem(422, "invalid-input", "a batch must hold at least one item")
    if len(value) > max_batch:
        raise Problem(413, "too-large", f"a batch holds at most {max_batch} items "
                      f"(server_max_batch), got {len(value)}")
    return [_parse_one(model, item, prefix=f"[{index}]") for index, item in enumerate(value)]


def _parse_one(model: type[BaseModel], value: Any, *, prefix: str) -> Any:
    if not isinstance(value, dict):
        raise Problem(422, "invalid-input", f"must be a JSON object, got "
                      f"{type(value).__name__}", field=prefix or None)
    if "tenant_id" in value:
        raise Problem(422, "invalid-input", "is not accepted: the tenant is the token's",
                      field=_join(prefix, "tenant_id"))
    try:
        return model.model_validate(value)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = "is not a field of this body"
        raise Problem(422, "invalid-input", message,
                      field=_join(prefix, loc_to_field(tuple(first["loc"])))) from None


def _join(prefix: str, name: str) -> str:
    return prefix + ("." if prefix and not name.startswith("[") else "") + name


def _write(autodev: AutoDev, tenant_id: str, key: str | None, digest: str, ttl: timedelta,
           calls: list[Callable[[], Coroutine[Any, Any, Any]]],
           respond: Callable[[list[Any]], dict[str, Any]], *, batch: bool) -> Outcome:
    """In a worker thread: look the key up, do every call, keep the response; one
    transaction."""
    loop = thread_loop()
    serial = sqlite_writer if autodev.database.is_sqlite else contextlib.nullcontext()
    with serial, autodev.database.transaction() as session:
        if key is not None:
            stored = IdempotencyRecords.find(session, tenant_id, key, ttl=ttl)
            if stored is not None:
                return _replayed(stored.request_hash, digest, stored.status_code, stored.body)
        results = []
        for index, make in enumerate(calls):
            try:
                results.append(loop.run_until_complete(make()))
            except ValidationError as exc:
                prefix = f"[{index}]" if batch else ""
                raise from_error(exc, field_prefix=prefix) from None
            except NotFoundError as exc:
                # A named row (a workflow, a tool, a version) this tenant does not have: 404,
                # as for any other tenant's row, naming the field when the caller knows it.
                prefix = f"[{index}]" if batch else ""
                field = getattr(exc, "field", None)
                raise Problem(404, "not-found", str(exc),
                              field=join_field(prefix, field) if field else prefix or None
                              ) from None
        body = respond(results)
        if key is not None:
            IdempotencyRecords.save(session, tenant_id, key, request_hash=digest,
                                    status_code=201, body=body)
    return Outcome(201, body, recorded=len(calls))


def _replay(autodev: AutoDev, tenant_id: str, key: str, digest: str) -> Outcome:
    with autodev.database.session(readonly=True) as session:
        stored = IdempotencyRecords.find(session, tenant_id, key)
    if stored is None:
        raise Problem(503, "busy", "the request could not be recorded; retry it",
                      headers={"Retry-After": "1"})
    return _replayed(stored.request_hash, digest, stored.status_code, stored.body)


def _replayed(stored_hash: str, digest: str, status: int, body: dict[str, Any]) -> Outcome:
    if stored_hash != digest:
        raise Problem(409, "idempotency-key-reused", "this Idempotency-Key was used for "
                      "another request (different method, path or body); use a new key",
                      field="Idempotency-Key")
    return Outcome(status, body, replayed=True)


def thread_loop() -> asyncio.AbstractEventLoop:
    """This worker thread's own event loop (made once per thread)."""
    loop: asyncio.AbstractEventLoop | None = getattr(_thread_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _thread_loops.loop = loop
    return loop
