"""Risk flags from the syntax tree: imports, tools, network, files, processes; new vs active."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auto_dev.candidates.risk import assess_code, assess_workflow

BASE = "import math\n\ndef f(x):\n    return math.floor(x)\n"


def keys(code: str, base: str | None = BASE, **kwargs: object) -> set[tuple[str, str]]:
    return {f.key for f in assess_code(code, base, **kwargs).new_flags}  # type: ignore[arg-type]


class TestCategories:
    """Each dangerous reach is flagged in its category, through aliases and without calls."""

    @pytest.mark.parametrize(("code", "expected"), [
        ("import socket\n", ("network", "socket")),
        ("import urllib.request\n", ("network", "urllib.request")),
        ("from http import client\n", ("network", "http")),
        ("import http.client as hc\nhc.HTTPConnection('x')\n",
         ("network", "http.client.HTTPConnection")),
        ("import requests\nrequests.get('http://x')\n", ("network", "requests.get")),
        ("import httpx\n", ("network", "httpx")),
        ("import asyncio\nasyncio.open_connection('h', 1)\n",
         ("network", "asyncio.open_connection")),
        ("x = open('f').read()\n", ("file", "open")),
        ("import os\nos.remove('f')\n", ("file", "os.remove")),
        ("from os import unlink\n", ("file", "os.unlink")),
        ("import shutil\nshutil.rmtree('/')\n", ("file", "shutil.rmtree")),
        ("from pathlib import Path\nPath('a').write_text('b')\n", ("file", "<path>.write_text()")),
        ("import pathlib\np = pathlib.Path('a')\np.rename('b')\n", ("file", "<path>.rename()")),
        ("import subprocess as sp\nsp.run(['ls'])\n", ("exec", "subprocess.run")),
        ("from os import system\ng = system\n", ("exec", "os.system")),
        ("import os\nos.execvp('sh', [])\n", ("exec", "os.execvp")),
        ("eval('1')\n", ("exec", "eval")),
        ("exec('x = 1')\n", ("exec", "exec")),
        ("m = __import__('os')\n", ("exec", "__import__")),
        ("import importlib\nimportlib.import_module('os')\n",
         ("exec", "importlib.import_module")),
        ("import os\ngetattr(os, 'system')('ls')\n", ("exec", "getattr on a module or builtins")),
    ])
    def test_flagged(self, code: str, expected: tuple[str, str]) -> None:
        assert expected in keys(code)

    def test_harmless_code_has_no_flags_but_its_new_imports(self) -> None:
        code = "import math\nimport json\n\ndef f(x):\n    s = 'a'.replace('a', 'b')\n" \
               "    return json.dumps(math.floor(x)) + s\n"
        assert keys(code) == {("import", "json")}
        assert assess_code(code, BASE).level == "low"

    def test_str_replace_is_not_a_path_write_without_pathlib(self) -> None:
        assert keys("def f(s):\n    return s.replace('a', 'b').rename\n", None) == set()


class TestNewAgainstActive:
    """Only what the active version lacked counts; the rest is shown as already there."""

    def test_flags_of_the_active_version_are_not_new(self) -> None:
        base = "import os\n\ndef f(p):\n    os.remove(p)\n"
        report = assess_code(base + "    return open(p)\n", base)
        assert {f.key for f in report.new_flags} == {("file", "open")}
        assert ("file", "os.remove") in {f.key for f in report.flags if not f.new}
        assert report.level == "medium"

    def test_no_base_makes_everything_new(self) -> None:
        assert assess_code("import socket\n", None).level == "high"
        assert assess_code("import socket\n", "").level == "high"

    def test_score_orders_by_danger(self) -> None:
        calm = assess_code("import json\n", BASE)
        files = assess_code("x = open('f')\n", BASE)
        shell = assess_code("import subprocess\n", BASE)
        assert calm.score < files.score < shell.score
        assert assess_code(BASE, BASE).score == 0 and assess_code(BASE, BASE).level == "none"

    def test_unparsable_code_is_high_risk(self) -> None:
        report = assess_code("def f(:\n", BASE)
        assert report.error is not None and report.level == "high"
        assert report.flags[0].category == "syntax"


class TestTools:
    """Calls of the tenant's other tools are flagged when new; a local definition is not one."""

    def test_new_tool_call(self) -> None:
        code = "def f(x):\n    return slugify(x)\n"
        assert ("tool", "slugify") in keys(code, tool_names={"slugify", "inc"})
        assert ("tool", "inc") not in keys(code, tool_names={"slugify", "inc"})

    def test_a_function_defined_here_is_not_a_tool_call(self) -> None:
        code = "def slugify(x):\n    return x\n\ndef f(x):\n    return slugify(x)\n"
        assert not any(k[0] == "tool" for k in keys(code, tool_names={"slugify"}))

    def test_workflow_tools(self) -> None:
        parent = {"steps": [{"id": "a", "tool": "fetch"}]}
        child = {"steps": [{"id": "a", "tool": "fetch"},
                           {"id": "b", "switch": [{"when": "x", "steps": [
                               {"id": "c", "tool": "delete_all"}]}]}]}
        report = assess_workflow(child, parent)
        assert [f.what for f in report.new_flags] == ["delete_all"]
        assert {f.what for f in report.flags} == {"fetch", "delete_all"}


class TestNeverRuns:
    """Any text is analysed without being executed and without raising."""

    @given(st.text(max_size=200))
    def test_any_text(self, text: str) -> None:
        report = assess_code(text, BASE)
        assert report.score >= 0
        assert (report.error is None) == all(f.category != "syntax" for f in report.flags)

    def test_code_is_not_executed(self, tmp_path: object) -> None:
        import pathlib

        marker = pathlib.Path(str(tmp_path)) / "ran"
        assess_code(f"open({str(marker)!r}, 'w').write('x')\n", None)
        assert not marker.exists()
