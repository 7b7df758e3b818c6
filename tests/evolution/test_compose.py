"""Composed edits: three-way merges of partial fixes, the composer's memory, and the search
repairing a two-edit bug from two partial fixes that no mutator combined."""

from __future__ import annotations

import ast
import warnings

from hypothesis import given, settings
from hypothesis import strategies as st

from auto_dev.evolution._crossover import merge
from auto_dev.evolution.ast_ops import enumerate_edits, render
from auto_dev.evolution.compose import Composer, PartialFix
from auto_dev.evolution.dedup import normalized_hash
from auto_dev.evolution.program import Program
from auto_dev.evolution.records import CandidateRecord, SearchHooks
from auto_dev.evolution.search import EvolutionSearch, SearchConfig
from auto_dev.sandbox.base import Case
from tests.evolution._fakes import ListMutator, ScriptedSandbox
from tests.evolution.test_ast_ops import functions

BASE = ('def f(xs, k):\n    """Mean of the last k items (0 when empty)."""\n'
        "    tail = xs[-k - 1:]\n    return sum(tail) * len(tail)\n")
SLICE = BASE.replace("xs[-k - 1:]", "xs[-k:]")
GUARD = BASE.replace('    tail =', "    if not xs:\n        return 0\n    tail =")
DIVIDE = BASE.replace("sum(tail) * len(tail)", "sum(tail) / len(tail)")


class TestMerge:
    """A three-way merge takes each change from the side that made it."""

    def test_changes_in_different_statements(self) -> None:
        """An inserted guard, a changed slice and a changed operator all survive."""
        merged = merge(BASE, GUARD, SLICE)
        assert merged is not None
        assert "if not xs:" in merged and "xs[-k:]" in merged
        merged_twice = merge(BASE, merged, DIVIDE)
        assert merged_twice is not None and "sum(tail) / len(tail)" in merged_twice
        assert '"""Mean of the last k items' in merged_twice  # docstring and layout kept

    def test_changes_in_one_expression(self) -> None:
        """A wrong operator and a wrong constant in the same expression merge."""
        merged = merge("def f(a):\n    return a * 3\n", "def f(a):\n    return a + 3\n",
                       "def f(a):\n    return a * 2\n")
        assert merged is not None and "return a + 2" in merged

    def test_conflicts_and_nothing_to_combine(self) -> None:
        """Both sides changing one node differently, or one side changing nothing: None."""
        base = "def f(a):\n    return a * 3\n"
        assert merge(base, "def f(a):\n    return a + 3\n", "def f(a):\n    return a - 3\n") is None
        assert merge(base, "def f(a):\n    return a + 3\n", base) is None
        assert merge(base, "def f(a):\n    return a + 3\n",
                     "def f(a):\n    return a + 3\n") is None
        assert merge(base, "def f(:", base) is None
        two_inserts = merge(base, "def f(a):\n    x = 1\n    return a * 3\n",
                            "def f(a):\n    y = 2\n    return a * 3\n")
        assert two_inserts is None  # which first is ambiguous

    @given(functions(), st.data())
    @settings(max_examples=40, deadline=None)
    def test_merges_of_two_neighbours_are_valid_and_new(
        self, code: str, data: st.DataObject
    ) -> None:
        """Merging any two single-edit neighbours gives None or a program that compiles, is
        neither of them, and keeps both edits (when they touch different places)."""
        tree = ast.parse(code)
        edits = enumerate_edits(tree)
        first, second = (data.draw(st.sampled_from(edits)) for _ in range(2))
        a, b = render(tree, first), render(tree, second)
        if a is None or b is None:
            return
        merged = merge(code, a, b)
        if merged is None:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            compile(merged, "<merge>", "exec")
        assert normalized_hash(merged) not in {normalized_hash(a), normalized_hash(b)}


class TestComposer:
    """The composer pairs fixes of different cases over their common ancestor."""

    @staticmethod
    def _fix(code: str, pid: str, passed: set[int], gained: set[int],
             parent: str = "seed") -> PartialFix:
        program = Program(code=code, entrypoint="f", id=pid, passed_cases=frozenset(passed))
        return PartialFix(program, parent, frozenset(gained), feasible=True)

    def test_siblings_with_different_gains_merge(self) -> None:
        """Two children of the seed fixing different cases give one merge; equal gains none."""
        composer = Composer()
        composer.remember(Program(code=BASE, entrypoint="f", id="seed",
                                  passed_cases=frozenset({0})), None)
        assert composer.add(self._fix(GUARD, "g", {0, 1}, {1})) == []
        assert composer.add(self._fix(GUARD.replace("return 0", "return 0 + 0"), "g2", {0, 1},
                                      {1})) == []  # fixes nothing the others do not
        compositions = composer.add(self._fix(SLICE, "s", {0, 2}, {2}))
        assert [c.second.program.id for c in compositions] == ["g2", "g"]  # newest first
        composition = compositions[0]
        assert composition.base.id == "seed" and composition.first.program.id == "s"
        assert "if not xs:" in composition.code and "xs[-k:]" in composition.code
        assert "merge of s" in composition.description

    def test_common_ancestor_up_the_lineage(self) -> None:
        """A grandchild and a child of the seed merge over the seed."""
        composer = Composer()
        composer.remember(Program(code=BASE, entrypoint="f", id="seed"), None)
        composer.remember(Program(code=DIVIDE, entrypoint="f", id="d"), "seed")
        composer.add(self._fix(GUARD, "g", {0, 1}, {1}))
        both = merge(BASE, DIVIDE, SLICE)
        assert both is not None
        [composition] = composer.add(self._fix(both, "ds", {0, 2}, {2}, parent="d"))
        assert composition.base.id == "seed"
        assert all(part in composition.code for part in ("if not xs:", "xs[-k:]", "/ len"))

    def test_helpful_edits_show_fixes_of_failing_cases(self) -> None:
        """Diffs of fixes of cases the parent fails, not of its own lineage."""
        composer = Composer()
        composer.remember(Program(code=BASE, entrypoint="f", id="seed"), None)
        composer.add(self._fix(GUARD, "g", {0, 1}, {1}))
        composer.add(self._fix(SLICE, "s", {0, 2}, {2}))
        parent = Program(code=SLICE, entrypoint="f", id="s", passed_cases=frozenset({0, 2}))
        [diff] = composer.helpful_edits(parent)
        assert "+    if not xs:" in diff
        assert composer.helpful_edits(parent, limit=0) == []


class TestSearchComposes:
    """Two partial fixes found by a mutator become one repair without another proposal."""

    @staticmethod
    def _judge(code: str, case: Case) -> bool:
        if case.name == "empty":
            return "if not xs" in code
        if case.name == "tail":
            return "xs[-k:]" in code
        return True

    CASES = [Case(args=([1, 2], 1), expected=2, name="keep"),
             Case(args=([], 2), expected=0, name="empty"),
             Case(args=([1, 2, 3], 2), expected=2.5, name="tail")]

    async def test_children_of_two_partial_fixes(self) -> None:
        """The guard fixes one case, the slice another; their merge passes all and is found
        although the mutator never proposes it. The search of before does not find it."""
        records: list[CandidateRecord] = []

        async def on_evaluated(record: CandidateRecord) -> None:
            records.append(record)

        results = []
        for config in (SearchConfig(max_idle_steps=2), SearchConfig.legacy(max_idle_steps=2)):
            search = EvolutionSearch(
                Program(code=BASE, entrypoint="f"), self.CASES, ScriptedSandbox(self._judge),
                [ListMutator([GUARD, SLICE])], budget=10, config=config,
                hooks=SearchHooks(on_evaluated=on_evaluated))
            results.append(await search.run())
        composed, legacy = results
        assert composed.solved and composed.composed >= 1
        assert composed.best_record is not None
        assert composed.best_record.operator == "compose.merge"
        assert set(composed.best_record.parent_ids) == {records[0].id, records[1].id}
        assert "if not xs" in composed.best.code and "xs[-k:]" in composed.best.code
        assert composed.lineage[0] == "seed" and composed.lineage[-1] == composed.best.id
        assert not legacy.solved and legacy.composed == 0
