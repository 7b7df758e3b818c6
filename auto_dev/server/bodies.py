"""Reading a JSON request body within the limits: size, media type, nesting depth, numbers.

The size is checked against ``Content-Length`` before anything is read and again while the
body streams in (a chunked body has no length), so an oversized body is refused after at most
``max_bytes`` were read. Depth is checked on the parsed value without recursion; the parser's
own recursion limit (a body of many thousand ``[``) is reported as the same 400.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auto_dev.server.problems import Problem, loc_to_field

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class JsonBody:
    raw: bytes
    value: Any


async def read_json(request: Request, *, max_bytes: int, max_depth: int,
                    optional: bool = False) -> JsonBody:
    """The body as JSON; with ``optional`` an empty body (no Content-Type needed) is ``{}``."""
    if optional and request.headers.get("content-length") in ("0", None) \
            and "transfer-encoding" not in request.headers:
        return JsonBody(b"", {})
    _check_media_type(request.headers.get("content-type"))
    raw = await read_raw(request, max_bytes=max_bytes)
    if not raw.strip():
        raise Problem(400, "bad-json", "the body is empty: send a JSON object or array")
    return JsonBody(raw, decode_json(raw, max_depth=max_depth))


async def read_raw(request: Request, *, max_bytes: int) -> bytes:
    """The body's bytes, refused with 413 past ``max_bytes`` (declared or streamed)."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise Problem(400, "bad-request", "Content-Length must be a number")
        if int(length) > max_bytes:
            raise too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def decode_json(raw: bytes, *, max_depth: int) -> Any:
    """``raw`` as a JSON value nesting at most ``max_depth`` levels (400 otherwise)."""
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise _too_deep(max_depth) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise Problem(400, "bad-json", f"the body is not valid JSON: {exc}") from None
    if depth_of(value) > max_depth:
        raise _too_deep(max_depth)
    return value


def depth_of(value: Any) -> int:
    """How deeply arrays and objects nest in ``value`` (a scalar: 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            deepest = max(deepest, depth)
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _check_media_type(content_type: str | None) -> None:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/")
                                             and media.endswith("+json")):
        raise Problem(415, "unsupported-media-type",
                      f"send Content-Type: application/json (got {content_type or 'none'!r})",
                      field="Content-Type")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def too_large(max_bytes: int) -> Problem:
    return Problem(413, "too-large", f"the body is larger than {max_bytes} bytes "
                   "(server_max_body_bytes)")


def _too_deep(max_depth: int) -> Problem:
    return Problem(400, "too-deep", f"the JSON nests deeper than {max_depth} levels "
                   "(server_max_json_depth)")


async def parse_body(request: Request, model: type[M], *, optional: bool = False) -> M:
    """The body as ``model``, within the service's limits; 422 names the bad field."""
    settings = request.app.state.autodev.settings
    body = await read_json(request, max_bytes=settings.server_max_body_bytes,
                           max_depth=settings.server_max_json_depth, optional=optional)
    if not isinstance(body.value, dict):
        raise Problem(422, "invalid-input", "the body must be a JSON object")
    try:
        return model.model_validate(body.value)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        message = ("is not a field of this body" if first["type"] == "extra_forbidden"
                   else first["msg"])
        raise Problem(422, "invalid-input", message,
                      field=loc_to_field(tuple(first["loc"])) or None) from None


class BodyLimit:
    """ASGI middleware: no request body larger than ``max_bytes`` reaches a route, whatever the
    route does with it (413 from the declared length, or as soon as the stream exceeds it)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await too_large(self.max_bytes).response()(scope, receive, send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise too_large(self.max_bytes)
            return message

        await self.app(scope, limited, send)
