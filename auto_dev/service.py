"""``AutoDev``: the facade that wires the database, event bus, engines, sandbox, LLM, gates,
review and scheduler together.

::

    async with AutoDev() as autodev:                  # SQLite ./auto_dev.db, migrated
        autodev.register_tool("slugify", code, "slugify", tests=[...])
        @autodev.events.on_task_fail
        async def log_failure(event): ...
        await autodev.record_episode(agent="a1", task="...", success=False, tool_name="slugify",
                                     inputs={"args": ["A B"]}, expected="a-b", error_trace="...")
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select

from auto_dev._exceptions import NotFoundError
from auto_dev.abc import Sandbox
from auto_dev.candidates.review import ReviewService
from auto_dev.candidates.store import CandidateStore
from auto_dev.candidates.watch import PromotionWatch
from auto_dev.config import Settings, load_settings
from auto_dev.db import Database
from auto_dev.engines.base import EngineContext
from auto_dev.engines.pipeline import CyclePipeline
from auto_dev.engines.registry import EngineRegistry
from auto_dev.engines.worker import CycleWorker
from auto_dev.events import Event, EventBus, SkillExecuted
from auto_dev.gates.capability import Gatekeeper
from auto_dev.gates.settings import TenantSettings
from auto_dev.gates.usage import UsageRecorder
from auto_dev.models import (
    CycleJob,
    TestCase,
    Tool,
    ToolVersion,
    new_id,
)
from auto_dev.queries.jobs import CycleJobQueue
from auto_dev.queries.tools import test_case_row
from auto_dev.sandbox.base import Case, SandboxJob, SandboxResult
from auto_dev.types import CycleRequest, EvolutionRunResult
from auto_dev.workflows._facade import WorkflowMethods
from auto_dev.workflows.registry import WorkflowRegistry

if TYPE_CHECKING:
    from auto_dev.candidates.manual import ManualChange
    from auto_dev.candidates.promotion import PromotionResult
    from auto_dev.candidates.reevaluation import PromotionService
    from auto_dev.evolution.mutators import MutatorPlan
    from auto_dev.scheduler import EvolutionScheduler

log = structlog.get_logger(__name__)

Handler = Callable[[Any], Awaitable[None] | None]


class AutoDev(WorkflowMethods):
    """One auto-dev instance over one database, serving every tenant in it.

    ``tenant_id`` (default ``settings.tenant``) is only the default of the methods that take a
    ``tenant_id`` and the scope of the event handlers you subscribe without one; engines, the
    cycle worker, the scheduler and recovery serve every tenant, each cycle in its own.

    Everything is an in-process default that can be passed in: ``database``, ``sandbox``
    (default: chosen by ``settings.sandbox``: Docker when usable, else the process sandbox),
    ``llm`` (default: built from the settings; ``None`` means offline mode with the AST
    mutator), and the engines (the built-ins plus any ``auto_dev.engines`` plugins).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        database: Database | None = None,
        sandbox: Sandbox | None = None,
        llm: Any = None,
        tenant_id: str | None = None,
        builtin_engines: bool = True,
        load_plugins: bool = True,
        migrate: bool = True,
    ) -> None:
        self.settings = settings or load_settings()
        if not structlog.is_configured():
            # An application that configured structlog keeps its setup; otherwise auto-dev's
            # own (stderr, settings.log_level) replaces structlog's print-everything default.
            from auto_dev.logging import configure_logging

            configure_logging(self.settings.log_level, self.settings.log_format)
        self.tenant_id = tenant_id or self.settings.tenant
        self.database = database or Database(self.settings.database_url)
        if migrate:
            self.database.upgrade()
        with self.database.session() as session:
            self.database.ensure_tenant(session, self.tenant_id)
        self.events = EventBus(
            self.database,
            handler_timeout_s=self.settings.event_handler_timeout_s,
            max_attempts=self.settings.event_max_attempts,
            default_tenant=self.tenant_id,
        )
        #: This process's name on the leases it holds (runs, cycle jobs).
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{new_id()[:8]}"
        self.gates = Gatekeeper()
        self.store = CandidateStore(self.database, self.gates, bus=self.events)
        self.review = ReviewService(self.database, self.store)
        self.workflows = WorkflowRegistry(self.database, self.store, bus=self.events,
                                          tenant_id=self.tenant_id, limits=_limits(self.settings))
        # Versions auto-dev promoted by itself are watched and rolled back on regression.
        self.watch = PromotionWatch(self.database, self.store)
        self.watch.attach(self.events)
        UsageRecorder(self.database, self.gates).attach(self.events)  # maturity from outcomes
        self._sandbox = sandbox
        self._sandbox_reason = "passed in" if sandbox is not None else ""
        self._owns_sandbox = sandbox is None
        self.llm = llm if llm is not None else _llm_from_settings(
            self.settings, self.database, self.tenant_id)
        plan = _mutator_plan(self.settings, self.llm)
        self.context = EngineContext(
            database=self.database,
            bus=self.events,
            sandbox=_LazySandbox(self),
            store=self.store,
            gatekeeper=self.gates,
            settings=self.settings,
            mutators=list(plan.mutators),
            mutator_weights=list(plan.weights),
            strategy=plan.strategy,
            llm=self.llm,
            skill_writer=_skill_writer(self.settings, self.llm),
        )
        self.jobs = CycleJobQueue(self.database, owner=self.owner,
                                  lease_s=self.settings.cycle_lease_s)
        self.engines = EngineRegistry(self.context, self.events, enqueue=self.enqueue_cycle)
        self.pipeline = CyclePipeline(self.context, self.engines, owner=self.owner)
        self.context.pipeline = self.pipeline
        self.worker = CycleWorker(self.pipeline, self.jobs,
                                  concurrency=self.settings.cycle_concurrency,
                                  poll_s=self.settings.cycle_poll_s)
        if builtin_engines:
            from auto_dev.engines.alpha_evolver import AlphaEvolver
            from auto_dev.engines.memento import Memento
            from auto_dev.engines.workflow_evolver import WorkflowEvolver

            self.engines.register(AlphaEvolver())
            self.engines.register(Memento())
            self.engines.register(WorkflowEvolver())
        if load_plugins:
            self.engines.load_entry_points()
        self._scheduler: EvolutionScheduler | None = None
        self._started = False
        if self.llm is None:
            log.info("offline_mode", reason="no model configured; engines use the AST mutator")

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> AutoDev:
        """Release what dead processes left (runs and deliveries whose leases expired), then
        deliver events and, unless ``settings.cycle_worker`` is off, run queued cycle jobs.
        Idempotent."""
        if not self._started:
            self._started = True
            await asyncio.to_thread(self.pipeline.recover)
            # Recovers what a dead process left, then keeps retrying failed deliveries.
            await self.events.start()
            if self.settings.cycle_worker:
                await self.worker.start()
        return self

    async def aclose(self) -> None:
        """Stop taking work, finish (or hand back) running cycles and in-flight deliveries,
        then release the sandbox and the database."""
        if self._scheduler is not None:
            await self._scheduler.shutdown()
        await self.worker.aclose()
        await self.events.aclose()
        closer = getattr(self.llm, "aclose", None)
        if closer is not None:
            await closer()  # the client's ledger thread and connections
        if self._sandbox is not None and self._owns_sandbox:
            await self._sandbox.aclose()
            self._sandbox = None
        self.database.dispose()

    async def __aenter__(self) -> AutoDev:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- collaborators ----------------------------------------------------------------------------

    @property
    def sandbox(self) -> Sandbox:
        """The sandbox, created on first use according to ``settings.sandbox``."""
        if self._sandbox is None:
            from auto_dev.sandbox.factory import create_sandbox

            tenant = self.tenant_settings()
            choice = create_sandbox(
                self.settings.sandbox,
                require_containers=tenant.require_containers,
                image=self.settings.sandbox_image,
                workers=self.settings.sandbox_workers,
                private_paths=_private_paths(self.database),
                ray_address=self.settings.ray_address, ray_actors=self.settings.ray_actors,
                ray_node_sandbox=self.settings.ray_node_sandbox,
            )
            self._sandbox, self._sandbox_reason = choice.sandbox, choice.reason
            log.info("sandbox_selected", backend=self._sandbox.name, reason=choice.reason)
        return self._sandbox

    @property
    def sandbox_reason(self) -> str:
        return self._sandbox_reason

    @property
    def scheduler(self) -> EvolutionScheduler:
        if self._scheduler is None:
            from auto_dev.scheduler import EvolutionScheduler

            self._scheduler = EvolutionScheduler(self)
        return self._scheduler

    def subscribe(self, event_cls: type[Event], handler: Handler, *,
                  name: str | None = None) -> None:
        """Call ``handler`` for every ``event_cls`` event (and subclasses)."""
        self.events.subscribe(event_cls, handler, name=name)

    # -- tenants and gates ------------------------------------------------------------------------

    def tenant_settings(self, tenant_id: str | None = None) -> TenantSettings:
        from auto_dev.models import Tenant

        with self.database.session() as session:
            tenant = session.get(Tenant, tenant_id or self.tenant_id)
            return TenantSettings.from_raw(tenant.settings if tenant else {},
                                           tenant_id=tenant_id or self.tenant_id)

    def configure_tenant(self, tenant_id: str | None = None, *, actor: str = "admin",
                         reason: str = "configured through the Python API",
                         **changes: Any) -> TenantSettings:
        """Change a tenant's auto-dev settings (toggles default to off), creating the tenant
        if needed. Validated as a whole first; the change is audited with ``actor`` and
        ``reason``."""
        from auto_dev.gates.tenant_admin import change_tenant_settings

        tid = tenant_id or self.tenant_id
        # A corrupt stored row is an error naming the tenant and the field here; repairing
        # one is `auto-dev tenants set`'s job, which shows the broken values it replaces.
        self.tenant_settings(tid)
        with self.database.session() as session:
            return change_tenant_settings(session, tid, changes, actor=actor, reason=reason,
                                          create=True).settings

    def set_maturity(self, agent: str, capability: str, maturity: str, *, actor: str = "admin",
                     reason: str = "", tenant_id: str | None = None) -> None:
        tid = tenant_id or self.tenant_id
        with self.database.session() as session:
            agent_row = self.database.ensure_agent(session, tid, agent)
            self.gates.set_maturity(session, tenant_id=tid, agent_id=agent_row.id,
                                    capability=capability, maturity=maturity, actor=actor,
                                    reason=reason)

    # -- tools ------------------------------------------------------------------------------------

    def register_tool(
        self,
        name: str,
        code: str,
        entrypoint: str,
        *,
        description: str = "",
        tests: Iterable[dict[str, Any] | Case] = (),
        tenant_id: str | None = None,
    ) -> str:
        """Create tool ``name`` with ``code`` as its first active version and its tests.

        ``code`` must parse and define ``entrypoint`` at top level (checked on the syntax
        tree, never run). Registering the same code again is a no-op that returns the tool's
        id (only tests not stored yet are added). Different code for an existing tool is
        refused: :meth:`propose_tool_change` makes it a candidate that is evaluated and
        reviewed like any other change.
        """
        tid = tenant_id or self.tenant_id
        cases = [t if isinstance(t, Case) else Case.from_dict(t, where=f"tests[{i}]")
                 for i, t in enumerate(tests)]
        with self.database.session() as session:
            self.database.ensure_tenant(session, tid)
            tool = self.store.register_tool(
                session, tenant_id=tid, name=name, code=code, entrypoint=entrypoint,
                description=description,
            )
            stored = {_case_key(r.args, r.kwargs, r.expected, r.has_expected)
                      for r in session.scalars(select(TestCase).where(
                          TestCase.tenant_id == tid, TestCase.tool_id == tool.id))}
            for case in cases:
                key = _case_key(list(case.args), case.kwargs, case.expected, case.has_expected)
                if key not in stored:
                    stored.add(key)
                    session.add(test_case_row(tid, tool.id, case, source="user"))
            return tool.id

    async def propose_tool_change(
        self, name: str, code: str, *, actor: str, reason: str, entrypoint: str | None = None,
        tenant_id: str | None = None,
    ) -> ManualChange:
        """Propose new code for an existing tool: a ``manual`` candidate (parent: the active
        version), gated and audited with who and why, run in the sandbox against the tool's
        tests and marked passed (it breaks no case the active version passes) or failed. A
        passed change is then approved and promoted like any candidate."""
        return await self._promotions().propose_tool_change(
            tenant_id or self.tenant_id, name, code, actor=actor, reason=reason,
            entrypoint=entrypoint)

    async def promote(self, candidate_id: str, *, actor: str, reason: str = "",
                      tenant_id: str | None = None) -> PromotionResult:
        """Promote an approved candidate (id or unique prefix). One made against a version
        that is no longer active is first re-evaluated in the sandbox against the active
        version and the tool's current tests, and promoted only if still better; otherwise
        :class:`~auto_dev.StaleCandidateError` says why."""
        return await self._promotions().promote(tenant_id or self.tenant_id, candidate_id,
                                                actor, reason)

    def _promotions(self) -> PromotionService:
        from auto_dev.candidates.reevaluation import PromotionService
        from auto_dev.sandbox.base import Limits

        return PromotionService(self.review, lambda: self.sandbox,
                                Limits(timeout_s=self.settings.case_timeout_s,
                                       memory_mb=self.settings.case_memory_mb))

    def add_test(self, tool_name: str, case: dict[str, Any] | Case, *, source: str = "user",
                 tenant_id: str | None = None) -> str:
        tid = tenant_id or self.tenant_id
        parsed = case if isinstance(case, Case) else Case.from_dict(case, where="case")
        with self.database.session() as session:
            tool = _tool(session, tid, tool_name)
            row = test_case_row(tid, tool.id, parsed, source=source)
            session.add(row)
            session.flush()
            return row.id

    def active_code(self, tool_name: str, *, tenant_id: str | None = None) -> str:
        tid = tenant_id or self.tenant_id
        with self.database.session() as session:
            tool = _tool(session, tid, tool_name)
            version = session.scalars(
                select(ToolVersion).where(ToolVersion.tool_id == tool.id,
                                          ToolVersion.is_active.is_(True))
            ).one()
            return version.code

    # -- events from the agent platform ---------------------------------------------------------

    async def record_episode(
        self,
        *,
        agent: str,
        task: str,
        success: bool,
        tool_name: str | None = None,
        inputs: dict[str, Any] | None = None,
        expected: Any = ...,
        output: Any = None,
        error_trace: str | None = None,
        segments: Iterable[dict[str, Any]] = (),
        metadata: dict[str, Any] | None = None,
        workflow: str | None = None,
        tenant_id: str | None = None,
    ) -> str:
        """Store one episode and emit ``TaskFailed``/``TaskSucceeded`` in the same transaction.

        ``inputs`` is ``{"args": [...], "kwargs": {...}}`` for the tool call. When ``expected``
        is given and the tool exists, the episode also becomes a regression test of the tool.
        With ``workflow`` (a registered workflow's name) the episode is a run of it: ``inputs``
        is the workflow's input, the events carry ``workflow``, and with ``expected`` the run
        becomes a task of the workflow (stored once).
        """
        from auto_dev._recording import store_episode
        from auto_dev.payloads import PayloadLimits, check_episode

        # Everything is checked (and copied) before a session opens: bad input writes nothing.
        report = check_episode(
            PayloadLimits.from_settings(self.settings), agent=agent, task=task, success=success,
            tool_name=tool_name, inputs=inputs, expected=expected, output=output,
            error_trace=error_trace, segments=segments, metadata=metadata, tenant_id=tenant_id,
            workflow=workflow)
        with self.database.session() as session:
            return store_episode(self.database, self.events, session,
                                 report.tenant_id or self.tenant_id, report)

    async def record_skill_execution(
        self, *, agent: str, skill_name: str, success: bool, execution_seconds: float,
        metadata: dict[str, Any] | None = None, tenant_id: str | None = None,
    ) -> None:
        """Report one execution of a skill (tool); watched versions use it to detect regressions."""
        from auto_dev.payloads import PayloadLimits, check_skill_execution

        report = check_skill_execution(
            PayloadLimits.from_settings(self.settings), agent=agent, skill_name=skill_name,
            success=success, execution_seconds=execution_seconds, metadata=metadata,
            tenant_id=tenant_id)
        tid = report.tenant_id or self.tenant_id
        agent, skill_name, execution_seconds = (report.agent, report.skill_name,
                                                report.execution_seconds)
        metadata = report.metadata
        with self.database.session() as session:
            self.database.ensure_agent(session, tid, agent)
            version_id = None
            tool = session.scalars(
                select(Tool).where(Tool.tenant_id == tid, Tool.name == skill_name)
            ).one_or_none()
            if tool is not None:
                version_id = session.scalars(
                    select(ToolVersion.id).where(ToolVersion.tool_id == tool.id,
                                                 ToolVersion.is_active.is_(True))
                ).one_or_none()
            self.events.emit(session, SkillExecuted(
                tenant_id=tid, agent_id=agent, skill_name=skill_name, success=success,
                execution_seconds=execution_seconds, tool_version_id=version_id,
                metadata=metadata or {},
            ))

    # -- evolution --------------------------------------------------------------------------------

    async def run_cycle(self, engine: str, target: str, *, budget: int | None = None,
                        trigger: str = "manual", agent: str | None = None,
                        tenant_id: str | None = None) -> EvolutionRunResult:
        """Run one cycle of ``engine`` on ``target`` now, through the pipeline (lock, gate,
        the engine's work, review or gated auto-promotion). ``budget`` ``None`` means the
        configured one; anything else must be a positive integer."""
        return await self.pipeline.run(self.pipeline.request(
            engine, target, budget=budget, trigger=trigger, agent=agent,
            tenant_id=tenant_id or self.tenant_id))

    def enqueue_cycle(self, request: CycleRequest) -> str:
        """Queue a cycle as a durable job (coalesced with a queued job on the same target) for
        the cycle worker of this or any other process on the database. Returns the job id."""
        return self.worker.enqueue(request)

    def queue_cycle(self, engine: str, target: str, *, budget: int | None = None,
                    trigger: str = "manual", agent: str | None = None,
                    tenant_id: str | None = None) -> str:
        """Like :meth:`run_cycle`, but queued for the cycle worker; returns the job id."""
        return self.enqueue_cycle(self.pipeline.request(
            engine, target, budget=budget, trigger=trigger, agent=agent,
            tenant_id=tenant_id or self.tenant_id))

    async def drain(self, timeout_s: float | None = 300.0) -> None:
        """Wait until the events delivered so far and the cycles they queued have finished
        (scripts, tests, the demo). Without a started worker the queued cycles run here."""

        async def settle() -> None:
            while True:
                await self.events.drain()
                counts = await asyncio.to_thread(self.jobs.counts)
                if counts["queued"] == 0 and counts["running"] == 0 and not self.worker.busy:
                    return
                if self.worker.started:
                    self.worker.wake()
                    await asyncio.sleep(0.05)
                elif not await self.run_queued_cycles():
                    await asyncio.sleep(0.05)

        await asyncio.wait_for(settle(), timeout=timeout_s)

    async def wait_for_jobs(self, job_ids: list[str], *,
                            timeout_s: float | None = 300.0) -> list[EvolutionRunResult]:
        """Wait until the cycle jobs ``job_ids`` have finished (running due ones here when no
        worker is started) and return their outcomes, in order."""

        async def finished() -> list[EvolutionRunResult]:
            while True:
                if not self.worker.started:
                    await self.run_queued_cycles()
                jobs = [await asyncio.to_thread(self.jobs.get, j) for j in job_ids]
                if all(j is not None and j.status in ("done", "failed") for j in jobs):
                    return [_job_outcome(j) for j in jobs if j is not None]
                self.worker.wake()
                await asyncio.sleep(0.05)

        return await asyncio.wait_for(finished(), timeout=timeout_s)

    async def run_queued_cycles(self) -> list[EvolutionRunResult]:
        """Run every cycle job due now in this task and return their outcomes."""
        return await self.worker.run_due()


def _job_outcome(job: CycleJob) -> EvolutionRunResult:
    if job.outcome:
        return EvolutionRunResult.from_dict(job.outcome)
    return EvolutionRunResult(engine=job.engine, target=job.target, status="failed",
                              reason=job.error or "", tenant_id=job.tenant_id)


def _private_paths(database: Database) -> list[str]:
    """Host directories candidates must not see: the SQLite file's and the config file's."""
    import os

    paths = []
    if database.is_sqlite and not database.is_memory and database.url.database:
        paths.append(os.path.dirname(os.path.abspath(database.url.database)))
    config = os.environ.get("AUTO_DEV_CONFIG")
    if config:
        paths.append(os.path.dirname(os.path.abspath(config)))
    return paths


class _LazySandbox(Sandbox):
    """Defers choosing the sandbox until an engine first needs it; the facade closes the
    real one."""

    name = "lazy"

    def __init__(self, owner: AutoDev) -> None:
        self._owner = owner

    @property
    def slots(self) -> int:
        # The real sandbox's pool (choosing it now if no job did yet).
        return self._owner.sandbox.slots

    @property
    def backend(self) -> str:
        """The real sandbox's name (what evaluations record as their backend)."""
        return self._owner.sandbox.name

    async def run(self, job: SandboxJob) -> SandboxResult:
        return await self._owner.sandbox.run(job)

    async def aclose(self) -> None:
        return None


def _tool(session: Any, tenant_id: str, name: str) -> Tool:
    tool = session.scalars(
        select(Tool).where(Tool.tenant_id == tenant_id, Tool.name == name)
    ).one_or_none()
    if tool is None:
        raise NotFoundError(f"tool {name!r} does not exist in tenant {tenant_id!r}")
    return tool


def _case_key(args: Any, kwargs: Any, expected: Any, has_expected: bool) -> str:
    """A test's identity (re-registering a tool does not store its tests twice)."""
    import json

    return json.dumps([list(args or []), dict(kwargs or {}), expected if has_expected else None,
                       bool(has_expected)], sort_keys=True, default=repr)


def _limits(settings: Settings) -> Any:
    from auto_dev.payloads import PayloadLimits

    return PayloadLimits.from_settings(settings)


def _llm_from_settings(settings: Settings, database: Database, tenant_id: str) -> Any:
    """The LLM client for the configured model, or ``None`` (offline mode)."""
    if not settings.effective_llm().configured:
        return None
    from auto_dev.llm.factory import build_client

    return build_client(settings, database, tenant_id=tenant_id)


def _mutator_plan(settings: Settings, llm: Any) -> MutatorPlan:
    """AST operators offline; with a model, the LLM mutators mixed with them."""
    from auto_dev.evolution.mutators import build_mutators

    return build_mutators(settings, client=llm)


def _skill_writer(settings: Settings, llm: Any) -> Any:
    if llm is None:
        return None
    from auto_dev.llm.factory import build_skill_writer

    return build_skill_writer(settings, llm)
