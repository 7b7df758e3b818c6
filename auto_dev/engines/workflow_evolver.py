"""WorkflowEvolver: repairs a registered workflow when its runs fail.

A failing run recorded with ``record_episode(workflow=...)`` asks for a cycle on that workflow
(of the event's tenant only). The cycle reads, through the queries layer, the workflow's active
version and its tasks: the stored ones (users' tasks and recorded runs with their expected
output) and the inputs of recent failing runs that gave no expected output (those must at least
run without error). It then runs :func:`~auto_dev.workflows.search.evolve_workflow` on them,
calling the tenant's registered tools (their active code) in the cycle's sandbox and ``llm``
steps through the cycle's model, with the offline operators always and the model operators
(reflective prompt rewrite, JSON edits) when a model is configured.

While a variant of the workflow awaits review (or approval) no new cycle runs on it. The best
variant is stored through the candidate store, and offered for review (``passed``),
only when it solves more tasks than the active version and breaks none the active version
solved; it carries its objectives (pass rate, cost, latency, steps), the operators that made
it, the version it was made from and the per-task results before and after. Promoting it makes
it the workflow's new active version; auto-promotion where the gate allows is the pipeline's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import structlog

from auto_dev.abc import BaseLearningEngine
from auto_dev.engines.pipeline import Cycle
from auto_dev.events import Event, TaskFailed
from auto_dev.queries import TenantView
from auto_dev.queries.workflows import WorkflowSnapshot
from auto_dev.types import CycleRequest, EvolutionRunResult

log = structlog.get_logger(__name__)

OFFLINE_STRATEGY = "offline: workflow operators"
MODEL_STRATEGY = "model: reflective prompt rewrite and LLM edits, with the offline operators"
#: Per-task results kept in a variant's evidence and the run's stats, at most.
_MAX_TASKS_SHOWN = 200


class WorkflowEvolver(BaseLearningEngine):
    """Evolutionary repair of registered workflows from their failing runs."""

    name = "workflow_evolver"
    capability = "auto_dev.workflows"
    subscriptions = (TaskFailed,)

    def __init__(self, *, event_budget: int = 150, rng_seed: int = 0,
                 max_tasks: int = 100, max_failing_runs: int = 50,
                 on_progress: Callable[[Any], None] | None = None) -> None:
        """``max_tasks``: the tasks a cycle evaluates at most (the newest stored ones first
        go); ``max_failing_runs``: the failing runs without expected output read as tasks."""
        self.event_budget = event_budget
        self.rng_seed = rng_seed
        self.max_tasks = max_tasks
        self.max_failing_runs = max_failing_runs
        self.on_progress = on_progress

    # -- events -------------------------------------------------------------------------------

    def cycle_target(self, event: Event, tenant: TenantView) -> str | None:
        """A failed run of a workflow the event's tenant has registered: that workflow."""
        if not isinstance(event, TaskFailed) or not event.workflow:
            return None
        return event.workflow if tenant.workflows.workflow_id(event.workflow) else None

    def acting_agent(self, target: str, tenant: TenantView) -> str | None:
        """The agent whose run of the workflow failed most recently."""
        return tenant.workflows.latest_failing_agent(target)

    def recent_targets(self, tenant: TenantView, *, since: datetime) -> list[str]:
        """A schedule without a target repairs the workflows with failed runs since ``since``."""
        return tenant.workflows.failing_workflows(since=since)

    # -- the work -----------------------------------------------------------------------------

    async def evolve(self, request: CycleRequest, cycle: Cycle) -> EvolutionRunResult:
        """Evolve workflow ``request.target`` with at most ``request.budget`` evaluations."""
        from auto_dev.workflows import SandboxToolInvoker, WorkflowInterpreter
        from auto_dev.workflows.search import evolve_workflow
        from auto_dev.workflows.tools import tenant_tools

        model_operators = _model_operators(cycle.llm, request.tenant_id)
        outcome = EvolutionRunResult(
            engine=self.name, target=request.target, status="completed",
            tenant_id=request.tenant_id,
            strategy=MODEL_STRATEGY if model_operators else OFFLINE_STRATEGY)
        waiting = cycle.tenant.workflows.open_variants(request.target)
        if waiting:
            # The reviewer decides on it first; the runs recorded meanwhile stay as tasks.
            outcome.status, outcome.reason = "skipped", (
                f"variant {waiting[0][:12]} of this workflow awaits review")
            return outcome
        snapshot = cycle.tenant.workflows.snapshot(request.target,
                                                   max_failing_runs=self.max_failing_runs)
        tasks, dropped = _tasks_of(snapshot, self.max_tasks)
        cycle.stats.update({"workflow_version": snapshot.version, "tasks": len(tasks),
                            "tasks_dropped": dropped})
        if not tasks:
            outcome.status, outcome.reason = "skipped", (
                "the workflow has no tasks: record runs with their input (and expected output) "
                "or add tasks")
            return outcome
        invoker = SandboxToolInvoker(cycle.sandbox, tenant_tools(cycle.tenant),
                                     memory_mb=cycle.limits.memory_mb)
        interpreter = WorkflowInterpreter(invoker, llm=cycle.llm, tenant_id=request.tenant_id)
        result = await evolve_workflow(
            snapshot.definition, tasks, interpreter=interpreter, budget=request.budget,
            seed=self.rng_seed, model_operators=model_operators,
            concurrency=max(2, cycle.sandbox.slots), on_progress=self.on_progress)
        outcome.evaluations = result.evaluations
        outcome.pass_rate_before = result.original_passed / result.total
        outcome.pass_rate_after = result.pass_rate
        offered, outcome.reason = self._settle(cycle, snapshot, result, outcome.strategy)
        if offered is not None:
            outcome.candidate_ids.append(offered)
            outcome.offered_ids.append(offered)
        else:
            # The run reports what it kept: the active version's pass rate.
            outcome.pass_rate_after = outcome.pass_rate_before
        failed_calls = sum(int(getattr(op, "llm_errors", 0) or 0) for op in model_operators)
        if failed_calls:
            # Say what the run really did: a model that did not answer left the offline search.
            outcome.strategy += f" ({failed_calls} model call(s) failed)"
        cycle.stats.update(_run_stats(result, outcome, model_operators))
        cycle.state.update({"rng_seed": self.rng_seed, "stop_reason": result.stop_reason})
        return outcome

    def _settle(self, cycle: Cycle, snapshot: WorkflowSnapshot, result: Any,
                strategy: str) -> tuple[str | None, str]:
        """Store and offer the best variant when it solves more and breaks nothing; say why
        otherwise."""
        from auto_dev.workflows.diff import structural_diff

        before = [r.passed for r in result.original_tasks]
        after = [r.passed for r in result.tasks]
        broken = [i for i, (b, a) in enumerate(zip(before, after, strict=True)) if b and not a]
        if result.stop_reason == "already_passing":
            return None, f"the active version v{snapshot.version} already solves every task"
        if not result.improved or result.passed <= result.original_passed:
            return None, (f"no variant solved more than the active version's "
                          f"{result.original_passed}/{result.total} tasks "
                          f"({result.evaluations} evaluations, {result.stop_reason})")
        if broken:
            return None, f"the best variant breaks task(s) {broken} the active version solves"
        diff = structural_diff(snapshot.definition, result.best)
        lineage = list(result.lineage)
        operators = [line.split(":", 1)[0] for line in lineage]
        details = {
            "parent_version_id": snapshot.version_id, "parent_version": snapshot.version,
            "lineage": lineage, "operators": operators, "strategy": strategy,
            "diff": diff.render_lines(), "stop_reason": result.stop_reason,
            "evaluations": result.evaluations,
            "evidence": {"passed_before": result.original_passed, "passed_after": result.passed,
                         "total": result.total,
                         "before": [r.summary() for r in result.original_tasks[:_MAX_TASKS_SHOWN]],
                         "after": [r.summary() for r in result.tasks[:_MAX_TASKS_SHOWN]]},
        }
        objectives = _objectives(result.tasks)
        # The active version's vector and solved tasks: review compares with them, and
        # auto-promotion re-checks the variant against them.
        details["parent_objectives"] = _objectives(result.original_tasks)
        details["parent_passed_cases"] = [r.index for r in result.original_tasks if r.passed]
        reason = (f"solves {result.passed}/{result.total} tasks (the active version "
                  f"v{snapshot.version}: {result.original_passed}), breaks none")
        with cycle.candidates.transaction() as tx:
            row = tx.create_workflow_variant(
                name=snapshot.name, definition=result.best,
                operator=("+".join(operators) or "search")[:100], objectives=objectives,
                fitness=result.pass_rate, details=details)
            tx.record_evaluation(
                candidate_id=row.id,
                backend=str(getattr(cycle.sandbox, "backend", cycle.sandbox.name)),
                cases=[_case_row(r) for r in result.tasks], passed=result.passed,
                total=result.total, duration_s=objectives["latency_s"],
                objectives=objectives, verdict="passed", reason=reason)
            candidate_id = str(row.id)
        log.info("workflow_variant_offered", tenant_id=cycle.tenant_id, workflow=snapshot.name,
                 candidate_id=candidate_id, passed=result.passed, total=result.total)
        return candidate_id, f"offered {candidate_id}: {reason}"


def _tasks_of(snapshot: WorkflowSnapshot, limit: int) -> tuple[list[Any], int]:
    """The search's tasks: stored tasks, then failing runs' inputs that no stored task has
    (they must run ok), the newest ``limit``; tasks the active version refuses as input (a
    required field missing, a wrong type) are dropped.
    Returns the tasks and how many were dropped."""
    from auto_dev.workflows.search import WorkflowTask

    tasks: list[WorkflowTask] = []
    seen_inputs: set[str] = set()
    for stored in snapshot.tasks:
        if stored.has_expected:
            tasks.append(WorkflowTask(stored.input, stored.expected, name=f"task {stored.id[:8]}"))
        else:
            tasks.append(WorkflowTask(stored.input, name=f"task {stored.id[:8]}"))
        seen_inputs.add(_key(stored.input))
    for i, run_input in enumerate(snapshot.failing_inputs):
        if _key(run_input) not in seen_inputs:
            seen_inputs.add(_key(run_input))
            tasks.append(WorkflowTask(run_input, name=f"failing run {i + 1}"))
    usable = [t for t in tasks if _runnable(snapshot.definition, t.input)]
    kept = usable[-limit:] if limit > 0 else []
    return kept, len(tasks) - len(kept)


def _runnable(definition: dict[str, Any], run_input: Any) -> bool:
    """Whether the active version accepts ``run_input`` (a task recorded for an older version
    may miss an input the workflow now requires: it is dropped, not an error of the cycle)."""
    from auto_dev._exceptions import ValidationError
    from auto_dev.workflows import check_input

    try:
        check_input(definition, run_input)
    except ValidationError:
        return False
    return True


def _key(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, default=str)


def _model_operators(llm: Any, tenant_id: str) -> list[Any]:
    if llm is None:
        return []
    from auto_dev.workflows.operators import LLMWorkflowEdit, ReflectivePromptRewrite

    return [ReflectivePromptRewrite(llm, tenant_id=tenant_id),
            LLMWorkflowEdit(llm, tenant_id=tenant_id)]


def _objectives(results: Sequence[Any]) -> dict[str, float]:
    """The objective vector of a definition's task results (named as the fitness objectives
    name them, so review and promotion compare them with the parent's)."""
    total = len(results)
    return {"pass_rate": sum(r.passed for r in results) / total if total else 0.0,
            "llm_cost_usd": sum(r.cost_usd for r in results),
            "latency_s": sum(r.seconds for r in results),
            "steps": float(sum(r.steps_executed for r in results))}


def _case_row(result: Any) -> dict[str, Any]:
    """One task's result as an evaluation's case row (what review lists per case)."""
    status = "ok" if result.passed else "wrong_answer" if result.ok else "error"
    row: dict[str, Any] = {"index": result.index, "name": result.task.label(result.index),
                           "status": status, "input": dict(result.task.input),
                           "output": result.output, "error": result.error,
                           "duration_s": round(result.seconds, 6)}
    if result.task.has_expected:
        row["expected"] = result.task.expected
    return row


def _run_stats(result: Any, outcome: EvolutionRunResult,
               model_operators: Sequence[Any]) -> dict[str, Any]:
    stats: dict[str, Any] = {
        "evaluations": result.evaluations, "pass_rate_before": outcome.pass_rate_before,
        "pass_rate_after": outcome.pass_rate_after, "best_pass_rate": result.pass_rate,
        "passed_before": result.original_passed,
        "passed_after": result.passed, "total": result.total, "strategy": outcome.strategy,
        "stop_reason": result.stop_reason, "seconds": round(result.seconds, 3),
        "cost_usd": result.cost_usd, "lineage": list(result.lineage),
        "counts": dict(result.counts), "front": len(result.front),
        "offered": list(outcome.offered_ids),
        "tasks_after": [r.summary() for r in result.tasks[:_MAX_TASKS_SHOWN]],
    }
    for operator in model_operators:
        for field in ("llm_errors", "rejected_answers"):
            value = getattr(operator, field, None)
            if isinstance(value, int):
                stats[f"{operator.name}.{field}"] = value
    return stats
