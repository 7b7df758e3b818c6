"""``ScriptedSandbox``: a sandbox for users' tests that decides outcomes without running code.

It never executes candidate code (not even in a subprocess): a ``script`` callable receives the
code and the case and returns the value the "call" produced, or raises to make the case an
error. Comparison with the expected value uses the harness's own JSON normalisation, so results
look exactly like a real backend's.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Callable
from typing import Any, ClassVar

from auto_dev.abc import Sandbox
from auto_dev.sandbox._harness import normalise, outputs_match
from auto_dev.sandbox.base import Case, CaseResult, CaseStatus, SandboxJob, SandboxResult

Script = Callable[[str, Case], Any]


class ScriptedSandbox(Sandbox):
    """Runs jobs by asking ``script(code, case)`` for each case's return value.

    Raising :class:`TimeoutError`, :class:`MemoryError` or any other exception from the script
    yields ``timeout``, ``memory_exceeded`` or ``error``. ``jobs`` records every job received.
    """

    name: ClassVar[str] = "scripted"

    def __init__(self, script: Script, *, delay_s: float = 0.0) -> None:
        self.script = script
        self.delay_s = delay_s
        self.jobs: list[SandboxJob] = []

    async def run(self, job: SandboxJob) -> SandboxResult:
        self.jobs.append(job)
        started = time.perf_counter()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        results: list[CaseResult] = []
        for index, case in enumerate(job.cases):
            result = self._one(index, case, job)
            results.append(result)
            if job.stop_on_first_failure and not result.passed:
                break
        return SandboxResult(backend=self.name, cases=tuple(results), total=len(job.cases),
                             duration_s=time.perf_counter() - started)

    def _one(self, index: int, case: Case, job: SandboxJob) -> CaseResult:
        try:
            value = normalise(self.script(job.code, case))
        except TimeoutError:
            return CaseResult(index, CaseStatus.TIMEOUT, error="scripted timeout")
        except MemoryError:
            return CaseResult(index, CaseStatus.MEMORY_EXCEEDED, error="scripted MemoryError")
        except Exception as exc:
            text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            return CaseResult(index, CaseStatus.ERROR, error=text)
        if case.has_expected and not outputs_match(value, case.expected, job.float_tolerance):
            return CaseResult(index, CaseStatus.WRONG_ANSWER, output=value)
        return CaseResult(index, CaseStatus.OK, output=value)
