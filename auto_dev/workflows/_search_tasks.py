"""The tasks a workflow is evolved against, and what one run of a task gave.

A task is a workflow input and, usually, the output expected from it. Outputs are compared as
``auto-dev evolve`` compares a function's results (:func:`auto_dev.sandbox._harness.
outputs_match`: JSON-normalised, floats within a small tolerance); a task without ``expected``
passes whenever the run ends ``ok``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auto_dev._exceptions import ValidationError
from auto_dev.sandbox._harness import outputs_match

if TYPE_CHECKING:
    from auto_dev.payloads import PayloadLimits
    from auto_dev.workflows.interpreter import WorkflowRun


class _NoExpected:
    """The type of :data:`NO_EXPECTED` (a task whose only check is that the run succeeds)."""

    _instance: _NoExpected | None = None

    def __new__(cls) -> _NoExpected:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NO_EXPECTED"

    def __reduce__(self) -> str:
        return "NO_EXPECTED"


#: ``WorkflowTask.expected`` of a task without an expected output (``None`` is a real value).
NO_EXPECTED: Any = _NoExpected()

_TASK_FIELDS = frozenset({"input", "expected", "name"})


@dataclass(frozen=True)
class WorkflowTask:
    """One input of a workflow with, usually, the output expected from it."""

    input: Mapping[str, Any]
    expected: Any = NO_EXPECTED
    name: str | None = None

    @property
    def has_expected(self) -> bool:
        return self.expected is not NO_EXPECTED

    def label(self, index: int) -> str:
        return self.name or f"tasks[{index}]"

    def check(self, run: WorkflowRun) -> bool:
        """Whether ``run`` solves this task."""
        if not run.ok:
            return False
        return not self.has_expected or outputs_match(run.output, self.expected)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"input": dict(self.input)}
        if self.has_expected:
            out["expected"] = self.expected
        if self.name is not None:
            out["name"] = self.name
        return out

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "task") -> WorkflowTask:
        """A task from ``{"input": {...}, "expected"?: ..., "name"?: str}``; a problem raises
        :class:`ValidationError` naming the field (``tasks[3].input``)."""
        if not isinstance(data, dict):
            raise ValidationError(where, f"must be an object with an input, got "
                                         f"{type(data).__name__}")
        unknown = sorted(set(data) - _TASK_FIELDS)
        if unknown:
            raise ValidationError(f"{where}.{unknown[0]}",
                                  "unknown field (a task has input, expected and name)")
        if "input" not in data:
            raise ValidationError(f"{where}.input", "is missing")
        inputs = data["input"]
        if not isinstance(inputs, dict) or not all(isinstance(k, str) for k in inputs):
            raise ValidationError(f"{where}.input", f"must be an object with string keys, got "
                                                    f"{type(inputs).__name__}")
        name = data.get("name")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ValidationError(f"{where}.name", "must be a non-empty string")
        return cls(input=dict(inputs), expected=data.get("expected", NO_EXPECTED), name=name)


def load_tasks_file(path: str | Path, limits: PayloadLimits | None = None) -> list[WorkflowTask]:
    """The tasks in the JSON file at ``path``: a non-empty list of ``{"input": {...},
    "expected"?: ..., "name"?: str}``.

    Any problem raises :class:`ValidationError` naming the element and field
    (``tasks[3].input``), or ``tasks`` for the file itself. Values are JSON within ``limits``
    (default: the default settings): nesting and integer digits are bounded, NaN is refused.
    """
    from auto_dev.payloads import PayloadLimits, parse_json_text

    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValidationError("tasks", f"file {str(file)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError("tasks", f"cannot read {str(file)!r}: {exc}") from None
    try:
        data = parse_json_text("tasks", text, limits or PayloadLimits())
    except ValidationError as exc:
        if exc.field != "tasks":
            raise  # a path inside the document, e.g. tasks[3].input.items
        raise ValidationError("tasks", f"{file} {exc.problem}") from None
    return tasks_from_data(data)


def tasks_from_data(data: Any) -> list[WorkflowTask]:
    """Tasks from parsed JSON (a list of task objects), naming ``tasks[i]...`` in errors."""
    if not isinstance(data, list):
        raise ValidationError("tasks", f"must be a JSON list of task objects, got "
                                       f"{type(data).__name__}")
    if not data:
        raise ValidationError("tasks", "is empty: at least one task is needed")
    return [WorkflowTask.from_dict(item, where=f"tasks[{i}]") for i, item in enumerate(data)]


def check_task_inputs(doc: Mapping[str, Any], tasks: Sequence[WorkflowTask]) -> None:
    """Every task gives the inputs ``doc`` requires (else ValidationError naming
    ``tasks[i].input.<field>``), so that a missing input is reported before any run."""
    spec = doc.get("input")
    required = spec.get("required", []) if isinstance(spec, Mapping) else []
    for index, task in enumerate(tasks):
        if not isinstance(task, WorkflowTask):
            raise ValidationError(f"tasks[{index}]", f"must be a WorkflowTask, got "
                                                     f"{type(task).__name__}")
        for name in required:
            if isinstance(name, str) and name not in task.input:
                raise ValidationError(f"tasks[{index}].input.{name}",
                                      "is missing (the workflow requires it)")


@dataclass(frozen=True)
class TaskResult:
    """One run of one task by one variant: the run itself and whether it solved the task."""

    index: int
    task: WorkflowTask
    run: WorkflowRun
    passed: bool

    @property
    def ok(self) -> bool:
        return bool(self.run.ok)

    @property
    def output(self) -> Any:
        return self.run.output

    @property
    def error(self) -> str | None:
        return self.run.error

    @property
    def seconds(self) -> float:
        return float(self.run.seconds)

    @property
    def cost_usd(self) -> float:
        return float(self.run.cost_usd)

    @property
    def steps_executed(self) -> int:
        return int(self.run.steps_executed)

    def summary(self) -> dict[str, Any]:
        """The task's outcome without the trace (what a report lists per task)."""
        out: dict[str, Any] = {
            "index": self.index, "name": self.task.label(self.index), "passed": self.passed,
            "ok": self.ok, "output": self.output, "error": self.error,
            "error_step": self.run.error_step, "seconds": round(self.seconds, 6),
            "cost_usd": self.cost_usd, "steps_executed": self.steps_executed,
        }
        if self.task.has_expected:
            out["expected"] = self.task.expected
        return out

    def failure(self) -> dict[str, Any]:
        """The failed run as operators read it: ``WorkflowRun.to_dict()`` plus the task's
        ``input`` and, when known, ``expected`` (what the output should have been)."""
        out = dict(self.run.to_dict())
        out["input"] = dict(self.task.input)
        if self.task.has_expected:
            out["expected"] = self.task.expected
        return out


@dataclass
class TaskStats:
    """How often each passing task caught a regression: those run first in the quick stage."""

    catches: dict[int, int] = field(default_factory=dict)

    def caught(self, indices: Sequence[int] | frozenset[int]) -> None:
        for index in indices:
            self.catches[index] = self.catches.get(index, 0) + 1

    def rank(self, index: int) -> int:
        return -self.catches.get(index, 0)
