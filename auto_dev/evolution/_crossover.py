"""Crossover between two parent programs at function and statement level.

Children take the first parent as the base and borrow one piece of the second: a whole top-level
function of the same name, or one differing run of statements in a function body (found with
``difflib.SequenceMatcher`` over statement dumps, recursing into aligned compound statements such
as the bodies of two ``for`` loops). Borrowing one hunk at a time keeps each child close to a
parent that already passed tests, which is what makes crossover useful for repair.

Docstrings take no part: the search's deduplication ignores them (see
:func:`~auto_dev.evolution.dedup.normalized_hash`), so a child that differs from a parent only in
its docstring is the same program, and is never returned.
"""

from __future__ import annotations

import ast
import copy
import difflib
import random
from typing import Any

from auto_dev.evolution.dedup import hash_tree

_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)
_BODY_FIELDS = ("body", "orelse", "finalbody")


def crossover(
    first: str, second: str, rng: random.Random | None = None, limit: int = 8
) -> list[tuple[str, str]]:
    """Up to ``limit`` children of ``first`` and ``second`` as ``(code, description)``.

    Children equal to either parent after normalisation (docstrings, comments and layout
    ignored) are left out, and so are repeats. Order is shuffled with ``rng`` when given
    (deterministic for a seeded rng).
    """
    try:
        tree_a = ast.parse(first)
        tree_b = ast.parse(second)
    except (SyntaxError, ValueError):
        return []
    funcs_b = {s.name: s for s in tree_b.body if isinstance(s, _FUNCS)}
    raw: list[tuple[ast.Module, str]] = []
    for index, stmt in enumerate(tree_a.body):
        if not isinstance(stmt, _FUNCS) or stmt.name not in funcs_b:
            continue
        other = funcs_b[stmt.name]
        if ast.dump(stmt) == ast.dump(other):
            continue
        if len(funcs_b) > 1 or len(tree_a.body) > 1:
            raw.append((_with_stmt(tree_a, index, other), f"function {stmt.name} from parent 2"))
        for body, where in _body_variants(stmt.body, other.body, stmt.name, docstrings=True):
            new_func = copy.copy(stmt)
            new_func.body = body
            raw.append((_with_stmt(tree_a, index, new_func), where))
    # Compare as the search's dedup does: a child that is a parent once docstrings are gone
    # would be filtered unseen, or worse, evaluated as "new".
    seen = {hash_tree(tree_a), hash_tree(tree_b)}
    children: list[tuple[str, str]] = []
    for module, description in raw:
        code = _unparse(module)
        if code is None:
            continue
        digest = hash_tree(ast.parse(code), in_place=True)
        if digest in seen:
            continue
        seen.add(digest)
        children.append((code, description))
    if rng is not None:
        rng.shuffle(children)
    return children[:limit]


def _with_stmt(tree: ast.Module, index: int, stmt: ast.stmt) -> ast.Module:
    body = list(tree.body)
    body[index] = stmt
    return ast.Module(body=body, type_ignores=[])


def _unparse(tree: ast.Module) -> str | None:
    try:
        return ast.unparse(tree) + "\n"
    except Exception:  # an impossible tree: skip the child
        return None


def _body_variants(
    body_a: list[ast.stmt], body_b: list[ast.stmt], where: str, depth: int = 0,
    *, docstrings: bool = False,
) -> list[tuple[list[ast.stmt], str]]:
    """Versions of ``body_a`` with one differing hunk taken from ``body_b``.

    With ``docstrings`` (the bodies of functions and classes) a leading docstring is no hunk:
    ``body_a`` keeps its own and ``body_b``'s is ignored.
    """
    if docstrings:
        head = body_a[:1] if body_a and _is_docstring(body_a[0]) else []
        rest_b = body_b[1:] if body_b and _is_docstring(body_b[0]) else body_b
        if head or rest_b is not body_b:
            return [(head + body, where_) for body, where_ in _body_variants(
                body_a[len(head):], rest_b, where, depth)]
    dumps_a = [ast.dump(s) for s in body_a]
    dumps_b = [ast.dump(s) for s in body_b]
    matcher = difflib.SequenceMatcher(None, dumps_a, dumps_b, autojunk=False)
    variants: list[tuple[list[ast.stmt], str]] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        line = getattr(body_a[i1], "lineno", None) if i1 < len(body_a) else None
        label = (f"{where}: statements {i1 + 1}-{i2} from parent 2" if i2 > i1 else
                 f"{where}: {j2 - j1} statement(s) of parent 2 inserted at {i1 + 1}") + (
            f" (line {line})" if line else "")
        variants.append((body_a[:i1] + body_b[j1:j2] + body_a[i2:], label))
        if tag == "replace" and i2 - i1 == j2 - j1 and depth < 4:
            # Aligned compound statements of the same kind: recurse into their bodies.
            for k in range(i2 - i1):
                sa, sb = body_a[i1 + k], body_b[j1 + k]
                if type(sa) is not type(sb):
                    continue
                for field in _BODY_FIELDS:
                    inner_a = getattr(sa, field, None)
                    inner_b = getattr(sb, field, None)
                    if not isinstance(inner_a, list) or not isinstance(inner_b, list):
                        continue
                    if not inner_a or not inner_b:
                        continue
                    for inner, inner_where in _body_variants(
                        inner_a, inner_b, f"{where}.{type(sa).__name__.lower()}", depth + 1,
                        docstrings=isinstance(sa, (*_FUNCS, ast.ClassDef)) and field == "body",
                    ):
                        new_stmt = copy.copy(sa)
                        setattr(new_stmt, field, inner)
                        body = list(body_a)
                        body[i1 + k] = new_stmt
                        variants.append((body, inner_where))
                # The header (e.g. a loop's range or an if's test) alone, body kept from a.
                header = copy.copy(sb)
                for field in _BODY_FIELDS:
                    if isinstance(getattr(sa, field, None), list):
                        setattr(header, field, getattr(sa, field))
                body = list(body_a)
                body[i1 + k] = header
                variants.append((body, f"{where}: header of line {getattr(sa, 'lineno', '?')} "
                                       "from parent 2"))
    return variants


def _is_docstring(stmt: ast.stmt) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str))


# --- three-way merge ----------------------------------------------------------------------------


class _Conflict(Exception):
    """Both sides changed the same place differently."""


def merge(base: str, first: str, second: str) -> str | None:
    """``first`` with the changes ``second`` made to ``base`` as well: a three-way merge of
    syntax trees.

    Two partial fixes of one program (two descendants of ``base`` that each fixed different
    cases) usually changed different places: an operator in one expression and a constant in
    another, or a guard inserted at the top and a slice bound further down. The merge walks the
    three trees together and takes each node from whichever side changed it; statement lists of
    different lengths are aligned as a diff3 would. ``None`` when both sides changed the same
    node differently, when a program does not parse, or when the merge is just one of the two
    (nothing to combine).
    """
    try:
        trees = [ast.parse(code) for code in (base, first, second)]
    except (SyntaxError, ValueError, RecursionError):
        return None
    try:
        merged = _merge_value(*trees)
    except (_Conflict, RecursionError):
        return None
    if not isinstance(merged, ast.Module):
        return None
    code = _unparse(merged)
    if code is None:
        return None
    digest = hash_tree(ast.parse(code), in_place=True)
    if digest in (hash_tree(trees[1], in_place=True), hash_tree(trees[2], in_place=True)):
        return None
    return code


def _same(a: object, b: object) -> bool:
    if isinstance(a, ast.AST) and isinstance(b, ast.AST):
        return ast.dump(a) == ast.dump(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _merge_value(base: object, first: object, second: object) -> object:
    if _same(first, base) or _same(first, second):
        return second
    if _same(second, base):
        return first
    if isinstance(base, list) and isinstance(first, list) and isinstance(second, list):
        return _merge_list(base, first, second)
    if (isinstance(base, ast.AST) and type(base) is type(first) is type(second)
            and not isinstance(base, ast.expr_context)):
        node = copy.copy(base)
        for name, value in ast.iter_fields(base):
            setattr(node, name, _merge_value(value, getattr(first, name, None),
                                             getattr(second, name, None)))
        return node
    raise _Conflict


def _hunks(base: list[str], other: list[str]) -> list[tuple[int, int, int, int]]:
    matcher = difflib.SequenceMatcher(None, base, other, autojunk=False)
    return [(i1, i2, j1, j2) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def _merge_list(base: list[Any], first: list[Any], second: list[Any]) -> list[Any]:
    if len(base) == len(first) == len(second):
        return [_merge_value(b, f, s) for b, f, s in zip(base, first, second, strict=True)]
    dumps = [[ast.dump(x) if isinstance(x, ast.AST) else repr(x) for x in seq]
             for seq in (base, first, second)]
    hunks_a = [(i1, i2, first[j1:j2]) for i1, i2, j1, j2 in _hunks(dumps[0], dumps[1])]
    hunks_b = [(i1, i2, second[j1:j2]) for i1, i2, j1, j2 in _hunks(dumps[0], dumps[2])]
    merged_hunks: list[tuple[int, int, list[Any]]] = []
    for a in hunks_a:
        clash = [b for b in hunks_b if _overlap(a, b)]
        if not clash:
            merged_hunks.append(a)
            continue
        b = clash[0]
        if len(clash) > 1 or (a[0], a[1]) != (b[0], b[1]) or not (
                len(a[2]) == len(b[2]) == a[1] - a[0]):
            raise _Conflict
        # The same statements replaced one for one on both sides: merge them pairwise.
        merged_hunks.append((a[0], a[1], [_merge_value(x, y, z) for x, y, z in zip(
            base[a[0]:a[1]], a[2], b[2], strict=True)]))
        hunks_b.remove(b)
    merged_hunks.extend(hunks_b)
    merged_hunks.sort(key=lambda h: (h[0], h[1]))
    out: list[Any] = []
    cursor = 0
    for i1, i2, replacement in merged_hunks:
        out.extend(base[cursor:i1])
        out.extend(replacement)
        cursor = i2
    out.extend(base[cursor:])
    return out


def _overlap(a: tuple[int, int, list[Any]], b: tuple[int, int, list[Any]]) -> bool:
    """True when two hunks over the base touch the same place.

    Two insertions at one point clash (their order is ambiguous); an insertion right before a
    changed run does not: it goes first.
    """
    if a[0] == b[0]:
        return (a[0] == a[1]) == (b[0] == b[1])
    return a[0] < b[1] and b[0] < a[1]
