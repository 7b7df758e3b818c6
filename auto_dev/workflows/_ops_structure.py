"""Operators that change a workflow's structure: retries, catch blocks, and where steps sit."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from auto_dev.workflows._document import step_kind, step_list, walk_steps
from auto_dev.workflows._ops_base import (
    Candidate,
    Doc,
    FailureEvidence,
    Path,
    WorkflowMutationContext,
    WorkflowOperator,
    all_ids,
    edit_copy,
    fresh_id,
    renumber,
    step_id_of,
)

#: Kinds whose work can fail transiently, so retrying or catching them makes sense.
_FALLIBLE = ("tool", "llm", "switch", "map")
_DEFAULT_RETRY: dict[str, Any] = {"max_attempts": 3, "backoff_s": 0.1,
                                  "on": ["error", "timeout"]}
_MAX_ATTEMPTS = 10
#: Blocks are not added below this depth (the interpreter bounds nesting).
_MAX_WRAP_DEPTH = 3


def _fallible(step: dict[str, Any]) -> bool:
    kind = step_kind(step)
    return kind in _FALLIBLE or (bool(kind) and kind not in ("set", "fail"))


def _mentions_timeout(evidence: FailureEvidence, step_id: str | None) -> bool:
    return any("timeout" in e.lower() or "timed out" in e.lower()
               for e in evidence.errors.get(step_id or "", ()))


class AddRetry(WorkflowOperator):
    """Give a step that can fail transiently a ``retry`` (3 attempts on error and timeout)."""

    name = "add_retry"

    def candidates(self, doc: Doc, context: WorkflowMutationContext,
                   evidence: FailureEvidence) -> Iterable[Candidate]:
        for loc in walk_steps(doc):
            if "retry" in loc.step or not _fallible(loc.step):
                continue
            step_id = step_id_of(loc.step)

            def add(_doc: Doc, step: dict[str, Any]) -> None:
                step["retry"] = {**_DEFAULT_RETRY, "on": list(_DEFAULT_RETRY["on"])}

            rank = 0 if step_kind(loc.step) == "tool" or step_id in evidence.errors else 1
            yield Candidate(step_id, f"add a retry (3 attempts) to step {step_id}",
                            edit_copy(doc, loc.path, add), rank)


class WidenRetry(WorkflowOperator):
    """Retry a step more: more attempts, or also on ``timeout``."""

    name = "widen_retry"

    def candidates(self, doc: Doc, context: WorkflowMutationContext,
                   evidence: FailureEvidence) -> Iterable[Candidate]:
        for loc in walk_steps(doc):
            retry = loc.step.get("retry")
            if not isinstance(retry, dict):
                continue
            step_id = step_id_of(loc.step)
            on = retry.get("on")
            if isinstance(on, list) and "timeout" not in on:

                def add_timeout(_doc: Doc, step: dict[str, Any]) -> None:
                    step["retry"]["on"] = [*step["retry"]["on"], "timeout"]

                rank = 0 if _mentions_timeout(evidence, step_id) else 1
                yield Candidate(step_id, f"retry step {step_id} on timeout too",
                                edit_copy(doc, loc.path, add_timeout), rank)
            attempts = retry.get("max_attempts", 1)
            if isinstance(attempts, int) and not isinstance(attempts, bool):
                for more in (attempts + 2, attempts * 2):
                    target = min(_MAX_ATTEMPTS, more)
                    if target <= attempts:
                        continue

                    def widen(_doc: Doc, step: dict[str, Any], target: int = target) -> None:
                        step["retry"]["max_attempts"] = target

                    yield Candidate(step_id, f"retry step {step_id} up to {target} attempts",
                                    edit_copy(doc, loc.path, widen), 0 if more == attempts + 2
                                    else 1)


class RemoveRetry(WorkflowOperator):
    """Drop a step's ``retry`` (a retried step with side effects may do its work twice)."""

    name = "remove_retry"

    def candidates(self, doc: Doc, context: WorkflowMutationContext,
                   evidence: FailureEvidence) -> Iterable[Candidate]:
        for loc in walk_steps(doc):
            if "retry" not in loc.step:
                continue
            step_id = step_id_of(loc.step)

            def remove(_doc: Doc, step: dict[str, Any]) -> None:
                del step["retry"]

            yield Candidate(step_id, f"remove the retry of step {step_id}",
                            edit_copy(doc, loc.path, remove))


class WrapInCatch(WorkflowOperator):
    """Give a step a ``catch``: a ``set`` fallback value, or one more plain run of the step."""

    name = "wrap_in_catch"

    def candidates(self, doc: Doc, context: WorkflowMutationContext,
                   evidence: FailureEvidence) -> Iterable[Candidate]:
        for loc in walk_steps(doc):
            if "catch" in loc.step or not _fallible(loc.step) or loc.depth >= _MAX_WRAP_DEPTH:
                continue
            step_id = step_id_of(loc.step)
            seen = evidence.outputs.get(step_id or "")
            fallback = seen[0] if seen else None

            def with_set(clone: Doc, step: dict[str, Any], fallback: Any = fallback) -> None:
                key = step.get("id") or "step"
                catch_id = fresh_id(set(all_ids(clone)), f"{key}_fallback")
                step["catch"] = [{"id": catch_id, "set": {str(key): fallback}}]

            def with_rerun(clone: Doc, step: dict[str, Any]) -> bool:
                if step_kind(step) not in ("tool", "llm"):
                    return False
                plain = {k: v for k, v in step.items() if k not in ("retry", "catch", "when")}
                step["catch"] = [renumber(plain, set(all_ids(clone)))]
                return True

            failed = step_id in evidence.errors
            yield Candidate(step_id, f"catch a failure of step {step_id} with a fixed value",
                            edit_copy(doc, loc.path, with_set), 0 if failed else 1)
            yield Candidate(step_id, f"run step {step_id} once more when it fails",
                            edit_copy(doc, loc.path, with_rerun), 0 if failed else 1)


def _list_sites(doc: Doc) -> Iterator[tuple[Path, int, dict[str, Any]]]:
    for loc in walk_steps(doc):
        yield loc.list_path, loc.index, loc.step


def _remove_at(clone: Doc, list_path: Path, index: int) -> dict[str, Any]:
    """Remove and return the step at ``list_path[index]``; an emptied ``catch`` is dropped."""
    steps = step_list(clone, list_path)
    removed: dict[str, Any] = steps.pop(index)
    if not steps and list_path[-1] == "catch":
        owner = step_list(clone, list_path[:-2])[int(list_path[-2])]
        del owner["catch"]
    return removed


def _removable(list_path: Path, size: int) -> bool:
    # Never leave a list of steps empty; a catch block may go away entirely.
    return size > 1 or list_path[-1] == "catch"


class DeleteStep(WorkflowOperator):
    """Remove one step (with the steps nested in it)."""

    name = "delete_step"

    def candidates(self, doc: Doc, context: WorkflowMutationContext,
                   evidence: FailureEvidence) -> Iterable[Candidate]:
        for list_path, index, step in _list_sites(doc):
            if not _removable(list_path, len(step_list(doc, list_path))):
                continue
            step_id = step_id_of(step)

            def delete(clone: Doc, _step: dict[str, Any], list_path: Path = list_path,
                       index: int = index) -> None:
                _remove_at(clone, list_path, index)

            yield Candidate(step_id, f"delete step {step_id}",
                            edit_copy(doc, (*list_path, index), delete))


class DuplicateStep(WorkflowOperator):
    """Run a step twice: insert a copy (fresh ids) right after it."""

    name = "duplicate_step"

    def candidates(self, doc: Doc, context: WorkflowMutationContext,
                   evidence: FailureEvidence) -> Iterable[Candidate]:
        for list_path, index, step in _list_sites(doc):
            step_id = step_id_of(step)

            def duplicate(clone: Doc, original: dict[str, Any], list_path: Path = list_path,
                          index: int = index) -> None:
                step_list(clone, list_path).insert(index + 1,
                                                   renumber(original, set(all_ids(clone))))

            yield Candidate(step_id, f"run step {step_id} a second time",
                            edit_copy(doc, (*list_path, index), duplicate),
                            0 if step_kind(step) in ("tool", "llm") else 1)


class MoveStep(WorkflowOperator):
    """Move a step to another place in its block, or out of its block after the step holding it."""

    name = "move_step"

    def candidates(self, doc: Doc, context: WorkflowMutationContext,
                   evidence: FailureEvidence) -> Iterable[Candidate]:
        for list_path, index, step in _list_sites(doc):
            step_id = step_id_of(step)
            size = len(step_list(doc, list_path))
            for target in range(size):
                if target == index:
                    continue

                def move(clone: Doc, _step: dict[str, Any], list_path: Path = list_path,
                         index: int = index, target: int = target) -> None:
                    steps = step_list(clone, list_path)
                    steps.insert(target, steps.pop(index))

                yield Candidate(step_id, f"move step {step_id} to position {target + 1} of "
                                f"its block", edit_copy(doc, (*list_path, index), move),
                                0 if abs(target - index) == 1 else 1)
            if len(list_path) >= 3 and _removable(list_path, size):
                yield Candidate(step_id, f"move step {step_id} out of its block",
                                edit_copy(doc, (*list_path, index), _hoister(list_path, index)),
                                1)


def _owner_path(list_path: Path) -> Path:
    """The path of the step holding the block at ``list_path`` (see ``child_blocks``)."""
    if list_path[-1] == "catch":
        return list_path[:-1]
    if len(list_path) >= 2 and list_path[-2] == "map":
        return list_path[:-2]
    return list_path[:-3]  # ("switch", i, "steps" | "otherwise")


def _hoister(list_path: Path, index: int) -> Any:
    """An edit moving the step at ``list_path[index]`` to just after the step holding it."""
    owner_path = _owner_path(list_path)

    def hoist(clone: Doc, _step: dict[str, Any]) -> None:
        moved = _remove_at(clone, list_path, index)
        step_list(clone, owner_path[:-1]).insert(int(owner_path[-1]) + 1, moved)

    return hoist


class SwapBranches(WorkflowOperator):
    """Swap two neighbouring ``when`` branches of a switch (the first true branch wins)."""

    name = "swap_branches"

    def candidates(self, doc: Doc, context: WorkflowMutationContext,
                   evidence: FailureEvidence) -> Iterable[Candidate]:
        for loc in walk_steps(doc):
            branches = loc.step.get("switch")
            if not isinstance(branches, list):
                continue
            step_id = step_id_of(loc.step)
            for i in range(len(branches) - 1):
                if not all(isinstance(b, dict) and "when" in b for b in branches[i:i + 2]):
                    continue

                def swap(_doc: Doc, step: dict[str, Any], i: int = i) -> None:
                    branches = step["switch"]
                    branches[i], branches[i + 1] = branches[i + 1], branches[i]

                yield Candidate(step_id, f"swap branches {i} and {i + 1} of switch {step_id}",
                                edit_copy(doc, loc.path, swap))
