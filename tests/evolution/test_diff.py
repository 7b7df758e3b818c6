"""Tests for SEARCH/REPLACE blocks, unified diffs and code extraction."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from auto_dev.evolution.diff import (
    DiffBlock,
    DiffError,
    apply_blocks,
    apply_diff,
    extract_code,
    parse_blocks,
    render_blocks,
    unified_diff,
)

_content = st.text(alphabet="abcdefxyz0123456789=+-*()[]:,.'", min_size=1, max_size=20).map(
    lambda s: s.strip() or "x"
)
_line = st.one_of(
    st.just(""),
    st.tuples(st.integers(0, 3), _content).map(lambda t: "    " * t[0] + t[1]),
)
_lines = st.lists(_line, min_size=1, max_size=25)


@st.composite
def program_and_window(draw: st.DrawFn) -> tuple[list[str], int, int]:
    lines = draw(_lines)
    start = draw(st.integers(0, len(lines) - 1))
    end = draw(st.integers(start + 1, len(lines)))
    return lines, start, end


def _text(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


class TestRoundTrip:
    """Blocks built from the program itself apply where they were taken from."""

    @given(program_and_window(), _lines)
    @settings(max_examples=200, deadline=None)
    def test_block_from_a_substring_round_trips(
        self, sample: tuple[list[str], int, int], replacement: list[str]
    ) -> None:
        """Replacing a unique window with new lines yields exactly the expected program."""
        lines, start, end = sample
        code = _text(lines)
        search = _text(lines[start:end])
        window = lines[start:end]
        same = sum(lines[k : k + len(window)] == window for k in range(len(lines)))
        assume(search.strip() and same == 1)
        block = DiffBlock(search, _text(replacement))
        expected = _text(lines[:start] + replacement + lines[end:])
        assert apply_blocks(code, [block]) == expected
        # Through the text format as well.
        assert apply_diff(code, "Here you go:\n" + render_blocks([block]) + "done\n") == expected
        # Replacing a window with itself is the identity.
        assert apply_blocks(code, [DiffBlock(search, search)]) == code

    @given(program_and_window(), st.sampled_from(["  ", "\t", " "]), st.integers(1, 8))
    @settings(max_examples=200, deadline=None)
    def test_whitespace_tolerant_matching(
        self, sample: tuple[list[str], int, int], trailing: str, shift: int
    ) -> None:
        """A block with trailing spaces and shifted indentation still applies at its place."""
        lines, start, end = sample
        window = lines[start:end]
        nonblank = [line for line in window if line.strip()]
        assume(nonblank and window[0].strip())
        first_indent = len(window[0]) - len(window[0].lstrip())
        assume(all(len(line) - len(line.lstrip()) >= first_indent for line in nonblank))
        code = _text(lines)
        normalised = [" ".join(line.split()) for line in lines if line.strip()]
        wanted = [" ".join(line.split()) for line in nonblank]
        hits = sum(normalised[k : k + len(wanted)] == wanted
                   for k in range(len(normalised) - len(wanted) + 1))
        assume(hits == 1)
        sloppy = _text([" " * shift + line + trailing if line.strip() else line
                        for line in window])
        # The identity edit, written sloppily, leaves the program unchanged.
        result = apply_blocks(code, [DiffBlock(sloppy, sloppy)])
        assert [line.rstrip() for line in result.splitlines()] == [
            line.rstrip() for line in code.splitlines()
        ]

    @given(st.lists(st.tuples(_lines, _lines), min_size=1, max_size=4))
    @settings(max_examples=100, deadline=None)
    def test_render_then_parse_is_identity(self, pairs: list[tuple[list[str], list[str]]]) -> None:
        """parse_blocks(render_blocks(b)) == b."""
        blocks = [DiffBlock(_text(a), _text(b)) for a, b in pairs]
        assert parse_blocks(render_blocks(blocks)) == blocks


CODE = "def f(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total\n"


class TestErrors:
    """Clear errors naming the block."""

    def test_no_match_names_the_block_and_the_closest_line(self) -> None:
        """A block that matches nothing says which and where the closest line is."""
        text = render_blocks([
            DiffBlock("    total = 0\n", "    total = 1\n"),
            DiffBlock("    for y in ys:\n", "    for y in xs:\n"),
        ])
        with pytest.raises(DiffError) as info:
            apply_diff(CODE, text)
        assert info.value.field == "blocks[1].search"
        assert "line 3" in info.value.problem

    def test_ambiguous_match(self) -> None:
        """A block found twice is ambiguous, exactly or ignoring whitespace."""
        code = "a = 1\nb = 2\na = 1\n"
        with pytest.raises(DiffError, match="ambiguous"):
            apply_blocks(code, [DiffBlock("a = 1\n", "a = 3\n")])
        with pytest.raises(DiffError, match="ambiguous"):
            apply_blocks(code, [DiffBlock("  a  =  1\n", "a = 3\n")])

    def test_malformed_blocks(self) -> None:
        """Missing divider or REPLACE marker are named."""
        with pytest.raises(DiffError, match="divider"):
            parse_blocks("<<<<<<< SEARCH\nx\n>>>>>>> REPLACE\n")
        with pytest.raises(DiffError, match="REPLACE"):
            parse_blocks("<<<<<<< SEARCH\nx\n=======\ny\n")
        with pytest.raises(DiffError, match="no SEARCH"):
            apply_diff(CODE, "just prose")

    def test_empty_search_appends(self) -> None:
        """An empty SEARCH adds the replacement at the end."""
        out = apply_blocks(CODE, [DiffBlock("", "def g():\n    return 1\n")])
        assert out.startswith(CODE) and out.endswith("def g():\n    return 1\n")

    def test_reindents_replacement(self) -> None:
        """A block written at the wrong depth is re-indented to the match."""
        out = apply_blocks(CODE, [DiffBlock("for x in xs:\n    total += x\n",
                                            "for x in xs:\n    total -= x\n")])
        assert "        total -= x\n" in out


class TestExtractAndDiff:
    """extract_code and unified_diff."""

    def test_prefers_the_block_defining_the_entrypoint(self) -> None:
        """Among several fences the one defining the entrypoint wins."""
        answer = ("Try:\n```python\nprint('usage')\n```\nFixed:\n```python\n"
                  "def f(x):\n    return x + 1\n```\n")
        assert extract_code(answer, "f") == "def f(x):\n    return x + 1\n"

    def test_unfenced_code_and_truncated_fence(self) -> None:
        """Bare code is accepted; an unterminated fence yields what follows it."""
        assert extract_code("def f():\n    return 2\n", "f").startswith("def f")
        assert extract_code("```py\ndef f():\n    return 3\n", "f").endswith("return 3\n")

    def test_prose_is_refused(self) -> None:
        """An answer without code raises with field 'answer'."""
        with pytest.raises(DiffError) as info:
            extract_code("I cannot help with that.", "f")
        assert info.value.field == "answer"
        with pytest.raises(DiffError, match="defines 'f'"):
            extract_code("```python\ndef g():\n    pass\n```", "f")

    def test_unified_diff(self) -> None:
        """The diff shows removed and added lines and is empty for equal programs."""
        diff = unified_diff(CODE, CODE.replace("+=", "-="))
        assert "-        total += x\n" in diff and "+        total -= x\n" in diff
        assert unified_diff(CODE, CODE) == ""
