"""What a workflow run did: :class:`StepTrace` per step (nested like the document) and the
:class:`WorkflowRun` that holds them.

The interpreter records a mutable :class:`TraceNode` when a step starts, so that a run stopped
in the middle (a limit, the wall clock) still reports every step it began; nodes are frozen
into :class:`StepTrace` at the end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class StepTrace:
    """One step as it ran.

    ``kind`` is the step's kind (``tool``, ``llm``, ``switch``, ``map``, ``set``, ``fail`` or a
    custom kind's name); three kinds exist only in traces: ``item`` (one item of a map, whose id
    is ``<map id>[<index>]``), ``catch`` (the catch block that ran for a failed step, id
    ``<step id>.catch``) and ``attempt`` (the nested steps of a failed attempt of a retried
    switch or map, id ``<step id>.attempt<n>``, before the last attempt's).
    ``input`` is what the step acted on (resolved args, the prompt, the chosen branch, the
    items); ``attempts`` counts tries including retries (0 when skipped).
    ``error`` is set when the step failed, even if its ``catch`` then recovered (the step's
    ``output`` is then the catch block's). ``cost_usd`` and ``tokens`` include nested steps.
    """

    id: str
    kind: str
    input: Any = None
    output: Any = None
    error: str | None = None
    attempts: int = 0
    duration_s: float = 0.0
    cost_usd: float = 0.0
    skipped: bool = False
    children: tuple[StepTrace, ...] = ()
    tokens: int = 0

    def walk(self) -> Iterator[StepTrace]:
        """This trace and every trace nested in it, in order."""
        yield self
        for child in self.children:
            yield from child.walk()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "input": self.input, "output": self.output,
            "error": self.error, "attempts": self.attempts,
            "duration_s": round(self.duration_s, 6), "cost_usd": self.cost_usd,
            "tokens": self.tokens, "skipped": self.skipped,
            "children": [child.to_dict() for child in self.children],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepTrace:
        return cls(
            id=str(data["id"]), kind=str(data.get("kind", "")), input=data.get("input"),
            output=data.get("output"), error=data.get("error"),
            attempts=int(data.get("attempts", 0)), duration_s=float(data.get("duration_s", 0.0)),
            cost_usd=float(data.get("cost_usd", 0.0)), skipped=bool(data.get("skipped", False)),
            children=tuple(cls.from_dict(c) for c in data.get("children", ())),
            tokens=int(data.get("tokens", 0)),
        )


@dataclass(frozen=True, slots=True)
class WorkflowRun:
    """The outcome of one run: ``ok`` with the workflow's ``output``, or ``error`` naming what
    stopped it and ``error_step`` the step where it happened (``None`` when no step did, e.g.
    the output expression)."""

    ok: bool
    output: Any
    error: str | None
    error_step: str | None
    trace: tuple[StepTrace, ...]
    steps_executed: int
    seconds: float
    cost_usd: float
    tokens: int

    def walk(self) -> Iterator[StepTrace]:
        """Every step trace of the run, nested ones included, in order."""
        for step in self.trace:
            yield from step.walk()

    def step(self, step_id: str) -> StepTrace | None:
        """The first trace of step ``step_id`` (a step inside a map has one per item)."""
        return next((t for t in self.walk() if t.id == step_id), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "output": self.output, "error": self.error,
            "error_step": self.error_step, "trace": [t.to_dict() for t in self.trace],
            "steps_executed": self.steps_executed, "seconds": round(self.seconds, 6),
            "cost_usd": self.cost_usd, "tokens": self.tokens,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkflowRun:
        return cls(
            ok=bool(data["ok"]), output=data.get("output"), error=data.get("error"),
            error_step=data.get("error_step"),
            trace=tuple(StepTrace.from_dict(t) for t in data.get("trace", ())),
            steps_executed=int(data.get("steps_executed", 0)),
            seconds=float(data.get("seconds", 0.0)), cost_usd=float(data.get("cost_usd", 0.0)),
            tokens=int(data.get("tokens", 0)),
        )


@dataclass(slots=True, eq=False)
class TraceNode:
    """A step's trace while it runs."""

    id: str
    kind: str
    input: Any = None
    output: Any = None
    error: str | None = None
    attempts: int = 0
    cost_usd: float = 0.0
    tokens: int = 0
    skipped: bool = False
    children: list[TraceNode] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    duration_s: float | None = None

    def finish(self) -> None:
        if self.duration_s is None:
            self.duration_s = time.perf_counter() - self.started

    def freeze(self, unfinished: str = "interrupted") -> StepTrace:
        """The immutable trace; a node that never finished gets ``unfinished`` as its error."""
        children = tuple(child.freeze(unfinished) for child in self.children)
        error = self.error
        duration = self.duration_s
        if duration is None:
            duration = time.perf_counter() - self.started
            error = error or unfinished
        return StepTrace(
            id=self.id, kind=self.kind, input=self.input, output=self.output, error=error,
            attempts=self.attempts, duration_s=duration,
            cost_usd=self.cost_usd + sum(c.cost_usd for c in children), skipped=self.skipped,
            children=children, tokens=self.tokens + sum(c.tokens for c in children),
        )
