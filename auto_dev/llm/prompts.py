"""Prompts for the LLM mutator and the skill writer.

Prompts show the model exactly what the sandbox saw (inputs, expected and actual outputs,
tracebacks), ask for one of two machine-checkable answer forms, and forbid placeholders: every
answer is parsed and checked before anything runs (see :mod:`auto_dev.llm.mutator`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from auto_dev.llm.types import ChatMessage

if TYPE_CHECKING:
    from auto_dev.evolution.program import CaseFeedback, Program
    from auto_dev.llm.skills import SkillBrief
    from auto_dev.sandbox.base import Case, SandboxResult

#: Caps keeping prompts bounded whatever the inputs.
MAX_VALUE_CHARS = 400
MAX_TRACE_CHARS = 1500
MAX_CASES = 6
MAX_INSPIRATIONS = 3
MAX_CODE_CHARS = 12_000
MAX_HELPFUL_EDITS = 3
MAX_DIFF_CHARS = 2_000

MUTATOR_SYSTEM = """\
You are an expert Python engineer who repairs and improves functions.
You get a program, the test cases it fails (inputs, expected output, actual output, traceback)
and sometimes other versions of it for inspiration. Make the program pass the failing cases
without breaking the cases it already passes.

Answer in ONE of these two forms, with a short explanation before it:
1. One or more SEARCH/REPLACE blocks. SEARCH must copy existing lines of the program exactly:
<<<<<<< SEARCH
    old lines
=======
    new lines
>>>>>>> REPLACE
2. The complete new program in a single ```python fenced block.

Rules: keep the entry point `{entrypoint}` and its signature; standard library only; no I/O,
no network; never answer with placeholders, stubs, `pass`, TODOs or comment-only code."""

SKILL_SYSTEM = """\
You write new skills for an AI agent: self-contained Python functions (standard library only,
no I/O, no network) that solve a task the agent keeps failing at. Answer exactly in this form:

NAME: <snake_case function name>
DESCRIPTION: <one sentence saying what the skill does>
```python
<the complete code, defining a function called NAME>
```
```json
[{{"args": [...], "kwargs": {{}}, "expected": ...}}, ...]
```

The JSON block lists {n_tests} or more extra test cases (JSON values only) covering normal
inputs and edge cases; each calls NAME(*args, **kwargs) and compares with expected. Never
answer with placeholders, stubs, `pass`, TODOs or comment-only code."""


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"... [{len(text) - limit} more characters]"


def clip_tail(text: str, limit: int) -> str:
    """The last ``limit`` characters (tracebacks end with what matters)."""
    if len(text) <= limit:
        return text
    return f"[{len(text) - limit} earlier characters] ..." + text[-limit:]


def show(value: Any) -> str:
    """A value as the model should see it: JSON when possible, else repr; clipped."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return clip(text, MAX_VALUE_CHARS)


def _call(entrypoint: str, args: Sequence[Any], kwargs: dict[str, Any]) -> str:
    parts = [show(a) for a in args] + [f"{k}={show(v)}" for k, v in kwargs.items()]
    return f"{entrypoint}({', '.join(parts)})"


def format_failing_case(entrypoint: str, case: CaseFeedback) -> str:
    lines = [
        f"- case #{case.index}: {_call(entrypoint, case.args, case.kwargs)}",
        f"  expected: {show(case.expected)}",
        f"  actual:   {show(case.actual)}  (status: {case.status})",
    ]
    if case.error:
        trace = clip_tail(case.error.strip(), MAX_TRACE_CHARS)
        lines.append("  error:\n" + "\n".join("    " + line for line in trace.splitlines()))
    return "\n".join(lines)


def mutation_messages(
    parent: Program,
    failing_cases: Sequence[CaseFeedback],
    inspirations: Sequence[Program],
    description: str = "",
    *,
    helpful_edits: Sequence[str] = (),
    max_cases: int = MAX_CASES,
) -> list[ChatMessage]:
    """The chat for one LLM mutation of ``parent``.

    ``helpful_edits`` are diffs that fixed some of these failing cases in other versions of the
    program; ``max_cases`` caps the failing cases shown (more when earlier answers were wasted).
    """
    parts = []
    if description.strip():
        parts.append(f"What `{parent.entrypoint}` should do: {description.strip()}")
    parts.append(
        f"Current program (entry point `{parent.entrypoint}`):\n```python\n"
        f"{clip(parent.code.rstrip(), MAX_CODE_CHARS)}\n```"
    )
    if failing_cases:
        shown = list(failing_cases)[:max(1, max_cases)]
        more = len(failing_cases) - len(shown)
        text = "\n".join(format_failing_case(parent.entrypoint, c) for c in shown)
        if more > 0:
            text += f"\n(and {more} more failing cases)"
        parts.append("Failing test cases:\n" + text)
    else:
        parts.append(
            "Every known test case passes. Make the program faster, smaller or more robust "
            "without changing its results."
        )
    edits = list(helpful_edits)[:MAX_HELPFUL_EDITS]
    if edits:
        shown_edits = "\n\n".join(
            f"```diff\n{clip(diff.rstrip(), MAX_DIFF_CHARS)}\n```" for diff in edits)
        parts.append(
            "Edits that fixed some of these failing cases in other versions of this program "
            "(each alone was not enough; combining one with your own fix may be):\n"
            + shown_edits)
    for number, other in enumerate(list(inspirations)[:MAX_INSPIRATIONS], start=1):
        scores = ", ".join(f"{k}={v:.3g}" for k, v in sorted(other.scores.items()))
        parts.append(
            f"Inspiration {number} (another version{f'; {scores}' if scores else ''}):\n"
            f"```python\n{clip(other.code.rstrip(), MAX_CODE_CHARS // 2)}\n```"
        )
    parts.append("Answer with SEARCH/REPLACE blocks or the complete program.")
    return [
        {"role": "system", "content": MUTATOR_SYSTEM.format(entrypoint=parent.entrypoint)},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


def format_case(entrypoint: str, case: Case) -> str:
    expected = f" -> {show(case.expected)}" if case.has_expected else " (must not raise)"
    return f"- {_call(entrypoint, case.args, case.kwargs)}{expected}"


def skill_messages(group: SkillBrief, *, n_tests: int = 5) -> list[ChatMessage]:
    """The chat asking for a new skill from a group of similar failures."""
    parts = []
    if group.pattern:
        parts.append(f"Failure pattern: {group.pattern}")
    tasks = "\n".join(f"- {clip(t.strip(), 500)}" for t in group.task_descriptions[:8])
    parts.append(f"Tasks the agent failed:\n{tasks}")
    if group.error_traces:
        traces = "\n---\n".join(
            clip_tail(t.strip(), MAX_TRACE_CHARS) for t in group.error_traces[:3]
        )
        parts.append(f"Errors seen:\n{traces}")
    if group.examples:
        shown = "\n".join(format_case("skill", c) for c in group.examples[:MAX_CASES * 2])
        parts.append(
            "Example inputs and expected outputs (the skill must reproduce these; `skill` "
            f"stands for your function):\n{shown}"
        )
    if group.closest_tool is not None:
        tool = group.closest_tool
        parts.append(
            f"The closest existing tool, `{tool.name}` (entry point `{tool.entrypoint}`), which "
            f"did not cope; reuse what is right in it:\n```python\n"
            f"{clip(tool.code.rstrip(), MAX_CODE_CHARS)}\n```"
        )
    return [
        {"role": "system", "content": SKILL_SYSTEM.format(n_tests=n_tests)},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


def sandbox_feedback(
    entrypoint: str, cases: Sequence[Case], result: SandboxResult, *, limit: int = MAX_CASES
) -> str:
    """What went wrong in a sandbox run, case by case, for a repair round."""
    if result.error:
        return f"The sandbox could not run the code: {clip(result.error, MAX_TRACE_CHARS)}"
    lines = [f"{result.passed} of {result.total} test cases passed. Failures:"]
    shown = 0
    for outcome in result.cases:
        if outcome.passed:
            continue
        if shown == limit:
            lines.append("(more failures not shown)")
            break
        shown += 1
        case = cases[outcome.index] if 0 <= outcome.index < len(cases) else None
        call = _call(entrypoint, case.args, case.kwargs) if case else f"case #{outcome.index}"
        lines.append(f"- {call}: {outcome.status.value}")
        if case is not None and case.has_expected:
            lines.append(f"  expected: {show(case.expected)}")
        lines.append(f"  actual:   {show(outcome.output)}")
        if outcome.error:
            trace = clip_tail(outcome.error.strip(), MAX_TRACE_CHARS)
            lines.append("  error:\n" + "\n".join("    " + t for t in trace.splitlines()))
    if result.total > len(result.cases):
        lines.append(f"({result.total - len(result.cases)} cases did not run)")
    lines.append(
        "Fix the code (or a test case whose expected value is wrong) and answer again in the "
        "same form: NAME, DESCRIPTION, the complete code, and the JSON test cases."
    )
    return "\n".join(lines)


def problem_feedback(problem: str) -> str:
    """Feedback for an answer rejected before any sandbox run."""
    return (
        f"Your answer could not be used: {problem}. Answer again in the required form: NAME, "
        "DESCRIPTION, the complete code in a ```python block, and the JSON test cases."
    )
