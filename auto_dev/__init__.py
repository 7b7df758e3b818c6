"""auto-dev: a self-improving evolutionary engine for AI agents.

The public API is listed in ``__all__``. Names are loaded on first use (PEP 562), so that
``import auto_dev`` and ``auto-dev --help`` stay fast and nothing imports litellm, docker or
SQLAlchemy until it is needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from auto_dev._exceptions import (
    AutoDevError,
    BudgetExceededError,
    ConfigurationError,
    DatabaseLockedError,
    EngineError,
    GateDeniedError,
    IllegalTransitionError,
    LLMAuthError,
    LLMCircuitOpenError,
    LLMContextWindowError,
    LLMError,
    LLMModelNotFoundError,
    LLMNotConfiguredError,
    LLMRateLimitedError,
    LLMResponseError,
    LLMTimeoutError,
    LLMUnavailableError,
    LLMUnreachableError,
    MalformedEventError,
    NotFoundError,
    SandboxError,
    SandboxProtocolError,
    SandboxUnavailableError,
    SchedulerError,
    StaleCandidateError,
    StorageError,
    ToolCallError,
    ToolTimeoutError,
    ValidationError,
)

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "ALL_TENANTS": "auto_dev.events",
    "AlphaEvolver": "auto_dev.engines.alpha_evolver",
    "AutoDev": "auto_dev.service",
    "BaseLearningEngine": "auto_dev.abc",
    "CandidateApproved": "auto_dev.events",
    "CandidateCreated": "auto_dev.events",
    "CandidatePromoted": "auto_dev.events",
    "CandidateRejected": "auto_dev.events",
    "CandidateRolledBack": "auto_dev.events",
    "CandidateStatus": "auto_dev.models",
    "CandidateStore": "auto_dev.candidates.store",
    "Case": "auto_dev.sandbox.base",
    "CaseResult": "auto_dev.sandbox.base",
    "CaseStatus": "auto_dev.sandbox.base",
    "Cycle": "auto_dev.engines.pipeline",
    "CycleRequest": "auto_dev.types",
    "Database": "auto_dev.db",
    "DockerSandbox": "auto_dev.sandbox.docker",
    "EngineContext": "auto_dev.engines.base",
    "EngineRegistry": "auto_dev.engines.registry",
    "Event": "auto_dev.events",
    "EventBus": "auto_dev.events",
    "EvolutionRunResult": "auto_dev.types",
    "EvolutionScheduler": "auto_dev.scheduler",
    "EvolutionSearch": "auto_dev.evolution.search",
    "Gatekeeper": "auto_dev.gates.capability",
    "Limits": "auto_dev.sandbox.base",
    "Memento": "auto_dev.engines.memento",
    "MutationContext": "auto_dev.evolution.program",
    "Mutator": "auto_dev.abc",
    "Objective": "auto_dev.abc",
    "ProcessSandbox": "auto_dev.sandbox.process",
    "Program": "auto_dev.evolution.program",
    "Proposal": "auto_dev.evolution.program",
    "RaySandbox": "auto_dev.sandbox.ray",
    "ReviewService": "auto_dev.candidates.review",
    "Sandbox": "auto_dev.abc",
    "SandboxJob": "auto_dev.sandbox.base",
    "SandboxResult": "auto_dev.sandbox.base",
    "Settings": "auto_dev.config",
    "SignalRecorded": "auto_dev.events",
    "SkillExecuted": "auto_dev.events",
    "SkillExecutionEvent": "auto_dev.events",
    "TaskEvent": "auto_dev.events",
    "TaskFailed": "auto_dev.events",
    "TaskSucceeded": "auto_dev.events",
    "TenantSettings": "auto_dev.gates.settings",
    "TenantView": "auto_dev.queries",
    "ToolInvoker": "auto_dev.abc",
    "ValidationResult": "auto_dev.engines.base",
    "WorkflowEvolver": "auto_dev.engines.workflow_evolver",
    "configure_logging": "auto_dev.logging",
    "create_sandbox": "auto_dev.sandbox.factory",
    "load_settings": "auto_dev.config",
}

__all__ = [
    "ALL_TENANTS",
    "AlphaEvolver",
    "AutoDev",
    "AutoDevError",
    "BaseLearningEngine",
    "BudgetExceededError",
    "CandidateApproved",
    "CandidateCreated",
    "CandidatePromoted",
    "CandidateRejected",
    "CandidateRolledBack",
    "CandidateStatus",
    "CandidateStore",
    "Case",
    "CaseResult",
    "CaseStatus",
    "ConfigurationError",
    "Cycle",
    "CycleRequest",
    "Database",
    "DatabaseLockedError",
    "DockerSandbox",
    "EngineContext",
    "EngineError",
    "EngineRegistry",
    "Event",
    "EventBus",
    "EvolutionRunResult",
    "EvolutionScheduler",
    "EvolutionSearch",
    "GateDeniedError",
    "Gatekeeper",
    "IllegalTransitionError",
    "LLMAuthError",
    "LLMCircuitOpenError",
    "LLMContextWindowError",
    "LLMError",
    "LLMModelNotFoundError",
    "LLMNotConfiguredError",
    "LLMRateLimitedError",
    "LLMResponseError",
    "LLMTimeoutError",
    "LLMUnavailableError",
    "LLMUnreachableError",
    "Limits",
    "MalformedEventError",
    "Memento",
    "MutationContext",
    "Mutator",
    "NotFoundError",
    "Objective",
    "ProcessSandbox",
    "Program",
    "Proposal",
    "RaySandbox",
    "ReviewService",
    "Sandbox",
    "SandboxError",
    "SandboxJob",
    "SandboxProtocolError",
    "SandboxResult",
    "SandboxUnavailableError",
    "SchedulerError",
    "Settings",
    "SignalRecorded",
    "SkillExecuted",
    "SkillExecutionEvent",
    "StaleCandidateError",
    "StorageError",
    "TaskEvent",
    "TaskFailed",
    "TaskSucceeded",
    "TenantSettings",
    "TenantView",
    "ToolCallError",
    "ToolInvoker",
    "ToolTimeoutError",
    "ValidationError",
    "ValidationResult",
    "WorkflowEvolver",
    "__version__",
    "configure_logging",
    "create_sandbox",
    "load_settings",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'auto_dev' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from auto_dev.abc import BaseLearningEngine, Mutator, Objective, Sandbox
    from auto_dev.candidates.review import ReviewService
    from auto_dev.candidates.store import CandidateStore
    from auto_dev.config import Settings, load_settings
    from auto_dev.db import Database
    from auto_dev.engines.alpha_evolver import AlphaEvolver
    from auto_dev.engines.base import EngineContext, ValidationResult
    from auto_dev.engines.memento import Memento
    from auto_dev.engines.pipeline import Cycle
    from auto_dev.engines.registry import EngineRegistry
    from auto_dev.engines.workflow_evolver import WorkflowEvolver
    from auto_dev.events import (
        ALL_TENANTS,
        CandidateApproved,
        CandidateCreated,
        CandidatePromoted,
        CandidateRejected,
        CandidateRolledBack,
        Event,
        EventBus,
        SignalRecorded,
        SkillExecuted,
        SkillExecutionEvent,
        TaskEvent,
        TaskFailed,
        TaskSucceeded,
    )
    from auto_dev.evolution.program import MutationContext, Program, Proposal
    from auto_dev.evolution.search import EvolutionSearch
    from auto_dev.gates.capability import Gatekeeper
    from auto_dev.gates.settings import TenantSettings
    from auto_dev.logging import configure_logging
    from auto_dev.models import CandidateStatus
    from auto_dev.queries import TenantView
    from auto_dev.sandbox.base import (
        Case,
        CaseResult,
        CaseStatus,
        Limits,
        SandboxJob,
        SandboxResult,
    )
    from auto_dev.sandbox.docker import DockerSandbox
    from auto_dev.sandbox.factory import create_sandbox
    from auto_dev.sandbox.process import ProcessSandbox
    from auto_dev.sandbox.ray import RaySandbox
    from auto_dev.scheduler import EvolutionScheduler
    from auto_dev.service import AutoDev
    from auto_dev.types import CycleRequest, EvolutionRunResult
