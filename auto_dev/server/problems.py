"""Errors as RFC 7807 problem details (``application/problem+json``).

Every error the service answers is a JSON object with ``type``, ``title``, ``status`` and
``detail``, plus ``field`` when one field of the request is to blame (``inputs.args[0]``,
``[2].success`` in a batch, ``Idempotency-Key`` for a header). auto-dev's own errors map to
statuses here, in one place: bad input 422, unknown (or another tenant's) row 404, a forbidden
status move 409, a gate's refusal 403, a busy database 503.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from auto_dev._exceptions import (
    AutoDevError,
    DatabaseLockedError,
    GateDeniedError,
    IllegalTransitionError,
    NotFoundError,
    SandboxError,
    StorageError,
    ValidationError,
)

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
#: ``type`` URIs: relative references, documented in the README's service section.
TYPE_BASE = "/problems/"

_TITLES = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
    405: "Method not allowed", 409: "Conflict", 413: "Request too large",
    415: "Unsupported media type", 422: "Invalid input", 429: "Too many requests",
    500: "Internal error", 503: "Service unavailable",
}


class Problem(Exception):
    """An error answered as problem JSON. ``kind`` becomes the ``type`` URI."""

    def __init__(self, status: int, kind: str, detail: str, *, field: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        self.status = status
        self.kind = kind
        self.detail = detail
        self.field = field
        self.headers = headers or {}
        self.extra = extra
        super().__init__(detail)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": TYPE_BASE + self.kind,
                                "title": _TITLES.get(self.status, "Error"),
                                "status": self.status, "detail": self.detail}
        if self.field is not None:
            body["field"] = self.field
        body.update(self.extra)
        return body

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers,
                            media_type=PROBLEM_JSON)


def from_error(exc: AutoDevError, *, field_prefix: str = "") -> Problem:
    """The problem an auto-dev error is to an HTTP client."""
    if isinstance(exc, ValidationError):
        return Problem(422, "invalid-input", exc.problem,
                       field=join_field(field_prefix, exc.field))
    if isinstance(exc, NotFoundError):
        return Problem(404, "not-found", str(exc))
    if isinstance(exc, IllegalTransitionError):
        return Problem(409, "conflict", str(exc))
    if isinstance(exc, GateDeniedError):
        return Problem(403, "gate-denied", exc.reason)
    if isinstance(exc, DatabaseLockedError):
        return Problem(503, "busy", "the database is busy; retry shortly",
                       headers={"Retry-After": "1"})
    if isinstance(exc, StorageError | SandboxError):
        log.error("request_failed", error=str(exc), error_type=type(exc).__name__)
        return Problem(503, "unavailable", "a backend of the service failed; retry later",
                       headers={"Retry-After": "5"})
    log.error("request_failed", error=str(exc), error_type=type(exc).__name__)
    return Problem(500, "internal", "the request failed inside auto-dev")


def join_field(prefix: str, name: str) -> str:
    """``prefix`` (``[2]`` in a batch) and a field path (``inputs.args[0]``) as one path."""
    if not prefix:
        return name
    return prefix + (name if name.startswith("[") else "." + name)


def loc_to_field(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as a field path: ``("segments", 0, "kind")`` ->
    ``segments[0].kind``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def install(app: FastAPI) -> None:
    """Answer every error (ours, FastAPI's, Starlette's, unexpected ones) as problem JSON."""

    @app.exception_handler(Problem)
    async def _problem(_request: Request, exc: Problem) -> JSONResponse:
        return exc.response()

    @app.exception_handler(AutoDevError)
    async def _autodev(_request: Request, exc: AutoDevError) -> JSONResponse:
        return from_error(exc).response()

    @app.exception_handler(RequestValidationError)
    async def _request_validation(_request: Request, exc: RequestValidationError
                                  ) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = tuple(first.get("loc", ()))
        # FastAPI prefixes where the value came from: "query", "path", "header", "body".
        where = loc[1:] if loc and loc[0] in ("query", "path", "header", "body") else loc
        return Problem(422, "invalid-input", str(first.get("msg", "invalid value")),
                       field=loc_to_field(where) or None).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http")
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "")
        return Problem(exc.status_code, kind, detail,
                       headers=dict(exc.headers or {})).response()

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected_error", error_type=type(exc).__name__)
        return Problem(500, "internal", "the request failed inside auto-dev").response()
