"""Evolving a workflow against tasks: the search behind ``auto-dev workflows evolve``.

:func:`evolve_workflow` evaluates the original definition on every task, then, until every task
passes or the budget is spent:

1. picks a parent on the per-task Pareto front (:mod:`._search_front`): a tournament on tasks
   solved, then the objectives (LLM cost first); one time in five, any kept variant (a first
   fix can lead nowhere; its parent's other edits are still queued) or a *neutral* one (it
   fixed nothing and broke nothing it ran: a retry still too small, whose widening fixes the
   task). A variant that fixes one task without breaking any is kept and can be a parent, so
   a workflow with two faults is repaired in two steps;
2. asks the operators for edits of the parent (offline operators always, model operators when
   given), shown the parent's failing runs (traces with the task's input and expected output)
   and the state paths seen in its traces. Edits already seen (same ``workflow_hash``) are
   dropped, so no definition is ever evaluated twice; edits that do not validate are counted
   and dropped;
3. evaluates the edit in a cascade (:mod:`._search_cascade`): some failing tasks it can affect
   and one passing task first, stopping a variant that breaks a task its parent solved, then
   the other failing tasks, stopping a variant that fixes none. Only a variant that solves
   more tasks than its parent and breaks none is kept (success is the hard objective).

``budget`` counts *evaluations*: variants sent to the interpreter, however many of the tasks
the cascade ran for each (the original's own evaluation is not counted), as ``auto-dev evolve``
counts candidates. Each task always runs with the same seed (derived from ``seed`` and its
index) so that a flaky tool fails the same way for every variant and the search is reproducible
for a seed (given deterministic tools; wall-clock latency only matters past a tolerance).
"""

from __future__ import annotations

import copy
import inspect
import random
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from auto_dev._exceptions import AutoDevError, ValidationError
from auto_dev.workflows._document import workflow_hash
from auto_dev.workflows._search_cascade import (
    cascade,
    quick_stage,
    run_tasks,
    state_paths,
    targeted_failures,
)
from auto_dev.workflows._search_front import (
    DEFAULT_OBJECTIVES,
    Measure,
    Variant,
    WorkflowObjective,
    best_of,
    resolve_objectives,
    score,
    tournament,
    variant_front,
)
from auto_dev.workflows._search_result import (
    FrontMember,
    WorkflowSearchProgress,
    WorkflowSearchResult,
)
from auto_dev.workflows._search_tasks import (
    NO_EXPECTED,
    TaskResult,
    TaskStats,
    WorkflowTask,
    check_task_inputs,
    load_tasks_file,
    tasks_from_data,
)

if TYPE_CHECKING:
    from auto_dev.workflows.interpreter import WorkflowInterpreter, WorkflowRun

__all__ = [
    "DEFAULT_OBJECTIVES",
    "NO_EXPECTED",
    "FrontMember",
    "TaskResult",
    "WorkflowObjective",
    "WorkflowSearchProgress",
    "WorkflowSearchResult",
    "WorkflowTask",
    "default_operators",
    "evolve_workflow",
    "load_tasks_file",
    "tasks_from_data",
]

log = structlog.get_logger(__name__)

#: Rounds of proposals that bring nothing new before a parent is given up.
_DRY_ROUNDS = 3
#: Failing tasks run in the quick stage at most.
_QUICK_FAILING = 3
#: How often the parent is any kept or neutral variant rather than a tournament winner.
_EXPLORE_RATE = 0.2
#: Neutral variants remembered as possible parents (the most recent ones).
_NEUTRALS_KEPT = 64


async def evolve_workflow(
    doc: dict[str, Any],
    tasks: Sequence[WorkflowTask],
    *,
    interpreter: WorkflowInterpreter,
    budget: int = 300,
    seed: int = 0,
    operators: Sequence[Any] | None = None,
    model_operators: Sequence[Any] = (),
    objectives: Sequence[WorkflowObjective] | Mapping[str, Measure] | None = None,
    tools: Collection[str] | None = None,
    concurrency: int = 2,
    on_progress: Callable[[WorkflowSearchProgress], None] | None = None,
) -> WorkflowSearchResult:
    """Evolve ``doc`` until it solves every task in ``tasks`` or ``budget`` evaluations are
    spent (see the module docstring).

    ``operators`` default to every offline workflow operator (:func:`default_operators`);
    ``model_operators`` (the reflective prompt rewrite, LLM edits: anything whose ``propose``
    may be awaited) are asked too, first, once per round of proposals for a parent.
    ``objectives`` replace the default secondary objectives (cost, steps, latency): a mapping
    of name to a callable over a variant's task results (lower is better), or
    :class:`WorkflowObjective` objects. ``tools`` are the tool names edits may use (default:
    the interpreter's). Bad arguments (an invalid workflow, a task missing a required input)
    raise :class:`ValidationError` naming the field before anything runs.
    """
    search = _WorkflowSearch(doc, tasks, interpreter=interpreter, budget=budget, seed=seed,
                             operators=operators, model_operators=model_operators,
                             objectives=objectives, tools=tools, concurrency=concurrency,
                             on_progress=on_progress)
    return await search.run()


def _refused_run(error: str) -> WorkflowRun:
    from auto_dev.workflows.interpreter import WorkflowRun

    return WorkflowRun(ok=False, output=None, error=error, error_step=None, trace=(),
                       steps_executed=0, seconds=0.0, cost_usd=0.0, tokens=0)


def default_operators() -> list[Any]:
    """Every offline workflow operator (a fresh list the caller may extend)."""
    from auto_dev.workflows.operators import OFFLINE_OPERATORS

    return list(OFFLINE_OPERATORS)


class _WorkflowSearch:
    def __init__(
        self, doc: dict[str, Any], tasks: Sequence[WorkflowTask], *,
        interpreter: WorkflowInterpreter, budget: int, seed: int,
        operators: Sequence[Any] | None, model_operators: Sequence[Any],
        objectives: Sequence[WorkflowObjective] | Mapping[str, Measure] | None,
        tools: Collection[str] | None, concurrency: int,
        on_progress: Callable[[WorkflowSearchProgress], None] | None,
    ) -> None:
        from auto_dev.workflows.schema import validate_workflow

        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
            raise ValidationError("budget", "must be a non-negative integer")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValidationError("seed", "must be an integer")
        if not tasks:
            raise ValidationError("tasks", "is empty: at least one task is needed")
        if tools is None:
            names = getattr(getattr(interpreter, "tools", None), "names", None)
            tools = names() if callable(names) else ()
        self.tools = sorted(tools)
        kind_names = getattr(getattr(interpreter, "kinds", None), "names", None)
        self.kinds = frozenset(kind_names()) if callable(kind_names) else None
        self.doc = validate_workflow(doc, tools=self.tools or None, kinds=self.kinds)
        self.tasks = tuple(tasks)
        check_task_inputs(self.doc, self.tasks)
        self.interpreter = interpreter
        self.budget = budget
        self.seed = seed
        self.operators = list(operators) if operators is not None else default_operators()
        self.model_operators = list(model_operators)
        if not self.operators and not self.model_operators:
            raise ValidationError("operators", "must list at least one operator")
        self.objectives = resolve_objectives(objectives)
        self.concurrency = concurrency
        self.on_progress = on_progress
        self._validate = validate_workflow
        self._rng_select = random.Random(f"{seed}:select")
        self._rng_operators = random.Random(f"{seed}:operators")
        self._rng_cascade = random.Random(f"{seed}:cascade")
        self._stats = TaskStats()
        self._seen: set[str] = set()
        self._archive: list[Variant] = []
        #: Variants that fixed nothing and broke nothing they ran (never the result).
        self._neutrals: deque[Variant] = deque(maxlen=_NEUTRALS_KEPT)
        self._evaluations = 0
        self._cost = 0.0
        self._counts: dict[str, int] = {}
        self._started = 0.0
        self._model_cost_at_start = 0.0

    # --- the loop ---------------------------------------------------------------------------

    async def run(self) -> WorkflowSearchResult:
        self._started = time.perf_counter()
        self._model_cost_at_start = self._model_cost()
        results = await run_tasks(self._run_original, self.doc, range(len(self.tasks)),
                                  self.concurrency)
        original = self._variant("original", self.doc, tuple(results), None, "original", "")
        self._seen.add(original.digest)
        self._archive.append(original)
        log.info("workflow_search.original", workflow=self.doc.get("name"),
                 passed=original.solved, total=len(self.tasks))
        stop = "already_passing" if self._solved() else "budget"
        while stop == "budget" and self._evaluations < self.budget:
            parent = self._pick_parent()
            if parent is None:
                stop = "exhausted"
                break
            proposal = await self._next_proposal(parent)
            if proposal is None:
                continue
            await self._evaluate(parent, proposal)
            self._progress()
            if self._solved():
                stop = "solved"
        return self._result(original, stop)

    def _solved(self) -> bool:
        return any(v.solved == len(self.tasks) for v in self._archive)

    def _pick_parent(self) -> Variant | None:
        rng = self._rng_select
        front = [v for v in variant_front(self._archive, self.objectives) if not v.exhausted]
        if front and rng.random() >= _EXPLORE_RATE:
            return tournament(front, rng, self.objectives)
        # Now and then (and when the front's neighbourhoods are used up) any kept variant, or
        # a neutral one: the first fix found is not always on the way to the full repair, and
        # some repairs take an edit that fixes nothing yet.
        kept = [v for v in self._archive if not v.exhausted]
        neutral = [v for v in self._neutrals if not v.exhausted]
        pool = neutral if neutral and (not kept or rng.random() < 0.5) else kept
        return rng.choice(pool) if pool else None

    async def _next_proposal(self, parent: Variant) -> Any | None:
        """The parent's next unseen, valid proposal (asking the operators when it has none
        queued), or None after a round that brought nothing new."""
        if not parent.pending:
            fresh = [p for p in await self._propose(parent) if self._admit(p)]
            if not fresh:
                parent.dry_rounds += 1
                parent.exhausted = parent.dry_rounds >= _DRY_ROUNDS
                return None
            parent.dry_rounds = 0
            parent.pending.extend(fresh)
        return parent.pending.pop(0)

    async def _propose(self, parent: Variant) -> list[Any]:
        """One round: every operator's proposals, interleaved (each operator's own order puts
        edits of failing steps first), model operators' first."""
        from auto_dev.workflows.operators import WorkflowMutationContext

        context = WorkflowMutationContext(
            tools=self.tools, failures=[r.failure() for r in parent.results if not r.passed],
            rng=self._rng_operators, state_paths=state_paths(parent.results))
        batches: list[list[Any]] = []
        for operator in self.model_operators:
            batches.append(await self._ask(operator, parent, context))
        offline: list[list[Any]] = []
        for operator in self.operators:
            offline.append(await self._ask(operator, parent, context))
        self._rng_operators.shuffle(offline)
        batches.extend(offline)
        interleaved: list[Any] = []
        for rank in range(max((len(b) for b in batches), default=0)):
            interleaved.extend(b[rank] for b in batches if rank < len(b))
        return interleaved

    async def _ask(self, operator: Any, parent: Variant, context: Any) -> list[Any]:
        name = getattr(operator, "name", type(operator).__name__)
        try:
            answer = operator.propose(copy.deepcopy(parent.definition), context)
            if inspect.isawaitable(answer):
                answer = await answer
        except AutoDevError as exc:  # a model operator's call failed: the others go on
            log.warning("workflow_search.operator_failed", operator=name, error=str(exc))
            self._count("operator_errors")
            return []
        proposals = list(answer or ())
        self._count("proposals", len(proposals))
        return proposals

    def _admit(self, proposal: Any) -> bool:
        """Whether a proposal is new and valid (each is counted under why it was dropped)."""
        definition = getattr(proposal, "definition", None)
        if not isinstance(definition, dict):
            self._count("invalid")
            return False
        digest = workflow_hash(definition)
        if digest in self._seen:
            self._count("duplicates")
            return False
        self._seen.add(digest)
        try:
            self._validate(definition, tools=self.tools or None, kinds=self.kinds)
        except ValidationError as exc:
            log.debug("workflow_search.invalid_proposal", operator=proposal.operator,
                      field=exc.field, problem=exc.problem)
            self._count("invalid")
            return False
        return True

    async def _evaluate(self, parent: Variant, proposal: Any) -> None:
        self._evaluations += 1
        definition = proposal.definition
        targeted = targeted_failures(parent.results, parent.definition, definition,
                                     getattr(proposal, "step_id", None))
        quick = quick_stage(parent.results, targeted, self._stats, self._rng_cascade,
                            _QUICK_FAILING)
        verdict = await cascade(self._run_task, definition, parent.results, quick,
                                self._stats, self.concurrency)
        self._count(verdict.status)
        log.debug("workflow_search.evaluated", evaluation=self._evaluations,
                  operator=proposal.operator, note=proposal.note, status=verdict.status,
                  stage=verdict.stage, reason=verdict.reason)
        if verdict.status == "no_gain":
            # Breaks nothing it ran and every failing task ran: a neutral step (a retry that
            # is still too small) can lead to a fix. Tasks it skipped keep the parent's result.
            ran = {r.index: r for r in verdict.results}
            merged = tuple(ran.get(r.index, r) for r in parent.results)
            self._neutrals.append(self._variant(f"n{self._evaluations}", definition, merged,
                                                parent, proposal.operator, proposal.note))
        if verdict.status != "improved":
            return
        child = self._variant(f"v{self._evaluations}", definition, verdict.results, parent,
                              proposal.operator, proposal.note)
        self._archive.append(child)
        log.info("workflow_search.improved", id=child.id, operator=child.operator,
                 note=child.note, passed=child.solved, total=len(self.tasks))

    async def _run_original(self, definition: dict[str, Any], index: int) -> TaskResult:
        """A task of the original: an input the interpreter refuses is the caller's error."""
        try:
            return await self._run_task(definition, index, strict=True)
        except ValidationError as exc:
            raise ValidationError(f"tasks[{index}].{exc.field}", exc.problem) from None

    async def _run_task(self, definition: dict[str, Any], index: int, *,
                        strict: bool = False) -> TaskResult:
        task = self.tasks[index]
        try:
            # The same seed for a task whatever the variant: a flaky tool fails the same calls.
            run = await self.interpreter.run(definition, dict(task.input),
                                             seed=(self.seed * 1_000_003 + index) % 2**31)
        except ValidationError as exc:
            if strict:
                raise
            # A variant the interpreter refuses for this input (a model edit changed what the
            # workflow requires, say) fails the task; it does not stop the search.
            run = _refused_run(f"{exc.field}: {exc.problem}")
        self._cost += float(run.cost_usd)
        return TaskResult(index, task, run, task.check(run))

    def _variant(self, vid: str, definition: dict[str, Any], results: tuple[TaskResult, ...],
                 parent: Variant | None, operator: str, note: str) -> Variant:
        return Variant(id=vid, definition=definition, digest=workflow_hash(definition),
                       results=results, scores=score(results, self.objectives), parent=parent,
                       operator=operator, note=note, evaluation=self._evaluations)

    def _model_cost(self) -> float:
        """What the model operators' own calls have cost so far (they keep the sum)."""
        return sum(float(getattr(op, "cost_usd", 0.0) or 0.0) for op in self.model_operators)

    def _count(self, key: str, n: int = 1) -> None:
        self._counts[key] = self._counts.get(key, 0) + n

    def _progress(self) -> None:
        if self.on_progress is None:
            return
        self.on_progress(WorkflowSearchProgress(
            evaluations=self._evaluations, budget=self.budget,
            best_passed=max(v.solved for v in self._archive), total=len(self.tasks),
            elapsed_s=time.perf_counter() - self._started))

    def _result(self, original: Variant, stop: str) -> WorkflowSearchResult:
        best = best_of(self._archive, self.objectives)
        self._progress()
        front = variant_front(self._archive, self.objectives)
        seconds = time.perf_counter() - self._started
        log.info("workflow_search.done", stop=stop, evaluations=self._evaluations,
                 passed=best.solved, total=len(self.tasks), seconds=round(seconds, 3))
        return WorkflowSearchResult(
            best=copy.deepcopy(best.definition), original=copy.deepcopy(self.doc),
            passed=best.solved, total=len(self.tasks), original_passed=original.solved,
            evaluations=self._evaluations, improved=best.solved > original.solved,
            seconds=seconds, cost_usd=self._cost + self._model_cost() - self._model_cost_at_start,
            stop_reason=stop, tasks=best.results,
            original_tasks=original.results,
            front=tuple(FrontMember(v.id, v.digest, tuple(sorted(v.passed)), dict(v.scores),
                                    v.operator, v.note, copy.deepcopy(v.definition))
                        for v in front),
            lineage=tuple(f"{v.operator}: {v.note}" for v in best.lineage()[1:]),
            scores=dict(best.scores), counts=dict(self._counts),
        )
