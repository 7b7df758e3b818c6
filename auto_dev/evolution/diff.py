"""SEARCH/REPLACE diff blocks, unified diffs and fenced-code extraction.

An LLM answers either with whole programs in a fenced block (:func:`extract_code`) or with edit
blocks in the usual form::

    <<<<<<< SEARCH
    old lines
    =======
    new lines
    >>>>>>> REPLACE

:func:`apply_diff` applies them one after another. Matching is tried from strict to tolerant:
exact text, then line by line ignoring trailing whitespace, then ignoring indentation, runs of
spaces and blank lines (re-indenting the replacement to where the match was found). A block that
matches nothing, or matches in more than one place at the strictest level that matches at all,
raises :class:`DiffError` naming the block, so the caller can show the model exactly what failed.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from auto_dev._exceptions import ValidationError

_SEARCH = re.compile(r"^\s*<{5,9}\s*SEARCH\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9}\s*REPLACE\s*$")
_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+.-]*)[^\n]*$", re.MULTILINE)
_PYTHON_TAGS = {"", "python", "py", "python3", "py3"}


class DiffError(ValidationError):
    """A diff or an answer that cannot be applied; ``field`` names the block (``blocks[2]``)."""


@dataclass(frozen=True, slots=True)
class DiffBlock:
    """One SEARCH/REPLACE edit. Both sides are whole lines ending in ``\\n`` (or empty)."""

    search: str
    replace: str


def render_blocks(blocks: Sequence[DiffBlock]) -> str:
    """The text form of ``blocks`` (what a model is asked to write)."""
    out: list[str] = []
    for block in blocks:
        out.append("<<<<<<< SEARCH\n")
        out.append(_with_newline(block.search))
        out.append("=======\n")
        out.append(_with_newline(block.replace))
        out.append(">>>>>>> REPLACE\n")
    return "".join(out)


def parse_blocks(text: str) -> list[DiffBlock]:
    """Parse every SEARCH/REPLACE block in ``text`` (prose and fences around them are ignored)."""
    lines = text.splitlines()
    blocks: list[DiffBlock] = []
    i = 0
    while i < len(lines):
        if not _SEARCH.match(lines[i]):
            i += 1
            continue
        where = f"blocks[{len(blocks)}]"
        start = i + 1
        divider = _find(lines, start, _DIVIDER, stop=_SEARCH)
        if divider is None:
            raise DiffError(where, f"SEARCH at line {i + 1} has no '=======' divider")
        end = _find(lines, divider + 1, _REPLACE, stop=_SEARCH)
        if end is None:
            raise DiffError(where, f"SEARCH at line {i + 1} has no '>>>>>>> REPLACE' marker")
        blocks.append(
            DiffBlock(_join(lines[start:divider]), _join(lines[divider + 1 : end]))
        )
        i = end + 1
    return blocks


def apply_blocks(code: str, blocks: Sequence[DiffBlock]) -> str:
    """Apply ``blocks`` to ``code`` in order; raise :class:`DiffError` naming a failing block."""
    for index, block in enumerate(blocks):
        code = _apply_one(code, block, f"blocks[{index}]")
    return code


def apply_diff(code: str, text: str) -> str:
    """Parse the blocks in ``text`` and apply them to ``code``."""
    blocks = parse_blocks(text)
    if not blocks:
        raise DiffError("diff", "contains no SEARCH/REPLACE block")
    return apply_blocks(code, blocks)


def unified_diff(
    old: str, new: str, *, fromfile: str = "parent", tofile: str = "candidate", context: int = 3
) -> str:
    """A unified diff from ``old`` to ``new`` (empty when they are equal)."""
    diff = difflib.unified_diff(
        _with_newline(old).splitlines(keepends=True),
        _with_newline(new).splitlines(keepends=True),
        fromfile=fromfile,
        tofile=tofile,
        n=context,
    )
    return "".join(diff)


def extract_code(text: str, entrypoint: str | None = None) -> str:
    """The full program in a model's answer.

    Prefers fenced Python blocks; among them the longest that defines ``entrypoint`` (when given),
    else the longest. An answer without fences is taken whole when it looks like Python. An
    unterminated fence (a truncated answer) yields what follows it.
    """
    candidates = _fenced_blocks(text)
    if not candidates and _looks_like_code(text):
        candidates = [text.strip("\n") + "\n"]
    if not candidates:
        raise DiffError("answer", "contains no fenced code block and is not Python code")
    if entrypoint is not None:
        pattern = re.compile(rf"^\s*(?:async\s+)?def\s+{re.escape(entrypoint)}\s*\(", re.MULTILINE)
        defining = [c for c in candidates if pattern.search(c)]
        if not defining:
            raise DiffError("answer", f"no code block defines {entrypoint!r}")
        candidates = defining
    return max(candidates, key=len)


# --- internals -----------------------------------------------------------------------------


def _find(
    lines: list[str], start: int, marker: re.Pattern[str], stop: re.Pattern[str]
) -> int | None:
    for j in range(start, len(lines)):
        if marker.match(lines[j]):
            return j
        if stop.match(lines[j]):
            return None
    return None


def _join(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def _with_newline(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


def _fenced_blocks(text: str) -> list[str]:
    blocks: list[str] = []
    fences = list(_FENCE.finditer(text))
    i = 0
    while i < len(fences):
        opening = fences[i]
        tag = opening.group(1).lower()
        body_start = opening.end() + 1
        if i + 1 < len(fences):
            closing = fences[i + 1]
            body = text[body_start : closing.start()]
            i += 2
        else:
            body = text[body_start:]
            i += 1
        if tag in _PYTHON_TAGS and body.strip():
            blocks.append(body.rstrip() + "\n")
    return blocks


def _looks_like_code(text: str) -> bool:
    import ast

    stripped = text.strip()
    if not stripped:
        return False
    try:
        tree = ast.parse(stripped)
    except (SyntaxError, ValueError):
        return False
    # Plain prose rarely parses; a bare name or constant expression is prose that happens to.
    return any(not isinstance(node, ast.Expr) for node in tree.body)


def _norm_ws(line: str) -> str:
    return " ".join(line.split())


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _apply_one(code: str, block: DiffBlock, where: str) -> str:
    search, replace = block.search, block.replace
    if not search.strip():
        if code.strip():
            # An empty SEARCH appends: how a model adds a helper at the end of the program.
            return _with_newline(code) + ("\n" if code.strip() else "") + replace
        return replace
    # Exact text first: at line starts for whole-line blocks, anywhere for a fragment.
    hits = _occurrences(code, search, line_start="\n" in search.rstrip("\n") or
                        search.endswith("\n"))
    if len(hits) == 1:
        return code[: hits[0]] + replace + code[hits[0] + len(search) :]
    if len(hits) > 1:
        raise DiffError(f"{where}.search", f"is ambiguous: matches {len(hits)} places exactly")
    code_lines = code.splitlines()
    search_lines = _trim_blank(search.splitlines())
    replace_lines = replace.splitlines()
    trailing_nl = code.endswith("\n")
    # Level 1: same lines apart from trailing whitespace.
    key1 = [line.rstrip() for line in search_lines]
    spans = [
        (k, k + len(key1))
        for k in range(len(code_lines) - len(key1) + 1)
        if [line.rstrip() for line in code_lines[k : k + len(key1)]] == key1
    ]
    if len(spans) > 1:
        raise DiffError(f"{where}.search", f"is ambiguous: matches {len(spans)} places")
    if spans:
        return _splice(code_lines, spans[0], replace_lines, trailing_nl, search.splitlines())
    # Level 2: ignore indentation, inner runs of whitespace and blank lines.
    spans = _tolerant_spans(code_lines, search_lines)
    if len(spans) > 1:
        lines = ", ".join(str(s + 1) for s, _ in spans[:5])
        raise DiffError(
            f"{where}.search",
            f"is ambiguous: matches {len(spans)} places ignoring whitespace (lines {lines})",
        )
    if spans:
        start, end = spans[0]
        first = next(line for line in search_lines if line.strip())
        target_indent = _indent(code_lines[start])
        source_indent = _indent(first)
        moved = [_reindent(line, source_indent, target_indent) for line in replace_lines]
        return _splice(code_lines, (start, end), moved, trailing_nl, search.splitlines())
    raise DiffError(f"{where}.search", _no_match_hint(code_lines, search_lines))


def _occurrences(code: str, search: str, *, line_start: bool) -> list[int]:
    """Start offsets of ``search`` in ``code``, overlapping ones included."""
    hits = []
    pos = code.find(search)
    while pos != -1:
        if not line_start or pos == 0 or code[pos - 1] == "\n":
            hits.append(pos)
        pos = code.find(search, pos + 1)
    return hits


def _trim_blank(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def _tolerant_spans(code_lines: list[str], search_lines: list[str]) -> list[tuple[int, int]]:
    wanted = [_norm_ws(line) for line in search_lines if line.strip()]
    if not wanted:
        return []
    # Index the non-blank code lines so that a blank line dropped or added by the model is
    # not a mismatch; the span still covers the original lines (blank ones inside it included).
    positions = [i for i, line in enumerate(code_lines) if line.strip()]
    normed = [_norm_ws(code_lines[i]) for i in positions]
    spans = []
    for k in range(len(normed) - len(wanted) + 1):
        if normed[k : k + len(wanted)] == wanted:
            spans.append((positions[k], positions[k + len(wanted) - 1] + 1))
    return spans


def _reindent(line: str, source: str, target: str) -> str:
    if not line.strip():
        return ""
    if line.startswith(source):
        return target + line[len(source) :]
    return target + line.lstrip()


def _splice(
    code_lines: list[str], span: tuple[int, int], new_lines: list[str], trailing_nl: bool,
    raw_search: list[str],
) -> str:
    """Replace ``code_lines[span]`` with ``new_lines``.

    The span was matched without the search's leading/trailing blank lines; blank lines the
    code has there join the span, and those it lacks are dropped from the replacement, so that
    a block whose sides are equal is always the identity.
    """
    start, end = span
    lead = next((i for i, line in enumerate(raw_search) if line.strip()), len(raw_search))
    trail = next((i for i, line in enumerate(reversed(raw_search)) if line.strip()), 0)
    new = list(new_lines)
    for _ in range(lead):
        if start > 0 and not code_lines[start - 1].strip():
            start -= 1
        elif new and not new[0].strip():
            new.pop(0)
    for _ in range(trail):
        if end < len(code_lines) and not code_lines[end].strip():
            end += 1
        elif new and not new[-1].strip():
            new.pop()
    lines = code_lines[:start] + new + code_lines[end:]
    text = "\n".join(lines)
    return text + "\n" if trailing_nl and lines else text


def _no_match_hint(code_lines: list[str], search_lines: list[str]) -> str:
    first = next((line for line in search_lines if line.strip()), "")
    normed = [_norm_ws(line) for line in code_lines]
    close = difflib.get_close_matches(_norm_ws(first), normed, n=1, cutoff=0.5)
    if close:
        line_no = normed.index(close[0]) + 1
        return (
            f"matches nothing in the program; its first line {first.strip()!r} is closest to "
            f"line {line_no}: {code_lines[line_no - 1].strip()!r}"
        )
    return f"matches nothing in the program (first line {first.strip()!r} not found)"
