"""Scripted stand-ins for the search tests.

The fake sandbox never executes candidate code: a *judge* decides each case's outcome from the
code text (e.g. "passes when the code contains `a + b`"), which is enough to drive the search
deterministically and instantly.
"""

from __future__ import annotations

import ast
import asyncio
import random
from collections.abc import Callable, Sequence
from typing import ClassVar

from auto_dev.abc import Mutator, Sandbox
from auto_dev.evolution.program import MutationContext, Program, Proposal
from auto_dev.sandbox.base import Case, CaseResult, CaseStatus, SandboxJob, SandboxResult

Judge = Callable[[str, Case], bool]


def normalised(code: str) -> str:
    """The code as ``ast.unparse`` writes it (so judges can match on canonical text)."""
    return ast.unparse(ast.parse(code))


class ScriptedSandbox(Sandbox):
    """Decides each case with ``judge(canonical_code, case)``; records every job it receives."""

    name: ClassVar[str] = "scripted"

    def __init__(self, judge: Judge, *, latency: Callable[[str], float] | None = None) -> None:
        self.judge = judge
        self.latency = latency or (lambda code: 0.001)
        self.jobs: list[SandboxJob] = []

    async def run(self, job: SandboxJob) -> SandboxResult:
        self.jobs.append(job)
        code = normalised(job.code)
        cases = []
        for index, case in enumerate(job.cases):
            ok = self.judge(code, case)
            cases.append(CaseResult(
                index=index,
                status=CaseStatus.OK if ok else CaseStatus.WRONG_ANSWER,
                output=case.expected if ok else None,
                duration_s=self.latency(code),
                peak_memory_kb=1000,
            ))
        return SandboxResult(backend=self.name, cases=tuple(cases), total=len(job.cases))


def contains(*fragments: str) -> Judge:
    """Judge: every case passes exactly when the canonical code contains all ``fragments``."""

    def judge(code: str, case: Case) -> bool:
        return all(f in code for f in fragments)

    return judge


class ListMutator(Mutator):
    """Returns scripted proposals in order, ``max_proposals`` at a time."""

    name: ClassVar[str] = "scripted"

    def __init__(self, codes: Sequence[str], operator: str = "scripted.fixed") -> None:
        self.codes = list(codes)
        self.operator = operator
        self.calls = 0

    async def mutate(self, parent: Program, context: MutationContext) -> list[Proposal]:
        self.calls += 1
        take, self.codes = self.codes[: context.max_proposals], self.codes[context.max_proposals :]
        return [
            Proposal(code=c, entrypoint=parent.entrypoint, operator=self.operator,
                     parent_ids=(parent.id,) if parent.id else ())
            for c in take
        ]


class CountingMutator(Mutator):
    """An instant mutator: every proposal is a new distinct program (a changed constant)."""

    name: ClassVar[str] = "counting"

    def __init__(self) -> None:
        self.n = 0

    async def mutate(self, parent: Program, context: MutationContext) -> list[Proposal]:
        out = []
        for _ in range(context.max_proposals):
            self.n += 1
            code = f"def f(x):\n    return x + {self.n}\n"
            out.append(Proposal(code=code, entrypoint=parent.entrypoint, operator="count",
                                parent_ids=(parent.id,) if parent.id else ()))
        return out


class TimedSandbox(Sandbox):
    """Like :class:`ScriptedSandbox`, with time: ``seconds(code, case)`` is how long the case
    "runs" (nothing sleeps). A case longer than the job's timeout is a ``timeout`` after
    exactly the timeout; ``stop_on_first_failure`` is honoured. ``spent`` adds up the seconds
    the jobs would have taken."""

    name: ClassVar[str] = "timed"

    def __init__(self, judge: Judge, seconds: Callable[[str, Case], float]) -> None:
        self.judge = judge
        self.seconds = seconds
        self.jobs: list[SandboxJob] = []
        self.spent = 0.0

    async def run(self, job: SandboxJob) -> SandboxResult:
        self.jobs.append(job)
        code = normalised(job.code)
        cases = []
        for index, case in enumerate(job.cases):
            took = self.seconds(code, case)
            if took > job.limits.timeout_s:
                self.spent += job.limits.timeout_s
                result = CaseResult(index=index, status=CaseStatus.TIMEOUT,
                                    duration_s=job.limits.timeout_s, error="timeout")
            else:
                self.spent += took
                ok = self.judge(code, case)
                result = CaseResult(index=index,
                                    status=CaseStatus.OK if ok else CaseStatus.WRONG_ANSWER,
                                    output=case.expected if ok else None, duration_s=took)
            cases.append(result)
            if job.stop_on_first_failure and not result.passed:
                break
        return SandboxResult(backend=self.name, cases=tuple(cases), total=len(job.cases))


class GaugedSandbox(ScriptedSandbox):
    """A :class:`ScriptedSandbox` with ``slots`` that records how many jobs it held at once.

    Each job waits ``hold_s`` (plus a random ``jitter_s`` from an unseeded generator, so that
    jobs finish in an order no seed controls) before it answers.
    """

    def __init__(self, judge: Judge, *, slots: int, hold_s: float = 0.002,
                 jitter_s: float = 0.0) -> None:
        super().__init__(judge)
        self._slots = slots
        self.hold_s = hold_s
        self.jitter_s = jitter_s
        self.in_flight = 0
        self.most_in_flight = 0

    @property
    def slots(self) -> int:
        return self._slots

    async def run(self, job: SandboxJob) -> SandboxResult:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.hold_s + random.random() * self.jitter_s)
            return await super().run(job)
        finally:
            self.in_flight -= 1
