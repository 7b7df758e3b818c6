"""Cheap filters that run before any sandbox: syntax check and normalised-AST hashing.

Two programs that differ only in formatting, comments or docstrings have the same normalised hash,
so the search never pays a sandbox run for a candidate it has effectively seen already. The hash is
over ``ast.dump`` of the tree with docstrings removed: parsing already discards comments and
layout, and ``ast.dump`` without attributes discards line numbers.
"""

from __future__ import annotations

import ast
import copy
import hashlib
from dataclasses import dataclass

_DOCSTRING_OWNERS = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


@dataclass(frozen=True, slots=True)
class SyntaxProblem:
    """Why a program does not parse: message and 1-based line (0 when unknown)."""

    message: str
    line: int = 0

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


def parse(code: str) -> ast.Module | SyntaxProblem:
    """Parse ``code``, returning the tree or a :class:`SyntaxProblem` (never raising)."""
    try:
        return ast.parse(code)
    except SyntaxError as exc:
        return SyntaxProblem(exc.msg or "invalid syntax", exc.lineno or 0)
    except (ValueError, RecursionError, MemoryError) as exc:
        # NUL bytes raise ValueError; absurdly nested code raises RecursionError.
        return SyntaxProblem(f"{type(exc).__name__}: {exc}")


def syntax_error(code: str) -> SyntaxProblem | None:
    """``None`` when ``code`` parses, else what is wrong with it."""
    result = parse(code)
    return result if isinstance(result, SyntaxProblem) else None


def strip_docstrings(tree: ast.Module) -> ast.Module:
    """Remove docstrings from ``tree`` in place (a body left empty gets ``pass``) and return it.

    Docstrings live only in statement bodies, so only statements are visited (much cheaper
    than ``ast.walk`` over every expression node).
    """
    _strip_body(tree, tree.body)
    return tree


def _strip_body(owner: ast.AST, body: list[ast.stmt]) -> None:
    if isinstance(owner, _DOCSTRING_OWNERS) and body and _is_docstring(body[0]):
        del body[0]
        if not body and not isinstance(owner, ast.Module):
            body.append(ast.Pass())
    for stmt in body:
        for field in ("body", "orelse", "finalbody"):
            inner = getattr(stmt, field, None)
            if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                _strip_body(stmt, inner)
        for handler in getattr(stmt, "handlers", ()) or ():
            _strip_body(handler, handler.body)
        for case in getattr(stmt, "cases", ()) or ():
            _strip_body(case, case.body)


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def normalized_dump(tree: ast.Module, *, in_place: bool = False) -> str:
    """``ast.dump`` of a tree without docstrings or positions.

    The tree is left unchanged unless ``in_place`` (cheaper: no copy) is given.
    """
    work = tree if in_place else copy.deepcopy(tree)
    return ast.dump(strip_docstrings(work), annotate_fields=False)


def hash_tree(tree: ast.Module, *, in_place: bool = False) -> bytes:
    """16-byte digest of the normalised tree. Small on purpose: the dedup set stays compact."""
    dump = normalized_dump(tree, in_place=in_place)
    return hashlib.blake2b(dump.encode("utf-8"), digest_size=16).digest()


def normalized_hash(code: str) -> bytes | None:
    """Normalised-AST digest of ``code``, or ``None`` when it does not parse."""
    tree = parse(code)
    if isinstance(tree, SyntaxProblem):
        return None
    return hash_tree(tree, in_place=True)


def is_trivial(tree: ast.Module) -> bool:
    """True for a program with nothing in it: empty, comments, docstrings, ``pass`` or ``...``."""
    for stmt in tree.body:
        if isinstance(stmt, ast.Pass):
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # a bare docstring or Ellipsis does nothing
        return False
    return True


def never_passes(code: str, parent_code: str | None = None) -> str | None:
    """Why ``code`` may never be reported as passed (unparsable, empty or comment-only, or the
    same program as ``parent_code``), or ``None``. The one rule engines and the candidate store
    share."""
    tree = parse(code)
    if isinstance(tree, SyntaxProblem):
        return f"the code does not parse ({tree})"
    if is_trivial(tree):
        return "the code is empty or comment-only"
    if parent_code is not None and normalized_hash(parent_code) == normalized_hash(code):
        return "the code is identical to its parent's"
    return None


def defines(tree: ast.Module, name: str) -> bool:
    """True when the module binds ``name`` at top level (def, class, assignment or import)."""
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if stmt.name == name:
                return True
        elif isinstance(stmt, ast.Assign):
            if any(isinstance(t, ast.Name) and t.id == name for t in stmt.targets):
                return True
        elif isinstance(stmt, ast.AnnAssign):
            if isinstance(stmt.target, ast.Name) and stmt.target.id == name:
                return True
        elif isinstance(stmt, ast.Import | ast.ImportFrom):
            for alias in stmt.names:
                bound = alias.asname or alias.name.split(".")[0]
                if bound == name:
                    return True
    return False


def node_count(tree: ast.AST) -> int:
    """Number of AST nodes: the code-size measure, independent of formatting and comments."""
    count = 1
    for field in tree._fields:
        value = getattr(tree, field, None)
        if isinstance(value, list):
            for item in value:
                if isinstance(item, ast.AST):
                    count += node_count(item)
        elif isinstance(value, ast.AST):
            count += node_count(value)
    return count


def code_size(code: str) -> int:
    """Node count of ``code`` without docstrings; the character count when it does not parse."""
    tree = parse(code)
    if isinstance(tree, SyntaxProblem):
        return len(code)
    return node_count(strip_docstrings(tree))


class Deduplicator:
    """The set of normalised hashes seen so far (16 bytes each, so 100k programs cost ~5 MB)."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, digest: object) -> bool:
        return digest in self._seen

    def add(self, digest: bytes) -> bool:
        """Record ``digest``; True when it was new."""
        if digest in self._seen:
            return False
        self._seen.add(digest)
        return True
