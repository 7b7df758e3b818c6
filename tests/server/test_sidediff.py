"""The side-by-side diff rows: both texts come back whole, changes are marked, runs fold."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from auto_dev.server.sidediff import Row, changed_lines, side_by_side

lines = st.lists(st.sampled_from(["a", "b", "c", "x = 1", "<script>", ""]), max_size=30)


def _text(rows: list[Row], side: str) -> list[str]:
    return ["".join(s.text for s in getattr(r, side).segments) for r in rows
            if getattr(r, side).number is not None]


class TestSideBySide:
    """Rows compare two texts line by line with highlighted changes."""

    def test_replace_highlights_inside_the_line(self) -> None:
        rows = side_by_side("def f(x):\n    return x + 2\n", "def f(x):\n    return x + 1\n")
        assert [r.kind for r in rows] == ["equal", "replace"]
        changed = [s.text for s in rows[1].right.segments if s.changed]
        assert changed == ["1"] and [s.text for s in rows[1].left.segments if s.changed] == ["2"]
        assert changed_lines(rows) == 1

    def test_unrelated_lines_are_wholly_changed(self) -> None:
        rows = side_by_side("return x\n", "import subprocess as sp\n")
        assert [(s.text, s.changed) for s in rows[0].right.segments] == [
            ("import subprocess as sp", True)]

    def test_inserts_and_deletes_leave_the_other_side_empty(self) -> None:
        rows = side_by_side("a\nb\n", "a\nc\nd\n")
        kinds = [(r.kind, r.left.number, r.right.number) for r in rows]
        assert kinds == [("equal", 1, 1), ("replace", 2, 2), ("insert", None, 3)]

    def test_long_unchanged_runs_fold(self) -> None:
        before = "".join(f"line {i}\n" for i in range(40))
        after = before.replace("line 20\n", "line twenty\n")
        rows = side_by_side(before, after)
        skips = [r.skipped for r in rows if r.kind == "skip"]
        assert skips == [17, 16]  # 0..16 folded, 17..19 and 21..23 kept, 24..39 folded
        assert sum(1 for r in rows if r.kind == "equal") == 6

    def test_identical_texts_show_everything(self) -> None:
        rows = side_by_side("a\nb\n", "a\nb\n")
        assert [r.kind for r in rows] == ["equal", "equal"]

    @given(lines, lines)
    def test_each_side_is_its_text_when_nothing_folds(self, old: list[str], new: list[str]
                                                      ) -> None:
        rows = side_by_side("\n".join(old), "\n".join(new), context=10_000)
        assert _text(rows, "left") == "\n".join(old).splitlines()
        assert _text(rows, "right") == "\n".join(new).splitlines()
        assert all(r.kind != "skip" for r in rows)
