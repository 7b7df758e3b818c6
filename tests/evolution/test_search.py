"""Tests for the evolution loop, driven by a scripted sandbox that never executes candidates."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auto_dev._exceptions import LLMUnavailableError, ValidationError
from auto_dev.abc import Mutator
from auto_dev.evolution.mutators import AstMutator
from auto_dev.evolution.program import MutationContext, Program, Proposal
from auto_dev.evolution.records import CandidateRecord, SearchHooks, SearchStatus
from auto_dev.evolution.search import EvolutionSearch, SearchConfig
from auto_dev.sandbox.base import Case
from tests.evolution._fakes import (
    CountingMutator,
    GaugedSandbox,
    ListMutator,
    ScriptedSandbox,
)

SEED = "def f(x):\n    if x > 0:\n        return x\n    return 0\n"
FIXED = "def f(x):\n    if x >= 0:\n        return x\n    return 0\n"


def _judge(code: str, case: Case) -> bool:
    """'keep' cases need `return x`; 'fix' cases need `x >= 0` as well."""
    if "return x" not in code:
        return False
    return case.name == "keep" or "x >= 0" in code


def _cases(n_keep: int = 4, n_fix: int = 2) -> list[Case]:
    return [Case(args=(i,), expected=i, name="keep") for i in range(n_keep)] + [
        Case(args=(-i,), expected=0, name="fix") for i in range(n_fix)
    ]


def _seed() -> Program:
    return Program(code=SEED, entrypoint="f")


class TestRepair:
    """The loop finds a one-edit fix and reports it."""

    async def test_ast_mutator_repairs_a_comparison(self) -> None:
        """The AST mutator's systematic enumeration reaches `>=` and the run stops solved."""
        sandbox = ScriptedSandbox(_judge)
        search = EvolutionSearch(_seed(), _cases(), sandbox, [AstMutator()], budget=200)
        result = await search.run()
        assert result.solved and result.improved
        assert result.stop_reason == "solved"
        assert "x >= 0" in result.best.code
        assert result.best_record is not None
        assert result.best_record.operator == "ast.compare_swap"
        assert result.evaluations <= 200
        assert result.lineage[0] == "seed" and result.lineage[-1] == result.best.id

    async def test_seed_that_passes_stops_at_once(self) -> None:
        """A seed passing every case costs no candidate evaluation."""
        sandbox = ScriptedSandbox(lambda code, case: True)
        result = await EvolutionSearch(_seed(), _cases(), sandbox, [AstMutator()]).run()
        assert result.stop_reason == "seed_passes"
        assert result.evaluations == 0 and not result.improved and result.solved
        assert len(sandbox.jobs) == 1


class TestBudgetAndCascade:
    """Budget accounting and the quick-then-full cascade."""

    async def test_budget_counts_candidates_not_stages(self) -> None:
        """Never more candidates than the budget, and a cascade's two stages count once."""
        sandbox = ScriptedSandbox(lambda code, case: case.name == "keep" and "return x" in code)
        codes = [f"def f(x):\n    if x > {k}:\n        return x\n    return 0\n"
                 for k in range(1, 60)]
        hooks_seen: list[CandidateRecord] = []

        async def on_evaluated(record: CandidateRecord) -> None:
            hooks_seen.append(record)

        search = EvolutionSearch(_seed(), _cases(6, 3), sandbox, [ListMutator(codes)], budget=25,
                                 hooks=SearchHooks(on_evaluated=on_evaluated))
        result = await search.run()
        assert result.evaluations == 25 == len(hooks_seen)
        assert [r.evaluation for r in hooks_seen] == list(range(1, 26))
        # Each candidate ran a quick stage; none fixed anything, so none ran the full suite.
        assert len(sandbox.jobs) == 1 + 25
        assert all(r.stage == "quick" and r.status is SearchStatus.NO_GAIN for r in hooks_seen)

    async def test_survivors_run_the_rest_of_the_suite(self) -> None:
        """A candidate that fixes a quick case runs the remaining cases and passes them all."""
        sandbox = ScriptedSandbox(_judge)
        search = EvolutionSearch(_seed(), _cases(6, 2), sandbox, [ListMutator([FIXED])], budget=5)
        result = await search.run()
        assert result.solved and result.evaluations == 1
        quick, rest = sandbox.jobs[1], sandbox.jobs[2]
        assert len(quick.cases) + len(rest.cases) == 8
        assert result.best_record is not None and result.best_record.stage == "full"

    async def test_regression_is_rejected_even_when_it_fixes_cases(self) -> None:
        """Fixing the failing cases while breaking a passing one violates the hard constraint."""

        breaking = "def f(x):\n    if x >= 0:\n        return x\n    return 0\n"
        # With BREAK in the code only the failing cases pass: fixed two, broke the rest.
        sandbox = ScriptedSandbox(
            lambda code, case: _judge(code, case) if "BREAK" not in code else case.name == "fix"
        )
        regressing = breaking + "BREAK = 1\n"
        search = EvolutionSearch(_seed(), _cases(), sandbox, [ListMutator([regressing])],
                                 budget=3)
        result = await search.run()
        assert result.status_counts.get("regressed") == 1
        assert not result.improved and result.best.code == SEED
        assert result.stop_reason == "exhausted"


class TestFilters:
    """Cheap filters run before any sandbox and never count or pass."""

    async def test_junk_never_reaches_the_sandbox(self) -> None:
        """Syntax errors, empty, comment-only, unchanged, reformatted and duplicate programs."""
        junk = [
            "def f(x) return x\n",  # syntax error
            "",  # empty
            "# nothing here\n# at all\n",  # comment-only
            '"""Only a docstring."""\n',  # docstring-only
            SEED,  # identical to the parent
            "def f(x):\n    # a comment\n    if x > 0:  return x\n    return 0\n",  # same AST
            "def g(x):\n    return x\n",  # no entrypoint
        ]
        sandbox = ScriptedSandbox(lambda code, case: True)
        records: list[CandidateRecord] = []

        async def on_filtered(record: CandidateRecord) -> None:
            records.append(record)

        search = EvolutionSearch(_seed(), _cases(), ScriptedSandbox(_judge),
                                 [ListMutator([*junk, FIXED, FIXED.replace("    ", "  ")])],
                                 budget=10, hooks=SearchHooks(on_filtered=on_filtered))
        result = await search.run()
        statuses = [r.status.value for r in records]
        assert statuses == ["syntax_error", "trivial", "trivial", "trivial", "unchanged",
                            "unchanged", "no_entrypoint"]
        assert all(r.evaluation == 0 and r.result is None for r in records)
        assert result.evaluations == 1 and result.solved
        del sandbox

    async def test_duplicates_of_earlier_candidates_are_skipped(self) -> None:
        """The second copy of a candidate (reformatted) is a duplicate and costs nothing."""
        other = "def f(x):\n    if x > 1:\n        return x\n    return 0\n"
        sandbox = ScriptedSandbox(_judge)
        search = EvolutionSearch(_seed(), _cases(), sandbox,
                                 [ListMutator([other, other.replace("x > 1", "x>1")])], budget=10)
        result = await search.run()
        assert result.evaluations == 1
        assert result.status_counts == {"no_gain": 1, "duplicate": 1}


class TestHooksAndLineage:
    """Hooks see every candidate; storage ids flow into lineage."""

    async def test_storage_ids_become_parent_ids(self) -> None:
        """Ids returned by on_evaluated are used as the children's parent ids."""
        step1 = "def f(x):\n    if x >= 0:\n        return x\n    return 0\n"
        step2 = step1 + "\n\nVERSION = 2\n"

        def judge(code: str, case: Case) -> bool:
            if case.name == "keep":
                return True
            if case.name == "fix":
                return "x >= 0" in code
            return "VERSION = 2" in code

        cases = [*_cases(3, 2), Case(args=(9,), expected=9, name="extra")]
        records: list[CandidateRecord] = []

        async def on_evaluated(record: CandidateRecord) -> str:
            records.append(record)
            return f"db-{len(records)}"

        seeds: list[Program] = []

        async def on_seed(program: Program, result: object) -> None:
            seeds.append(program)

        search = EvolutionSearch(
            Program(code=SEED, entrypoint="f", id="v1"), cases, ScriptedSandbox(judge),
            [ListMutator([step1, step2])], budget=10,
            hooks=SearchHooks(on_evaluated=on_evaluated, on_seed=on_seed),
            # One candidate in flight: each step's parent is the previous step's child.
            config=SearchConfig(n_islands=1, batch_size=1, concurrency=1),
        )
        result = await search.run()
        assert result.solved
        assert records[0].parent_ids == ("v1",)
        assert records[1].parent_ids == ("db-1",)
        assert records[1].generation == 2
        assert result.lineage == ["v1", "db-1", "db-2"]
        assert seeds[0].id == "v1" and seeds[0].passed_cases == frozenset({0, 1, 2})

    async def test_progress_reports_monotonic_evaluations(self) -> None:
        """on_progress is called with non-decreasing evaluation counts up to the total."""
        seen: list[int] = []
        search = EvolutionSearch(
            _seed(), _cases(), ScriptedSandbox(lambda c, k: False), [CountingMutator()],
            budget=20, hooks=SearchHooks(on_progress=lambda p: seen.append(p.evaluations)),
        )
        await search.run()
        assert seen == sorted(seen) and seen[-1] == 20


class TestSecondaryObjectives:
    """With continue_after_solved the run keeps going and prefers faster solutions."""

    async def test_faster_solution_replaces_the_best(self) -> None:
        """Among full solutions, a clearly faster one becomes the best."""
        slow_fix = FIXED + "\nSLOW = 1\n"
        fast_fix = FIXED

        def latency(code: str) -> float:
            return 0.01 if "SLOW" in code else 0.001

        sandbox = ScriptedSandbox(_judge, latency=latency)
        search = EvolutionSearch(
            _seed(), _cases(), sandbox, [ListMutator([slow_fix, fast_fix])], budget=5,
            config=SearchConfig(continue_after_solved=True, n_islands=1, batch_size=1),
        )
        result = await search.run()
        assert result.solved
        assert "SLOW" not in result.best.code
        assert result.evaluations == 2


class _Failing(Mutator):
    name: ClassVar[str] = "failing"

    async def mutate(self, parent: Program, context: MutationContext) -> list[Proposal]:
        raise LLMUnavailableError("provider down")


class TestRobustness:
    """Mutator failures, exhaustion and bad configuration."""

    async def test_failing_mutator_does_not_stop_the_other(self) -> None:
        """An AutoDevError from one mutator is logged; the AST mutator still repairs."""
        search = EvolutionSearch(_seed(), _cases(), ScriptedSandbox(_judge),
                                 [_Failing(), AstMutator()], mix=[0.5, 0.5], budget=200)
        result = await search.run()
        assert result.solved

    async def test_exhaustion_stops_the_run(self) -> None:
        """A mutator with nothing left ends the run as exhausted, not as a hang."""
        search = EvolutionSearch(_seed(), _cases(), ScriptedSandbox(_judge), [ListMutator([])],
                                 budget=50, config=SearchConfig(max_idle_steps=5))
        result = await search.run()
        assert result.stop_reason == "exhausted" and result.evaluations == 0

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"cases": []}, "cases"),
            ({"mutators": []}, "mutators"),
            ({"mix": [1.0, 2.0]}, "mix"),
            ({"budget": -1}, "budget"),
            ({"seed": Program(code="def f(:\n", entrypoint="f")}, "seed.code"),
            ({"seed": Program(code="def g(x):\n    return x\n", entrypoint="f")},
             "seed.entrypoint"),
        ],
    )
    def test_bad_arguments_name_the_field(self, kwargs: dict[str, object], field: str) -> None:
        """Each invalid argument raises ValidationError naming it."""
        args: dict[str, object] = {"seed": _seed(), "cases": _cases(), "sandbox":
                                   ScriptedSandbox(_judge), "mutators": [AstMutator()]}
        budget = kwargs.pop("budget", 10)
        mix = kwargs.pop("mix", None)
        args.update(kwargs)
        with pytest.raises(ValidationError) as info:
            EvolutionSearch(args["seed"], args["cases"], args["sandbox"], args["mutators"],  # type: ignore[arg-type]
                            budget=budget, mix=mix)  # type: ignore[arg-type]
        assert info.value.field == field

    def test_config_validation(self) -> None:
        """SearchConfig refuses a zero batch size."""
        with pytest.raises(ValidationError) as info:
            SearchConfig(batch_size=0)
        assert info.value.field == "config.batch_size"


class TestDeterminismAndSpeed:
    """Same seed, same run; orchestration is fast with an instant mutator."""

    async def test_same_seed_same_candidates(self) -> None:
        """Two runs with the same seed evaluate the same candidates in the same order."""

        async def run(seed: int) -> list[str]:
            search = EvolutionSearch(
                Program(code="def f(x, y):\n    return x - y if x > y else y\n", entrypoint="f"),
                [Case(args=(i, 2), expected=i) for i in range(6)],
                ScriptedSandbox(lambda code, case: False), [AstMutator()], budget=40,
                rng_seed=seed, config=SearchConfig(concurrency=3),
            )
            result = await search.run()
            return [s.id + s.operator for s in result.candidates]

        assert await run(7) == await run(7)

    async def test_orchestration_is_well_over_100_candidates_per_second(self) -> None:
        """Instant mutator and sandbox: the loop's own overhead allows hundreds per second."""
        sandbox = ScriptedSandbox(lambda code, case: False)
        search = EvolutionSearch(
            Program(code="def f(x):\n    return x\n", entrypoint="f"),
            [Case(args=(1,), expected=0), Case(args=(2,), expected=0)], sandbox,
            [CountingMutator()], budget=1000, config=SearchConfig(keep_candidate_stats=False),
        )
        started = time.perf_counter()
        result = await search.run()
        elapsed = time.perf_counter() - started
        assert result.evaluations == 1000
        rate = result.evaluations / max(elapsed - result.sandbox_seconds, 1e-9)
        assert rate > 300, f"{rate:.0f} candidates/s"


def _hashed_judge(code: str, case: Case) -> bool:
    """A case passes or fails by a hash of the code: mixed, stable outcomes for any program."""
    return hashlib.sha256(f"{code}|{case.args[0]}".encode()).digest()[0] % 2 != 0


async def _fingerprint(window: int | None, slots: int, seed: int = 7,
                       batch_size: int = 4) -> list[tuple[str, str, str, int]]:
    """The candidates of one run (id, operator, status, cases passed), in settling order,
    with jobs that finish in a random order."""
    search = EvolutionSearch(
        Program(code="def f(x, y):\n    return x - y if x > y else y\n", entrypoint="f"),
        [Case(args=(i, 2), expected=i) for i in range(12)],
        GaugedSandbox(_hashed_judge, slots=slots, hold_s=0.0, jitter_s=0.004),
        [AstMutator()], budget=40, rng_seed=seed,
        config=SearchConfig(concurrency=window, batch_size=batch_size),
    )
    result = await search.run()
    return [(s.id, s.operator, s.status, s.passed) for s in result.candidates]


class TestConcurrencyWindow:
    """The search keeps the sandbox's slots busy, never more, unless told a concurrency."""

    @settings(max_examples=20, deadline=None)
    @given(slots=st.integers(1, 12), batch_size=st.integers(1, 5))
    def test_in_flight_reaches_the_slots_and_never_exceeds_them(
            self, slots: int, batch_size: int) -> None:
        """Whatever the batch size, as many candidates run at once as the sandbox has slots."""
        sandbox = GaugedSandbox(lambda code, case: False, slots=slots)
        search = EvolutionSearch(
            Program(code="def f(x):\n    return x\n", entrypoint="f"),
            [Case(args=(1,), expected=0), Case(args=(2,), expected=0)], sandbox,
            [CountingMutator()], budget=3 * slots, config=SearchConfig(batch_size=batch_size),
        )
        result = asyncio.run(search.run())
        assert result.evaluations == 3 * slots
        assert sandbox.most_in_flight == slots

    @pytest.mark.parametrize(("slots", "concurrency"), [(8, 3), (2, 5)])
    async def test_explicit_concurrency_overrides_the_slots(
            self, slots: int, concurrency: int) -> None:
        """SearchConfig.concurrency wins over the sandbox's slots, below and above them."""
        sandbox = GaugedSandbox(lambda code, case: False, slots=slots)
        search = EvolutionSearch(
            Program(code="def f(x):\n    return x\n", entrypoint="f"),
            [Case(args=(1,), expected=0), Case(args=(2,), expected=0)], sandbox,
            [CountingMutator()], budget=20, config=SearchConfig(concurrency=concurrency),
        )
        await search.run()
        assert sandbox.most_in_flight == concurrency

    async def test_wide_window_is_deterministic_whatever_finishes_first(self) -> None:
        """Eight in flight, jobs finishing in random order: the same seed settles the same
        candidates with the same outcomes, in the same order."""
        first = await _fingerprint(None, slots=8)
        assert len(first) >= 40
        assert await _fingerprint(None, slots=8) == first
        assert await _fingerprint(None, slots=8, seed=8) != first

    async def test_window_within_one_batch_leaves_the_search_as_it_was(self) -> None:
        """Up to batch_size in flight, a round is one step: the run does not depend on it."""
        serial = await _fingerprint(1, slots=1)
        for window in (2, 4):
            assert await _fingerprint(window, slots=1) == serial
        assert await _fingerprint(None, slots=3) == serial

    def test_concurrency_must_be_a_positive_integer(self) -> None:
        """A zero, negative or non-integer concurrency names the field."""
        for bad in (0, -2, 1.5, True):
            with pytest.raises(ValidationError) as info:
                SearchConfig(concurrency=bad)  # type: ignore[arg-type]
            assert info.value.field == "config.concurrency"


class TestSteppingStones:
    """A regressing candidate that passes more cases is explored but never the best."""

    @staticmethod
    def _judge(code: str, case: Case) -> bool:
        if "FULL" in code:
            return True
        if "STONE" in code:
            return case.args[0] != 0
        return case.args[0] == 0

    async def test_stone_leads_to_a_full_repair(self) -> None:
        """The stone becomes a parent and its child that passes everything solves the run."""
        stone = SEED + "STONE = 1\n"
        full = SEED + "FULL = 1\n"
        records: list[CandidateRecord] = []

        async def on_evaluated(record: CandidateRecord) -> None:
            records.append(record)

        search = EvolutionSearch(
            _seed(), [Case(args=(i,), expected=i) for i in range(6)],
            ScriptedSandbox(self._judge), [ListMutator([stone, full])], budget=5,
            hooks=SearchHooks(on_evaluated=on_evaluated),
            # One candidate in flight: the stone is settled before the next step picks a parent.
            config=SearchConfig(batch_size=1, concurrency=1, stone_rate=1.0, seed_rate=0.0),
        )
        result = await search.run()
        assert records[0].status is SearchStatus.REGRESSED and records[0].stepping_stone
        assert records[1].parent_ids == (records[0].id,)
        assert result.solved and result.lineage == ["seed", records[0].id, records[1].id]

    async def test_stone_is_never_the_best(self) -> None:
        """Without a full repair the best stays the seed, though the stone passes more."""
        search = EvolutionSearch(
            _seed(), [Case(args=(i,), expected=i) for i in range(6)],
            ScriptedSandbox(self._judge), [ListMutator([SEED + "STONE = 1\n"])], budget=5,
            config=SearchConfig(max_idle_steps=3),
        )
        result = await search.run()
        assert result.best.code == SEED and not result.improved
        assert result.status_counts == {"regressed": 1}


class TestFreshParents:
    """A parent whose neighbourhood is used up gives way to the next best."""

    async def test_search_returns_to_the_seed_after_a_local_optimum(self) -> None:
        """After the improved program's neighbours run out, the seed's remaining ones are tried."""
        seed_code = "def f(n):\n    if n % 3 == 0:\n        return 1\n    return 0\n"

        def judge(code: str, case: Case) -> bool:
            # n % 5 is the fix; n % 2 is a partial fix that passes the even cases.
            if "n % 5" in code:
                return True
            return case.name == "even" and "n % 2" in code

        cases = [Case(args=(i,), expected=0, name="even") for i in range(3)] + [
            Case(args=(5,), expected=1, name="five"), Case(args=(7,), expected=0, name="x")]
        search = EvolutionSearch(Program(code=seed_code, entrypoint="f"), cases,
                                 ScriptedSandbox(judge), [AstMutator()], budget=1000)
        result = await search.run()
        assert result.solved and "n % 5" in result.best.code
