"""What the original program does on the tests, shown before what the search made of it.

A program that cannot even be imported (a missing module, ``sys.exit`` at import, an endless
loop, a flood of output) fails every case the same way; "0/8 -> 0/8, no improvement" alone
does not say so. :class:`SeedOutcome` records the seed's own sandbox result (it is the search's
``on_seed`` hook) and summarises it: passed cases, a count per case status, the first failure.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from auto_dev.evolution.program import Program
    from auto_dev.sandbox.base import Case, CaseResult, SandboxResult

#: Longest error text kept in the summary (a traceback's tail says what went wrong).
_ERROR_CHARS = 2000


class SeedOutcome:
    """The seed's evaluation, kept for the report (``None`` until the search ran it)."""

    def __init__(self, cases: Sequence[Case]) -> None:
        self._cases = list(cases)
        self.result: SandboxResult | None = None

    async def record(self, _program: Program, result: SandboxResult) -> None:
        """The :class:`~auto_dev.evolution.records.SearchHooks` ``on_seed`` hook."""
        self.result = result

    def to_dict(self) -> dict[str, Any] | None:
        """``passed``, ``total``, ``statuses`` (count per case status) and ``first_failure``
        (``case``, ``status``, ``summary``: one line, ``error``: the full message or ``None``)."""
        if self.result is None:
            return None
        result = self.result
        statuses = Counter(case.status.value for case in result.cases)
        failures = [case for case in result.cases if case.status.value != "ok"]
        first: dict[str, Any] | None = None
        if result.error:  # the job itself failed: no case ran
            first = {"case": None, "status": "job_error", "summary": _last_line(result.error),
                     "error": result.error[-_ERROR_CHARS:]}
        elif failures:
            case = min(failures, key=lambda c: c.index)
            first = {"case": case.index, "status": case.status.value,
                     "summary": self._summary(case),
                     "error": case.error[-_ERROR_CHARS:] if case.error else None}
        return {"passed": statuses.get("ok", 0), "total": result.total,
                "statuses": dict(sorted(statuses.items())), "first_failure": first}

    def _summary(self, case: CaseResult) -> str:
        if case.error:
            # The harness compiles the program per case: a traceback through "<module>" means
            # the program failed while being imported, before the function was called.
            at_import = "in <module>" in case.error
            return _last_line(case.error) + (" (while importing the program)" if at_import
                                             else "")
        if case.status.value == "wrong_answer" and case.index < len(self._cases):
            expected = self._cases[case.index].expected
            return f"returned {_short(case.output)}, expected {_short(expected)}"
        return case.status.value

    def render(self, console: Console) -> None:
        """One paragraph before the result table."""
        from rich.markup import escape

        outcome = self.to_dict()
        if outcome is None:
            return
        counts = ", ".join(f"{n} {status}" for status, n in outcome["statuses"].items())
        console.print(f"[bold]the original program[/]: {outcome['passed']}/{outcome['total']} "
                      f"cases pass ({counts or 'no case ran'})", highlight=False)
        first = outcome["first_failure"]
        if first is not None:
            where = "the job" if first["case"] is None else f"case {first['case']}"
            console.print(f"  first failure, {where}: [red]{first['status']}[/]: "
                          f"{escape(first['summary'])}", highlight=False)


def _last_line(text: str) -> str:
    """The line that says what happened: a traceback's last non-empty line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text.strip()


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= limit else text[: limit - 1] + "…"
