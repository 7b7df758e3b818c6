"""How usable a model has been: its failures by kind, for the CLI, run stats and engines.

A wrong API key, an unknown model or an unreachable API base must not hide behind a search
that quietly falls back to AST operators. :class:`LLMHealth` counts calls that were answered,
calls that failed, and every failed attempt by (kind, model, deployment) with its latest
message. :class:`~auto_dev.llm.client.LLMClient` keeps one over its lifetime and
:class:`~auto_dev.llm.mutator.LLMMutator` one over its calls; :meth:`LLMHealth.mark` and
``report(since=mark)`` give the share of one run, which is how a search reports the LLM
errors of its own run (see :mod:`auto_dev.evolution.llm_watch`).

Nothing here imports litellm.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from auto_dev._exceptions import (
    AutoDevError,
    BudgetExceededError,
    ConfigurationError,
    LLMAuthError,
    LLMCircuitOpenError,
    LLMContextWindowError,
    LLMModelNotFoundError,
    LLMNotConfiguredError,
    LLMRateLimitedError,
    LLMResponseError,
    LLMTimeoutError,
    LLMUnavailableError,
    LLMUnreachableError,
)

if TYPE_CHECKING:
    from auto_dev.llm.client import DeploymentStatus

#: Longest message kept per error summary.
MESSAGE_CHARS = 300


class LLMErrorKind(enum.StrEnum):
    """Why a model call failed, in words a user can act on."""

    AUTHENTICATION = "authentication"
    UNKNOWN_MODEL = "unknown_model"
    UNREACHABLE = "unreachable"
    CONFIGURATION = "configuration"
    CIRCUIT_OPEN = "circuit_open"
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    CONTEXT_WINDOW = "context_window"
    BUDGET = "budget"
    RESPONSE = "response"
    UNAVAILABLE = "unavailable"
    OTHER = "error"


#: Kinds that no retry fixes: the model stays unusable until someone changes the configuration.
CONFIGURATION_KINDS = frozenset({
    LLMErrorKind.AUTHENTICATION, LLMErrorKind.UNKNOWN_MODEL, LLMErrorKind.UNREACHABLE,
    LLMErrorKind.CONFIGURATION,
})

# Most specific first: subclasses before their bases.
_KINDS: tuple[tuple[type[BaseException], LLMErrorKind], ...] = (
    (BudgetExceededError, LLMErrorKind.BUDGET),
    (LLMAuthError, LLMErrorKind.AUTHENTICATION),
    (LLMModelNotFoundError, LLMErrorKind.UNKNOWN_MODEL),
    (LLMUnreachableError, LLMErrorKind.UNREACHABLE),
    (LLMCircuitOpenError, LLMErrorKind.CIRCUIT_OPEN),
    (LLMRateLimitedError, LLMErrorKind.RATE_LIMITED),
    (LLMTimeoutError, LLMErrorKind.TIMEOUT),
    (LLMContextWindowError, LLMErrorKind.CONTEXT_WINDOW),
    (LLMResponseError, LLMErrorKind.RESPONSE),
    (LLMUnavailableError, LLMErrorKind.UNAVAILABLE),
    (LLMNotConfiguredError, LLMErrorKind.CONFIGURATION),
    (ConfigurationError, LLMErrorKind.CONFIGURATION),
)


def error_kind(error: BaseException) -> LLMErrorKind:
    """The kind of one error of the LLM layer."""
    for cls, kind in _KINDS:
        if isinstance(error, cls):
            return kind
    return LLMErrorKind.OTHER


def stored_error_kind(text: str) -> LLMErrorKind:
    """The kind of an error stored as ``"ClassName: message"`` (the ledger's form)."""
    from auto_dev import _exceptions

    cls = getattr(_exceptions, text.split(":", 1)[0].strip(), None)
    if isinstance(cls, type):
        for base, kind in _KINDS:
            if issubclass(cls, base):
                return kind
    return LLMErrorKind.OTHER


def clip_message(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 3] + "..."


@dataclass(frozen=True, slots=True)
class LLMFailure:
    """One failed attempt: its kind, the litellm model and deployment tried, and the message."""

    kind: LLMErrorKind
    model: str
    deployment: str | None
    message: str


def failures_of(error: AutoDevError, *, model: str) -> tuple[LLMFailure, ...]:
    """The failed attempts behind ``error``: those it carries (``LLMError.failures``, set by
    :class:`~auto_dev.llm.client.LLMClient`), else one made from the error itself, attributed
    to ``model``."""
    carried = tuple(f for f in getattr(error, "failures", ()) if isinstance(f, LLMFailure))
    if carried:
        return carried
    return (LLMFailure(error_kind(error), model, None, clip_message(str(error))),)


@dataclass(frozen=True, slots=True)
class LLMErrorSummary:
    """Failed attempts of one kind on one model and deployment: how many, and the latest
    message."""

    kind: LLMErrorKind
    model: str
    deployment: str | None
    message: str
    count: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "model": self.model,
            "deployment": self.deployment,
            "message": self.message,
            "count": self.count,
        }


@dataclass(frozen=True, slots=True)
class LLMHealthReport:
    """What the model did over a period: calls answered and failed, the failed attempts by
    kind, and (when known) each deployment's circuit breaker.

    ``usable`` is false when calls were made and none was answered: the run got nothing from
    the model, whatever it was configured to do.
    """

    calls_answered: int = 0
    calls_failed: int = 0
    errors: tuple[LLMErrorSummary, ...] = ()
    breakers: tuple[DeploymentStatus, ...] = ()

    @property
    def used(self) -> bool:
        return self.calls_answered + self.calls_failed > 0

    @property
    def usable(self) -> bool:
        return self.calls_answered > 0 or self.calls_failed == 0

    @property
    def configuration_errors(self) -> tuple[LLMErrorSummary, ...]:
        """The errors no retry fixes (authentication, unknown model, unreachable, settings)."""
        return tuple(e for e in self.errors if e.kind in CONFIGURATION_KINDS)

    def describe(self, limit: int = 3) -> str:
        """One line naming the main errors: ``authentication x5 on openai/gpt-4o-mini
        (AuthenticationError: Incorrect API key provided); circuit_open x12``."""
        parts = []
        for summary in self.errors[:limit]:
            where = f" on {summary.model}" if summary.model else ""
            detail = "" if summary.kind is LLMErrorKind.CIRCUIT_OPEN else f" ({summary.message})"
            parts.append(f"{summary.kind} x{summary.count}{where}{detail}")
        if len(self.errors) > limit:
            parts.append(f"{len(self.errors) - limit} more")
        return "; ".join(parts)

    def merged(self, other: LLMHealthReport) -> LLMHealthReport:
        """Both reports' counts together (breakers: ``other``'s when it has any)."""
        counts: dict[tuple[LLMErrorKind, str, str | None], int] = {}
        messages: dict[tuple[LLMErrorKind, str, str | None], str] = {}
        for summary in (*self.errors, *other.errors):
            key = (summary.kind, summary.model, summary.deployment)
            counts[key] = counts.get(key, 0) + summary.count
            messages[key] = summary.message
        return LLMHealthReport(
            self.calls_answered + other.calls_answered,
            self.calls_failed + other.calls_failed,
            _summaries(counts, messages),
            other.breakers or self.breakers,
        )

    def cause(self) -> str:
        """The main error in a few words (``authentication on openai/gpt-4o``), or ``""``."""
        if not self.errors:
            return ""
        first = self.errors[0]
        return f"{first.kind} on {first.model}" if first.model else str(first.kind)

    def to_dict(self, *, errors: bool = True) -> dict[str, Any]:
        """JSON: counts, ``usable``, the breakers, and (unless ``errors=False``, for callers
        that list them apart) the error summaries."""
        out: dict[str, Any] = {
            "calls_answered": self.calls_answered,
            "calls_failed": self.calls_failed,
            "usable": self.usable,
            "breakers": [breaker_dict(b) for b in self.breakers],
        }
        if errors:
            out["errors"] = [e.to_dict() for e in self.errors]
        return out


def breaker_dict(status: DeploymentStatus) -> dict[str, Any]:
    """A deployment's circuit breaker as JSON."""
    return {
        "deployment": status.id,
        "model": status.model,
        "state": str(status.state),
        "consecutive_failures": status.consecutive_failures,
        "retry_in_s": round(status.retry_in_s, 3),
    }


_Key = tuple[LLMErrorKind, str, str | None]


def _summaries(counts: Mapping[_Key, int], messages: Mapping[_Key, str]) -> tuple[
    LLMErrorSummary, ...
]:
    # What needs a person first (a refused key outranks a flood of open-circuit skips), then
    # the most frequent.
    rows = [
        LLMErrorSummary(kind, model, deployment, messages.get((kind, model, deployment), ""), n)
        for (kind, model, deployment), n in counts.items()
        if n > 0
    ]
    rows.sort(key=lambda s: (s.kind not in CONFIGURATION_KINDS, -s.count, s.kind, s.model,
                             s.deployment or ""))
    return tuple(rows)


@dataclass(frozen=True, slots=True)
class HealthMark:
    """The counters of an :class:`LLMHealth` at one moment (see :meth:`LLMHealth.report`)."""

    calls_answered: int = 0
    calls_failed: int = 0
    counts: Mapping[_Key, int] = field(default_factory=dict)


class LLMHealth:
    """Thread-safe counters of model calls and their failures (bounded: one entry per kind,
    model and deployment)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answered = 0
        self._failed = 0
        self._counts: dict[_Key, int] = {}
        self._messages: dict[_Key, str] = {}

    def record_answer(self) -> None:
        """A call was answered (a cache hit included: the model is usable)."""
        with self._lock:
            self._answered += 1

    def record_failure(self, error: AutoDevError, *, model: str) -> list[LLMFailure]:
        """A call failed with ``error``; its attempts are counted by kind (see
        :meth:`record_failures`)."""
        return self.record_failures(failures_of(error, model=model))

    def record_failures(self, failures: Sequence[LLMFailure]) -> list[LLMFailure]:
        """One failed call made of ``failures`` (its attempts). Returns those of a kind, model
        and deployment not seen before, so that the caller can warn once, not per call."""
        fresh = []
        with self._lock:
            self._failed += 1
            for failure in failures:
                key = (failure.kind, failure.model, failure.deployment)
                if key not in self._counts:
                    fresh.append(failure)
                self._counts[key] = self._counts.get(key, 0) + 1
                self._messages[key] = failure.message
        return fresh

    def mark(self) -> HealthMark:
        with self._lock:
            return HealthMark(self._answered, self._failed, dict(self._counts))

    def report(
        self, *, since: HealthMark | None = None, breakers: Iterable[DeploymentStatus] = ()
    ) -> LLMHealthReport:
        """The counts since ``since`` (default: since this tracker was made)."""
        since = since or HealthMark()
        with self._lock:
            counts = {k: n - since.counts.get(k, 0) for k, n in self._counts.items()}
            messages = dict(self._messages)
            answered = self._answered - since.calls_answered
            failed = self._failed - since.calls_failed
        return LLMHealthReport(answered, failed, _summaries(counts, messages), tuple(breakers))


__all__ = [
    "CONFIGURATION_KINDS",
    "HealthMark",
    "LLMErrorKind",
    "LLMErrorSummary",
    "LLMFailure",
    "LLMHealth",
    "LLMHealthReport",
    "breaker_dict",
    "error_kind",
    "failures_of",
    "stored_error_kind",
]
