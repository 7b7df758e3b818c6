"""Model-call waste: the ledger, and the search counting, escalating and moving on."""

from __future__ import annotations

import re
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auto_dev._exceptions import ValidationError
from auto_dev.abc import Mutator
from auto_dev.evolution.program import MutationContext, Program, Proposal
from auto_dev.evolution.search import EvolutionSearch, SearchConfig
from auto_dev.evolution.waste import WasteLedger
from auto_dev.llm.mutator import LLMMutator
from auto_dev.llm.types import ChatMessage
from auto_dev.sandbox.base import Case
from auto_dev.testing import FakeLLM
from tests.evolution._fakes import ScriptedSandbox

SEED = "def f(x):\n    return 0\n"
CASES = [Case(args=(i,), expected=i) for i in range(16)]


def _never(code: str, case: Case) -> bool:
    return case.args[0] == 0


class TestWasteLedger:
    """Streaks of wasted answers raise exploration, then saturate the parent."""

    def test_levels_and_saturation(self) -> None:
        """Two wasted in a row: explore; four: explore more; patience: saturated."""
        ledger = WasteLedger(patience=6)
        levels = []
        for _ in range(6):
            levels.append(ledger.exploration("llm", "p"))
            ledger.record("llm", "p", wasted=True)
        assert levels == [0, 0, 1, 1, 2, 2]
        assert ledger.saturated("llm", "p") and not ledger.saturated("ast", "p")
        ledger.record("llm", "p", wasted=False)
        assert ledger.exploration("llm", "p") == 0 and not ledger.saturated("llm", "p")

    @given(st.lists(st.booleans(), max_size=40), st.integers(1, 8),
           st.floats(0.05, 1.0), st.integers(1, 10))
    def test_counts_follow_the_answers(
        self, wasted: list[bool], patience: int, rate: float, min_calls: int
    ) -> None:
        """Totals, streak and saturation are exactly what the answers say."""
        ledger = WasteLedger(patience=patience, max_rate=rate, min_calls=min_calls)
        for flag in wasted:
            ledger.record("llm", "p", wasted=flag)
        entry = ledger.get("llm", "p")
        streak = len(wasted) - (max((i for i, f in enumerate(wasted) if not f), default=-1) + 1)
        assert (ledger.calls, ledger.wasted) == (len(wasted), sum(wasted))
        assert (entry.calls, entry.wasted, entry.streak) == (len(wasted), sum(wasted), streak)
        expected = streak >= patience or (len(wasted) >= min_calls
                                          and sum(wasted) >= rate * len(wasted))
        assert ledger.saturated("llm", "p") == expected

    def test_bad_settings_name_the_field(self) -> None:
        """Nonsense settings are refused with the field named."""
        with pytest.raises(ValidationError) as info:
            WasteLedger(patience=0)
        assert info.value.field == "waste_patience"
        with pytest.raises(ValidationError) as info:
            WasteLedger(max_rate=0)
        assert info.value.field == "waste_max_rate"


def _shown_program(messages: list[ChatMessage]) -> str:
    prompt = str(messages[-1]["content"])
    found = re.search(r"```python\n(.*?)\n```", prompt, re.DOTALL)
    assert found is not None
    return found.group(1) + "\n"


class TestSearchCountsModelCalls:
    """``llm_calls`` and ``llm_calls_wasted`` say what the model was asked and what was lost."""

    @given(st.lists(st.sampled_from(["new", "repeat", "same", "junk"]), min_size=1,
                    max_size=25),
           st.booleans())
    @settings(max_examples=30, deadline=None)
    async def test_every_answer_is_counted_once(self, kinds: list[str], legacy: bool) -> None:
        """Calls are the model's answers; wasted ones are those that never reached the
        sandbox (a program seen before, the parent unchanged, or no program at all)."""
        script = iter(kinds)
        counter = iter(range(1, 1000))
        previous: list[str] = []

        def answer(messages: list[ChatMessage]) -> str:
            kind = next(script, "junk")
            if kind == "new" or (kind == "repeat" and not previous):
                previous.append(f"def f(x):\n    return {next(counter)}\n")
                return f"```python\n{previous[-1]}```"
            if kind == "repeat":
                return f"```python\n{previous[0]}```"
            if kind == "same":
                return f"```python\n{_shown_program(messages)}```"
            return "I would rather not."

        llm = FakeLLM(default=answer)
        config = (SearchConfig.legacy if legacy else SearchConfig)(max_idle_steps=3)
        search = EvolutionSearch(Program(code=SEED, entrypoint="f"), CASES,
                                 ScriptedSandbox(_never), [LLMMutator(llm)], budget=100,
                                 config=config)
        result = await search.run()
        evaluated = sum(s.evaluated for name, s in result.operator_stats.items()
                        if name.startswith("llm."))
        assert result.llm_calls == len(llm.calls)
        assert result.llm_calls_wasted == result.llm_calls - evaluated
        assert evaluated == result.evaluations == len(previous)
        data = result.to_dict()
        assert (data["llm_calls"], data["llm_calls_wasted"]) == (result.llm_calls,
                                                                  result.llm_calls_wasted)

    async def test_a_wasted_parent_is_left_before_more_calls(self) -> None:
        """A model that only ever answers with the program it was shown is asked
        ``waste_patience`` times, not once per idle step as before."""
        calls = []
        for config in (SearchConfig(max_idle_steps=20), SearchConfig.legacy(max_idle_steps=20)):
            llm = FakeLLM(default=lambda m: f"```python\n{_shown_program(m)}```")
            search = EvolutionSearch(Program(code=SEED, entrypoint="f"), CASES,
                                     ScriptedSandbox(_never), [LLMMutator(llm)], budget=50,
                                     config=config)
            result = await search.run()
            assert result.llm_calls == result.llm_calls_wasted == len(llm.calls)
            calls.append(len(llm.calls))
        assert calls == [SearchConfig().waste_patience, 20]


class _WastefulModel(Mutator):
    """Records what it was given; answers with the parent itself (always wasted)."""

    name: ClassVar[str] = "wasteful"
    calls_model: ClassVar[bool] = True

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, list[str]]] = []

    async def mutate(self, parent: Program, context: MutationContext) -> list[Proposal]:
        self.seen.append((context.exploration, len(context.failing_cases),
                          list(context.helpful_edits)))
        return [Proposal(code=parent.code, entrypoint="f", operator="wasteful")]


class TestExploration:
    """Before moving on, a wasted parent is asked about hotter and with more failing cases."""

    async def test_levels_reach_the_mutator(self) -> None:
        """Exploration 0, 0, 1, 1, 2, 2 with 4, 4, 8, 8, 12, 12 failing cases shown."""
        model = _WastefulModel()
        search = EvolutionSearch(Program(code=SEED, entrypoint="f"), CASES,
                                 ScriptedSandbox(_never), [model], budget=10,
                                 config=SearchConfig(max_idle_steps=8))
        await search.run()
        assert [(level, shown) for level, shown, _ in model.seen] == [
            (0, 4), (0, 4), (1, 8), (1, 8), (2, 12), (2, 12)]


class TestParentPromise:
    """Per parent, the chance of a new answer (Good-Turing) times the chance it helps."""

    @given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), max_size=40),
           st.lists(st.booleans(), max_size=20))
    def test_estimates_follow_the_answers(
        self, answers: list[tuple[int, bool]], outcomes: list[bool]
    ) -> None:
        """The new-answer chance is (programs introduced and never answered again + 1) over
        (calls + 1); the help chance is the parent's rate shrunk towards the rate over every
        parent; their product is the promise."""
        ledger = WasteLedger()
        introduced: dict[bytes, int] = {}
        for number, wasted in answers:
            digest = bytes([number])
            ledger.record("llm", "p", wasted=wasted, digest=digest)
            if not wasted:
                introduced[digest] = 1
            elif digest in introduced:
                introduced[digest] += 1
        for helped in outcomes:
            ledger.settle("llm", "p", helped=helped)
        entry = ledger.get("llm", "p")
        once = sum(1 for count in introduced.values() if count == 1)
        assert entry.new_chance == (once + 1) / (len(answers) + 1)
        rate = (sum(outcomes) + 1) / (len(outcomes) + 2)
        assert ledger.help_rate == rate
        assert entry.help_chance(rate) == (sum(outcomes) + 2 * rate) / (len(outcomes) + 2)
        assert 0 < ledger.promise("llm", "p") == entry.new_chance * entry.help_chance(rate) <= 1
        assert ledger.promise("llm", "never asked") == rate

    def test_repeats_and_fruitless_answers_lower_the_promise(self) -> None:
        """A parent answered with repeats, or with new programs that never help, is worth less
        than one never asked about; a parent whose answers helped is worth more."""
        ledger = WasteLedger()
        assert ledger.promise("llm", "fresh") == 0.5
        for _ in range(4):
            ledger.record("llm", "repeats", wasted=True, digest=b"same")
        for number in range(4):
            ledger.record("llm", "fruitless", wasted=False, digest=bytes([number]))
            ledger.settle("llm", "fruitless", helped=False)
        ledger.record("llm", "helpful", wasted=False, digest=b"new")
        ledger.settle("llm", "helpful", helped=True)
        fresh = ledger.promise("llm", "fresh")
        assert ledger.promise("llm", "repeats") < fresh
        assert ledger.promise("llm", "fruitless") < fresh < ledger.promise("llm", "helpful")


_FIX = "def f(x):\n    return x + 0\n"
_PARTIAL = "def f(x):\n    half = 1\n    return 0\n"


def _fix_or_half(code: str, case: Case) -> bool:
    x = case.args[0]
    return "x + 0" in code or ("half" in code and x < 8) or x == 0


class _DeadEndModel(Mutator):
    """A model whose first answer about the seed is a partial fix that leads nowhere (every
    answer about it is new and useless) and whose seventh is the repair."""

    name: ClassVar[str] = "dead-end"
    calls_model: ClassVar[bool] = True

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def mutate(self, parent: Program, context: MutationContext) -> list[Proposal]:
        self.asked.append(parent.code)
        number = len(self.asked)
        if "half" in parent.code:
            code = f"def f(x):\n    half = 1\n    y = {number}\n    return 0\n"
        else:
            about_seed = sum(1 for code in self.asked if "half" not in code)
            code = {1: _PARTIAL, 7: _FIX}.get(about_seed,
                                               f"def f(x):\n    return 0 * {number}\n")
        return [Proposal(code=code, entrypoint="f", operator="dead-end")]


class TestCallsGoWhereAnswersHelp:
    """A model is not asked about a partial fix whose answers never help while a parent with
    answers left to give is waiting."""

    async def test_the_seed_is_asked_again_after_a_dead_end(self) -> None:
        """The search returns to the seed once its partial fix stops paying and finds the repair
        in a few calls; the legacy search asks about the dead end until the budget is spent."""
        found = []
        for config in (SearchConfig(n_islands=1, max_idle_steps=5),
                       SearchConfig.legacy(n_islands=1, max_idle_steps=5)):
            model = _DeadEndModel()
            search = EvolutionSearch(Program(code=SEED, entrypoint="f"), CASES,
                                     ScriptedSandbox(_fix_or_half), [model], budget=60,
                                     config=config)
            result = await search.run()
            found.append((result.solved, len(model.asked)))
        (solved, calls), (legacy_solved, legacy_calls) = found
        assert solved and calls <= 20
        assert not legacy_solved and legacy_calls == 60
