"""Static checks on model-written code, run before any sandbox run.

The seed system let comment-only "LLM unavailable" code pass validation with fitness 1.0; here
such code never reaches the sandbox. Reasons are stable strings, recorded with every rejection.
"""

from __future__ import annotations

import ast

from auto_dev.evolution.dedup import SyntaxProblem, defines, is_trivial, normalized_dump, parse

EMPTY = "empty"
SYNTAX_ERROR = "syntax_error"
COMMENT_ONLY = "comment_only"
MISSING_ENTRYPOINT = "missing_entrypoint"
STUB = "stub"
NO_OP = "no_op"


def _is_hollow(stmt: ast.stmt) -> bool:
    if isinstance(stmt, ast.Pass):
        return True
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
        return True  # a docstring, a string "comment" or ``...``
    if isinstance(stmt, ast.Raise) and stmt.exc is not None:
        target = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
        return isinstance(target, ast.Name) and target.id == "NotImplementedError"
    return False


def _entrypoint_is_stub(tree: ast.Module, entrypoint: str) -> bool:
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef) and stmt.name == entrypoint:
            return all(_is_hollow(s) for s in stmt.body)
    return False


def check_code(code: str, entrypoint: str, *, parent_code: str | None = None) -> tuple[str, str]:
    """``("", "")`` when ``code`` may go to the sandbox, else ``(reason, detail)``."""
    if not code.strip():
        return EMPTY, "the answer contains no code"
    tree = parse(code)
    if isinstance(tree, SyntaxProblem):
        return SYNTAX_ERROR, f"the code does not parse: {tree}"
    if is_trivial(tree):
        return COMMENT_ONLY, "the code has no statements (comments, docstrings or pass only)"
    if not defines(tree, entrypoint):
        return MISSING_ENTRYPOINT, f"the code does not define {entrypoint!r}"
    if _entrypoint_is_stub(tree, entrypoint):
        return STUB, f"{entrypoint!r} has an empty body (pass, docstring or NotImplementedError)"
    if parent_code is not None:
        parent_tree = parse(parent_code)
        if not isinstance(parent_tree, SyntaxProblem) and normalized_dump(tree) == normalized_dump(
            parent_tree, in_place=True
        ):
            return NO_OP, "the code is the parent's apart from comments, docstrings or layout"
    return "", ""
