"""Tests for the syntax check and the normalised-AST hash."""

from __future__ import annotations

import ast

from hypothesis import given, settings
from hypothesis import strategies as st

from auto_dev.evolution.dedup import (
    Deduplicator,
    code_size,
    defines,
    is_trivial,
    normalized_hash,
    parse,
    syntax_error,
)

SAMPLES = [
    'def f(xs, k):\n    """Sum the items above k."""\n    total = 0\n    for x in xs:\n'
    "        if x > k:\n            total += x\n    return total\n",
    "import math\n\n\ndef area(r):\n    return math.pi * r ** 2\n\n\nclass Box:\n"
    '    """A box."""\n\n    def __init__(self, w, h):\n        self.w = w\n'
    "        self.h = h\n\n    def size(self):\n        return self.w * self.h\n",
    "def g(s):\n    words = [w.strip() for w in s.split(',') if w]\n"
    "    return {w: len(w) for w in words}\n",
    "def h(n):\n    a, b = 0, 1\n    while n > 0:\n        a, b = b, a + b\n        n -= 1\n"
    "    return a\n",
]


@st.composite
def reformatted(draw: st.DrawFn) -> tuple[str, str]:
    """A sample and a copy with comments, blank lines, trailing spaces or a new docstring."""
    original = draw(st.sampled_from(SAMPLES))
    lines = original.splitlines()
    out: list[str] = []
    for line in lines:
        if draw(st.booleans()):
            indent = " " * draw(st.integers(0, 12))
            out.append(f"{indent}# {draw(st.text('abc xyz', max_size=10))}")
        if draw(st.booleans()):
            out.append("")
        suffix = draw(st.sampled_from(["", "  ", "\t", "  # trailing note"]))
        out.append(line + suffix)
    text = "\n".join(out) + "\n"
    if draw(st.booleans()):
        text = ast.unparse(ast.parse(text)) + "\n"
    if draw(st.booleans()):
        text = text.replace('"""Sum the items above k."""', '"""Another doc."""')
    return original, text


class TestNormalisedHash:
    """Formatting, comments and docstrings never change the hash; behaviour does."""

    @given(reformatted())
    @settings(max_examples=200, deadline=None)
    def test_formatting_and_comments_do_not_change_the_hash(self, pair: tuple[str, str]) -> None:
        """A reformatted, commented copy has the same normalised hash."""
        original, variant = pair
        assert normalized_hash(variant) == normalized_hash(original)

    def test_docstring_removal_keeps_the_hash(self) -> None:
        """A function with and without its docstring hash the same."""
        with_doc = 'def f():\n    """Doc."""\n    return 1\n'
        assert normalized_hash(with_doc) == normalized_hash("def f():\n    return 1\n")

    def test_semantic_change_changes_the_hash(self) -> None:
        """Changing an operator changes the hash."""
        assert normalized_hash("def f(a):\n    return a + 1\n") != normalized_hash(
            "def f(a):\n    return a - 1\n"
        )

    def test_unparseable_has_no_hash(self) -> None:
        """Code that does not parse hashes to None."""
        assert normalized_hash("def f(:\n") is None


class TestCheapChecks:
    """Syntax problems, trivial programs, entrypoint detection, size."""

    def test_syntax_error_reports_the_line(self) -> None:
        """The problem carries the 1-based line."""
        problem = syntax_error("x = 1\ndef f(:\n    pass\n")
        assert problem is not None and problem.line == 2
        assert syntax_error("x = 1\n") is None

    def test_nul_bytes_are_a_problem_not_a_crash(self) -> None:
        """Source with a NUL byte yields a problem instead of raising."""
        assert syntax_error("x = 1\x00\n") is not None

    def test_trivial_programs(self) -> None:
        """Empty, comment-only, docstring-only and pass-only programs are trivial."""
        for code in ["", "# c\n", '"""doc"""\n', "pass\n...\n"]:
            tree = parse(code)
            assert not isinstance(tree, str) and is_trivial(tree)  # type: ignore[arg-type]
        assert not is_trivial(ast.parse("def f():\n    pass\n"))

    def test_defines(self) -> None:
        """Functions, assignments and imports all bind a name."""
        tree = ast.parse("import os.path as p\nfrom m import f\ng = lambda: 1\ndef h(): pass\n")
        assert all(defines(tree, n) for n in ("p", "f", "g", "h"))
        assert not defines(tree, "os")

    def test_code_size_ignores_docstrings(self) -> None:
        """Code size counts AST nodes, not characters or docstrings."""
        assert code_size('def f():\n    """Long doc."""\n    return 1\n') == code_size(
            "def f():  # comment\n    return 1\n"
        )

    def test_deduplicator(self) -> None:
        """add() is True once per digest."""
        dedup = Deduplicator()
        assert dedup.add(b"x") and not dedup.add(b"x") and b"x" in dedup and len(dedup) == 1
