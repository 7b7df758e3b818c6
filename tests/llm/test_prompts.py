"""Prompt building: bounded, faithful to the cases, and asking for checkable answers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from auto_dev.evolution.program import CaseFeedback, Program
from auto_dev.llm import prompts
from auto_dev.sandbox.base import Case, CaseResult, CaseStatus, SandboxResult


class TestClipping:
    """Values, traces and code are cut to bounded sizes, saying so."""

    @given(st.text(max_size=2000), st.integers(1, 500))
    def test_clip_bounds(self, text: str, limit: int) -> None:
        """clip keeps short text and marks what it cuts."""
        out = prompts.clip(text, limit)
        assert out == text if len(text) <= limit else out.startswith(text[:limit])
        assert len(out) <= limit + 40

    def test_clip_tail_keeps_the_end(self) -> None:
        """Tracebacks keep their last lines."""
        out = prompts.clip_tail("a" * 100 + "ValueError: boom", 20)
        assert out.endswith("ValueError: boom") and "earlier characters" in out

    def test_show_values(self) -> None:
        """JSON for JSON values, repr otherwise, clipped."""
        assert prompts.show({"a": [1, 2]}) == '{"a": [1, 2]}'
        assert prompts.show({1, 2}).startswith('"{1, 2}"') or "1" in prompts.show({1, 2})
        assert len(prompts.show("x" * 10_000)) < prompts.MAX_VALUE_CHARS + 40


class TestMutationPrompt:
    """The mutation prompt shows the program and at most MAX_CASES failing cases."""

    def test_many_cases_are_summarised(self) -> None:
        """Cases beyond the cap are counted, not shown."""
        cases = [CaseFeedback(i, (i,), {}, i, i + 1, "wrong_answer") for i in range(20)]
        parent = Program(code="def f(x):\n    return x + 1\n", entrypoint="f")
        [system, user] = prompts.mutation_messages(parent, cases, [])
        assert "`f`" in system["content"] and "SEARCH" in system["content"]
        assert "f(5)" in user["content"] and "f(6)" not in user["content"]
        assert "and 14 more failing cases" in user["content"]

    def test_more_cases_and_helpful_edits(self) -> None:
        """``max_cases`` widens the cap; helpful edits are shown as bounded diff blocks."""
        cases = [CaseFeedback(i, (i,), {}, i, i + 1, "wrong_answer") for i in range(20)]
        parent = Program(code="def f(x):\n    return x + 1\n", entrypoint="f")
        edits = [f"-    return x + 1\n+    return x + {k}\n" + "#" * 5000 for k in range(5)]
        [_, user] = prompts.mutation_messages(parent, cases, [], helpful_edits=edits,
                                              max_cases=12)
        assert "f(11)" in user["content"] and "f(12)" not in user["content"]
        assert user["content"].count("```diff") == prompts.MAX_HELPFUL_EDITS
        assert "more characters]" in user["content"]
        [_, plain] = prompts.mutation_messages(parent, cases, [])
        assert "Edits that fixed" not in plain["content"]

    def test_no_failures_asks_for_improvement(self) -> None:
        """With every case passing the model is asked to improve without changing results."""
        parent = Program(code="def f(x):\n    return x\n", entrypoint="f")
        [_, user] = prompts.mutation_messages(parent, [], [])
        assert "Every known test case passes" in user["content"]


class TestSandboxFeedback:
    """Repair feedback lists each failing case with expected and actual values."""

    def test_feedback(self) -> None:
        """Failures show call, status, expected, actual and error; passes are omitted."""
        cases = [Case(args=(1,), expected=2), Case(args=(2,), expected=3, kwargs={"k": 1})]
        result = SandboxResult(
            backend="process",
            cases=(CaseResult(0, CaseStatus.OK, 2),
                   CaseResult(1, CaseStatus.ERROR, None, error="Traceback\nKeyError: 'k'")),
            total=3,
        )
        text = prompts.sandbox_feedback("g", cases, result)
        assert "1 of 3 test cases passed" in text
        assert "g(2, k=1): error" in text and "expected: 3" in text and "KeyError" in text
        assert "g(1)" not in text and "1 cases did not run" in text

    def test_job_error(self) -> None:
        """A job-level error is reported as such."""
        result = SandboxResult(backend="process", cases=(), total=1, error="bad frame")
        assert "could not run" in prompts.sandbox_feedback("g", [], result)
