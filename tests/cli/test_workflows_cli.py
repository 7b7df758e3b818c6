"""``auto-dev workflows validate|run`` through typer's CliRunner and one real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from auto_dev.cli import app
from tests.workflows._support import issue_example

ROOT = Path(__file__).resolve().parents[2]

TOOLS_PY = textwrap.dedent('''
    import random


    def get_order(order_id):
        return {"id": order_id, "status": "shipped" if order_id.startswith("S") else "open"}


    def start_return(order):
        return {"returned": order["id"]}


    def cancel_order(order_id):
        raise ConnectionError("upstream down")
''')

#: The example without its llm steps: runs offline.
OFFLINE = {**issue_example(), "steps": issue_example()["steps"][:2], "output": "steps.route"}


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory with wf.json, offline.json and tools.py; the CLI pointed at a fresh DB."""
    monkeypatch.setenv("AUTO_DEV_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("AUTO_DEV_SANDBOX", "process")
    monkeypatch.setenv("AUTO_DEV_TENANT", "t1")
    monkeypatch.setenv("COLUMNS", "200")
    for name in ("AUTO_DEV_CONFIG", "AUTO_DEV_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "wf.json").write_text(json.dumps(issue_example()))
    (tmp_path / "offline.json").write_text(json.dumps(OFFLINE))
    (tmp_path / "tools.py").write_text(TOOLS_PY)
    return tmp_path


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["workflows", *args])
    return result.exit_code, result.stdout, result.stderr


class TestValidate:
    """validate says valid or names the field, with the right exit code."""

    def test_valid_with_tools_file(self, files: Path) -> None:
        """The issue's example is valid against a tools file defining its tools."""
        code, out, _ = _cli("validate", str(files / "wf.json"), "--tools", str(files / "tools.py"))
        assert code == 0
        assert "valid" in out and "cancel_order, get_order, start_return" in out

    def test_unknown_tool(self, files: Path) -> None:
        """A tool the file does not define is a field-naming error, exit 2."""
        (files / "tools.py").write_text("def get_order(order_id):\n    return {}\n")
        code, _, err = _cli("validate", str(files / "wf.json"), "--tools", str(files / "tools.py"))
        assert code == 2
        assert "workflow.steps[1].switch[0].steps[0].tool" in err and "start_return" in err

    @pytest.mark.parametrize(("content", "field"), [
        ("{not json", "workflow"), ("[1, 2]", "workflow"),
        (json.dumps({**OFFLINE, "steps": []}), "workflow.steps"),
    ])
    def test_bad_document(self, files: Path, content: str, field: str) -> None:
        """A broken file or document names the field."""
        (files / "bad.json").write_text(content)
        code, _, err = _cli("validate", str(files / "bad.json"), "--tools", str(files / "tools.py"))
        assert code == 2 and f"{field}:" in err

    def test_bad_tools_file(self, files: Path) -> None:
        """A tools file that does not parse names tools."""
        (files / "tools.py").write_text("def (:\n")
        code, _, err = _cli("validate", str(files / "wf.json"), "--tools", str(files / "tools.py"))
        assert code == 2 and "tools:" in err and "syntax error" in err


class TestRun:
    """run prints the trace as a tree, or one JSON object with --json."""

    def test_tree_and_output(self, files: Path) -> None:
        """A shipped order runs the return branch; the tree shows each step and the output."""
        code, out, _ = _cli("run", str(files / "offline.json"), "--tools",
                            str(files / "tools.py"), "--input", '{"order_id": "S1"}')
        assert code == 0, out
        for expected in ("refund_request ok", "ok order (tool", "ok route (switch",
                         "ok ret (tool", '{"returned": "S1"}', "output:"):
            assert expected in out, expected

    def test_failed_run_exit_1_with_error(self, files: Path) -> None:
        """A failing tool ends the run: exit 1, the error names the step and the exception."""
        code, out, _ = _cli("run", str(files / "offline.json"), "--tools",
                            str(files / "tools.py"), "--input", '{"order_id": "A1"}')
        assert code == 1
        assert "failed cancel (tool" in out
        assert "error at step cancel" in out and "ConnectionError: upstream down" in out

    def test_json_last_line(self, files: Path) -> None:
        """--json prints the run's to_dict as the last line of stdout."""
        code, out, _ = _cli("run", str(files / "offline.json"), "--tools",
                            str(files / "tools.py"), "--input", '{"order_id": "S2"}',
                            "--json", "--seed", "4")
        assert code == 0
        data = json.loads(out.strip().splitlines()[-1])
        assert data["ok"] is True and data["output"] == {"returned": "S2"}
        assert [t["id"] for t in data["trace"]] == ["order", "route"]

    def test_input_file_and_missing_field(self, files: Path) -> None:
        """--input @FILE reads the input; a missing required field is exit 2 naming it."""
        (files / "in.json").write_text('{"items": []}')
        code, out, err = _cli("run", str(files / "offline.json"), "--tools",
                              str(files / "tools.py"), "--input", f"@{files / 'in.json'}",
                              "--json")
        assert code == 2 and "input.order_id: is required" in err
        assert json.loads(out.strip().splitlines()[-1])["field"] == "input.order_id"

    @pytest.mark.parametrize("text", ["[1]", "{oops", "@/nonexistent/input.json"])
    def test_bad_input_text(self, files: Path, text: str) -> None:
        """--input that is not a JSON object is exit 2 naming input."""
        code, _, err = _cli("run", str(files / "offline.json"), "--tools",
                            str(files / "tools.py"), "--input", text)
        assert code == 2 and "input" in err

    def test_offline_llm_step_fails_clearly(self, files: Path) -> None:
        """Without a model, an llm step fails and says there is no LLM configured."""
        code, out, _ = _cli("run", str(files / "wf.json"), "--tools", str(files / "tools.py"),
                            "--input", '{"order_id": "S1", "items": [{"name": "cup"}]}')
        assert code == 1 and "no LLM is configured" in out


class TestTenantTools:
    """Without --tools, the tenant's registered tools (active code) are used."""

    @staticmethod
    def _register(tools: dict[str, tuple[str, str]]) -> None:
        import asyncio

        from auto_dev.config import load_settings
        from auto_dev.service import AutoDev

        async def register() -> None:
            autodev = AutoDev(load_settings())
            try:
                for name, (code, entrypoint) in tools.items():
                    autodev.register_tool(name, code, entrypoint)
            finally:
                await autodev.aclose()

        asyncio.run(register())

    def test_registered_tools(self, files: Path) -> None:
        """Registered tools validate and run, including one whose entrypoint has another name."""
        self._register({
            "get_order": ("def lookup(order_id):\n    return {'id': order_id, "
                          "'status': 'shipped'}\n", "lookup"),
            "start_return": ("def start_return(order):\n    return 'R-' + order['id']\n",
                             "start_return"),
            "cancel_order": ("def cancel_order(order_id):\n    return 'C'\n", "cancel_order"),
        })
        code, out, _ = _cli("validate", str(files / "offline.json"))
        assert code == 0 and "valid" in out
        code, out, _ = _cli("run", str(files / "offline.json"), "--input",
                            '{"order_id": "Z9"}', "--json")
        assert code == 0, out
        assert json.loads(out.strip().splitlines()[-1])["output"] == "R-Z9"

    def test_unregistered_tool(self, files: Path) -> None:
        """A workflow naming a tool the tenant lacks is refused, exit 2."""
        self._register({"get_order": ("def get_order(order_id):\n    return {}\n",
                                          "get_order")})
        code, _, err = _cli("validate", str(files / "offline.json"))
        assert code == 2 and "unknown tool 'start_return'" in err


    def test_no_database_is_not_created(self, files: Path) -> None:
        """Without --tools and without a database, run and validate exit 1 creating nothing."""
        for command in ("run", "validate"):
            code, _, err = _cli(command, str(files / "offline.json"))
            assert code == 1 and "does not exist" in err
        assert not (files / "cli.db").exists()


class TestSubprocess:
    """The real command line: logs on stderr, the JSON object last on stdout."""

    def test_run_json(self, files: Path) -> None:
        """python -m auto_dev.cli workflows run --json exits 0 with parseable output."""
        env: dict[str, Any] = {
            "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "AUTO_DEV_SANDBOX": "process",
            "AUTO_DEV_DATABASE_URL": f"sqlite:///{files / 'sub.db'}", "HOME": str(files)}
        done = subprocess.run(
            [sys.executable, "-m", "auto_dev.cli", "workflows", "run", str(files / "offline.json"),
             "--tools", str(files / "tools.py"), "--input", '{"order_id": "S7"}', "--json"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        data = json.loads(done.stdout.strip().splitlines()[-1])
        assert data["output"] == {"returned": "S7"} and data["steps_executed"] == 3
