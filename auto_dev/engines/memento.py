"""Memento: learns skills from repeated similar failures.

When the same kind of failure (same tool, exception type and message shape; see
:mod:`auto_dev.failures`) has happened ``min_group_size`` times, Memento turns the
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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from auto_dev._exceptions import NotFoundError, ValidationError
from auto_dev.abc import BaseLearningEngine
from auto_dev.engines.base import ValidationResult
from auto_dev.engines.pipeline import Cycle
from auto_dev.events import Event, TaskFailed
from auto_dev.evolution.dedup import never_passes
from auto_dev.evolution.program import Proposal
from auto_dev.evolution.search import EvolutionSearch, SearchConfig
from auto_dev.failures import describe_signature, failure_signature, similarity
from auto_dev.fitness.service import FitnessService
from auto_dev.queries import FailedEpisode, TenantView, ToolSnapshot
from auto_dev.sandbox.base import Case, SandboxJob, SandboxResult
from auto_dev.types import CycleRequest, EvolutionRunResult

log = structlog.get_logger(__name__)

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

    def cycle_target(self, event: Event, tenant: TenantView) -> str | None:
        """Once a failure pattern repeats often enough (and has no open candidate), learn:
        the target is the failing tool, or ``task:<signature>`` for tasks that used none."""
        if not isinstance(event, TaskFailed) or event.workflow:
            return None  # a registered workflow's failures are the workflow engine's to learn
        if event.tool_name and not self.learn_from_tool_failures and \
                tenant.tools.tool_id(event.tool_name) is not None:
            return None
        target = event.tool_name or f"task:{failure_signature(None, event.error_trace)}"
        group = self.failure_group(target, tenant=tenant)
        if group is None or tenant.open_skill_candidate(group.signature):
            return None
        return target

    def acting_agent(self, target: str, tenant: TenantView) -> str | None:
        """The agent of the newest failure in the target's group."""
        group = self.failure_group(target, min_size=1, tenant=tenant)
        return group.agent_key if group else None

    # -- lifecycle -------------------------------------------------------------------------------

    async def analyze_episode(self, episode_id: str, **kwargs: Any) -> dict[str, Any]:
        return self._view(kwargs.get("tenant_id")).episodes.analysis(episode_id)

    async def propose_code_change(self, context: dict[str, Any], **kwargs: Any) -> list[Proposal]:
        """One skill proposal for the failure group of ``context['tool_name']`` (or target)."""
        target = context.get("target") or context.get("tool_name")
        if not target:
            return []
        view = self._view(kwargs.get("tenant_id"))
        group = self.failure_group(str(target), min_size=1, tenant=view)
        if group is None:
            return []
        budget = int(kwargs.get("budget") or self.event_budget or 150)
        draft, _why = await self._draft(view, group, budget)
        return [draft.proposal] if draft is not None else []

    async def validate_change(self, proposal: Proposal, **kwargs: Any) -> ValidationResult:
        """Run a skill proposal against the tests built from its failure group."""
        cases = kwargs.get("cases")
        if cases is None:
            target = kwargs.get("target") or kwargs.get("tool_name")
            group = self.failure_group(str(target), min_size=1,
                                       tenant=self._view(kwargs.get("tenant_id"))) \
                if target else None
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

    # -- the work --------------------------------------------------------------------------------

    async def evolve(self, request: CycleRequest, cycle: Cycle) -> EvolutionRunResult:
        """Learn a skill for ``request.target`` (a tool name, or ``task:<signature>``)."""
        outcome = EvolutionRunResult(engine=self.name, target=request.target, status="completed",
                                     tenant_id=request.tenant_id)
        group = self.failure_group(request.target, tenant=cycle.tenant)
        if group is None:
            outcome.status = "skipped"
            outcome.reason = f"fewer than {self.min_group_size} similar failures"
            return outcome
        draft, why = await self._draft(cycle.tenant, group, request.budget, cycle.run_id)
        if draft is None:
            outcome.status, outcome.reason = "skipped", why
            return outcome
        outcome.strategy = draft.strategy
        outcome.evaluations = draft.evaluations
        outcome.pass_rate_before = draft.pass_rate_before
        outcome.pass_rate_after = draft.result.pass_rate
        candidate_id, verdict = self._store(cycle, group, draft)
        outcome.candidate_ids.append(candidate_id)
        if verdict == "passed":
            outcome.offered_ids.append(candidate_id)
        outcome.reason = f"{draft.strategy}: {draft.note}"
        cycle.stats.update({"strategy": draft.strategy, "note": draft.note,
                            "group_size": len(group.episode_ids), "pattern": group.pattern,
                            "candidate": candidate_id, "verdict": verdict})
        return outcome

    # -- grouping ----------------------------------------------------------------------------------

    def failure_group(self, target: str, *, min_size: int | None = None,
                      tenant: TenantView | None = None) -> FailureGroup | None:
        """The largest group of similar recent failures for ``target`` in ``tenant`` (default:
        the configured tenant), or ``None`` if it is smaller than ``min_size``."""
        view = tenant or self._view(None)
        need = self.min_group_size if min_size is None else min_size
        tool_name = None if target.startswith("task:") else target
        rows = view.episodes.failures(tool_name, since=datetime.now(UTC) - self.window)
        groups: dict[str, list[tuple[FailedEpisode, str]]] = {}
        for episode in rows:
            sig = failure_signature(episode.tool_name, episode.error_trace)
            if target.startswith("task:") and sig != target.removeprefix("task:"):
                continue
            groups.setdefault(sig, []).append((episode, episode.agent_key))
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

    def _view(self, tenant_id: str | None) -> TenantView:
        return TenantView(self.context.database, tenant_id or self.context.settings.tenant)

    # -- drafting --------------------------------------------------------------------------------

    async def _draft(self, view: TenantView, group: FailureGroup, budget: int,
                     run_id: str | None = None) -> tuple[_Draft | None, str]:
        """A draft skill, or ``None`` and why there is none."""
        if self.context.skill_writer is not None:
            return await self._draft_llm(view, group, run_id)
        return await self._draft_offline(view, group, budget)

    async def _draft_offline(self, view: TenantView, group: FailureGroup,
                             budget: int) -> tuple[_Draft | None, str]:
        if not group.cases:
            return None, ("offline mode needs expected outputs on the failing episodes to "
                          "build regression tests")
        base = self._closest_tool(view, group)
        if base is None:
            return None, "offline mode found no existing tool close enough to repair"
        cases = group.cases + tuple(c for c in base.cases if c not in group.cases)
        search = EvolutionSearch(
            base.program, cases, self.context.sandbox, self.context.mutators, budget=budget,
            rng_seed=self.rng_seed, limits=self.context.limits,
            mix=self.context.mutator_weights or None, config=SearchConfig(),
            fitness=self.fitness, tenant_id=view.tenant_id,
        )
        result = await search.run()
        if result.passed <= result.seed_passed:
            return None, (f"retrieve_repair: no change to the closest tool {base.name!r} "
                          f"passes more of the {len(cases)} tests ({result.seed_passed}/"
                          f"{result.total} pass, as before); nothing to offer")
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
        ), note

    async def _draft_llm(self, view: TenantView, group: FailureGroup,
                         run_id: str | None) -> tuple[_Draft | None, str]:
        from auto_dev.llm.skills import ExistingTool, SkillBrief

        base = self._closest_tool(view, group)
        assert self.context.skill_writer is not None
        draft = await self.context.skill_writer.write(
            SkillBrief(
                task_descriptions=group.task_descriptions,
                error_traces=group.error_traces,
                examples=group.cases,
                closest_tool=ExistingTool(base.name, base.program.code,
                                          base.program.entrypoint, base.description)
                if base else None,
                pattern=group.pattern,
                episode_ids=group.episode_ids,
            ),
            self.context.sandbox, tenant_id=view.tenant_id, run_id=run_id,
        )
        if not draft.code:
            return None, f"the model produced no usable skill: {draft.failure}"
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
        ), note

    @staticmethod
    def _closest_tool(view: TenantView, group: FailureGroup) -> ToolSnapshot | None:
        if group.tool_name:
            try:
                return view.tools.snapshot(group.tool_name)
            except NotFoundError:
                pass
        query = " ".join(group.task_descriptions) + " " + group.pattern
        scored = sorted(
            ((similarity(query, f"{name.replace('_', ' ')} {description}"), name)
             for name, description in view.tools.catalogue()), reverse=True)
        if not scored or scored[0][0] < 0.15:
            return None
        return view.tools.snapshot(scored[0][1])

    def _store(self, cycle: Cycle, group: FailureGroup, draft: _Draft) -> tuple[str, str]:
        parent_code = draft.base.program.code if draft.base else None
        problem = never_passes(draft.proposal.code, parent_code)
        verdict = "failed" if problem or not draft.result.all_passed else "passed"
        reason = problem or (f"passes {draft.result.passed}/{draft.result.total} tests"
                             if verdict == "failed" else draft.note)
        name = draft.name or (draft.base.name if draft.base else f"skill_{group.signature[:8]}")
        with cycle.candidates.transaction() as tx:
            row = tx.create_skill_candidate(
                name=name, code=draft.proposal.code,
                entrypoint=draft.proposal.entrypoint, strategy=draft.strategy,
                description=draft.proposal.description or draft.note,
                tool_id=draft.base.tool_id if draft.base else None,
                failure_pattern=f"{group.pattern} [{group.signature}]",
                source_episode_ids=group.episode_ids,
                tests=[c.to_dict() for c in draft.tests], objectives=draft.scores,
                exchange=draft.exchange,
            )
            tx.record_evaluation(
                candidate_id=row.id, result=draft.result,
                limits=cycle.limits.to_wire(), objectives=draft.scores, verdict=verdict,
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
