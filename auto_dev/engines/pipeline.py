"""The cycle pipeline the framework owns, for every engine, built-in or not.

::

    CycleRequest(tenant, engine, target, budget, trigger, agent)
      -> per-(tenant, target) lock: a run row under a lease, renewed by a heartbeat
      -> capability gate for the acting agent (plus background evolution for scheduled cycles)
      -> engine.evolve(request, cycle): tenant-scoped views, a candidate sink, the sandbox
      -> the run settled: open candidates of a failed or cancelled cycle closed as failed
      -> offered candidates auto-promoted where the gate allows, otherwise left for review

An engine cannot skip a step: :meth:`BaseLearningEngine.run_cycle` only builds a request for
:meth:`CyclePipeline.run`, and subclasses may not override it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from auto_dev._exceptions import GateDeniedError, NotFoundError, ValidationError
from auto_dev.queries import TenantView
from auto_dev.queries.runs import RunLeases
from auto_dev.types import CycleRequest, EvolutionRunResult

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from auto_dev.abc import BaseLearningEngine, Mutator, Sandbox
    from auto_dev.candidates.store import CandidateStore
    from auto_dev.engines.base import EngineContext
    from auto_dev.engines.registry import EngineRegistry
    from auto_dev.gates.capability import GateDecision
    from auto_dev.sandbox.base import Limits

log = structlog.get_logger(__name__)

AUTO_PROMOTION = "auto_dev.auto_promotion"
BACKGROUND_EVOLUTION = "auto_dev.background_evolution"


class BoundStore:
    """The candidate store inside one transaction of one cycle: tenant, run, acting agent and
    capability filled in, every id it creates remembered by the sink."""

    def __init__(self, sink: CandidateSink, session: Session) -> None:
        self._sink = sink
        self.session = session

    def create_tool_mutation(self, **fields: Any) -> Any:
        s = self._sink
        row = s.store.create_tool_mutation(
            self.session, tenant_id=s.tenant_id, run_id=s.run_id, agent_id=s.agent,
            capability=s.capability, **fields)
        s.created.append(row.id)
        return row

    def create_skill_candidate(self, **fields: Any) -> Any:
        s = self._sink
        row = s.store.create_skill_candidate(
            self.session, tenant_id=s.tenant_id, run_id=s.run_id, agent_id=s.agent,
            capability=s.capability, **fields)
        s.created.append(row.id)
        return row

    def create_workflow_variant(self, **fields: Any) -> Any:
        s = self._sink
        row = s.store.create_workflow_variant(
            self.session, tenant_id=s.tenant_id, run_id=s.run_id, agent_id=s.agent, **fields)
        s.created.append(row.id)
        return row

    def record_evaluation(self, **fields: Any) -> Any:
        return self._sink.store.record_evaluation(
            self.session, tenant_id=self._sink.tenant_id, **fields)

    def set_status(self, candidate_id: str, status: str, reason: str = "") -> Any:
        return self._sink.store.set_status(
            self.session, tenant_id=self._sink.tenant_id, candidate_id=candidate_id,
            status=status, reason=reason)

    def record_rejected_mutations(self, *, tool_id: str, rows: list[dict[str, Any]]) -> list[str]:
        s = self._sink
        return s.store.record_rejected_mutations(
            self.session, decision=s.decision, tenant_id=s.tenant_id, tool_id=tool_id,
            run_id=s.run_id, capability=s.capability, rows=rows)


@dataclass(slots=True)
class CandidateSink:
    """Where an engine's candidates go: the candidate store, bound to one cycle."""

    store: CandidateStore
    database: Any
    tenant_id: str
    run_id: str
    agent: str | None
    capability: str
    decision: GateDecision
    created: list[str] = field(default_factory=list)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[BoundStore]:
        """One transaction: everything written in the block commits together or not at all."""
        with self.database.session() as session:
            yield BoundStore(self, session)


@dataclass(slots=True)
class Cycle:
    """What one running cycle hands its engine: the tenant's data, the sink, the tools to
    search with. Built by the pipeline; engines only read it."""

    request: CycleRequest
    run_id: str
    tenant: TenantView
    candidates: CandidateSink
    sandbox: Sandbox
    limits: Limits
    mutators: list[Mutator]
    mutator_weights: list[float]
    strategy: str
    llm: Any
    skill_writer: Any
    #: What the engine wants kept on the run row (shown by ``runs`` views), and resume state.
    stats: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def tenant_id(self) -> str:
        return self.request.tenant_id

    @property
    def budget(self) -> int:
        return self.request.budget

    @property
    def agent(self) -> str | None:
        return self.candidates.agent


class CyclePipeline:
    """Runs :class:`CycleRequest` s for the engines of one registry."""

    def __init__(self, context: EngineContext, engines: EngineRegistry, *, owner: str) -> None:
        self.context = context
        self.engines = engines
        self.runs = RunLeases(context.database, owner=owner,
                              lease_s=context.settings.cycle_lease_s)

    async def run_for(self, engine: BaseLearningEngine, target: str, *, budget: int | None,
                      trigger: str, agent: str | None,
                      tenant_id: str | None) -> EvolutionRunResult:
        """``engine.run_cycle``'s way in: fill in the defaults and run."""
        return await self.run(self.request(engine.name, target, budget=budget, trigger=trigger,
                                           agent=agent, tenant_id=tenant_id))

    def request(self, engine: str, target: str, *, budget: int | None = None,
                trigger: str = "manual", agent: str | None = None,
                tenant_id: str | None = None) -> CycleRequest:
        """A validated request; ``budget`` ``None`` means the engine's or the configured one."""
        eng = self.engines.get(engine)
        settings = self.context.settings
        if budget is None:
            budget = eng.event_budget if trigger == "event" and eng.event_budget else \
                settings.evolution_budget
        return CycleRequest(tenant_id=tenant_id or settings.tenant, engine=eng.name,
                            target=target, budget=budget, trigger=trigger, agent=agent,
                            deadline_s=settings.cycle_deadline_s)

    async def run(self, request: CycleRequest) -> EvolutionRunResult:
        """Run one cycle: lock, gate, the engine's work, settle, offer. Never leaves the lock
        held or a candidate half-evaluated, whatever happens inside."""
        started = time.perf_counter()
        engine = self.engines.get(request.engine)
        ctx = self.context
        tenant = TenantView(ctx.database, request.tenant_id)
        outcome = EvolutionRunResult(engine=engine.name, target=request.target,
                                     status="completed", tenant_id=request.tenant_id,
                                     strategy=ctx.strategy)
        agent = request.agent or engine.acting_agent(request.target, tenant)
        held = self.runs.acquire(request, tool_id=tenant.tools.tool_id(request.target),
                                 agent=agent)
        if held is None:
            outcome.status, outcome.reason = "skipped", "a cycle on this target is running"
            return outcome
        outcome.run_id = held.id
        heartbeat = asyncio.get_running_loop().create_task(self._heartbeat(held.id))
        cycle: Cycle | None = None
        try:
            decision = self._authorize(request, engine.capability, agent)
            if not decision.allowed:
                outcome.status, outcome.reason = "denied", decision.reason
                self.runs.finish(held.id, status="denied", error=decision.reason)
                return outcome
            sink = CandidateSink(store=ctx.store, database=ctx.database,
                                 tenant_id=request.tenant_id, run_id=held.id, agent=agent,
                                 capability=engine.capability, decision=decision)
            cycle = Cycle(request=request, run_id=held.id, tenant=tenant, candidates=sink,
                          sandbox=ctx.sandbox, limits=ctx.limits, mutators=list(ctx.mutators),
                          mutator_weights=list(ctx.mutator_weights), strategy=ctx.strategy,
                          llm=ctx.llm, skill_writer=ctx.skill_writer)
            result = await engine.evolve(request, cycle)
            self._merge(outcome, result, sink)
            self._keep_offered(outcome, request)
            self._offer(outcome, request, agent)
            self.runs.finish(held.id, status=_run_status(outcome.status),
                             error=outcome.reason if outcome.status != "completed" else None,
                             evaluations=outcome.evaluations,
                             stats={**cycle.stats, **_summary(outcome)}, state=cycle.state)
        except GateDeniedError as exc:
            outcome.status, outcome.reason = "denied", exc.reason
            self._abandon(held.id, cycle, "denied", f"stopped by the gate: {exc.reason}", outcome)
        except asyncio.CancelledError:
            self._abandon(held.id, cycle, "interrupted", "the cycle was cancelled", outcome)
            raise
        except (NotFoundError, ValidationError) as exc:
            self._abandon(held.id, cycle, "failed", str(exc), outcome)
            raise
        except Exception as exc:  # an engine's bug ends its cycle, not the worker
            log.error("cycle_failed", engine=engine.name, target=request.target,
                      tenant_id=request.tenant_id, error=str(exc), exc_info=exc)
            outcome.status, outcome.reason = "failed", f"{type(exc).__name__}: {exc}"
            self._abandon(held.id, cycle, "failed", outcome.reason, outcome)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            outcome.seconds = time.perf_counter() - started
        log.info("cycle_finished", engine=engine.name, target=request.target,
                 tenant_id=request.tenant_id, status=outcome.status, reason=outcome.reason,
                 evaluations=outcome.evaluations, seconds=round(outcome.seconds, 3))
        return outcome

    # -- steps -------------------------------------------------------------------------------

    async def _heartbeat(self, run_id: str) -> None:
        interval = max(self.runs.lease_s / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.runs.renew, run_id)
            except Exception as exc:  # the next beat may succeed; the lease has slack
                log.warning("run_heartbeat_failed", run_id=run_id, error=str(exc))

    def _authorize(self, request: CycleRequest, capability: str,
                   agent: str | None) -> GateDecision:
        """The engine's capability for the acting agent; a scheduled cycle also needs
        background evolution. Any error denies (the gatekeeper fails closed)."""
        ctx = self.context
        needed = [capability]
        if request.trigger == "schedule":
            needed.append(BACKGROUND_EVOLUTION)
        decisions: list[GateDecision] = []
        with ctx.database.session() as session:
            for cap in needed:
                decisions.append(ctx.gatekeeper.authorize(
                    session, tenant_id=request.tenant_id, agent_id=agent, capability=cap,
                    action="run_cycle"))
                if not decisions[-1].allowed:
                    return decisions[-1]
        return decisions[0]  # the engine's: the store checks candidates against it

    @staticmethod
    def _merge(outcome: EvolutionRunResult, result: EvolutionRunResult | None,
               sink: CandidateSink) -> None:
        if result is not None:
            for name in ("status", "reason", "evaluations", "pass_rate_before",
                         "pass_rate_after"):
                setattr(outcome, name, getattr(result, name))
            outcome.strategy = result.strategy or outcome.strategy
            outcome.offered_ids = list(result.offered_ids)
            outcome.stats = dict(result.stats)
        known = set(outcome.candidate_ids)
        outcome.candidate_ids += [c for c in (result.candidate_ids if result else [])
                                  if c not in known]
        known.update(outcome.candidate_ids)
        outcome.candidate_ids += [c for c in sink.created if c not in known]

    def _keep_offered(self, outcome: EvolutionRunResult, request: CycleRequest) -> None:
        """Only candidates the store really holds as ``passed`` are offered: it closes one whose
        change a reviewer rejected before, whatever the engine asked for."""
        if not outcome.offered_ids:
            return
        with self.context.database.session() as session:
            kept = [cid for cid in outcome.offered_ids
                    if self.context.store.get(session, request.tenant_id, cid).status == "passed"]
        dropped = len(outcome.offered_ids) - len(kept)
        if dropped:
            outcome.reason += f" ({dropped} offer(s) closed: the same change was rejected before)"
        outcome.offered_ids = kept

    def _offer(self, outcome: EvolutionRunResult, request: CycleRequest,
               agent: str | None) -> None:
        """Auto-promote offered candidates where ``auto_dev.auto_promotion`` allows it; the
        rest wait for a reviewer."""
        ctx = self.context
        for candidate_id in outcome.offered_ids:
            with ctx.database.session() as session:
                decision = ctx.gatekeeper.authorize(
                    session, tenant_id=request.tenant_id, agent_id=agent,
                    capability=AUTO_PROMOTION, action="auto_promote")
            if not decision.allowed:
                log.debug("auto_promotion_not_allowed", candidate_id=candidate_id,
                          reason=decision.reason)
                continue
            try:
                with ctx.database.session() as session:
                    ctx.store.promote(session, tenant_id=request.tenant_id,
                                      candidate_id=candidate_id, actor="auto-dev",
                                      reason=f"auto-promotion: {decision.reason}", auto=True)
            except GateDeniedError as exc:
                log.info("auto_promotion_denied", candidate_id=candidate_id, reason=exc.reason)
                continue
            outcome.promoted_ids.append(candidate_id)

    def _abandon(self, run_id: str, cycle: Cycle | None, status: str, reason: str,
                 outcome: EvolutionRunResult) -> None:
        """Close a run that did not complete, and fail its open candidates."""
        outcome.status = status if status != "interrupted" else outcome.status
        if cycle is not None:
            outcome.candidate_ids = list(dict.fromkeys(outcome.candidate_ids
                                                       + cycle.candidates.created))
        try:
            with self.context.database.session() as session:
                self.context.store.close_open_of_runs(session, run_ids=[run_id],
                                                      reason=f"run {status}: {reason}")
        finally:
            self.runs.finish(run_id, status=status, error=reason,
                             stats=dict(cycle.stats) if cycle else {})

    def recover(self) -> int:
        """Mark runs whose lease expired interrupted (any tenant: their process died) and
        fail their open candidates. Returns how many runs were released."""
        dead = self.runs.expire_dead()
        if dead:
            with self.context.database.session() as session:
                self.context.store.close_open_of_runs(
                    session, run_ids=[r.id for r in dead],
                    reason="run interrupted: its process stopped before the cycle finished")
            log.warning("interrupted_runs_released", count=len(dead))
        return len(dead)


def _run_status(status: str) -> str:
    return {"completed": "completed", "skipped": "skipped", "denied": "denied"}.get(
        status, "failed")


def _summary(outcome: EvolutionRunResult) -> dict[str, Any]:
    return {"strategy": outcome.strategy, "offered": list(outcome.offered_ids),
            "promoted": list(outcome.promoted_ids), "reason": outcome.reason}
