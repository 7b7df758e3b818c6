"""Retry policy and failure summaries for :class:`~auto_dev.llm.client.LLMClient`."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from auto_dev._exceptions import (
    LLMAuthError,
    LLMError,
    LLMRateLimitedError,
    LLMTimeoutError,
    LLMUnavailableError,
    ValidationError,
)
from auto_dev.llm.breaker import CircuitBreaker
from auto_dev.llm.types import ChatMessage

#: Errors worth another attempt on the same deployment.
RETRYABLE = (LLMRateLimitedError, LLMTimeoutError, LLMUnavailableError)
#: Errors that say the deployment is unhealthy (they count against its circuit breaker);
#: context-window and bad-request errors are the caller's problem and do not.
BREAKER_ERRORS = (LLMRateLimitedError, LLMTimeoutError, LLMUnavailableError, LLMAuthError)
#: Longest wait before a retry; a provider asking for more is skipped for the next deployment.
MAX_BACKOFF_S = 60.0

_ROLES = frozenset({"system", "user", "assistant", "tool"})


@dataclass(slots=True)
class CallState:
    """What happened so far in one logical call (all its attempts)."""

    errors: list[tuple[str, Exception]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    cost_usd: float = 0.0
    attempts: int = 0


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

    Every attempt failing the same way raises that kind (e.g. rate limited); mixed failures,
    or open circuits, raise :class:`~auto_dev.LLMUnavailableError`. The last underlying error
    is the ``__cause__``.
    """
    if not state.errors:
        wait = min((breakers[d].snapshot().retry_in_s for d in state.skipped), default=0.0)
        return LLMUnavailableError(
            f"model group {group!r}: circuit open for every deployment "
            f"({', '.join(state.skipped)}); next trial in {wait:.1f}s"
        )
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
