"""The auto-dev error tree.

Every error auto-dev raises derives from :class:`AutoDevError`. Third-party errors (SQLAlchemy,
docker, litellm) are caught at the module that talks to them and re-raised as one of these with
``raise ... from exc``, so callers never need to import a backend's exceptions.

::

    AutoDevError
    ├── ConfigurationError            a setting is missing or invalid (names the setting)
    ├── ValidationError               bad input: names the field and the problem (also a ValueError)
    │   └── MalformedEventError       an event payload that cannot be accepted
    ├── NotFoundError                 a row the caller named does not exist (in this tenant)
    ├── IllegalTransitionError        a candidate status move that the lifecycle forbids
    │   └── StaleCandidateError       promoting a candidate made against a replaced version
    ├── GateDeniedError               a capability gate said no (carries the reason)
    ├── StorageError                  the database failed (locked, unreachable, constraint)
    │   └── DatabaseLockedError       SQLite "database is locked" after the busy timeout
    ├── SandboxError                  the sandbox itself failed (not the candidate)
    │   ├── SandboxUnavailableError   the requested backend cannot run here (says why)
    │   └── SandboxProtocolError      the harness answered something that is not the protocol
    ├── EngineError                   a learning engine failed or is misregistered
    ├── SchedulerError                scheduling failed (bad interval, unknown job)
    ├── ToolCallError                 a workflow's tool call failed (raised, crashed, broke a limit)
    │   └── ToolTimeoutError          the tool call ran past its time limit
    └── LLMError                      a model call failed
        ├── LLMNotConfiguredError     no model configured: offline mode
        ├── LLMRateLimitedError       the provider said 429
        ├── LLMTimeoutError           the call timed out
        ├── LLMContextWindowError     the prompt does not fit the model
        ├── LLMAuthError              the key was refused
        ├── LLMModelNotFoundError     the endpoint does not know the model (404)
        ├── LLMUnavailableError       provider down, circuit open, or every fallback failed
        │   ├── LLMUnreachableError   nothing answers at the API base (refused, no such host)
        │   └── LLMCircuitOpenError   every deployment's circuit breaker is open
        ├── LLMResponseError          the answer could not be used (empty, malformed)
        └── BudgetExceededError       the call would take the tenant over its daily budget
"""

from __future__ import annotations

from typing import Any


class AutoDevError(Exception):
    """Root of every error auto-dev raises."""


class ConfigurationError(AutoDevError):
    """A setting is missing or invalid."""


class ValidationError(AutoDevError, ValueError):
    """Bad input. ``field`` names what was wrong, ``problem`` says how."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class MalformedEventError(ValidationError):
    """An event payload that cannot be accepted."""


class NotFoundError(AutoDevError, LookupError):
    """A row the caller named does not exist in this tenant."""


class IllegalTransitionError(AutoDevError):
    """A candidate status move that the lifecycle forbids."""


class StaleCandidateError(IllegalTransitionError):
    """A candidate made against a version that is no longer active cannot be promoted as is:
    it must be re-evaluated against the active version (the message says against what and why
    it was refused)."""


class GateDeniedError(AutoDevError, PermissionError):
    """A capability gate refused. ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class StorageError(AutoDevError):
    """The database failed."""


class DatabaseLockedError(StorageError):
    """SQLite reported the database locked after the busy timeout."""


class SandboxError(AutoDevError):
    """The sandbox itself failed (not the candidate)."""


class SandboxUnavailableError(SandboxError):
    """The requested sandbox backend cannot run here."""


class SandboxProtocolError(SandboxError):
    """The harness answered something that is not the protocol."""


class EngineError(AutoDevError):
    """A learning engine failed or is misregistered."""


class SchedulerError(AutoDevError):
    """Scheduling failed."""


class ToolCallError(AutoDevError):
    """A tool called by a workflow step failed: it raised, crashed, broke a resource limit or
    returned something unusable. ``tool`` names it; the message carries the tool's error text."""

    def __init__(self, tool: str, message: str) -> None:
        self.tool = tool
        super().__init__(message)


class ToolTimeoutError(ToolCallError):
    """A tool called by a workflow step ran past its time limit."""


class LLMError(AutoDevError):
    """A model call failed.

    ``failures`` lists what each attempt of the call ran into (an
    :class:`auto_dev.llm.health.LLMFailure` per failed attempt, with its kind, model and
    deployment), so callers can report *why* a model is unusable; empty when the error did not
    come from :class:`~auto_dev.llm.client.LLMClient`'s attempts.
    """

    failures: tuple[Any, ...] = ()


class LLMNotConfiguredError(LLMError):
    """No model is configured: auto-dev runs offline."""


class LLMRateLimitedError(LLMError):
    """The provider rate-limited the call."""


class LLMTimeoutError(LLMError):
    """The model call timed out."""


class LLMContextWindowError(LLMError):
    """The prompt does not fit the model's context window."""


class LLMAuthError(LLMError):
    """The provider refused the credentials."""


class LLMModelNotFoundError(LLMError):
    """The endpoint answered that it does not know the model (HTTP 404)."""


class LLMUnavailableError(LLMError):
    """The provider is down, its circuit is open, or every fallback failed."""


class LLMUnreachableError(LLMUnavailableError):
    """Nothing answers at the API base: connection refused, or the host does not resolve."""


class LLMCircuitOpenError(LLMUnavailableError):
    """No deployment was tried: every circuit breaker is open after repeated failures."""


class LLMResponseError(LLMError):
    """The model answered, but the answer cannot be used."""


class BudgetExceededError(LLMError):
    """The call would take the tenant over its daily budget."""
