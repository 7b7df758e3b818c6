"""An LLM-driven AlphaEvolver run repairs a buggy tool through litellm's real client.

The model is a local OpenAI-compatible server on 127.0.0.1 that answers with a correct
SEARCH/REPLACE patch; litellm's own client code sends the request and parses the answer, the
patch runs in the real process sandbox, and the candidate reaches human review.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from auto_dev.config import load_settings
from auto_dev.db import Database
from auto_dev.models import LLMCall, ToolMutation
from auto_dev.sandbox.process import ProcessSandbox
from auto_dev.service import AutoDev
from auto_dev.testing import OpenAICompatibleServer, ServerReply

BUGGY = "def apply_discount(price, percent):\n    return round(price * (1 + percent / 100), 2)\n"
PATCH = """The sign is wrong: a discount subtracts.

<<<<<<< SEARCH
    return round(price * (1 + percent / 100), 2)
=======
    return round(price * (1 - percent / 100), 2)
>>>>>>> REPLACE
"""
TESTS = [{"args": [100.0, 10], "expected": 90.0}, {"args": [50.0, 0], "expected": 50.0},
         {"args": [80.0, 25], "expected": 60.0}]


@pytest.fixture
def server() -> Iterator[OpenAICompatibleServer]:
    with OpenAICompatibleServer(ServerReply(content=PATCH, prompt_tokens=400,
                                            completion_tokens=60)) as srv:
        yield srv


class TestLLMDrivenRepair:
    """The whole loop with a model in it."""

    async def test_llm_patch_repairs_tool_and_reaches_review(
        self, server: OpenAICompatibleServer, database: Database, database_url: str
    ) -> None:
        """The LLM mutator's patch passes, is offered for review, and every call is ledgered."""
        settings = load_settings(
            database_url=database_url, tenant="t1", llm_model="openai/fixer",
            llm_api_base=server.base_url, llm_api_key="sk-test",
            llm={"llm_mutation_fraction": 1.0, "num_retries": 0,
                 "prices": {"openai/fixer": {"input_cost_per_token": 1e-6,
                                             "output_cost_per_token": 2e-6}}},
        )
        sandbox = ProcessSandbox(workers=2)
        autodev = AutoDev(settings, database=database, sandbox=sandbox, load_plugins=False)
        try:
            assert autodev.llm is not None and autodev.context.strategy.startswith("llm (100%)")
            autodev.configure_tenant(enabled=True, alpha_evolver=True)
            autodev.set_maturity("bot", "auto_dev.alpha_evolver", "supervised")
            autodev.register_tool("apply_discount", BUGGY, "apply_discount", tests=TESTS)
            result = await autodev.engines.get("alpha_evolver").run_cycle(
                "apply_discount", 10, agent="bot")  # type: ignore[call-arg]
            assert result.status == "completed", result.reason
            assert result.pass_rate_after == 1.0
            [pending] = autodev.review.list_pending("t1")
            assert pending.operator.startswith("llm.")
            detail = autodev.review.show("t1", pending.id)
            assert "+    return round(price * (1 - percent / 100), 2)" in detail.diff
            # The prompt showed the model the failing case with its inputs and expected value.
            prompt = " ".join(m.get("content") or "" for m in server.requests[0].messages)
            assert "expected: 90" in prompt and "actual:   110" in prompt
            assert "apply_discount" in prompt
            with autodev.database.session() as session:
                calls = session.scalars(select(LLMCall)).all()
                assert calls and all(c.status in ("ok", "cache_hit") for c in calls)
                assert calls[0].prompt_tokens == 400 and calls[0].completion_tokens == 60
                assert calls[0].cost_usd == pytest.approx(400 * 1e-6 + 60 * 2e-6)
                mutation = session.get(ToolMutation, pending.id)
                assert mutation is not None and mutation.details.get("llm_call_id")
        finally:
            await autodev.aclose()
            await sandbox.aclose()
