"""LLMMutator: prompts, answer forms, and rejections before any sandbox run."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auto_dev._exceptions import BudgetExceededError, LLMUnavailableError
from auto_dev.db import Database
from auto_dev.evolution.program import CaseFeedback, MutationContext, Program
from auto_dev.llm.mutator import LLMMutator
from auto_dev.testing import FakeLLM, OpenAICompatibleServer
from tests.llm.conftest import MakeClient

PARENT = Program(
    code="def add_one(x):\n    # off by one\n    return x + 2\n",
    entrypoint="add_one",
    id="v1",
)
FAILING = [
    CaseFeedback(index=0, args=(1,), kwargs={}, expected=2, actual=3, status="wrong_answer"),
    CaseFeedback(index=1, args=("a",), kwargs={}, expected=None, actual=None, status="error",
                 error='Traceback (most recent call last):\nTypeError: can only concatenate str'),
]
DIFF = """The constant is wrong.
<<<<<<< SEARCH
    return x + 2
=======
    return x + 1
>>>>>>> REPLACE
"""
FIXED = "def add_one(x):\n    # off by one\n    return x + 1\n"


def context(**kwargs: object) -> MutationContext:
    base: dict[str, object] = {"rng": random.Random(0), "failing_cases": FAILING,
                               "tenant_id": "t1", "run_id": None}
    base.update(kwargs)
    return MutationContext(**base)  # type: ignore[arg-type]


class TestAccepted:
    """Usable answers become proposals carrying the call's id and cost."""

    async def test_search_replace(self) -> None:
        """A SEARCH/REPLACE answer is applied to the parent."""
        llm = FakeLLM([DIFF], cost_per_call=0.002)
        [proposal] = await LLMMutator(llm).mutate(PARENT, context())
        assert proposal.code == FIXED
        assert proposal.operator == "llm.diff" and proposal.parent_ids == ("v1",)
        assert proposal.entrypoint == "add_one"
        assert proposal.description == "The constant is wrong."
        assert proposal.meta["llm_cost_usd"] == 0.002 and proposal.meta["llm_call_id"]
        assert "+    return x + 1" in proposal.meta["diff"]

    async def test_whitespace_tolerant_diff(self) -> None:
        """A SEARCH block with different indentation still applies."""
        answer = "<<<<<<< SEARCH\nreturn x + 2\n=======\nreturn x + 1\n>>>>>>> REPLACE\n"
        [proposal] = await LLMMutator(FakeLLM([answer])).mutate(PARENT, context())
        assert proposal.code == FIXED

    async def test_full_rewrite(self) -> None:
        """A fenced full program is taken whole."""
        answer = "Rewritten:\n```python\ndef add_one(x):\n    return 1 + x\n```\n"
        [proposal] = await LLMMutator(FakeLLM([answer])).mutate(PARENT, context())
        assert proposal.operator == "llm.rewrite"
        assert proposal.code == "def add_one(x):\n    return 1 + x\n"

    async def test_prompt_shows_parent_failures_and_inspirations(self) -> None:
        """The prompt has the code, each failing case's inputs/expected/actual/trace,
        the description and the inspirations."""
        llm = FakeLLM([DIFF])
        inspiration = Program(code="def add_one(x):\n    return x - -1\n", entrypoint="add_one",
                              scores={"pass_rate": 0.5})
        await LLMMutator(llm).mutate(
            PARENT, context(inspirations=[inspiration], description="adds one to x")
        )
        prompt = llm.prompts[0]
        for fragment in ("return x + 2", "add_one(1)", "expected: 2", "actual:   3",
                         "wrong_answer", "TypeError: can only concatenate", "adds one to x",
                         "return x - -1", "pass_rate=0.5"):
            assert fragment in prompt, fragment
        call = llm.calls[0]
        assert (call.tenant_id, call.engine, call.purpose) == ("t1", "alpha_evolver", "mutation")

    async def test_several_calls_are_deduplicated(self) -> None:
        """calls_per_mutate answers run at once; identical programs are kept once."""
        llm = FakeLLM([DIFF, DIFF, "```python\ndef add_one(x):\n    return x + 1  # again\n```"])
        mutator = LLMMutator(llm, calls_per_mutate=3)
        report = await mutator.mutate_with_report(PARENT, context())
        assert len(llm.calls) == 3
        assert len(report.proposals) == 2
        assert [r.reason for r in report.rejections] == ["duplicate"]

    async def test_max_proposals_caps_calls(self) -> None:
        """Never more calls than context.max_proposals; zero means none."""
        llm = FakeLLM(default=DIFF)
        await LLMMutator(llm, calls_per_mutate=5).mutate(PARENT, context(max_proposals=2))
        assert len(llm.calls) == 2
        assert await LLMMutator(llm).mutate(PARENT, context(max_proposals=0)) == []


REJECTED = [
    ("I would change the constant, but I am not sure.", "unparseable"),
    ("<<<<<<< SEARCH\n    return x + 2\n>>>>>>> REPLACE\n", "unparseable"),
    ("<<<<<<< SEARCH\n    return y * 7\n=======\n    return 1\n>>>>>>> REPLACE\n",
     "does_not_apply"),
    ("```python\n# LLM unavailable, keeping the code\n```", "comment_only"),
    ("```python\ndef add_one(x):\n    return x + 2\n```", "no_op"),
    ("```python\ndef add_one(x):\n    # tidy\n\n    return x+2\n```", "no_op"),
    ("```python\ndef add_one(x):\n    '''TODO'''\n    pass\n```", "stub"),
    ("```python\ndef add_one(x):\n    raise NotImplementedError\n```", "stub"),
    ("```python\ndef add_two(x):\n    return x + 1\n```", "missing_entrypoint"),
    ("<<<<<<< SEARCH\n    return x + 2\n=======\n    return (x +\n>>>>>>> REPLACE\n",
     "syntax_error"),
    ("<<<<<<< SEARCH\ndef add_one(x):\n=======\ndef plus_one(x):\n>>>>>>> REPLACE\n",
     "missing_entrypoint"),
]


class TestExploration:
    """Told that its answers for a parent were wasted, the mutator samples hotter and shows
    more; the edits that helped elsewhere are shown."""

    class _Recording(FakeLLM):
        def __init__(self) -> None:
            super().__init__(default=DIFF)
            self.temperatures: list[float | None] = []

        async def complete(self, messages: Any, **kwargs: Any) -> Any:
            self.temperatures.append(kwargs.get("temperature"))
            return await super().complete(messages, **kwargs)

    async def test_levels_raise_temperature_and_cases(self) -> None:
        """Level 0 keeps the configured temperature; 1 and 2 raise it, capped; more cases."""
        many = [CaseFeedback(index=i, args=(i,), kwargs={}, expected=i + 1, actual=i,
                             status="wrong_answer") for i in range(20)]
        for configured, expected in ((None, [None, 1.0, 1.3]), (0.2, [0.2, 0.5, 0.8]),
                                     (1.6, [1.6, 1.6, 1.6])):
            llm = self._Recording()
            mutator = LLMMutator(llm, temperature=configured)
            for level in (0, 1, 2):
                await mutator.mutate(PARENT, context(failing_cases=many, exploration=level))
            rounded = [None if t is None else round(t, 6) for t in llm.temperatures]
            assert rounded == expected
            shown = [prompt.count("- case #") for prompt in llm.prompts]
            assert shown == [6, 12, 18]

    async def test_helpful_edits_are_shown(self) -> None:
        """Diffs that fixed cases elsewhere appear in the prompt as diff blocks."""
        llm = FakeLLM([DIFF])
        diff = "--- a\n+++ b\n@@ -1 +1 @@\n-    return x\n+    return x or 0\n"
        await LLMMutator(llm).mutate(PARENT, context(helpful_edits=[diff]))
        assert "Edits that fixed some of these failing cases" in llm.prompts[0]
        assert "```diff\n--- a" in llm.prompts[0]


class TestRejected:
    """Unusable answers never become proposals; each is recorded with its reason."""

    @pytest.mark.parametrize(("answer", "reason"), REJECTED)
    async def test_rejection_reason(self, answer: str, reason: str) -> None:
        """The answer is rejected for the stated reason, with the call's id and cost."""
        llm = FakeLLM([answer], cost_per_call=0.001)
        mutator = LLMMutator(llm)
        report = await mutator.mutate_with_report(PARENT, context())
        assert report.proposals == []
        [rejection] = report.rejections
        assert rejection.reason == reason, rejection.detail
        assert rejection.llm_call_id and rejection.llm_cost_usd == 0.001
        assert rejection.parent_id == "v1"
        assert list(mutator.rejections) == [rejection]
        assert report.cost_usd == 0.001

    @pytest.mark.parametrize("error", [BudgetExceededError("spent"), LLMUnavailableError("down")])
    async def test_llm_errors_do_not_raise(self, error: Exception) -> None:
        """A failing model yields no proposals and an llm_error rejection, never an exception."""
        report = await LLMMutator(FakeLLM([error])).mutate_with_report(PARENT, context())
        assert report.proposals == []
        assert report.rejections[0].reason == "llm_error"
        assert type(error).__name__ in report.rejections[0].detail

    @given(st.text(max_size=400))
    @settings(max_examples=80, deadline=None)
    def test_any_answer_is_proposal_or_rejection(self, answer: str) -> None:
        """Whatever the model says, the mutator returns a valid program or a rejection."""
        import asyncio

        from auto_dev.evolution.dedup import defines, parse

        report = asyncio.run(LLMMutator(FakeLLM([answer])).mutate_with_report(PARENT, context()))
        assert len(report.proposals) + len(report.rejections) == 1
        for proposal in report.proposals:
            tree = parse(proposal.code)
            assert not hasattr(tree, "message") and defines(tree, "add_one")  # type: ignore[arg-type]


class TestThroughLiteLLM:
    """The mutator driving the real client against the local server."""

    async def test_search_block_that_matches_nothing(
        self, server: OpenAICompatibleServer, make_client: MakeClient, database: Database
    ) -> None:
        """A well-formed SEARCH block that matches nothing is rejected before any sandbox run,
        yet the call is in the ledger and its cost on the rejection."""
        server.script("<<<<<<< SEARCH\n    return y * 7\n=======\n    return 1\n>>>>>>> REPLACE\n")
        report = await LLMMutator(make_client()).mutate_with_report(PARENT, context())
        [rejection] = report.rejections
        assert rejection.reason == "does_not_apply"
        assert "matches nothing" in rejection.detail
        from auto_dev.llm import ledger

        [row] = list(ledger.calls(database))
        assert row.id == rejection.llm_call_id and row.status == "ok"
        assert rejection.llm_cost_usd == pytest.approx(row.cost_usd) and row.cost_usd > 0

    async def test_patch_through_server(
        self, server: OpenAICompatibleServer, make_client: MakeClient
    ) -> None:
        """A correct patch from the server becomes a proposal with the ledger's call id."""
        server.script(DIFF)
        [proposal] = await LLMMutator(make_client()).mutate(PARENT, context())
        assert proposal.code == FIXED
        assert proposal.meta["llm_model"] == "openai/primary"
        assert "return x + 2" in server.requests[0].messages[-1]["content"]
