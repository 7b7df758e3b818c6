"""A side-by-side diff as data, for the review page to render (and escape) in a template.

Rows come from :class:`difflib.SequenceMatcher` opcodes over lines; a replaced line pair is
split again by characters so the page can highlight what changed inside the line. Long runs of
unchanged lines are folded into one ``skip`` row. Nothing here produces HTML: text stays text
until the template's autoescaping writes it, so hostile candidate code cannot become markup.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

#: Unchanged lines kept around each change before the rest of the run is folded.
CONTEXT = 3


@dataclass(frozen=True, slots=True)
class Segment:
    text: str
    changed: bool


@dataclass(frozen=True, slots=True)
class Side:
    number: int | None  # 1-based line number, None for the empty side of an insert/delete
    segments: tuple[Segment, ...]


@dataclass(frozen=True, slots=True)
class Row:
    """One row of the table: ``kind`` is equal, replace, insert, delete or skip (``skipped``
    unchanged lines folded)."""

    kind: str
    left: Side
    right: Side
    skipped: int = 0


_EMPTY = Side(None, ())


def side_by_side(before: str, after: str, *, context: int = CONTEXT) -> list[Row]:
    """Rows comparing ``before`` (left) with ``after`` (right)."""
    old, new = before.splitlines(), after.splitlines()
    rows: list[Row] = []
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    opcodes = matcher.get_opcodes()
    for position, (tag, i1, i2, j1, j2) in enumerate(opcodes):
        if tag == "equal":
            rows.extend(_equal(old, i1, i2, j1, first=position == 0,
                               last=position == len(opcodes) - 1, context=context))
        elif tag == "replace":
            for k in range(max(i2 - i1, j2 - j1)):
                left_i, right_j = i1 + k, j1 + k
                if left_i < i2 and right_j < j2:
                    left, right = _intraline(old[left_i], new[right_j])
                    rows.append(Row("replace", Side(left_i + 1, left), Side(right_j + 1, right)))
                elif left_i < i2:
                    rows.append(Row("delete", _whole(left_i, old[left_i], True), _EMPTY))
                else:
                    rows.append(Row("insert", _EMPTY, _whole(right_j, new[right_j], True)))
        elif tag == "delete":
            rows.extend(Row("delete", _whole(i, old[i], True), _EMPTY) for i in range(i1, i2))
        else:  # insert
            rows.extend(Row("insert", _EMPTY, _whole(j, new[j], True)) for j in range(j1, j2))
    return rows


def _equal(old: list[str], i1: int, i2: int, j1: int, *, first: bool, last: bool,
           context: int) -> list[Row]:
    def row(i: int) -> Row:
        return Row("equal", _whole(i, old[i], False), _whole(j1 + i - i1, old[i], False))

    count = i2 - i1
    keep_head = 0 if first else context  # lines after the change above
    keep_tail = 0 if last else context  # lines before the change below
    if first and last:  # no change at all: show everything
        return [row(i) for i in range(i1, i2)]
    if count <= keep_head + keep_tail + 1:
        return [row(i) for i in range(i1, i2)]
    head = [row(i) for i in range(i1, i1 + keep_head)]
    tail = [row(i) for i in range(i2 - keep_tail, i2)]
    skipped = count - keep_head - keep_tail
    return [*head, Row("skip", _EMPTY, _EMPTY, skipped=skipped), *tail]


def _whole(index: int, text: str, changed: bool) -> Side:
    return Side(index + 1, (Segment(text, changed),))


#: Below this similarity two paired lines are shown as wholly changed: character highlights
#: between unrelated lines are noise.
_SIMILAR = 0.5


def _intraline(a: str, b: str) -> tuple[tuple[Segment, ...], tuple[Segment, ...]]:
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    if matcher.ratio() < _SIMILAR:
        return (Segment(a, True),), (Segment(b, True),)
    left: list[Segment] = []
    right: list[Segment] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if i2 > i1:
            left.append(Segment(a[i1:i2], tag != "equal"))
        if j2 > j1:
            right.append(Segment(b[j1:j2], tag != "equal"))
    return tuple(left), tuple(right)


def changed_lines(rows: list[Row]) -> int:
    """How many rows differ (for a summary line)."""
    return sum(1 for r in rows if r.kind in {"replace", "insert", "delete"})
