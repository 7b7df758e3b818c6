"""Risk flags of a candidate, read from its syntax tree (never by running it).

A reviewer's first question about generated code is what it can reach that the active version
could not. :func:`assess_code` parses the candidate and the version it would replace with
:mod:`ast` and reports, per category:

- ``import``: modules the candidate imports that the active version does not;
- ``tool``: the tenant's tools the candidate calls (by name or entrypoint) that it did not;
- ``network``: sockets, HTTP clients and other network modules;
- ``file``: ``open``, ``os``/``shutil`` file operations, ``pathlib`` writes, temporary files;
- ``exec``: subprocesses, ``os.system``/``exec*``/``spawn*``, ``eval``/``exec``/``compile``,
  ``__import__``/``importlib``, ``ctypes``.

Names are resolved through import aliases (``import subprocess as sp; sp.run`` is
``subprocess.run``; ``from os import system`` makes ``system`` ``os.system``). A reference is
flagged whether it is called or not (``f = os.system`` is as risky as calling it). Every flag
says whether the active version already had it: only new flags count towards the score that
orders the review queue. Code that does not parse is itself the highest risk.

:func:`assess_workflow` does the same for workflow definitions: tools a variant's steps call that
its parent's did not.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

#: Weight of one new flag of each category in :attr:`RiskReport.score`.
WEIGHTS = {"exec": 8, "network": 6, "file": 4, "tool": 2, "import": 1, "syntax": 10}

NETWORK_MODULES = frozenset({
    "socket", "ssl", "urllib", "urllib2", "urllib3", "requests", "httpx", "http", "aiohttp",
    "ftplib", "smtplib", "poplib", "imaplib", "telnetlib", "xmlrpc", "websocket", "websockets",
    "paramiko", "asyncssh", "socketserver", "grpc", "pycurl",
})
EXEC_MODULES = frozenset({"subprocess", "pty", "multiprocessing", "ctypes", "cffi", "importlib",
                          "runpy", "code", "codeop"})
FILE_MODULES = frozenset({"shutil", "tempfile", "glob", "fileinput"})
EXEC_BUILTINS = frozenset({"eval", "exec", "compile", "__import__", "breakpoint"})
FILE_BUILTINS = frozenset({"open"})
_OS_EXEC = frozenset({"system", "popen", "fork", "forkpty", "kill", "killpg", "posix_spawn",
                      "posix_spawnp", "startfile"})
_OS_FILE = frozenset({"remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace",
                      "mkdir", "makedirs", "open", "chmod", "chown", "link", "symlink",
                      "truncate", "write", "listdir", "scandir", "walk", "utime", "mkfifo"})
#: Method names that only a path (or file) object has: flagged whatever the receiver.
_PATH_WRITES = frozenset({"write_text", "write_bytes", "unlink", "rmdir", "touch", "mkdir",
                          "symlink_to", "hardlink_to", "rename", "replace", "chmod"})
#: ... of which these are common string/dict methods too: flagged only when pathlib is used.
_AMBIGUOUS_PATH_WRITES = frozenset({"rename", "replace", "chmod"})


@dataclass(frozen=True, slots=True)
class RiskFlag:
    """One thing the code reaches: ``what`` (e.g. ``subprocess.run``) in ``category``, first at
    ``line``; ``new`` when the version it would replace does not have it."""

    category: str
    what: str
    line: int | None
    new: bool

    @property
    def key(self) -> tuple[str, str]:
        return self.category, self.what


@dataclass(frozen=True, slots=True)
class RiskReport:
    """The flags of one candidate, new ones first; ``score`` weighs the new ones."""

    flags: tuple[RiskFlag, ...]
    error: str | None = None  # the candidate does not parse

    @property
    def new_flags(self) -> tuple[RiskFlag, ...]:
        return tuple(f for f in self.flags if f.new)

    @property
    def score(self) -> int:
        return sum(WEIGHTS.get(f.category, 1) for f in self.new_flags)

    @property
    def level(self) -> str:
        """``none``, ``low`` (new imports or tools), ``medium`` (new file access) or ``high``
        (new network access, process or dynamic execution, unparsable code)."""
        categories = {f.category for f in self.new_flags}
        if categories & {"exec", "network", "syntax"}:
            return "high"
        if "file" in categories:
            return "medium"
        return "low" if categories else "none"

    def categories(self) -> list[str]:
        return sorted({f.category for f in self.new_flags})


def assess_code(code: str, base_code: str | None = None, *,
                tool_names: Iterable[str] = ()) -> RiskReport:
    """Flags of ``code`` against ``base_code`` (``None`` or empty: everything is new).
    ``tool_names`` are the tenant's tools and their entrypoints."""
    tools = frozenset(tool_names)
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError) as exc:
        where = getattr(exc, "lineno", None)
        return RiskReport((RiskFlag("syntax", "does not parse", where, True),),
                          error=f"{type(exc).__name__}: {exc}")
    found = _scan(tree, tools)
    before: set[tuple[str, str]] = set()
    if base_code:
        try:
            before = set(_scan(ast.parse(base_code), tools))
        except (SyntaxError, ValueError):
            before = set()
    flags = [RiskFlag(cat, what, line, (cat, what) not in before)
             for (cat, what), line in found.items()]
    flags.sort(key=lambda f: (not f.new, -WEIGHTS.get(f.category, 1), f.line or 0, f.what))
    return RiskReport(tuple(flags))


def assess_workflow(definition: Any, base_definition: Any = None) -> RiskReport:
    """Tools called by a workflow definition's ``tool`` steps, new ones against the parent's."""
    found = dict.fromkeys(_workflow_tools(definition))
    before = set(_workflow_tools(base_definition)) if base_definition is not None else set()
    flags = [RiskFlag("tool", name, None, name not in before) for name in found]
    flags.sort(key=lambda f: (not f.new, f.what))
    return RiskReport(tuple(flags))


# -- the scan -------------------------------------------------------------------------------------


def _scan(tree: ast.AST, tools: frozenset[str]) -> dict[tuple[str, str], int | None]:
    """(category, what) -> first line, for everything risky the tree references."""
    aliases = _aliases(tree)
    uses_pathlib = any(q.split(".")[0] == "pathlib" for q in aliases.values())
    found: dict[tuple[str, str], int | None] = {}

    def add(category: str, what: str, node: ast.AST) -> None:
        line = getattr(node, "lineno", None)
        previous = found.get((category, what))
        if (category, what) not in found or (line is not None and previous is not None
                                             and line < previous):
            found[(category, what)] = line

    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for module in _imported_modules(node):
                add("import", module, node)
                category = _module_category(module)
                if category:
                    add(category, module, node)
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:  # from os import system
                    category = _name_category(f"{node.module}.{alias.name}")
                    if category:
                        add(category, f"{node.module}.{alias.name}", node)
        elif isinstance(node, ast.Name | ast.Attribute):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                method = node.attr
                path_write = method in _PATH_WRITES and (method not in _AMBIGUOUS_PATH_WRITES
                                                         or uses_pathlib)
                if path_write and _qualified(node, aliases) is None:  # x.write_text, x unknown
                    add("file", f"<path>.{method}()", node)
            if isinstance(node, ast.Name) and node.id in tools and node.id not in aliases:
                add("tool", node.id, node)
            qualified = _qualified(node, aliases)
            category = _name_category(qualified) if qualified is not None else None
            if qualified is not None and category:
                add(category, qualified, node)
        elif isinstance(node, ast.Call) and _is_dynamic_lookup(node):
            add("exec", "getattr on a module or builtins", node)
    # A local function named like a tool is a definition, not a call of the tool.
    defined = {n.name for n in ast.walk(tree)
               if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
    return {k: v for k, v in found.items() if not (k[0] == "tool" and k[1] in defined)}


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> qualified name, for every import in the tree."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    out[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    out[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if alias.name != "*":
                    out[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return out


def _imported_modules(node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
    elif node.level:  # a relative import: nothing outside the tool's own file exists
        yield "." * node.level + (node.module or "")
    elif node.module:
        yield node.module


def _qualified(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """The dotted name ``node`` refers to, through aliases; builtins by their own name;
    ``None`` for anything else (locals, calls, subscripts)."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    if node.id in aliases:
        base = aliases[node.id]
    elif node.id in EXEC_BUILTINS | FILE_BUILTINS or node.id == "builtins":
        base = node.id
    else:
        return None
    return ".".join([base, *reversed(parts)])


def _module_category(module: str) -> str | None:
    top = module.split(".")[0]
    if top in NETWORK_MODULES or module.startswith("asyncio.streams"):
        return "network"
    if top in EXEC_MODULES:
        return "exec"
    if top in FILE_MODULES:
        return "file"
    return None


def _name_category(qualified: str) -> str | None:
    parts = qualified.split(".")
    top, last = parts[0], parts[-1]
    if qualified in EXEC_BUILTINS or qualified.startswith("builtins."):
        return "exec"
    if qualified in FILE_BUILTINS:
        return "file"
    if top in NETWORK_MODULES:
        return "network"
    if qualified in {"asyncio.open_connection", "asyncio.start_server"}:
        return "network"
    if qualified.startswith("asyncio.create_subprocess"):
        return "exec"
    if top in EXEC_MODULES:
        return "exec"
    if top == "os" and len(parts) >= 2:
        name = parts[1]
        if name in _OS_EXEC or name.startswith(("exec", "spawn")):
            return "exec"
        return "file" if name in _OS_FILE else None
    if top == "io" and last == "open":
        return "file"
    if top in FILE_MODULES:
        return "file"
    if top == "pathlib" and last in _PATH_WRITES:
        return "file"
    return None


def _is_dynamic_lookup(node: ast.Call) -> bool:
    """``getattr(os, "system")``-style lookups: a string attribute of a module or builtins."""
    func = node.func
    if not (isinstance(func, ast.Name) and func.id == "getattr" and len(node.args) >= 2):
        return False
    target = node.args[0]
    return isinstance(target, ast.Name) and target.id in {"os", "builtins", "subprocess",
                                                          "__builtins__", "sys", "socket"}


def _workflow_tools(definition: Any) -> Iterator[str]:
    """Names of the tools the ``tool`` steps of a workflow definition call, in order."""
    stack = [definition]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            tool = node.get("tool")
            if isinstance(tool, str):
                yield tool
            elif isinstance(tool, dict) and isinstance(tool.get("name"), str):
                yield tool["name"]
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            stack.extend(reversed(node))
