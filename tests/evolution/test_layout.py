"""preserve_layout: an AST edit rendered back into the parent's own formatting."""

from __future__ import annotations

import ast
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from auto_dev.evolution._layout import preserve_layout
from auto_dev.evolution.mutators import AstMutator
from auto_dev.evolution.program import MutationContext, Program

PROGRAMS = [
    'def fizz(n):\n    """Doc."""\n    # why\n    if n % 15 == 0:\n'
    '        return "FizzBuzz"  # both\n'
    '    if n % 3 == 0:\n        return "Fizz"\n    if n % 3 == 0:\n        return "Buzz"\n\n'
    '    return str(n)\n',
    "def total(items, tax):\n    s = 0\n    for i in range(1, len(items)):  # every item\n"
    "        s += items[i]['price'] * items[i]['qty']\n    return round(s * (1 + tax), 2)\n",
    "def clamp(x, lo, hi):\n    return max(lo, max(x, hi))   # odd spacing kept\n",
    "def first(xs):\n    if xs == []:\n        return None\n    return xs[1]\n",
]


class TestPreserveLayout:
    """Only the edited code changes; the result always means exactly the edited tree."""

    def test_one_token_edit_keeps_everything_else(self) -> None:
        """Quotes, comments, blank lines and spacing survive an edit elsewhere."""
        tree = ast.parse(PROGRAMS[0])
        tree.body[0].body[3].test.left.right.value = 5  # type: ignore[attr-defined]
        out = preserve_layout(PROGRAMS[0], ast.unparse(tree) + "\n")
        assert out == PROGRAMS[0].replace("if n % 3 == 0:\n        return \"Buzz\"",
                                          "if n % 5 == 0:\n        return \"Buzz\"")

    def test_precedence_is_respected(self) -> None:
        """A spliced sub-expression gets parentheses when it needs them, and keeps comments."""
        src = "def g(a, b):\n    return a * b  # product\n"
        tree = ast.parse(src)
        tree.body[0].body[0].value.right = ast.BinOp(  # type: ignore[attr-defined]
            ast.Name("b"), ast.Add(), ast.Constant(1))
        assert preserve_layout(src, ast.unparse(tree) + "\n") == (
            "def g(a, b):\n    return a * (b + 1)  # product\n")

    def test_unparseable_inputs_fall_back(self) -> None:
        """Anything it cannot handle returns the rendering it was given."""
        assert preserve_layout("def f(:\n", "x = 1\n") == "x = 1\n"

    @settings(max_examples=60, deadline=None)
    @given(st.sampled_from(PROGRAMS), st.integers(0, 10_000))
    def test_every_ast_mutation_round_trips(self, source: str, seed: int) -> None:
        """Every AstMutator proposal parses to the same tree as the plain rendering would."""
        import asyncio

        name = ast.parse(source).body[0].name  # type: ignore[attr-defined]
        parent = Program(code=source, entrypoint=name, id="p")
        context = MutationContext(rng=random.Random(seed), max_proposals=6)
        proposals = asyncio.run(AstMutator().mutate(parent, context))
        for proposal in proposals:
            tree = ast.parse(proposal.code)
            assert ast.dump(tree) != ast.dump(ast.parse(source))
            # Lines the edit did not touch are kept verbatim.
            kept = set(source.splitlines()) & set(proposal.code.splitlines())
            assert len(kept) >= len(source.splitlines()) - 3 or "+" in proposal.operator \
                or proposal.operator.startswith("ast.crossover")
