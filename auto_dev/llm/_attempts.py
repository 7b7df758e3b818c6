"""Retry policy and failure summaries for :class:`~auto_dev.llm.client.LLMClient`."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from auto_dev._exceptions import (
    LLMAuthError,
    LLMCircuitOpenError,
    LLMError,
    LLMModelNotFoundError,
    LLMRateLimitedError,
    LLMTimeoutError,
    LLMUnavailableError,
    ValidationError,
)
from auto_dev.llm.breaker import CircuitBreaker
from auto_dev.llm.health import LLMErrorKind, LLMFailure, clip_message, error_kind
from auto_dev.llm.types import ChatMessage

if TYPE_CHECKING:
    from auto_dev.llm.deployments import Deployment

#: Errors worth another attempt on the same deployment.
RETRYABLE = (LLMRateLimitedError, LLMTimeoutError, LLMUnavailableError)
#: Errors that say the deployment is unhealthy (they count against its circuit breaker);
#: context-window and bad-request errors are the caller's problem and do not. A model the
#: endpoint does not know is the deployment's configuration, like a refused key.
BREAKER_ERRORS = (
    LLMRateLimitedError, LLMTimeoutError, LLMUnavailableError, LLMAuthError,
    LLMModelNotFoundError,
)
#: Longest wait before a retry; a provider asking for more is skipped for the next deployment.
MAX_BACKOFF_S = 60.0

_ROLES = frozenset({"system", "user", "assistant", "tool"})


@dataclass(slots=True)
class CallState:
    """What happened so far in one logical call (all its attempts)."""

    errors: list[tuple[str, Exception]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: Every failed attempt and skipped deployment, for :attr:`LLMError.failures`.
    failures: list[LLMFailure] = field(default_factory=list)
    cost_usd: float = 0.0
    attempts: int = 0


def attempt_failure(deployment: Deployment, error: Exception) -> LLMFailure:
    """What one failed attempt on ``deployment`` says, for health reports."""
    kind = error_kind(error)
    message = str(error)
    if kind is LLMErrorKind.UNREACHABLE:
        message = f"cannot reach {_without_credentials(deployment.api_base)}: {message}"
    return LLMFailure(kind, deployment.model, deployment.id, clip_message(message))


def skipped_failure(deployment: Deployment, breaker: CircuitBreaker) -> LLMFailure:
    """A deployment not tried because its circuit is open."""
    snap = breaker.snapshot()
    return LLMFailure(
        LLMErrorKind.CIRCUIT_OPEN, deployment.model, deployment.id,
        f"circuit open after {snap.consecutive_failures} consecutive failures; "
        f"next trial in {snap.retry_in_s:.1f}s",
    )


def _without_credentials(url: str | None) -> str:
    if not url:
        return "the provider's default endpoint"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "the configured api_base"
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


def backoff(attempt: int, err: LLMError, base_s: float, rng: random.Random) -> float | None:
    """Seconds to wait before retry ``attempt + 1``; ``None`` when the provider asks for
    longer than :data:`MAX_BACKOFF_S` (move on to the next deployment instead)."""
    retry_after = getattr(err, "retry_after_s", None)
    if isinstance(retry_after, int | float) and retry_after >= 0:
        return float(retry_after) if retry_after <= MAX_BACKOFF_S else None
    base = base_s * (2**attempt)
    # Jitter in [base/2, base]: concurrent callers do not retry in lockstep.
    return float(min(MAX_BACKOFF_S, base * (0.5 + 0.5 * rng.random())))


def final_error(
    group: str, state: CallState, breakers: Mapping[str, CircuitBreaker]
) -> Exception:
    """The error a call raises when no deployment answered.

    Every attempt failing the same way raises that kind (e.g. rate limited); mixed failures
    raise :class:`~auto_dev.LLMUnavailableError`, open circuits alone
    :class:`~auto_dev.LLMCircuitOpenError`. The last underlying error is the ``__cause__``;
    ``failures`` lists every failed attempt and skipped deployment.
    """
    if not state.errors:
        wait = min((breakers[d].snapshot().retry_in_s for d in state.skipped), default=0.0)
        circuit_open = LLMCircuitOpenError(
            f"model group {group!r}: circuit open for every deployment "
            f"({', '.join(state.skipped)}); next trial in {wait:.1f}s"
        )
        circuit_open.failures = tuple(state.failures)
        return circuit_open
    detail = "; ".join(f"{dep}: {err}"[:300] for dep, err in state.errors[-6:])
    if state.skipped:
        detail += f"; circuit open: {', '.join(sorted(set(state.skipped)))}"
    kinds = {type(err) for _, err in state.errors}
    last = state.errors[-1][1]
    message = f"model group {group!r}: every deployment failed ({detail})"
    error = (
        type(last)(message)
        if len(kinds) == 1 and not state.skipped
        else LLMUnavailableError(message)
    )
    error.__cause__ = last
    if isinstance(error, LLMError):
        error.failures = tuple(state.failures)
    return error


def check_messages(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """Copies of ``messages`` after checking their shape; errors name the message."""
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise ValidationError("messages", "must be a list of {'role', 'content'} objects")
    if not messages:
        raise ValidationError("messages", "must not be empty")
    out = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValidationError(f"messages[{index}]", "must be an object")
        role = message.get("role")
        if role not in _ROLES:
            raise ValidationError(f"messages[{index}].role", f"unknown role {role!r}")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise ValidationError(f"messages[{index}].content", "must be a string or a list")
        out.append(dict(message))
    return out
