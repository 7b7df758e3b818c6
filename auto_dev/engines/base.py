"""What learning engines share: the context the framework binds them to, and validation results.

Everything tenant-specific reaches an engine through the :class:`~auto_dev.engines.pipeline.Cycle`
it is handed; the context holds only what is the same for every tenant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from auto_dev.evolution.program import Proposal
from auto_dev.sandbox.base import Limits, SandboxResult

if TYPE_CHECKING:
    from auto_dev.abc import BaseLearningEngine, Mutator, Sandbox
    from auto_dev.candidates.store import CandidateStore
    from auto_dev.config import Settings
    from auto_dev.db import Database
    from auto_dev.events import EventBus
    from auto_dev.gates.capability import Gatekeeper
    from auto_dev.llm.types import ChatLLM
    from auto_dev.types import CycleRequest, EvolutionRunResult


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """A proposal's sandbox outcome and objective vector. ``passed`` is never true for an empty,
    comment-only or unchanged program."""

    proposal: Proposal
    sandbox: SandboxResult
    objectives: dict[str, float]
    passed: bool
    reason: str
    evaluation_id: str | None = None


class SkillWriting(Protocol):
    """Writes a new skill for a group of failures (:class:`auto_dev.llm.skills.SkillWriter`)."""

    async def write(self, group: Any, sandbox: Sandbox, *, tenant_id: str | None = None,
                    run_id: str | None = None) -> Any: ...


class CyclePipelineRunner(Protocol):
    """The framework's pipeline, as engines and the registry reach it."""

    def request(self, engine: str, target: str, *, budget: int | None = None,
                trigger: str = "manual", agent: str | None = None,
                tenant_id: str | None = None) -> CycleRequest: ...

    async def run_for(self, engine: BaseLearningEngine, target: str, *, budget: int | None,
                      trigger: str, agent: str | None,
                      tenant_id: str | None) -> EvolutionRunResult: ...


@dataclass(slots=True)
class EngineContext:
    """What every engine of one :class:`auto_dev.AutoDev` shares, whatever the tenant."""

    database: Database
    bus: EventBus
    sandbox: Sandbox
    store: CandidateStore
    gatekeeper: Gatekeeper
    settings: Settings
    mutators: list[Mutator] = field(default_factory=list)
    #: Mix weights of ``mutators`` and a sentence saying which strategy they amount to.
    mutator_weights: list[float] = field(default_factory=list)
    strategy: str = "offline: AST repair operators"
    llm: ChatLLM | None = None
    skill_writer: SkillWriting | None = None
    pipeline: CyclePipelineRunner | None = None

    @property
    def limits(self) -> Limits:
        return Limits(timeout_s=self.settings.case_timeout_s,
                      memory_mb=self.settings.case_memory_mb)

    @property
    def offline(self) -> bool:
        return self.llm is None


