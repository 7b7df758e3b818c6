"""Guard insertions for the AST repair operators (the ``guard`` and ``guard_try`` families).

A missing guard is a one-edit bug the other families cannot express: the function needs a new
first statement (``if not xs: return None``) or a net around its body. Defaults are ordered so
that the kinds of value the function already returns come first.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Iterator
from typing import Literal

from auto_dev.evolution import _ast_tables as T

Path = tuple[tuple[str, int | None], ...]
GuardEdit = tuple[str, Path, Literal["replace", "insert"], ast.AST, int, str]


def guard_edits(
    func: ast.FunctionDef | ast.AsyncFunctionDef, path: Path, line: int, has_docstring: bool
) -> Iterator[GuardEdit]:
    """``(op, path, kind, node, rank, description)`` for every guard edit of ``func``."""
    at = 1 if has_docstring else 0
    insert_path: Path = (*path, ("body", at))
    params = [a.arg for a in (*func.args.posonlyargs, *func.args.args, *func.args.kwonlyargs)]
    params = [p for p in params if p not in ("self", "cls")]
    defaults = ordered_defaults(func)
    conditions: list[tuple[str, tuple[str, ...]]] = [
        ("not {p}", tuple(defaults)),
        ("{p} is None", tuple(defaults[:3])),
        ("{p} <= 0", ("0", "{p}", "[]", "None")),
        ("{p} < 2", ("{p}", "1")),
        ("len({p}) < 2", ("{p}", "list({p})")),
    ]
    for p in params:
        rank = 0
        for condition, returns in conditions:
            test = condition.replace("{p}", p)
            for default in returns:
                value = default.replace("{p}", p)
                stmt = ast.parse(f"if {test}:\n    return {value}").body[0]
                yield ("guard", insert_path, "insert", stmt, rank,
                       f"line {line}: insert `if {test}: return {value}`")
                rank += 1
    body = func.body[at:]
    if body and not (len(body) == 1 and isinstance(body[0], ast.Try)):
        for rank, d in enumerate(("None", "0", "[]", "False", '""')):
            try_node = ast.parse(
                f"try:\n    pass\nexcept {T.GUARDED_ERRORS}:\n    return {d}\n"
            ).body[0]
            assert isinstance(try_node, ast.Try)
            try_node.body = list(body)
            new_func = copy.copy(func)
            new_func.body = [*func.body[:at], try_node]
            yield ("guard_try", path, "replace", new_func, rank,
                   f"line {line}: wrap body in try/except returning {d}")


def ordered_defaults(func: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """Guard defaults, the kinds the function already returns first."""
    seen: list[str] = []
    for node in ast.walk(func):
        if not isinstance(node, ast.Return) or node.value is None:
            continue
        guess = _kind(node.value)
        if guess is not None and guess not in seen:
            seen.append(guess)
    return seen + [d for d in T.GUARD_DEFAULTS if d not in seen]


def _kind(value: ast.expr) -> str | None:
    if isinstance(value, ast.Constant):
        if isinstance(value.value, bool):
            return "False"
        if isinstance(value.value, int | float):
            return "0"
        if isinstance(value.value, str):
            return '""'
        if value.value is None:
            return "None"
        return None
    if isinstance(value, ast.List | ast.ListComp):
        return "[]"
    if isinstance(value, ast.Dict | ast.DictComp):
        return "{}"
    if isinstance(value, ast.Compare | ast.BoolOp):
        return "False"
    return None
