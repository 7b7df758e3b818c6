"""The one module that imports litellm, lazily.

Importing litellm costs ~2.7 s and, unless ``LITELLM_LOCAL_MODEL_COST_MAP=True`` is set first, it
tries to download its price list at import (retrying for seconds when offline). So nothing imports
it until the first model call, and that import sets the variable (without overriding a user's own
choice). Every litellm exception is mapped here into auto-dev's :class:`~auto_dev.LLMError` tree;
nothing past this module sees a litellm type.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import socket
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import structlog

from auto_dev._exceptions import (
    LLMAuthError,
    LLMContextWindowError,
    LLMError,
    LLMModelNotFoundError,
    LLMRateLimitedError,
    LLMResponseError,
    LLMTimeoutError,
    LLMUnavailableError,
    LLMUnreachableError,
)

log = structlog.get_logger(__name__)

_module: ModuleType | None = None
_import_lock = threading.Lock()


def load() -> ModuleType:
    """Import litellm once (setting the offline price-map switch before the import)."""
    global _module
    if _module is not None:
        return _module
    with _import_lock:
        if _module is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            import litellm

            # Without this, litellm prints "Give Feedback / Get Help" banners to stdout on every
            # exception, which would corrupt CLI output.
            litellm.suppress_debug_info = True
            _module = litellm
    return _module


@dataclass(frozen=True, slots=True)
class Completion:
    """The parts of a litellm response auto-dev uses."""

    text: str | None
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None


async def acompletion(
    *,
    model: str,
    messages: list[dict[str, Any]],
    params: dict[str, Any],
    max_tokens: int,
    temperature: float,
    timeout_s: float,
) -> Completion:
    """One chat completion through litellm, with no retries of its own (auto-dev retries).

    Raises only :class:`~auto_dev.LLMError` subclasses.
    """
    litellm = load()
    try:
        # The outer timeout is a backstop: litellm's own covers the HTTP exchange, not any work
        # it does around it. (asyncio.timeout, unlike wait_for, creates no extra task per call.)
        async with asyncio.timeout(timeout_s + 1.0):
            response = await litellm.acompletion(
                model=model,
                messages=messages,
                max_tokens=max_tokens,
                temperature=temperature,
                timeout=timeout_s,
                max_retries=0,
                num_retries=0,
                drop_params=True,
                **params,
            )
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        raise map_exception(exc) from exc
    try:
        choice = response.choices[0]
        text = choice.message.content
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        finish_reason = getattr(choice, "finish_reason", None)
    except (AttributeError, IndexError, TypeError, ValueError) as exc:
        raise LLMResponseError(f"{model}: the response has no usable choice: {exc}") from exc
    return Completion(text, prompt_tokens, completion_tokens, finish_reason)


def _retry_after(exc: BaseException) -> float | None:
    """Seconds the provider asked us to wait, from a Retry-After header, if any."""
    for headers in (
        getattr(exc, "litellm_response_headers", None),
        getattr(exc, "headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
    ):
        if not headers:
            continue
        try:
            value = headers.get("retry-after") or headers.get("Retry-After")
        except AttributeError:
            continue
        if value is None:
            continue
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


# litellm prefixes every message with its class names ("litellm.AuthenticationError:
# AuthenticationError: OpenAIException - Incorrect API key"): keep the provider's words.
_NOISE = re.compile(r"^(?:(?:litellm\.)?[A-Za-z]+(?:Error|Exception)(?: - |: ))+")
# Transport errors raised when no connection could be made at all (httpx, aiohttp).
_CONNECT_ERRORS = frozenset({"ConnectError", "ClientConnectorError", "ClientConnectorDNSError"})


def _plain(exc: BaseException) -> str:
    text = str(exc).strip()
    return _NOISE.sub("", text) or text


def _connect_failure(exc: BaseException) -> BaseException | None:
    """The error saying no connection could be made, if that is what ``exc`` comes from.

    litellm reports a refused connection as an ``InternalServerError`` ("Connection error."),
    so the cause chain is the only place that tells an unreachable endpoint from an outage.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    found: BaseException | None = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError | socket.gaierror):
            return current  # the most precise words: "[Errno 111] Connect call failed ..."
        if found is None and any(c.__name__ in _CONNECT_ERRORS for c in type(current).__mro__):
            found = current
        current = current.__cause__ or current.__context__
    return found


def map_exception(exc: BaseException) -> LLMError:
    """Translate a litellm (or transport) exception into auto-dev's error tree."""
    if isinstance(exc, LLMError):
        return exc
    litellm = load()
    message = f"{type(exc).__name__}: {_plain(exc)[:500]}"
    # Order matters: ContextWindowExceededError is a BadRequestError, Timeout an APIConnection one.
    if isinstance(exc, litellm.ContextWindowExceededError):
        return LLMContextWindowError(message)
    if isinstance(exc, litellm.RateLimitError):
        error: LLMError = LLMRateLimitedError(message)
        error.retry_after_s = _retry_after(exc)  # type: ignore[attr-defined]
        return error
    if isinstance(exc, litellm.Timeout | asyncio.TimeoutError | TimeoutError):
        return LLMTimeoutError(message)
    if isinstance(exc, litellm.AuthenticationError | litellm.PermissionDeniedError):
        return LLMAuthError(message)
    if isinstance(exc, litellm.NotFoundError):
        return LLMModelNotFoundError(message)
    refused = _connect_failure(exc)
    if refused is not None:
        return LLMUnreachableError(f"{type(refused).__name__}: {_plain(refused)[:500]}")
    if isinstance(
        exc,
        litellm.APIConnectionError
        | litellm.InternalServerError
        | litellm.ServiceUnavailableError
        | litellm.BadGatewayError,
    ):
        return LLMUnavailableError(message)
    if isinstance(exc, litellm.APIResponseValidationError | litellm.JSONSchemaValidationError):
        return LLMResponseError(message)
    if isinstance(exc, litellm.APIError) and (getattr(exc, "status_code", 0) or 0) >= 500:
        return LLMUnavailableError(message)
    return LLMError(message)


def known_price(model: str) -> tuple[float, float] | None:
    """(input, output) USD per token from litellm's bundled price map, or None if unknown."""
    litellm = load()
    cost_map: dict[str, Any] = litellm.model_cost
    candidates = [model]
    if "/" in model:
        candidates.append(model.split("/", 1)[1])
    for name in candidates:
        entry = cost_map.get(name)
        if isinstance(entry, dict) and (
            "input_cost_per_token" in entry or "output_cost_per_token" in entry
        ):
            return (
                float(entry.get("input_cost_per_token") or 0.0),
                float(entry.get("output_cost_per_token") or 0.0),
            )
    return None
