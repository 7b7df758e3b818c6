"""A search run reports its own LLM calls and errors, and the strategy it really followed."""

from __future__ import annotations

from auto_dev._exceptions import LLMAuthError
from auto_dev.evolution.llm_watch import LLMWatch
from auto_dev.evolution.mutators import AstMutator, MutatorPlan, fallback_strategy
from auto_dev.evolution.program import Program
from auto_dev.evolution.search import EvolutionSearch, SearchConfig
from auto_dev.llm.health import LLMErrorKind, LLMFailure, LLMHealth
from auto_dev.llm.mutator import LLMMutator
from auto_dev.sandbox.base import Case
from auto_dev.testing import FakeLLM
from tests.evolution._fakes import ScriptedSandbox, contains

SEED = Program(code="def add(a, b):\n    return a - b\n", entrypoint="add")
CASES = [Case(args=(1, 2), expected=3), Case(args=(2, 5), expected=7)]
PATCH = "<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE\n"


def refusing_llm(calls: int) -> FakeLLM:
    return FakeLLM([LLMAuthError("AuthenticationError: Incorrect API key provided")] * calls)


class TestSearchResultReportsLLM:
    """``SearchResult.llm`` and its JSON carry the run's LLM errors."""

    async def test_refused_key_falls_back_to_ast(self) -> None:
        """Every LLM call refused: every evaluation is the AST operators', the result lists the
        errors, says the LLM was unusable, and the strategy says the run fell back."""
        llm_mutator = LLMMutator(refusing_llm(500))
        plan = MutatorPlan((llm_mutator, AstMutator()), (0.9, 0.1), "llm (90%) + AST")
        # Nothing passes, so the run spends its whole budget and asks the LLM many times.
        result = await EvolutionSearch(SEED, CASES, ScriptedSandbox(lambda code, case: False),
                                       plan.mutators, mix=plan.weights, budget=12).run()
        assert result.evaluations == 12
        assert all(op.startswith("ast.") for op in result.operator_stats)
        assert result.llm is not None and not result.llm.usable
        data = result.to_dict()
        [error] = data["llm_errors"]
        assert error["kind"] == "authentication" and error["count"] >= 1
        assert error["message"] == "AuthenticationError: Incorrect API key provided"
        assert data["llm_health"]["usable"] is False
        assert data["llm_health"]["calls_failed"] == error["count"]
        assert plan.strategy_for(result.llm) == (
            "AST repair operators (fell back: the LLM was unusable: authentication on default)")

    async def test_working_llm_reports_no_errors(self) -> None:
        """A model that answers: no errors, the planned strategy, calls counted."""
        plan = MutatorPlan((LLMMutator(FakeLLM([PATCH] * 5)), AstMutator()), (1.0, 0.0),
                           "llm (100%) + AST")
        result = await EvolutionSearch(SEED, CASES, ScriptedSandbox(contains("a + b")),
                                       plan.mutators, mix=plan.weights, budget=10).run()
        assert result.solved and result.llm is not None
        assert result.to_dict()["llm_errors"] == []
        assert result.llm.usable and result.llm.calls_answered >= 1
        assert plan.strategy_for(result.llm) == "llm (100%) + AST"

    async def test_each_run_reports_only_its_own_calls(self) -> None:
        """A mutator shared by two runs (as an engine's is): the second run's report does not
        repeat the first run's errors."""
        llm_mutator = LLMMutator(FakeLLM([LLMAuthError("refused")] * 3 + [PATCH] * 5))
        sandbox = ScriptedSandbox(contains("a + b"))
        first = await EvolutionSearch(SEED, CASES, sandbox, [llm_mutator], budget=3,
                                      config=SearchConfig(max_idle_steps=3)).run()
        second = await EvolutionSearch(SEED, CASES, sandbox, [llm_mutator], budget=3).run()
        assert first.llm is not None and first.llm.calls_failed == 3
        assert second.llm is not None and second.llm.errors == () and second.solved

    async def test_offline_run_has_no_llm_report(self) -> None:
        """Without an LLM mutator the result says nothing about an LLM."""
        result = await EvolutionSearch(SEED, CASES, ScriptedSandbox(contains("a + b")),
                                       [AstMutator()], budget=20).run()
        assert result.llm is None
        assert result.to_dict()["llm_errors"] == [] and result.to_dict()["llm_health"] is None

    def test_watch_ignores_mutators_without_health(self) -> None:
        """Only mutators that keep an LLM health record are watched."""
        assert LLMWatch([AstMutator()]).report() is None


class TestRunStrategy:
    """The strategy sentence of a run whose LLM was unusable."""

    def _unusable(self) -> LLMHealth:
        health = LLMHealth()
        health.record_failures([LLMFailure(LLMErrorKind.UNKNOWN_MODEL, "openai/nope", "d", "404")])
        return health

    def test_usable_or_absent_keeps_the_plan(self) -> None:
        """No report, or a model that answered, leaves the planned sentence."""
        health = self._unusable()
        health.record_answer()
        assert fallback_strategy("llm (50%) + AST", None, ast_share=0.5) == "llm (50%) + AST"
        assert fallback_strategy("llm (50%) + AST", health.report(), ast_share=0.5) == (
            "llm (50%) + AST")

    def test_no_ast_share_says_nothing_was_tried(self) -> None:
        """An LLM-only plan cannot claim a fallback it did not have."""
        text = fallback_strategy("llm (100%) + AST", self._unusable().report(), ast_share=0.0)
        assert text.startswith("none: the LLM was unusable (unknown_model on openai/nope)")
