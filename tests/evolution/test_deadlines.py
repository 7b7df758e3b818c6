"""Adaptive per-case deadlines: the deadlines themselves, the re-check queue, and the search's
promise that a correct program is never lost to a deadline."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auto_dev._exceptions import ValidationError
from auto_dev.evolution.deadlines import CaseDeadlines, PendingRecheck, RecheckQueue
from auto_dev.evolution.program import Program
from auto_dev.evolution.search import EvolutionSearch, SearchConfig
from auto_dev.sandbox.base import Case, CaseResult, CaseStatus, Limits, SandboxResult
from auto_dev.sandbox.process import ProcessSandbox
from tests.evolution._fakes import ListMutator, TimedSandbox

SEED = "def f(x):\n    return 0\n"  # passes x == 0 only
FIXED = "def f(x):\n    return x\n"
CASES = [Case(args=(i,), expected=i) for i in range(5)]


def _result(*cases: tuple[int, CaseStatus, float]) -> SandboxResult:
    return SandboxResult(backend="t", cases=tuple(
        CaseResult(index=i, status=status, duration_s=seconds) for i, status, seconds in cases),
        total=len(cases))


def _judge(code: str, case: Case) -> bool:
    return "return x" in code or case.args[0] == 0


class TestCaseDeadlines:
    """Each case's deadline follows the reference program's time on it, within floor and limit."""

    def test_multiplier_floor_and_limit(self) -> None:
        """10x the reference (rounded up the ladder), never under the floor nor over the limit."""
        deadlines = CaseDeadlines(2.0, multiplier=10, floor_s=0.1)
        deadlines.observe(_result((0, CaseStatus.OK, 0.0001), (1, CaseStatus.WRONG_ANSWER, 0.03),
                                  (2, CaseStatus.OK, 1.5)), passed_only=False)
        assert deadlines.deadline(0) == 0.1
        assert deadlines.deadline(1) == pytest.approx(0.4)  # 0.3 on the ladder 0.1 * 2^k
        assert deadlines.deadline(2) == 2.0

    def test_unmeasured_cases(self) -> None:
        """A case nobody finished gets the slowest reference's deadline; nothing known: limit."""
        deadlines = CaseDeadlines(2.0)
        assert deadlines.deadline(0) == 2.0
        deadlines.observe(_result((0, CaseStatus.OK, 0.02), (1, CaseStatus.TIMEOUT, 2.0)),
                          passed_only=False)
        assert deadlines.deadline(1) == deadlines.deadline(0) == pytest.approx(0.2)

    def test_a_better_program_replaces_references_it_passed(self) -> None:
        """The seed's time stands until a better program passes the case."""
        deadlines = CaseDeadlines(2.0)
        deadlines.observe(_result((0, CaseStatus.WRONG_ANSWER, 0.001)), passed_only=False)
        deadlines.observe(_result((0, CaseStatus.WRONG_ANSWER, 0.5)), passed_only=True)
        assert deadlines.references[0] == 0.001
        deadlines.observe(_result((0, CaseStatus.OK, 0.05)), passed_only=True)
        assert deadlines.references[0] == 0.05

    def test_groups_and_accounting(self) -> None:
        """Cases with one deadline share a job; cuts count what the limit would have cost."""
        deadlines = CaseDeadlines(2.0)
        deadlines.observe(_result((0, CaseStatus.OK, 0.0), (1, CaseStatus.OK, 0.0),
                                  (2, CaseStatus.OK, 0.25)), passed_only=False)
        assert deadlines.groups([0, 1, 2]) == [(0.1, (0, 1)), (2.0, (2,))]
        deadlines.count_cuts([0.1, 0.1])
        deadlines.recheck_s = 0.8
        assert deadlines.cuts == 2 and deadlines.saved_s == pytest.approx(3.8 - 0.8)

    @given(st.floats(0.01, 60), st.floats(1, 100), st.floats(0.001, 5),
           st.lists(st.floats(0, 100), max_size=6))
    def test_deadlines_stay_within_floor_and_limit(
        self, limit: float, multiplier: float, floor: float, times: list[float]
    ) -> None:
        """Whatever was measured, every deadline is in [min(floor, limit), limit] and at least
        multiplier x its reference when under the limit."""
        deadlines = CaseDeadlines(limit, multiplier=multiplier, floor_s=floor)
        deadlines.observe(_result(*((i, CaseStatus.OK, t) for i, t in enumerate(times))),
                          passed_only=False)
        for index in range(len(times) + 1):
            deadline = deadlines.deadline(index)
            assert min(floor, limit) <= deadline <= limit
            reference = deadlines.references.get(index)
            if reference is not None and deadline < limit:
                assert deadline >= multiplier * reference * (1 - 1e-9)

    @pytest.mark.parametrize(("kwargs", "field"), [
        ({"limit_s": 0}, "deadlines.limit_s"), ({"limit_s": 1, "multiplier": 0.5},
                                                 "deadlines.multiplier"),
        ({"limit_s": 1, "floor_s": float("nan")}, "deadlines.floor_s"),
    ])
    def test_bad_settings_name_the_field(self, kwargs: dict[str, float], field: str) -> None:
        """Nonsense settings are refused with the field named."""
        with pytest.raises(ValidationError) as info:
            CaseDeadlines(**kwargs)
        assert info.value.field == field


class TestRecheckQueue:
    """Held candidates wait fewest cut cases first; the queue is bounded."""

    @staticmethod
    def _entry(cut: int, at: int) -> PendingRecheck:
        return PendingRecheck(item=f"c{at}", record=None, cut=tuple(range(cut)), accepted=False,
                              enqueued=at)

    def test_order_and_capacity(self) -> None:
        """The entry with the most cuts is pushed out; pop gives the fewest cuts first."""
        queue = RecheckQueue(capacity=2)
        assert queue.push(self._entry(3, 1)) is None
        assert queue.push(self._entry(1, 2)) is None
        dropped = queue.push(self._entry(2, 3))
        assert dropped is not None and dropped.item == "c1"
        assert queue.oldest_wait(10) == 8
        first = queue.pop()
        assert first is not None and first.item == "c2"
        assert [e.item for e in queue.drain()] == ["c3"] and len(queue) == 0


class TestSearchDeadlines:
    """What the search does with deadlines: cut loops early, never lose a correct program."""

    @given(st.lists(st.floats(0.0, 1.99), min_size=5, max_size=5),
           st.integers(0, 4))
    @settings(max_examples=40, deadline=None)
    async def test_a_correct_program_the_limit_passes_is_never_lost(
        self, durations: list[float], loopers: int
    ) -> None:
        """However much slower than the seed the correct program is (under the limit), and
        however many looping mutants come first, the run reports it as the repair."""
        loops = [f"def f(x):\n    return x + {k}\n" for k in range(1, loopers + 1)]

        def seconds(code: str, case: Case) -> float:
            if "return x +" in code:
                return 1e9  # loops
            return durations[case.args[0]] if "return x" in code else 0.0001

        sandbox = TimedSandbox(_judge, seconds)
        search = EvolutionSearch(Program(code=SEED, entrypoint="f"), CASES, sandbox,
                                 [ListMutator([*loops, FIXED])], budget=20,
                                 limits=Limits(timeout_s=2.0),
                                 config=SearchConfig(max_idle_steps=2, batch_size=2))
        result = await search.run()
        assert result.solved and result.best.code == FIXED
        assert all(job.limits.timeout_s <= 2.0 for job in sandbox.jobs)

    async def test_looping_mutants_cost_a_fraction_of_the_limit(self) -> None:
        """Loops are cut at the deadline, not the limit, and the savings are reported."""
        loops = [f"def f(x):\n    return x + {k}\n" for k in range(1, 7)]

        def seconds(code: str, case: Case) -> float:
            return 1e9 if "return x +" in code else 0.001

        def run(config: SearchConfig) -> tuple[TimedSandbox, EvolutionSearch]:
            sandbox = TimedSandbox(_judge, seconds)
            return sandbox, EvolutionSearch(
                Program(code=SEED, entrypoint="f"), CASES, sandbox,
                [ListMutator([*loops, FIXED])], budget=20, limits=Limits(timeout_s=2.0),
                config=config)

        fixed_box, fixed = run(SearchConfig(adaptive_timeout=False))
        adaptive_box, adaptive = run(SearchConfig())
        fixed_result, result = await fixed.run(), await adaptive.run()
        assert fixed_result.solved and result.solved
        assert adaptive_box.spent < fixed_box.spent / 10
        assert result.deadline_cuts >= 6 * 4  # every looping case but the seed's own
        assert result.deadline_saved_s > 0.9 * (fixed_box.spent - adaptive_box.spent)
        assert result.to_dict()["deadline_saved_s"] == round(result.deadline_saved_s, 4)
        assert fixed_result.deadline_cuts == 0 and fixed_result.deadline_saved_s == 0

    async def test_a_slow_correct_candidate_is_found_in_a_real_sandbox(self) -> None:
        """A fix that sleeps 0.6 s per call (the seed takes microseconds) is cut by its deadline,
        then re-checked at the 2 s limit and reported; the one-timeout search of before loses
        it."""
        slow = "import time\n\n\ndef f(x):\n    time.sleep(0.6)\n    return x\n"
        cases = CASES[:3]
        results = []
        for config in (SearchConfig(max_idle_steps=2), SearchConfig.legacy(max_idle_steps=2)):
            sandbox = ProcessSandbox(workers=2)
            try:
                search = EvolutionSearch(Program(code=SEED, entrypoint="f"), cases, sandbox,
                                         [ListMutator([slow])], budget=5,
                                         limits=Limits(timeout_s=2.0), config=config)
                results.append(await search.run())
            finally:
                await sandbox.aclose()
        adaptive, legacy = results
        assert adaptive.solved and adaptive.best.code == slow
        assert adaptive.deadline_rechecks >= 1 and adaptive.deadline_cuts >= 2
        assert adaptive.best_record is not None
        assert "re-checked at the full limit" in adaptive.best_record.reason
        assert not legacy.solved  # cut at 0.5 s and never looked at again

    async def test_a_stored_candidate_upgraded_by_a_recheck_is_reported_again(self) -> None:
        """A fix reported as partial (its slow cases cut) and then passed at the full limit is
        handed to ``on_rechecked`` under the same id, with every case passing, so what a caller
        stored says what the run reports."""
        from auto_dev.evolution.records import CandidateRecord, SearchHooks

        def seconds(code: str, case: Case) -> float:
            return 1.0 if "return x" in code and case.args[0] >= 3 else 0.0001

        evaluated: list[CandidateRecord] = []
        rechecked: list[CandidateRecord] = []

        async def on_evaluated(record: CandidateRecord) -> None:
            evaluated.append(record)

        async def on_rechecked(record: CandidateRecord) -> None:
            rechecked.append(record)

        search = EvolutionSearch(
            Program(code=SEED, entrypoint="f"), CASES, TimedSandbox(_judge, seconds),
            [ListMutator([FIXED])], budget=5, limits=Limits(timeout_s=2.0),
            config=SearchConfig(max_idle_steps=2),
            hooks=SearchHooks(on_evaluated=on_evaluated, on_rechecked=on_rechecked))
        result = await search.run()
        assert result.solved
        reported = [r for r in evaluated if r.proposal.code == FIXED]
        assert len(reported) == 1 and len(reported[0].passed_cases) < len(CASES)
        assert [r.id for r in rechecked] == [reported[0].id]
        assert rechecked[0].passed_cases == frozenset(range(len(CASES)))
        assert rechecked[0].result is not None and rechecked[0].result.pass_rate == 1.0
