"""The public interfaces of auto-dev.

Each class here is a contract: backends and plugins implement it, the rest of auto-dev relies only
on what the docstrings promise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from auto_dev.engines.base import EngineContext, EvolutionRunResult, ValidationResult
    from auto_dev.events import Event
    from auto_dev.evolution.program import MutationContext, Program, Proposal
    from auto_dev.sandbox.base import SandboxJob, SandboxResult


class Sandbox(ABC):
    """Runs untrusted candidate code and reports per-case outcomes.

    Contract (checked by ``tests/sandbox/contract.py`` against every backend):

    * Candidate code never runs in the caller's process and never sees the caller's environment
      variables, working directory, database or network.
    * Every case runs in a fresh process; nothing one case or job writes (files, globals) is
      visible to the next.
    * Every limit in ``job.limits`` is enforced per case; a case that breaches one ends with the
      matching status (``timeout``, ``memory_exceeded``, ``output_exceeded``), a case whose process
      dies abnormally ends ``crashed``; a candidate's misbehaviour never raises from :meth:`run`.
    * Nothing a case starts outlives that case.
    * :meth:`run` may be called concurrently; results come back in case order.
    * :meth:`run` raises :class:`~auto_dev.SandboxError` only when the sandbox itself is broken.
    """

    #: Short backend name recorded on every evaluation (``"process"``, ``"docker"``).
    name: ClassVar[str] = "abstract"

    @abstractmethod
    async def run(self, job: SandboxJob) -> SandboxResult:
        """Run ``job`` and return one :class:`CaseResult` per case that ran, in case order."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook with a no-op default
        """Release workers, containers and temporary files. Idempotent."""

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class Mutator(ABC):
    """Proposes new programs from a parent.

    Contract: :meth:`mutate` returns at most ``context.max_proposals`` proposals, each a complete
    program (not a diff) that defines ``parent.entrypoint``. It may return fewer, or none, but never
    raises for a parent it cannot improve. A mutator never executes the code it proposes.
    """

    #: Name recorded as the mutation source (``"ast"``, ``"llm"``).
    name: ClassVar[str] = "abstract"

    @abstractmethod
    async def mutate(self, parent: Program, context: MutationContext) -> list[Proposal]:
        """Return new proposals derived from ``parent`` (and ``context.inspirations``)."""


Direction = Literal["max", "min"]


@dataclass(frozen=True, slots=True)
class Objective:
    """One axis of fitness.

    ``fn`` maps an evaluation (a dict with at least ``pass_rate``, ``latency_s``,
    ``peak_memory_kb``, ``code_size``, ``llm_cost_usd``) to a float. ``constraint``, if given,
    returns the amount by which a candidate violates a hard constraint (0.0 when satisfied);
    violations dominate everything else in selection.
    """

    name: str
    direction: Direction
    fn: Callable[[dict[str, Any]], float]
    constraint: Callable[[dict[str, Any]], float] | None = None


class BaseLearningEngine(ABC):
    """A learning engine: reacts to events and improves tools, skills or workflows.

    Lifecycle: ``analyze_episode`` turns an episode into a learning signal,
    ``propose_code_change`` turns a signal into proposals, ``validate_change`` runs one proposal in
    the sandbox and scores it, ``run_cycle`` does all of it for one target within a budget.

    Contract:

    * ``name`` is unique in a registry; ``capability`` is the gate checked before the engine may
      create candidates (e.g. ``"auto_dev.alpha_evolver"``).
    * ``subscriptions`` lists the event classes :meth:`handle_event` receives.
    * Every candidate an engine stores goes through ``self.context.candidates`` (the single choke
      point that consults the capability gate); an engine never writes candidate rows itself.
    * A proposal whose code is empty, comment-only or identical to its parent is never reported as
      passed.
    """

    name: ClassVar[str] = "abstract"
    capability: ClassVar[str] = "auto_dev.custom"
    subscriptions: ClassVar[tuple[type[Event], ...]] = ()

    _context: EngineContext | None = None

    def bind(self, context: EngineContext) -> None:
        """Attach the engine to an :class:`AutoDev` instance (called by the registry)."""
        self._context = context

    @property
    def context(self) -> EngineContext:
        if self._context is None:
            from auto_dev._exceptions import EngineError

            raise EngineError(f"engine {self.name!r} is not registered on an AutoDev instance")
        return self._context

    async def handle_event(self, event: Event) -> None:  # noqa: B027 - optional hook
        """Receive one subscribed event. The default does nothing; engines override it."""

    @abstractmethod
    async def analyze_episode(self, episode_id: str, **kwargs: Any) -> dict[str, Any]:
        """Extract a learning signal from one stored episode."""

    @abstractmethod
    async def propose_code_change(self, context: dict[str, Any], **kwargs: Any) -> list[Proposal]:
        """Turn a learning signal into proposals (complete programs, never placeholders)."""

    @abstractmethod
    async def validate_change(self, proposal: Proposal, **kwargs: Any) -> ValidationResult:
        """Run ``proposal`` in the sandbox against its tests and score it."""

    @abstractmethod
    async def run_cycle(self, target: str, budget: int) -> EvolutionRunResult:
        """One evolution cycle on ``target`` (a tool name) using at most ``budget`` evaluations."""
