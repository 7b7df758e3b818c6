"""Tools for workflows: calling them in the sandbox, and reading them from a ``tools.py`` file.

A tool call is one sandbox job with one case: ``tool(**args)`` from the tool's source, under the
step's time limit. Tool code never runs in auto-dev's process, not even to list the tools of a
file (:func:`load_tools_file` reads it with :mod:`ast`).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from auto_dev._exceptions import SandboxError, ToolCallError, ToolTimeoutError, ValidationError
from auto_dev.abc import Sandbox, ToolInvoker
from auto_dev.sandbox.base import Case, CaseStatus, Limits, SandboxJob

if TYPE_CHECKING:
    from auto_dev.queries import TenantView

log = structlog.get_logger(__name__)

#: The time limit of a tool call whose step sets none (the sandbox's own default).
DEFAULT_TOOL_TIMEOUT_S = Limits().timeout_s

_MAX_TIMEOUT_S = 3600.0


def seeded_source(code: str, seed: int) -> str:
    """``code`` followed by seeding Python's ``random`` with ``seed``.

    The lines go at the end, which runs after the module body and before the call: no line
    number of the tool moves and ``from __future__`` imports stay first.
    """
    return (f"{code.rstrip()}\n\n\nimport random as _auto_dev_random\n"
            f"_auto_dev_random.seed({int(seed)})\ndel _auto_dev_random\n")


class SandboxToolInvoker(ToolInvoker):
    """Calls tools in ``sandbox``: ``tools`` maps each tool name to the source that defines a
    function of that name (the entrypoint)."""

    def __init__(self, sandbox: Sandbox, tools: Mapping[str, str], *,
                 memory_mb: int | None = None) -> None:
        for name, code in tools.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValidationError("tools", f"tool name {name!r} is not a Python identifier")
            if not isinstance(code, str):
                raise ValidationError(f"tools.{name}", "must be the tool's source text")
        self.sandbox = sandbox
        self.tools = dict(tools)
        self.memory_mb = memory_mb

    def names(self) -> frozenset[str]:
        return frozenset(self.tools)

    async def invoke(self, tool: str, args: dict[str, Any], *, timeout_s: float | None,
                     seed: int) -> Any:
        code = self.tools.get(tool)
        if code is None:
            raise ToolCallError(tool, f"unknown tool {tool!r}")
        if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
            raise ToolCallError(tool, f"the arguments of {tool!r} must be an object with "
                                      "string keys")
        limit = DEFAULT_TOOL_TIMEOUT_S if timeout_s is None else timeout_s
        limit = min(max(limit, 0.001), _MAX_TIMEOUT_S)
        limits = Limits(timeout_s=limit) if self.memory_mb is None else Limits(
            timeout_s=limit, memory_mb=self.memory_mb)
        job = SandboxJob(seeded_source(code, seed), entrypoint=tool,
                         cases=(Case(kwargs=args, has_expected=False),), limits=limits)
        try:
            result = await self.sandbox.run(job)
        except SandboxError as exc:
            log.warning("workflow_tool_sandbox_failed", tool=tool, error=str(exc))
            raise ToolCallError(tool, f"the sandbox failed running {tool!r}: {exc}") from exc
        if result.error is not None or not result.cases:
            raise ToolCallError(tool, f"{tool!r} did not run: {result.error or 'no result'}")
        case = result.cases[0]
        if case.status is CaseStatus.OK:
            return case.output
        if case.status is CaseStatus.TIMEOUT:
            raise ToolTimeoutError(tool, f"{tool!r} timed out after {limit:g}s")
        raise ToolCallError(tool, f"{tool!r} failed ({case.status.value}): "
                                  f"{error_summary(case.error or case.status.value)}")


_FRAME = re.compile(r'File "<candidate>", line (\d+), in (\S+)')


def error_summary(text: str) -> str:
    """A tool's error in one line: the exception line of its traceback, and where in the tool
    it was raised (``ConnectionError: down (line 11, in get_order)``)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "no error text"
    summary = lines[-1]
    frames = _FRAME.findall(text)
    if frames:
        line, function = frames[-1]
        summary += f" (line {line}, in {function})"
    return summary


def tool_source(name: str, code: str, entrypoint: str) -> str:
    """The source of a registered tool whose entrypoint has another name than the tool: its
    code plus ``name = entrypoint``, so the tool's name is what the sandbox calls."""
    if name == entrypoint:
        return code
    if not name.isidentifier() or not entrypoint.isidentifier():
        raise ValidationError("tools", f"tool {name!r} (entrypoint {entrypoint!r}) cannot be "
                                       "called by name: both must be Python identifiers")
    return f"{code.rstrip()}\n\n\n{name} = {entrypoint}\n"


def tenant_tools(view: TenantView) -> dict[str, str]:
    """The active code of every registered tool of ``view``'s tenant that a workflow can name
    (tool name -> source for :class:`SandboxToolInvoker`)."""
    return {name: tool_source(name, program.code, program.entrypoint)
            for name, program in view.tools.active_programs().items() if name.isidentifier()}


def load_tools_file(path: str | Path) -> dict[str, str]:
    """Each public top-level function of the Python file at ``path`` as a tool: name -> source.

    Functions whose name starts with ``_`` are helpers, not tools; ``async def`` functions are
    not tools either (the sandbox calls functions). The file is parsed, never imported.
    A missing, unreadable or unparsable file, or one without tools, raises
    :class:`ValidationError` naming ``tools``.
    """
    file = Path(path)
    try:
        code = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValidationError("tools", f"file {str(file)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError("tools", f"cannot read {str(file)!r}: {exc}") from None
    try:
        tree = ast.parse(code, filename=str(file))
    except SyntaxError as exc:
        raise ValidationError("tools", f"{file}:{exc.lineno}: syntax error: {exc.msg}"
                              ) from None
    except (ValueError, RecursionError) as exc:  # null bytes, absurd nesting
        raise ValidationError("tools", f"{file} cannot be parsed: {exc}") from None
    names = [node.name for node in tree.body
             if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")]
    if not names:
        raise ValidationError("tools", f"{file} defines no tool (a public top-level function)")
    return {name: code for name in names}
