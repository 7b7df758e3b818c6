"""Expressions in workflow documents: JMESPath over the run state, and ``${...}`` templates.

* An *expression* (``when``, ``map.over``, a switch branch's ``when``, the workflow's ``output``)
  is JMESPath evaluated over the state ``{"input", "steps", "vars", "item"}``: data, never code.
* A *value* (tool and custom ``args``, ``set`` values, ``llm`` texts, ``fail`` messages) is any
  JSON. Strings in it are templates: a string that is exactly ``"${expr}"`` becomes the
  expression's value (of any type); ``${expr}`` inside a longer string is replaced by the value
  as text (strings as they are, anything else as compact JSON). ``$${`` is a literal ``${``.

The closing brace of ``${...}`` is found by counting braces outside JMESPath's quoted strings
(``'raw'``, ``"identifier"``, ```literal```), so multiselect hashes like ``${ {a: x} }`` work.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jmespath
from jmespath import exceptions as jmespath_errors
from jmespath.parser import ParsedResult


class ExpressionError(ValueError):
    """An expression or template that does not parse, or fails to evaluate on the state."""


@dataclass(frozen=True, slots=True)
class Placeholder:
    """One ``${expr}`` in a template."""

    expression: str


TemplatePart = str | Placeholder

_QUOTES = {"'", '"', "`"}


@lru_cache(maxsize=4096)
def compile_expression(text: str) -> ParsedResult:
    """``text`` compiled by jmespath (cached); :class:`ExpressionError` says why it does not."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("is an empty expression")
    try:
        return jmespath.compile(text)
    except jmespath_errors.JMESPathError as exc:
        raise ExpressionError(f"is not a valid JMESPath expression: {_one_line(exc)}") from None
    except (RecursionError, ValueError, TypeError) as exc:  # jmespath's own limits
        raise ExpressionError(f"is not a valid JMESPath expression: {exc}") from None


def evaluate(text: str, state: dict[str, Any]) -> Any:
    """The value of expression ``text`` on ``state``."""
    parsed = compile_expression(text)
    try:
        return parsed.search(state)
    except jmespath_errors.JMESPathError as exc:
        raise ExpressionError(f"expression {text!r} failed: {_one_line(exc)}") from None
    except (RecursionError, TypeError, ValueError, ArithmeticError) as exc:
        raise ExpressionError(f"expression {text!r} failed: {exc}") from None


def is_truthy(value: Any) -> bool:
    """JMESPath's truth: false, null, empty strings, lists and objects are false; numbers true."""
    return not (value is None or value is False or value == "" or value == [] or value == {})


@lru_cache(maxsize=4096)
def parse_template(text: str) -> tuple[TemplatePart, ...]:
    """``text`` split into literal text and placeholders (cached; each expression compiled)."""
    parts: list[TemplatePart] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith("$${", i):
            literal.append("${")
            i += 3
            continue
        if text.startswith("${", i):
            end = _closing_brace(text, i + 2)
            expression = text[i + 2:end].strip()
            if not expression:
                raise ExpressionError(f"has an empty ${{}} at character {i}")
            compile_expression(expression)
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(Placeholder(expression))
            i = end + 1
            continue
        literal.append(text[i])
        i += 1
    if literal:
        parts.append("".join(literal))
    return tuple(parts)


def _closing_brace(text: str, start: int) -> int:
    depth, i, n = 0, start, len(text)
    while i < n:
        char = text[i]
        if char in _QUOTES:
            i = _end_of_quoted(text, i)
        elif char == "{":
            depth += 1
        elif char == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    raise ExpressionError(f"has an unterminated ${{ at character {start - 2} (no closing }})")


def _end_of_quoted(text: str, start: int) -> int:
    quote, i = text[start], start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            return i
        i += 1
    raise ExpressionError(f"has an unterminated {quote} quote at character {start}")


def strings_in(value: Any, path: tuple[str | int, ...] = ()
                 ) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every string inside ``value`` with its key path (for validating templates in place)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings_in(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from strings_in(item, (*path, index))


def render_template(text: str, state: dict[str, Any]) -> Any:
    """Template ``text`` evaluated: a lone ``${expr}`` gives the value, otherwise a string."""
    parts = parse_template(text)
    if len(parts) == 1 and isinstance(parts[0], Placeholder):
        return evaluate(parts[0].expression, state)
    return "".join(part if isinstance(part, str) else as_text(evaluate(part.expression, state))
                   for part in parts)


def render_text(text: str, state: dict[str, Any]) -> str:
    """Template ``text`` evaluated to text (a prompt, a message): non-strings as compact JSON."""
    return as_text(render_template(text, state))


def resolve(value: Any, state: dict[str, Any]) -> Any:
    """``value`` with every template string in it evaluated (keys are left alone)."""
    if isinstance(value, str):
        return render_template(value, state)
    if isinstance(value, dict):
        return {key: resolve(item, state) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, state) for item in value]
    return value


def as_text(value: Any) -> str:
    """A value as it appears inside a longer string."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    prefix = "invalid jmespath expression: "
    return text[len(prefix):] if text.lower().startswith(prefix) else text
