"""Tests for the AST mutator's ordering, cursor, compounds, crossover and the mutator seam."""

from __future__ import annotations

import ast
import random

import pytest

from auto_dev.config import load_settings
from auto_dev.evolution.ast_ops import Edit, enumerate_edits
from auto_dev.evolution.dedup import normalized_hash
from auto_dev.evolution.mutators import (
    AstMutator,
    build_mutators,
    failure_boosts,
    prioritise,
    suspicious_lines,
)
from auto_dev.evolution.program import CaseFeedback, MutationContext, Program

CODE = ("def f(xs, k):\n    total = 0\n    for i in range(len(xs) - 1):\n"
        "        if xs[i] > k:\n            total += xs[i]\n    return total\n")


def _ctx(n: int = 8, seed: int = 0, **kwargs: object) -> MutationContext:
    return MutationContext(rng=random.Random(seed), max_proposals=n, **kwargs)  # type: ignore[arg-type]


def _feedback(error: str | None = None, status: str = "error", actual: object = None,
              expected: object = None) -> CaseFeedback:
    return CaseFeedback(index=0, args=(), kwargs={}, expected=expected, actual=actual,
                        status=status, error=error)


class TestAstMutator:
    """Proposals in priority order, continuing across calls."""

    async def test_proposals_are_valid_distinct_and_continue_across_calls(self) -> None:
        """Successive calls never repeat a proposal and every proposal parses and differs."""
        mutator = AstMutator()
        parent = Program(code=CODE, entrypoint="f", id="p1")
        seen: set[str] = set()
        parent_hash = normalized_hash(CODE)
        for _ in range(10):
            batch = await mutator.mutate(parent, _ctx(8))
            assert len(batch) == 8
            for proposal in batch:
                assert proposal.code not in seen
                seen.add(proposal.code)
                assert normalized_hash(proposal.code) not in (None, parent_hash)
                assert proposal.operator.startswith("ast.")
                assert proposal.parent_ids == ("p1",) and proposal.entrypoint == "f"

    async def test_exhaustion_turns_to_compounds(self) -> None:
        """After the whole neighbourhood, two-edit compounds follow."""
        small = "def f(a):\n    return a + 1\n"
        mutator = AstMutator()
        parent = Program(code=small, entrypoint="f")
        singles = len(enumerate_edits(ast.parse(small)))
        for _ in range(singles // 8 + 2):
            batch = await mutator.mutate(parent, _ctx(8))
        assert mutator.exhausted(parent)
        assert batch and all(p.meta["edits"] == 2 for p in batch)

    async def test_limits_and_bad_parents(self) -> None:
        """max_proposals is respected; an unparseable parent yields nothing."""
        mutator = AstMutator()
        assert await mutator.mutate(Program(code=CODE, entrypoint="f"), _ctx(0)) == []
        assert len(await mutator.mutate(Program(code=CODE, entrypoint="f"), _ctx(3))) == 3
        assert await mutator.mutate(Program(code="def f(:", entrypoint="f"), _ctx(5)) == []

    async def test_crossover_with_inspirations(self) -> None:
        """With an inspiration and crossover_rate 1, crossover children come first."""
        other = CODE.replace("range(len(xs) - 1)", "range(len(xs))").replace("> k", ">= k")
        mutator = AstMutator(crossover_rate=1.0)
        context = _ctx(8, inspirations=[Program(code=other, entrypoint="f", id="p2")])
        batch = await mutator.mutate(Program(code=CODE, entrypoint="f", id="p1"), context)
        crossed = [p for p in batch if p.operator == "ast.crossover"]
        assert crossed and all(p.parent_ids == ("p1", "p2") for p in crossed)

    async def test_cache_is_bounded(self) -> None:
        """Only cache_size parents keep their enumeration state."""
        mutator = AstMutator(cache_size=2)
        for k in range(5):
            await mutator.mutate(Program(code=f"def f(a):\n    return a + {k}\n",
                                         entrypoint="f"), _ctx(2))
        assert len(mutator._states) == 2


class TestPrioritisation:
    """Failure evidence moves the likely edits forward."""

    def test_traceback_lines_come_first(self) -> None:
        """Edits on the line a traceback names are tried before the same family elsewhere."""
        edits = enumerate_edits(ast.parse(CODE))
        tb = 'Traceback:\n  File "<candidate>", line 5, in f\nIndexError: list index out of range'
        order = prioritise(edits, [_feedback(tb)], n_lines=6)
        first_offby1 = next(e for e in order if e.op == "off_by_one")
        assert first_offby1.line == 5

    def test_index_error_favours_off_by_one(self) -> None:
        """IndexError moves off-by-one edits earlier than without evidence."""
        edits = enumerate_edits(ast.parse(CODE))
        plain = prioritise(edits)
        boosted = prioritise(edits, [_feedback("IndexError: list index out of range")])

        def rank(order: list[Edit]) -> int:
            return sum(1 for e in order[:30] if e.op == "off_by_one")

        assert rank(boosted) > rank(plain)

    def test_boosts_from_wrong_answers(self) -> None:
        """Off-by-one answers, negated answers, wrong booleans and None all steer families."""
        assert failure_boosts([_feedback(status="wrong_answer", actual=4, expected=5)])[
            "off_by_one"] > 1
        assert failure_boosts([_feedback(status="wrong_answer", actual=-3, expected=3)])[
            "operand_swap"] > 1
        assert failure_boosts([_feedback(status="wrong_answer", actual=True, expected=False)])[
            "bool_swap"] > 1
        assert failure_boosts([_feedback(status="wrong_answer", actual=[2, 1], expected=[1, 2])])[
            "builtin_swap"] > 1
        assert failure_boosts([_feedback(status="timeout")])["compare_swap"] > 1
        assert failure_boosts([_feedback("ZeroDivisionError: division by zero")])["guard"] > 1

    def test_suspicious_lines_ignore_harness_frames(self) -> None:
        """Frames from the harness or the stdlib are not candidate lines."""
        tb = ('File "/x/_harness.py", line 300, in run\n'
              'File "/usr/lib/python3.11/json/__init__.py", line 2, in dumps\n'
              'File "<candidate>", line 3, in f\n')
        assert suspicious_lines([_feedback(tb)], 10) == {3}


class TestBuildMutators:
    """The seam that picks mutators from settings."""

    def test_offline_without_a_model(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """No model configured: the AST mutator alone, and the strategy says so."""
        monkeypatch.delenv("AUTO_DEV_CONFIG", raising=False)
        monkeypatch.delenv("AUTO_DEV_LLM_MODEL", raising=False)
        plan = build_mutators(load_settings())
        assert [m.name for m in plan.mutators] == ["ast"] and plan.weights == (1.0,)
        assert "offline" in plan.strategy and "no LLM" in plan.strategy

    def test_forced_offline(self) -> None:
        """offline=True ignores a configured model."""
        plan = build_mutators(load_settings(llm_model="gpt-4o-mini"), offline=True)
        assert [m.name for m in plan.mutators] == ["ast"] and "--offline" in plan.strategy

    def test_configured_model_mixes_llm_and_ast(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With a model configured the LLM mutator joins, weighted by llm_mutation_fraction."""
        monkeypatch.delenv("AUTO_DEV_CONFIG", raising=False)
        plan = build_mutators(load_settings(llm_model="openai/gpt-4o-mini"))
        assert [m.name for m in plan.mutators][-1] == "ast" and len(plan.mutators) == 2
        assert plan.weights == (0.5, 0.5) and "AST" in plan.strategy

    def test_a_given_client_is_used(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A client built by the caller is passed through to the LLM factory."""
        from auto_dev.testing import FakeLLM

        monkeypatch.delenv("AUTO_DEV_CONFIG", raising=False)
        monkeypatch.delenv("AUTO_DEV_LLM_MODEL", raising=False)
        plan = build_mutators(load_settings(), client=FakeLLM())
        assert len(plan.mutators) == 2 and plan.mutators[-1].name == "ast"
