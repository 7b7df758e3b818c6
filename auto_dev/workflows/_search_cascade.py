"""Evaluating one workflow variant in a cascade over the tasks, and what operators are shown.

The quick stage runs a few of the tasks the parent failed that the edit can affect (those whose
failing run went through the edited step; every failing task when the edit is not about one
step, or the step never ran) and one task the parent passed (the one that caught most
regressions so far). A variant that breaks a task its parent passed stops there. One that fixes
none of the quick tasks runs the parent's other failing tasks, and stops when it fixes none of
those either (a fix is never lost to the sample: an edit is evaluated only once). Most variants
stop early and cost a few runs instead of one per task; survivors run the rest.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from auto_dev.workflows._document import canonical_json, walk_steps
from auto_dev.workflows._search_tasks import TaskResult, TaskStats

#: A task runner: (definition, task index) -> the task's result.
RunTask = Callable[[dict[str, Any], int], Awaitable[TaskResult]]


@dataclass(frozen=True)
class CascadeVerdict:
    """What the cascade decided for one variant (``results`` holds the tasks it ran)."""

    status: str  # "improved", "regressed" or "no_gain"
    stage: str  # "quick" or "full"
    results: tuple[TaskResult, ...]
    reason: str


async def run_tasks(run_task: RunTask, definition: dict[str, Any], indices: Sequence[int],
                    concurrency: int) -> list[TaskResult]:
    """Run the tasks at ``indices`` (at most ``concurrency`` at a time), results in that order."""
    semaphore = asyncio.Semaphore(max(1, concurrency))

    async def one(index: int) -> TaskResult:
        async with semaphore:
            return await run_task(definition, index)

    return list(await asyncio.gather(*(one(i) for i in indices)))


def trace_ids(entries: Any) -> Iterator[str]:
    """Ids of every step in a trace (nested entries included)."""
    for entry in entries or ():
        step_id = getattr(entry, "id", None)
        if isinstance(step_id, str):
            yield step_id
        yield from trace_ids(getattr(entry, "children", ()))


def touched_steps(old: dict[str, Any], new: dict[str, Any]) -> tuple[set[str], bool]:
    """Ids of the steps an edit added, removed or changed (a change nested in a step counts for
    the step holding it too), and whether anything outside the steps changed."""
    def by_id(doc: dict[str, Any]) -> dict[str, str]:
        return {loc.step["id"]: canonical_json(loc.step) for loc in walk_steps(doc)
                if isinstance(loc.step.get("id"), str)}

    before, after = by_id(old), by_id(new)
    touched = {i for i in before.keys() | after.keys() if before.get(i) != after.get(i)}
    order_before = [loc.step.get("id") for loc in walk_steps(old)]
    order_after = [loc.step.get("id") for loc in walk_steps(new)]
    if order_before != order_after:  # a move: every step whose position changed
        touched |= {a for a, b in zip(order_before, order_after, strict=False)
                    if a != b and isinstance(a, str)}
        touched |= {b for a, b in zip(order_before, order_after, strict=False)
                    if a != b and isinstance(b, str)}
    rest_old = {k: v for k, v in old.items() if k not in ("steps", "description")}
    rest_new = {k: v for k, v in new.items() if k not in ("steps", "description")}
    return touched, canonical_json(rest_old) != canonical_json(rest_new)


def targeted_failures(parent_results: Sequence[TaskResult], old: dict[str, Any],
                      new: dict[str, Any], step_id: str | None) -> list[int]:
    """The parent's failing tasks an edit can affect (every failing task when unsure)."""
    failing = [r for r in parent_results if not r.passed]
    touched, global_change = touched_steps(old, new)
    if step_id is not None:
        touched.add(step_id)
    if global_change or not touched:
        return [r.index for r in failing]
    hit = [r.index for r in failing if touched & set(trace_ids(r.run.trace))]
    return hit or [r.index for r in failing]


def quick_stage(parent_results: Sequence[TaskResult], targeted: Sequence[int],
                stats: TaskStats, rng: random.Random, quick_failing: int) -> tuple[int, ...]:
    """The quick stage's tasks (``()``: run everything at once, the cascade would save nothing)."""
    failing = list(targeted)
    if len(failing) > quick_failing:
        failing = sorted(rng.sample(failing, quick_failing))
    passing = [r.index for r in parent_results if r.passed]
    rng.shuffle(passing)
    passing.sort(key=stats.rank)  # stable: catchers first, random ties
    quick = tuple(sorted(failing + passing[:1]))
    if len(quick) >= len(parent_results) - 1:
        return ()
    return quick


async def cascade(
    run_task: RunTask, definition: dict[str, Any], parent_results: Sequence[TaskResult],
    quick: tuple[int, ...], stats: TaskStats, concurrency: int,
) -> CascadeVerdict:
    """Evaluate ``definition`` against its parent's results (see the module docstring).

    A variant is called ``no_gain`` only once every task its parent failed has run: the quick
    stage samples them, and an edit that fixes a task left out of the sample must not be lost
    (it would never be evaluated again).
    """
    parent_passed = {r.index for r in parent_results if r.passed}
    total = len(parent_results)
    ran: list[TaskResult] = []
    stages: list[tuple[str, list[int]]] = []
    if quick:
        stages.append(("quick", list(quick)))
        failing_rest = [r.index for r in parent_results
                        if not r.passed and r.index not in quick]
        if failing_rest:
            stages.append(("failing", failing_rest))
    gained = False
    for stage, indices in stages:
        ran += await run_tasks(run_task, definition, indices, concurrency)
        broken = [r.index for r in ran if r.index in parent_passed and not r.passed]
        if broken:
            stats.caught(broken)
            return CascadeVerdict("regressed", stage, tuple(ran),
                                  f"breaks task(s) {broken} its parent solved")
        gained = any(r.passed and r.index not in parent_passed for r in ran)
        if gained:
            break  # the remaining tasks decide
    if stages and not gained:  # every failing task ran: the rest were solved already
        return CascadeVerdict("no_gain", stages[-1][0], tuple(ran),
                              "solves none of the tasks its parent failed")
    done = {r.index for r in ran}
    rest = await run_tasks(run_task, definition, [i for i in range(total) if i not in done],
                           concurrency)
    results = tuple(sorted([*ran, *rest], key=lambda r: r.index))
    passed = {r.index for r in results if r.passed}
    broken = sorted(parent_passed - passed)
    if broken:
        stats.caught(broken)
        return CascadeVerdict("regressed", "full", results,
                              f"breaks task(s) {broken} its parent solved")
    if passed > parent_passed:
        return CascadeVerdict("improved", "full", results,
                              f"solves task(s) {sorted(passed - parent_passed)} more")
    return CascadeVerdict("no_gain", "full", results, "solves the same tasks as its parent")


def state_paths(results: Sequence[TaskResult], max_depth: int = 3) -> list[str]:
    """JMESPath paths of the run state seen in ``results``: the inputs' fields, every step's
    output and the fields inside it (objects only, up to ``max_depth`` keys deep), ``vars``."""
    seen: dict[str, None] = {}

    def add(prefix: str, value: Any, depth: int) -> None:
        seen.setdefault(prefix, None)
        if depth >= max_depth or not isinstance(value, Mapping):
            return
        for key, inner in value.items():
            if isinstance(key, str) and key.isidentifier():
                add(f"{prefix}.{key}", inner, depth + 1)

    def walk(entries: Any) -> None:
        for entry in entries or ():
            step_id = getattr(entry, "id", None)
            if isinstance(step_id, str) and not getattr(entry, "skipped", False):
                output = getattr(entry, "output", None)
                if output is not None:
                    add(f"steps.{step_id}", output, 1)
                if getattr(entry, "kind", None) == "set" and isinstance(output, Mapping):
                    for key, inner in output.items():
                        if isinstance(key, str) and key.isidentifier():
                            add(f"vars.{key}", inner, 1)
            walk(getattr(entry, "children", ()))

    for result in results:
        for key, value in result.task.input.items():
            if isinstance(key, str) and key.isidentifier():
                add(f"input.{key}", value, 1)
        walk(result.run.trace)
    return list(seen)
