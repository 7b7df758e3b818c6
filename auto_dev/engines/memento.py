"""Memento: learns skills from repeated similar failures.

When the same kind of failure (same tool, exception type and message shape; see
:mod:`auto_dev.engines._signatures`) has happened ``min_group_size`` times, Memento turns the
failing episodes into regression tests and proposes a skill candidate that passes them:

* ``llm``: with a model configured, the skill writer drafts a new skill (name, description,
  code, extra tests) and repairs it against sandbox errors for a few rounds;
* ``retrieve_repair`` (offline): it retrieves the closest existing tool (the failing tool, or
  the most similar by name and description) and repairs it against those tests with the
  evolutionary search and the AST operators.

The candidate states which strategy made it. It is stored through the candidate store, with its
tests, source episodes and failure pattern, and is never ``passed`` when its code is empty,
comment-only, identical to its parent, or fails any of its tests.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import desc, select

from auto_dev._exceptions import GateDeniedError, NotFoundError, ValidationError
from auto_dev.abc import BaseLearningEngine
from auto_dev.engines._signatures import describe_signature, failure_signature, similarity
from auto_dev.engines.base import (
    EvolutionRunResult,
    ToolSnapshot,
    ValidationResult,
    episode_analysis,
    load_tool,
    run_lock,
)
from auto_dev.events import Event, TaskFailed
from auto_dev.evolution.dedup import never_passes
from auto_dev.evolution.program import Proposal
from auto_dev.evolution.search import EvolutionSearch, SearchConfig
from auto_dev.fitness.service import FitnessService
from auto_dev.models import Agent, CandidateStatus, Episode, SkillCandidate, Tool
from auto_dev.sandbox.base import Case, SandboxJob, SandboxResult

log = structlog.get_logger(__name__)

_OPEN = (CandidateStatus.PENDING, CandidateStatus.EVALUATING, CandidateStatus.PASSED,
         CandidateStatus.APPROVED)


@dataclass(frozen=True, slots=True)
class FailureGroup:
    """Similar failures: their signature, a readable pattern, the episodes and their tests."""

    signature: str
    pattern: str
    tool_name: str | None
    episode_ids: tuple[str, ...]
    agent_key: str | None
    task_descriptions: tuple[str, ...]
    error_traces: tuple[str, ...]
    cases: tuple[Case, ...]


class Memento(BaseLearningEngine):
    """Skill learning from groups of similar failed episodes."""

    name = "memento"
    capability = "auto_dev.memento_skills"
    subscriptions = (TaskFailed,)

    def __init__(self, *, min_group_size: int = 2, window: timedelta = timedelta(days=7),
                 event_budget: int = 150, rng_seed: int = 0,
                 learn_from_tool_failures: bool = False) -> None:
        """``learn_from_tool_failures``: also react to failures of registered tools (by default
        those are AlphaEvolver's job, and Memento learns where no tool did the task)."""
        if min_group_size < 1:
            raise ValidationError("min_group_size", "must be at least 1")
        self.learn_from_tool_failures = learn_from_tool_failures
        self.min_group_size = min_group_size
        self.window = window
        self.event_budget = event_budget
        self.rng_seed = rng_seed
        self.fitness = FitnessService()

    # -- events ----------------------------------------------------------------------------------

    async def handle_event(self, event: Event) -> None:
        """Once a failure pattern repeats often enough (and has no open candidate), learn."""
        if not isinstance(event, TaskFailed) or event.tenant_id != self.context.tenant_id:
            return
        if event.tool_name and not self.learn_from_tool_failures and self._tool_id(
                event.tool_name) is not None:
            return
        target = event.tool_name or f"task:{failure_signature(None, event.error_trace)}"
        group = self.failure_group(target)
        if group is None or self._has_open_candidate(group.signature):
            return
        result = await self.run_cycle(target, self.event_budget, trigger="event")
        log.info("memento.cycle", target=target, status=result.status, reason=result.reason)

    # -- lifecycle -------------------------------------------------------------------------------

    async def analyze_episode(self, episode_id: str, **kwargs: Any) -> dict[str, Any]:
        return episode_analysis(self.context, episode_id, kwargs.get("tenant_id"))

    async def propose_code_change(self, context: dict[str, Any], **kwargs: Any) -> list[Proposal]:
        """One skill proposal for the failure group of ``context['tool_name']`` (or target)."""
        target = context.get("target") or context.get("tool_name")
        if not target:
            return []
        group = self.failure_group(str(target), min_size=1)
        if group is None:
            return []
        draft = await self._draft(group, int(kwargs.get("budget", self.event_budget)))
        return [draft.proposal] if draft is not None else []

    async def validate_change(self, proposal: Proposal, **kwargs: Any) -> ValidationResult:
        """Run a skill proposal against the tests built from its failure group."""
        cases = kwargs.get("cases")
        if cases is None:
            target = kwargs.get("target") or kwargs.get("tool_name")
            group = self.failure_group(str(target), min_size=1) if target else None
            if group is None:
                raise NotFoundError("validate_change needs cases=... or a target with failures")
            cases = group.cases
        result = await self.context.sandbox.run(SandboxJob(
            code=proposal.code, entrypoint=proposal.entrypoint, cases=tuple(cases),
            limits=self.context.limits))
        scores = self.fitness.score(result, proposal.code)
        problem = never_passes(proposal.code, kwargs.get("parent_code"))
        if problem:
            return ValidationResult(proposal, result, scores, False, problem)
        if not result.all_passed:
            return ValidationResult(proposal, result, scores, False,
                                    f"passes {result.passed}/{result.total} tests")
        return ValidationResult(proposal, result, scores, True, "passes every test")

    async def run_cycle(self, target: str, budget: int, *, trigger: str = "manual",
                        agent: str | None = None) -> EvolutionRunResult:
        """Learn a skill for ``target`` (a tool name, or ``task:<signature>``)."""
        started = time.perf_counter()
        ctx = self.context
        outcome = EvolutionRunResult(engine=self.name, target=target, status="completed")
        group = self.failure_group(target)
        if group is None:
            outcome.status = "skipped"
            outcome.reason = f"fewer than {self.min_group_size} similar failures"
            return outcome
        tool_id = self._tool_id(group.tool_name)
        with run_lock(ctx.database, tenant_id=ctx.tenant_id, engine=self.name, target=target,
                      trigger=trigger, budget=budget, tool_id=tool_id) as run:
            if run is None:
                outcome.status, outcome.reason = "skipped", "a cycle on this target is running"
                return outcome
            outcome.run_id = run.id
            agent_key = agent or group.agent_key
            with ctx.database.session() as session:
                decision = ctx.gatekeeper.authorize(
                    session, tenant_id=ctx.tenant_id, agent_id=agent_key,
                    capability=self.capability, action="run_cycle")
            if not decision.allowed:
                run.status, run.error = "denied", decision.reason
                outcome.status, outcome.reason = "denied", decision.reason
                return outcome
            draft = await self._draft(group, budget, run.id)
            if draft is None:
                run.status = "skipped"
                outcome.status = "skipped"
                outcome.reason = self._last_skip
                return outcome
            outcome.strategy = draft.strategy
            outcome.evaluations = draft.evaluations
            outcome.pass_rate_before = draft.pass_rate_before
            outcome.pass_rate_after = draft.result.pass_rate
            try:
                candidate_id, verdict = self._store(group, draft, run.id, agent_key)
            except GateDeniedError as exc:
                run.status, run.error = "denied", exc.reason
                outcome.status, outcome.reason = "denied", exc.reason
                return outcome
            outcome.candidate_ids.append(candidate_id)
            if verdict == "passed":
                outcome.offered_ids.append(candidate_id)
            outcome.reason = f"{draft.strategy}: {draft.note}"
            run.evaluations = draft.evaluations
            run.stats = {"strategy": draft.strategy, "note": draft.note,
                         "group_size": len(group.episode_ids), "pattern": group.pattern,
                         "candidate": candidate_id, "verdict": verdict}
        outcome.seconds = time.perf_counter() - started
        return outcome

    # -- grouping ----------------------------------------------------------------------------------

    def failure_group(self, target: str, *, min_size: int | None = None) -> FailureGroup | None:
        """The largest group of similar recent failures for ``target`` (or None if too small)."""
        need = self.min_group_size if min_size is None else min_size
        since = datetime.now(UTC) - self.window
        tid = self.context.tenant_id
        tool_name = None if target.startswith("task:") else target
        with self.context.database.session() as session:
            query = (
                select(Episode, Agent.key).join(Agent, Agent.id == Episode.agent_id)
                .where(Episode.tenant_id == tid, Episode.success.is_(False),
                       Episode.created_at >= since)
                .order_by(desc(Episode.created_at)).limit(500)
            )
            query = query.where(Episode.tool_name == tool_name) if tool_name else \
                query.where(Episode.tool_name.is_(None))
            rows = session.execute(query).all()
        groups: dict[str, list[tuple[Episode, str]]] = {}
        for episode, key in rows:
            sig = failure_signature(episode.tool_name, episode.error_trace)
            if target.startswith("task:") and sig != target.removeprefix("task:"):
                continue
            groups.setdefault(sig, []).append((episode, key))
        if not groups:
            return None
        signature, members = max(groups.items(), key=lambda kv: (len(kv[1]), kv[0]))
        if len(members) < need:
            return None
        cases: list[Case] = []
        seen: set[str] = set()
        for episode, _ in members:
            details = episode.details or {}
            if "expected" not in details:
                continue
            call = details.get("inputs") or {}
            case = Case.from_dict({**call, "expected": details["expected"]}, where="episode")
            key = json.dumps(case.to_dict(), sort_keys=True, default=repr)
            if key not in seen:
                seen.add(key)
                cases.append(case)
        first = members[0][0]
        return FailureGroup(
            signature=signature,
            pattern=describe_signature(first.tool_name, first.error_trace),
            tool_name=first.tool_name,
            episode_ids=tuple(e.id for e, _ in members),
            agent_key=members[0][1],
            task_descriptions=tuple(dict.fromkeys(e.task_description for e, _ in members)),
            error_traces=tuple(dict.fromkeys((e.error_trace or "") for e, _ in members))[:3],
            cases=tuple(cases),
        )

    def _has_open_candidate(self, signature: str) -> bool:
        with self.context.database.session() as session:
            return session.scalars(
                select(SkillCandidate.id).where(
                    SkillCandidate.tenant_id == self.context.tenant_id,
                    SkillCandidate.failure_pattern.like(f"%[{signature}]"),
                    SkillCandidate.status.in_([s.value for s in _OPEN]),
                ).limit(1)
            ).first() is not None

    def _tool_id(self, tool_name: str | None) -> str | None:
        if not tool_name:
            return None
        with self.context.database.session() as session:
            return session.scalars(select(Tool.id).where(
                Tool.tenant_id == self.context.tenant_id, Tool.name == tool_name)).one_or_none()

    # -- drafting --------------------------------------------------------------------------------

    _last_skip = ""

    async def _draft(self, group: FailureGroup, budget: int,
                     run_id: str | None = None) -> _Draft | None:
        if self.context.skill_writer is not None:
            return await self._draft_llm(group, run_id)
        return await self._draft_offline(group, budget)

    async def _draft_offline(self, group: FailureGroup, budget: int) -> _Draft | None:
        if not group.cases:
            self._last_skip = ("offline mode needs expected outputs on the failing episodes "
                               "to build regression tests")
            return None
        base = self._closest_tool(group)
        if base is None:
            self._last_skip = "offline mode found no existing tool close enough to repair"
            return None
        cases = group.cases + tuple(c for c in base.cases if c not in group.cases)
        search = EvolutionSearch(
            base.program, cases, self.context.sandbox, self.context.mutators, budget=budget,
            rng_seed=self.rng_seed, limits=self.context.limits,
            mix=self.context.mutator_weights or None, config=SearchConfig(),
            fitness=self.fitness, tenant_id=self.context.tenant_id,
        )
        result = await search.run()
        final = await self.context.sandbox.run(SandboxJob(
            code=result.best.code, entrypoint=result.best.entrypoint, cases=cases,
            limits=self.context.limits))
        note = (f"repaired closest tool {base.name!r} against {len(group.cases)} regression "
                f"test(s) from {len(group.episode_ids)} failing episode(s) and "
                f"{len(base.cases)} existing test(s): {result.passed}/{result.total} pass "
                f"(was {result.seed_passed}/{result.total})")
        return _Draft(
            proposal=Proposal(code=result.best.code, entrypoint=result.best.entrypoint,
                              operator=(result.best_record.operator if result.best_record
                                        else "none"),
                              parent_ids=(base.version_id,), description=note),
            strategy="retrieve_repair", note=note, tests=cases, result=final,
            scores=self.fitness.score(final, result.best.code), base=base,
            evaluations=result.evaluations, pass_rate_before=result.seed_pass_rate,
            exchange=[], parent_scores=dict(result.seed.scores),
            parent_passed=result.seed.passed_cases,
        )

    async def _draft_llm(self, group: FailureGroup, run_id: str | None) -> _Draft | None:
        from auto_dev.llm.skills import ExistingTool
        from auto_dev.llm.skills import FailureGroup as SkillGroup

        base = self._closest_tool(group)
        draft = await self.context.skill_writer.write(
            SkillGroup(
                task_descriptions=group.task_descriptions,
                error_traces=group.error_traces,
                examples=group.cases,
                closest_tool=ExistingTool(base.name, base.program.code,
                                          base.program.entrypoint, base.description)
                if base else None,
                pattern=group.pattern,
                episode_ids=group.episode_ids,
            ),
            self.context.sandbox, tenant_id=self.context.tenant_id, run_id=run_id,
        )
        if not draft.code:
            self._last_skip = f"the model produced no usable skill: {draft.failure}"
            return None
        tests = tuple(draft.tests) or group.cases
        result = await self.context.sandbox.run(SandboxJob(
            code=draft.code, entrypoint=draft.entrypoint, cases=tests,
            limits=self.context.limits))
        note = (f"model wrote skill {draft.name!r} in {draft.rounds} round(s): "
                f"{result.passed}/{result.total} tests pass"
                + (f" ({draft.failure})" if draft.failure else ""))
        # A skill named like the tool it started from replaces that tool when promoted.
        replaces = base if base and draft.name == base.name else None
        return _Draft(
            proposal=Proposal(code=draft.code, entrypoint=draft.entrypoint, operator="llm.skill",
                              parent_ids=(replaces.version_id,) if replaces else (),
                              description=draft.description,
                              meta={"llm_call_ids": draft.llm_call_ids,
                                    "llm_cost_usd": draft.cost_usd}),
            strategy="llm", note=note, tests=tests, result=result,
            scores=self.fitness.score(result, draft.code, llm_cost_usd=draft.cost_usd),
            base=replaces, evaluations=draft.rounds, pass_rate_before=0.0,
            exchange=list(draft.exchange), name=draft.name,
        )

    def _closest_tool(self, group: FailureGroup) -> ToolSnapshot | None:
        tid = self.context.tenant_id
        with self.context.database.session() as session:
            if group.tool_name:
                try:
                    return load_tool(session, tid, group.tool_name)
                except NotFoundError:
                    pass
            tools = session.scalars(select(Tool).where(Tool.tenant_id == tid)).all()
            query = " ".join(group.task_descriptions) + " " + group.pattern
            scored = sorted(
                ((similarity(query, f"{t.name.replace('_', ' ')} {t.description}"), t.name)
                 for t in tools), reverse=True)
            if not scored or scored[0][0] < 0.15:
                return None
            return load_tool(session, tid, scored[0][1])

    def _store(self, group: FailureGroup, draft: _Draft, run_id: str,
               agent_key: str | None) -> tuple[str, str]:
        ctx = self.context
        parent_code = draft.base.program.code if draft.base else None
        problem = never_passes(draft.proposal.code, parent_code)
        verdict = "failed" if problem or not draft.result.all_passed else "passed"
        reason = problem or (f"passes {draft.result.passed}/{draft.result.total} tests"
                             if verdict == "failed" else draft.note)
        name = draft.name or (draft.base.name if draft.base else f"skill_{group.signature[:8]}")
        with ctx.database.session() as session:
            row = ctx.store.create_skill_candidate(
                session, tenant_id=ctx.tenant_id, name=name, code=draft.proposal.code,
                entrypoint=draft.proposal.entrypoint, strategy=draft.strategy,
                description=draft.proposal.description or draft.note,
                tool_id=draft.base.tool_id if draft.base else None, agent_id=agent_key,
                run_id=run_id, failure_pattern=f"{group.pattern} [{group.signature}]",
                source_episode_ids=group.episode_ids,
                tests=[c.to_dict() for c in draft.tests], objectives=draft.scores,
                exchange=draft.exchange, capability=self.capability,
            )
            ctx.store.record_evaluation(
                session, tenant_id=ctx.tenant_id, candidate_id=row.id, result=draft.result,
                limits=ctx.limits.to_wire(), objectives=draft.scores, verdict=verdict,
                reason=reason, parent_objectives=draft.parent_scores,
                parent_passed_cases=draft.parent_passed,
            )
            return row.id, verdict


@dataclass(slots=True)
class _Draft:
    proposal: Proposal
    strategy: str
    note: str
    tests: tuple[Case, ...]
    result: SandboxResult
    scores: dict[str, float]
    base: ToolSnapshot | None
    evaluations: int
    pass_rate_before: float
    exchange: list[Any]
    name: str | None = None
    parent_scores: dict[str, float] | None = None
    parent_passed: frozenset[int] | None = None


__all__ = ["FailureGroup", "Memento", "never_passes"]
