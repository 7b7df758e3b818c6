"""Keep the parent's layout when an AST edit is turned back into source.

AST operators edit a tree and ``ast.unparse`` renders it, which rewrites the whole program:
quotes change, comments vanish, blank lines go. A reviewer then reads a diff full of noise
around a one-token fix. :func:`preserve_layout` re-renders only the statements that actually
changed and splices them into the parent's source, keeping every other line byte for byte. It
checks its own work: the result must parse to exactly the edited tree, otherwise the plain
``ast.unparse`` text is returned.
"""

from __future__ import annotations

import ast
import textwrap

_BLOCK_FIELDS = ("body", "orelse", "finalbody")
_Edit = tuple[int, int, str]  # (first line index, end line index exclusive, replacement text)


def preserve_layout(source: str, new_code: str) -> str:
    """``new_code`` (a rendering of an edited tree of ``source``) with ``source``'s layout."""
    try:
        old = ast.parse(source)
        new = ast.parse(new_code)
    except (SyntaxError, ValueError, RecursionError):
        return new_code
    target = ast.dump(new)
    # First splice only the changed expressions; if that misreads (operator precedence), again
    # with the new expression in parentheses; then whole statements; if even that fails, give
    # up and return the full rendering.
    for fine in ("bare", "parenthesized", ""):
        lines = source.splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        edits: list[_Edit] = []
        if not _diff_block(old.body, new.body, lines, edits, fine=fine):
            continue
        for start, end, text in sorted(edits, reverse=True):
            lines[start:end] = [text]
        result = "".join(lines)
        try:
            if ast.dump(ast.parse(result)) == target:
                return result
        except (SyntaxError, ValueError, RecursionError):
            continue
    return new_code


def _diff_block(old: list[ast.stmt], new: list[ast.stmt], lines: list[str],
                edits: list[_Edit], *, fine: str) -> bool:
    dumps_old = [ast.dump(s) for s in old]
    dumps_new = [ast.dump(s) for s in new]
    head = 0
    while head < min(len(old), len(new)) and dumps_old[head] == dumps_new[head]:
        head += 1
    tail = 0
    while (tail < min(len(old), len(new)) - head
           and dumps_old[len(old) - 1 - tail] == dumps_new[len(new) - 1 - tail]):
        tail += 1
    old_mid = old[head:len(old) - tail]
    new_mid = new[head:len(new) - tail]
    if not old_mid and not new_mid:
        return True
    if len(old_mid) == len(new_mid) == 1:
        if _same_header(old_mid[0], new_mid[0]):
            return all(
                _diff_block(getattr(old_mid[0], name), getattr(new_mid[0], name), lines, edits,
                            fine=fine)
                for name in _BLOCK_FIELDS if hasattr(old_mid[0], name)
            )
        if fine:
            a, b = _lowest_diff(old_mid[0], new_mid[0])
            if isinstance(a, ast.expr) and isinstance(b, ast.expr):
                edit = _splice_expression(a, b, lines, parenthesize=fine == "parenthesized")
                if edit is not None:
                    edits.append(edit)
                    return True
    if old_mid:
        start = min([old_mid[0].lineno, *(d.lineno for d in _decorators(old_mid[0]))]) - 1
        end = old_mid[-1].end_lineno or old_mid[-1].lineno
        if _shares_lines(old, head, len(old) - tail, start, end):
            return False
        indent = old_mid[0].col_offset
    else:
        anchor = old[head - 1] if head else old[head] if old else None
        if anchor is None:
            return False
        indent = anchor.col_offset
        start = end = (anchor.end_lineno or anchor.lineno) if head else anchor.lineno - 1
    text = "".join(textwrap.indent(ast.unparse(s), " " * indent) + "\n" for s in new_mid)
    if indent and lines[start:start + 1] and not lines[start][:indent].isspace():
        return False  # the block starts on its header's line (``if x: y``): can't splice
    edits.append((start, end, text))
    return True


def _lowest_diff(a: ast.AST, b: ast.AST) -> tuple[ast.AST, ast.AST]:
    """The smallest pair of corresponding subtrees that contains every difference."""
    if type(a) is not type(b):
        return a, b
    diffs: list[tuple[ast.AST, ast.AST]] = []
    for name, va in ast.iter_fields(a):
        vb = getattr(b, name, None)
        pairs = list(zip(va, vb, strict=True)) if (
            isinstance(va, list) and isinstance(vb, list) and len(va) == len(vb)) else [(va, vb)]
        for x, y in pairs:
            if isinstance(x, ast.AST) and isinstance(y, ast.AST):
                if ast.dump(x) != ast.dump(y):
                    diffs.append((x, y))
            elif x != y:
                return a, b  # a plain field (operator name, constant, list length) differs
    return _lowest_diff(*diffs[0]) if len(diffs) == 1 else (a, b)


def _splice_expression(old: ast.expr, new: ast.expr, lines: list[str], *,
                       parenthesize: bool) -> _Edit | None:
    """Replace ``old``'s source text with ``new`` rendered, keeping the rest of its lines."""
    end_line = old.end_lineno
    end_col = old.end_col_offset
    if end_line is None or end_col is None:
        return None
    first, last = old.lineno - 1, end_line - 1
    head = lines[first].encode()[:old.col_offset]  # col offsets count UTF-8 bytes
    tail = lines[last].encode()[end_col:]
    rendered = ast.unparse(new)
    if parenthesize and not isinstance(new, ast.Name | ast.Constant | ast.Attribute | ast.Call
                                       | ast.Subscript | ast.List | ast.Tuple | ast.Dict):
        rendered = f"({rendered})"
    try:
        text = head.decode() + rendered + tail.decode()
    except UnicodeDecodeError:
        return None
    return first, last + 1, text


def _same_header(a: ast.stmt, b: ast.stmt) -> bool:
    """Same kind of compound statement with identical non-block fields (so recurse)."""
    if type(a) is not type(b) or not any(hasattr(a, f) for f in _BLOCK_FIELDS):
        return False
    if isinstance(a, ast.Try | ast.TryStar):
        return False  # handlers hold their own bodies; re-render the whole statement
    for name, value in ast.iter_fields(a):
        if name in _BLOCK_FIELDS:
            continue
        other = getattr(b, name)
        if isinstance(value, list):
            if [ast.dump(v) if isinstance(v, ast.AST) else v for v in value] != [
                    ast.dump(v) if isinstance(v, ast.AST) else v for v in other]:
                return False
        elif isinstance(value, ast.AST):
            if not isinstance(other, ast.AST) or ast.dump(value) != ast.dump(other):
                return False
        elif value != other:
            return False
    return all(bool(getattr(a, f)) for f in _BLOCK_FIELDS if hasattr(a, f)) or all(
        bool(getattr(a, f)) == bool(getattr(b, f)) for f in _BLOCK_FIELDS if hasattr(a, f))


def _decorators(node: ast.stmt) -> list[ast.expr]:
    return list(getattr(node, "decorator_list", []) or [])


def _shares_lines(block: list[ast.stmt], lo: int, hi: int, start: int, end: int) -> bool:
    """True when a statement outside ``block[lo:hi]`` sits on the lines being replaced."""
    for index, stmt in enumerate(block):
        if lo <= index < hi:
            continue
        first = min([stmt.lineno, *(d.lineno for d in _decorators(stmt))]) - 1
        last = stmt.end_lineno or stmt.lineno
        if first < end and last > start:
            return True
    return False
