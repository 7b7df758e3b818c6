"""Failure signatures: what makes two failures "the same problem" for Memento's grouping.

A signature keeps the tool, the exception type and the shape of the message while masking the
parts that vary between occurrences (numbers, quoted strings, addresses, paths), so that
``ZeroDivisionError: division by zero`` from three different inputs lands in one group while a
``KeyError: 'total'`` does not.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter

_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning))\s*:?\s*(.*)$")
_MASKS = (
    (re.compile(r"0x[0-9a-fA-F]+"), "<addr>"),
    (re.compile(r"(['\"]).*?\1"), "<str>"),
    (re.compile(r"(/[\w.\-]+)+"), "<path>"),
    (re.compile(r"\b\d+(\.\d+)?\b"), "<num>"),
    (re.compile(r"\s+"), " "),
)
_WORD = re.compile(r"[a-z][a-z0-9]+")
_STOP = frozenset({"the", "and", "for", "with", "from", "into", "this", "that", "task", "tool"})


def exception_of(trace: str | None) -> tuple[str, str]:
    """The exception type and message of the last exception line in ``trace``."""
    if not trace:
        return "NoTrace", ""
    for line in reversed(trace.strip().splitlines()):
        match = _EXC_LINE.match(line.strip())
        if match:
            return match.group(1).rsplit(".", 1)[-1], match.group(2)
    last = trace.strip().splitlines()[-1].strip()
    return "UnknownError", last


def mask(message: str) -> str:
    for pattern, repl in _MASKS:
        message = pattern.sub(repl, message)
    return message.strip()[:200]


def failure_signature(tool_name: str | None, error_trace: str | None) -> str:
    """A short stable key for grouping failures (tool + exception type + masked message)."""
    exc_type, message = exception_of(error_trace)
    basis = f"{tool_name or '-'}|{exc_type}|{mask(message)}"
    return hashlib.sha1(basis.encode()).hexdigest()[:16]


def describe_signature(tool_name: str | None, error_trace: str | None) -> str:
    exc_type, message = exception_of(error_trace)
    text = f"{exc_type}: {mask(message)}" if message else exc_type
    return f"{tool_name}: {text}" if tool_name else text


def keywords(text: str) -> Counter[str]:
    return Counter(w for w in _WORD.findall(text.lower()) if w not in _STOP)


def similarity(a: str, b: str) -> float:
    """Cosine similarity of keyword counts: cheap retrieval without a model."""
    ka, kb = keywords(a), keywords(b)
    if not ka or not kb:
        return 0.0
    dot = sum(ka[w] * kb[w] for w in ka.keys() & kb.keys())
    norm = (sum(v * v for v in ka.values()) * sum(v * v for v in kb.values())) ** 0.5
    return dot / norm if norm else 0.0
