"""Small, safe edits of JMESPath expression text: comparators, field paths and literals.

The operators rewrite expressions as text, one token at a time, so everything else in the
expression (functions, filters, projections) is left exactly as written. The scanner knows the
three quoted forms of JMESPath (raw strings ``'x'``, JSON literals ``\\`5\\```, quoted identifiers
``"x"``) so that nothing inside a literal is ever mistaken for a path or an operator, and every
edited expression is compiled before it is proposed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from auto_dev.workflows._expressions import ExpressionError, compile_expression

_TOKEN = re.compile(
    r"""
    (?P<raw>'(?:\\.|[^'\\])*')
   |(?P<lit>`(?:\\.|[^`\\])*`)
   |(?P<quoted>"(?:\\.|[^"\\])*")
   |(?P<cmp>==|!=|<=|>=|<|>)
   |(?P<path>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
   |(?P<other>\s+|.)
    """,
    re.VERBOSE | re.DOTALL,
)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: A comparator and its negation.
FLIPPED = {"==": "!=", "!=": "==", "<": ">=", ">=": "<", ">": "<=", "<=": ">"}
_STATE_ROOTS = ("input", "steps", "vars", "item")


@dataclass(frozen=True, slots=True)
class ExprToken:
    """One token of an expression: its kind (raw, lit, quoted, cmp, path, func, other) and
    text."""

    kind: str
    text: str


def expression_tokens(expr: str) -> list[ExprToken]:
    """``expr`` cut into tokens whose texts join back to ``expr``."""
    tokens: list[ExprToken] = []
    for match in _TOKEN.finditer(expr):
        kind = match.lastgroup or "other"
        tokens.append(ExprToken(kind, match.group()))
    # A path followed by "(" is a function name; one right after "." or "@" is a sub-path of
    # something else (a projection): neither is a field path of the state.
    for i, token in enumerate(tokens):
        if token.kind != "path":
            continue
        after = next((t.text for t in tokens[i + 1:] if t.text.strip()), "")
        before = tokens[i - 1].text if i else ""
        if after.startswith("("):
            tokens[i] = ExprToken("func", token.text)
        elif before in (".", "@", "&", "|"):
            tokens[i] = ExprToken("other", token.text)
    return tokens


def replace_token(tokens: Sequence[ExprToken], index: int, text: str) -> str:
    return "".join(text if i == index else t.text for i, t in enumerate(tokens))


def compiles(expr: str) -> bool:
    """Whether ``expr`` is an expression the interpreter accepts."""
    try:
        compile_expression(expr)
    except (ExpressionError, KeyError, IndexError):
        return False
    return True


def raw_literal(text: str) -> str | None:
    """``text`` as a JMESPath raw string literal, or ``None`` when it needs escapes."""
    if "'" in text or "\\" in text:
        return None
    return f"'{text}'"


def raw_value(token: ExprToken) -> str:
    return token.text[1:-1].replace("\\'", "'")


def literal_value(token: ExprToken) -> Any:
    try:
        return json.loads(token.text[1:-1].replace("\\`", "`"))
    except ValueError:
        return None


def json_literal(value: Any) -> str:
    return "`" + json.dumps(value).replace("`", "\\`") + "`"


def lookup(state: Any, dotted: str) -> tuple[bool, Any]:
    """The value at a dotted path of a sample state, and whether it was there."""
    node = state
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def sibling_fields(parent: str, samples: Sequence[Mapping[str, Any]],
                   known_paths: Sequence[str]) -> list[str]:
    """Field names seen next to ``parent.<field>``: keys of the samples' values at ``parent``
    and the last parts of known paths under ``parent`` (in the order first seen)."""
    names: dict[str, None] = {}
    for state in samples:
        found, value = lookup(state, parent)
        if found and isinstance(value, Mapping):
            names.update((str(k), None) for k in value if _IDENTIFIER.match(str(k)))
    prefix = parent + "."
    for path in known_paths:
        if path.startswith(prefix) and _IDENTIFIER.match(path[len(prefix):]):
            names[path[len(prefix):]] = None
    return list(names)


def state_paths_in(expr: str) -> Iterator[str]:
    """The dotted state paths an expression reads (``steps.order.status``)."""
    for token in expression_tokens(expr):
        if token.kind == "path" and token.text.split(".")[0] in _STATE_ROOTS:
            yield token.text


def is_identifier(text: str) -> bool:
    return bool(_IDENTIFIER.match(text))
