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
    from datetime import datetime

    from auto_dev._event_types import Event
    from auto_dev.engines.base import EngineContext, ValidationResult
    from auto_dev.engines.pipeline import Cycle
    from auto_dev.evolution.program import MutationContext, Program, Proposal
    from auto_dev.queries import TenantView
    from auto_dev.sandbox.base import SandboxJob, SandboxResult
    from auto_dev.types import CycleRequest, EvolutionRunResult


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

    @property
    def slots(self) -> int:
        """How many jobs this sandbox runs at once (its pool size); the search keeps that many
        candidate evaluations in flight unless ``SearchConfig.concurrency`` says otherwise.

        Backends that know override it (process and Docker: their pool size; Ray: the slots of
        its actors, known once it has started). The default, 2, is what the search used before
        backends could say, and is safe for any backend honouring the concurrency contract.
        """
        return 2

    @abstractmethod
    async def run(self, job: SandboxJob) -> SandboxResult:
        """Run ``job`` and return one :class:`CaseResult` per case that ran, in case order."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook with a no-op default
        """Release workers, containers and temporary files. Idempotent."""

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class ToolInvoker(ABC):
    """Calls the tools a workflow's ``tool`` steps name (see :mod:`auto_dev.workflows`).

    Contract:

    * :meth:`names` is the set of tools :meth:`invoke` can call; a workflow that names any other
      tool is refused before it runs.
    * :meth:`invoke` calls ``tool`` with ``args`` as keyword arguments and returns its JSON
      result. Tool code never runs in the caller's process (the sandbox backends run it).
    * A tool that raises, crashes, breaks a resource limit or is unknown raises
      :class:`~auto_dev.ToolCallError`; one that runs past ``timeout_s`` raises
      :class:`~auto_dev.ToolTimeoutError`. Nothing else escapes for what a tool does.
    * ``seed`` seeds the tool's randomness (Python's ``random`` inside the call), so a call with
      the same tool, args and seed behaves the same: a flaky tool is reproducible.
    * :meth:`invoke` may be called concurrently.
    """

    @abstractmethod
    async def invoke(self, tool: str, args: dict[str, Any], *, timeout_s: float | None,
                     seed: int) -> Any:
        """Call ``tool(**args)`` and return its result."""

    @abstractmethod
    def names(self) -> frozenset[str]:
        """The tools this invoker can call."""


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


class BaseLearningEngine(ABC):  # noqa: B024 - every hook has a working default
    """A learning engine: reacts to events and improves tools, skills or workflows.

    The framework owns a cycle's life; an engine supplies its work. :meth:`run_cycle` turns a
    call into a :class:`~auto_dev.types.CycleRequest` for the framework's pipeline, which takes
    the per-target lock (a lease with a heartbeat), checks the capability gate for the acting
    agent, calls :meth:`evolve` with tenant-scoped views and a candidate sink, settles the
    candidates and offers them for review or auto-promotes them where the gate allows. An event
    of a class in ``subscriptions`` never runs a cycle inside the event handler: the framework
    asks :meth:`cycle_target` which target it concerns and queues a durable, coalesced cycle job.

    An engine implements :meth:`evolve`, or the seed's lifecycle (:meth:`analyze_episode`,
    :meth:`propose_code_change`, :meth:`validate_change`), which the default :meth:`evolve` calls.

    Contract:

    * ``name`` is unique in a registry; ``capability`` is the gate checked before any cycle of the
      engine runs (e.g. ``"auto_dev.alpha_evolver"``).
    * An engine keeps no tenant state: everything about a tenant comes from the ``cycle`` it is
      handed (``cycle.tenant``, ``cycle.candidates``); one engine instance serves every tenant.
    * Every candidate goes through ``cycle.candidates`` (the store's choke point, which consults
      the capability gate); an engine never writes candidate rows or SQL itself.
    * A proposal whose code is empty, comment-only or identical to its parent is never reported
      as passed.
    """

    name: ClassVar[str] = "abstract"
    capability: ClassVar[str] = "auto_dev.custom"
    subscriptions: ClassVar[tuple[type[Event], ...]] = ()
    #: The maturity an agent needs for ``capability`` when the gatekeeper does not know it yet
    #: (a custom engine's own capability); the built-in capabilities keep their documented one.
    required_maturity: ClassVar[str] = "supervised"
    #: Evaluations of a cycle that an event asks for (``None``: the configured default).
    event_budget: int | None = None

    _context: EngineContext | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "run_cycle" in cls.__dict__:
            raise TypeError(
                f"{cls.__name__} overrides run_cycle, which the framework owns (lock, gate, "
                "storage, review): implement evolve(request, cycle) or the seed's lifecycle "
                "(analyze_episode, propose_code_change, validate_change) instead")

    def bind(self, context: EngineContext) -> None:
        """Attach the engine to an :class:`AutoDev` instance (called by the registry)."""
        self._context = context

    @property
    def context(self) -> EngineContext:
        if self._context is None:
            from auto_dev._exceptions import EngineError

            raise EngineError(f"engine {self.name!r} is not registered on an AutoDev instance")
        return self._context

    # -- events ----------------------------------------------------------------------------

    def cycle_target(self, event: Event, tenant: TenantView) -> str | None:
        """The target a subscribed event asks a cycle on, or ``None`` for no cycle.

        Runs inside the event handler: keep it to a few reads. The default: a failure of a
        tool that exists in the event's tenant asks for a cycle on that tool.
        """
        tool_name = getattr(event, "tool_name", None)
        if getattr(event, "type_name", "") != "TaskFailed" or not tool_name:
            return None
        return tool_name if tenant.tools.tool_id(tool_name) is not None else None

    def recent_targets(self, tenant: TenantView, *, since: datetime) -> list[str]:
        """The targets a schedule without a target queues cycles on: by default the tenant's
        registered tools with failures since ``since``, most failures first."""
        return tenant.episodes.failing_tools(since=since)

    async def handle_event(self, event: Event) -> None:  # noqa: B027 - optional hook
        """Observe one subscribed event (before any cycle job is queued). Keep it short: it
        runs under the event handler's timeout. The default does nothing."""

    def acting_agent(self, target: str, tenant: TenantView) -> str | None:
        """The agent a cycle on ``target`` acts for when the request names none: by default the
        agent whose failure with that tool is the most recent."""
        return tenant.episodes.latest_failing_agent(target)

    # -- the work --------------------------------------------------------------------------

    async def evolve(self, request: CycleRequest, cycle: Cycle) -> EvolutionRunResult:
        """Do one cycle's work on ``request.target`` within ``request.budget`` evaluations.

        Called by the pipeline with the lock held and the gate passed. The default runs the
        seed's lifecycle over the target's recent failures (see
        :func:`auto_dev.engines.lifecycle.evolve_by_lifecycle`).
        """
        from auto_dev.engines.lifecycle import evolve_by_lifecycle

        return await evolve_by_lifecycle(self, request, cycle)

    async def analyze_episode(self, episode_id: str, **kwargs: Any) -> dict[str, Any]:
        """Extract a learning signal from one stored episode (seed lifecycle, optional)."""
        from auto_dev._exceptions import EngineError

        raise EngineError(f"engine {self.name!r} implements neither evolve() nor "
                          "analyze_episode()")

    async def propose_code_change(self, context: dict[str, Any], **kwargs: Any
                                  ) -> list[Proposal] | Proposal | str:
        """Turn a learning signal into proposals: complete programs, never placeholders
        (seed lifecycle, optional; the default proposes nothing)."""
        return []

    async def validate_change(self, proposal: Proposal, **kwargs: Any
                              ) -> ValidationResult | dict[str, Any]:
        """Run ``proposal`` in the sandbox against its tests and score it (seed lifecycle,
        optional; the default runs the target tool's tests in ``kwargs["cycle"]``)."""
        from auto_dev.engines.lifecycle import validate_against_tool

        return await validate_against_tool(self, proposal, kwargs["cycle"])

    async def run_cycle(self, target: str, budget: int | None = None, *,
                        trigger: str = "manual", agent: str | None = None,
                        tenant_id: str | None = None) -> EvolutionRunResult:
        """One cycle on ``target`` now, through the framework's pipeline."""
        pipeline = self.context.pipeline
        if pipeline is None:
            from auto_dev._exceptions import EngineError

            raise EngineError(f"engine {self.name!r} is bound to a context without a pipeline")
        return await pipeline.run_for(
            self, target, budget=budget, trigger=trigger, agent=agent, tenant_id=tenant_id)
