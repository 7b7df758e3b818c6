"""`auto-dev workflows evolve`: a workflow repaired against a JSON task file (process sandbox)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from auto_dev.cli import app

ROOT = Path(__file__).resolve().parents[2]

TOOLS = '''
def get_order(order_id):
    return {"id": order_id, "status": {"A1": "shipped", "A2": "processing"}[order_id]}


def get_order_v1(order_id):
    return {"ref": order_id, "state": "unknown"}


def summarize(order):
    return f"{order.get('id', '?')}: {order.get('status', 'unknown')}"
'''

WORKFLOW = {"name": "summary", "input": {"required": ["order_id"]},
            "steps": [{"id": "order", "tool": "get_order_v1",
                       "args": {"order_id": "${input.order_id}"}},
                      {"id": "line", "tool": "summarize", "args": {"order": "${steps.order}"}}],
            "output": "steps.line"}

TASKS = [{"input": {"order_id": "A1"}, "expected": "A1: shipped"},
         {"input": {"order_id": "A2"}, "expected": "A2: processing"}]


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.setenv("AUTO_DEV_SANDBOX", "process")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("AUTO_DEV_CONFIG", raising=False)
    monkeypatch.delenv("AUTO_DEV_LLM_MODEL", raising=False)
    paths = {"workflow": tmp_path / "wf.json", "tasks": tmp_path / "tasks.json",
             "tools": tmp_path / "tools.py"}
    paths["workflow"].write_text(json.dumps(WORKFLOW))
    paths["tasks"].write_text(json.dumps(TASKS))
    paths["tools"].write_text(TOOLS)
    return paths


def _invoke(files: dict[str, Path], *extra: str) -> tuple[int, str, str]:
    args = ["workflows", "evolve", str(files["workflow"]), "--tasks", str(files["tasks"]),
            "--tools", str(files["tools"]), *extra]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _last_json(out: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return data


class TestEvolveRuns:
    """Completed runs exit 0, with tables or one JSON object last."""

    def test_json_repair(self, files: dict[str, Path], tmp_path: Path) -> None:
        """The retired tool is switched; the last stdout line holds the summary."""
        best = tmp_path / "best.json"
        code, out, _ = _invoke(files, "--budget", "40", "--seed", "1", "--json", "-o",
                               str(best))
        assert code == 0
        data = _last_json(out)
        for key in ("best_workflow", "pass_rate", "passed", "total", "evaluations",
                    "improved", "seconds", "cost_usd"):
            assert key in data
        assert data["passed"] == data["total"] == 2 and data["pass_rate"] == 1.0
        assert data["improved"] is True and data["original_passed"] == 0
        assert data["best_workflow"]["steps"][0]["tool"] == "get_order"
        assert 0 < data["evaluations"] <= 40 and data["cost_usd"] == 0.0
        assert any("get_order" in line for line in data["diff"])
        assert data["sandbox"] == "process" and data["stop_reason"] == "solved"
        assert json.loads(best.read_text()) == data["best_workflow"]

    def test_tables_and_changes(self, files: dict[str, Path]) -> None:
        """Without --json: the verdict, the tasks before and after, and the structural diff."""
        code, out, _ = _invoke(files, "--budget", "40")
        assert code == 0
        assert "repaired: every task passes" in out and "0/2 -> 2/2" in out
        assert "changed step order" in out and "why it failed" in out

    def test_no_budget_still_completes(self, files: dict[str, Path]) -> None:
        """Budget 0 evaluates the original only and exits 0, not improved."""
        code, out, _ = _invoke(files, "--budget", "0", "--json")
        data = _last_json(out)
        assert code == 0 and data["evaluations"] == 0 and data["improved"] is False
        assert data["best_workflow"] == WORKFLOW and data["stop_reason"] == "budget"
        assert [t["passed"] for t in data["tasks"]] == [False, False]
        assert data["tasks"][0]["output"] == "?: unknown"

    def test_as_a_subprocess(self, files: dict[str, Path]) -> None:
        """``python -m auto_dev.cli workflows evolve --json`` prints the JSON object last."""
        env = {**os.environ, "PYTHONPATH": str(ROOT), "AUTO_DEV_SANDBOX": "process"}
        proc = subprocess.run(
            [sys.executable, "-m", "auto_dev.cli", "workflows", "evolve",
             str(files["workflow"]), "--tasks", str(files["tasks"]), "--tools",
             str(files["tools"]), "--budget", "40", "--json"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        assert _last_json(proc.stdout)["passed"] == 2


class TestBadInput:
    """Bad files exit 2 with an error naming the field, before anything runs."""

    @pytest.mark.parametrize(("target", "content", "field"), [
        ("workflow", None, "workflow"),
        ("workflow", "{not json", "workflow"),
        ("workflow", json.dumps({**WORKFLOW, "steps": [{**WORKFLOW["steps"][0],
                                                        "tool": "nope"}]}),
         "workflow.steps[0].tool"),
        ("tasks", json.dumps([TASKS[0], {"input": [1]}]), "tasks[1].input"),
        ("tasks", json.dumps([{"input": {}}]), "tasks[0].input.order_id"),
        ("tasks", "[]", "tasks"),
        ("tools", None, "tools"),
        ("tools", "def broken(:\n", "tools"),
    ])
    def test_field_named(self, files: dict[str, Path], target: str, content: str | None,
                         field: str) -> None:
        """Each broken file gives exit 2 and names the field (also in the --json line)."""
        if content is None:
            files[target].unlink()
        else:
            files[target].write_text(content)
        code, out, err = _invoke(files, "--json")
        assert code == 2
        data = _last_json(out)
        assert data["exit_code"] == 2
        assert data["field"] == field, data
        assert "error:" in err


class TestTenantTools:
    """Without --tools, the tenant's registered tools (their active code) are evolved with."""

    @pytest.fixture
    def tenant_db(self, files: dict[str, Path], tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
        import asyncio

        from auto_dev.config import load_settings
        from auto_dev.service import AutoDev

        monkeypatch.setenv("AUTO_DEV_DATABASE_URL", f"sqlite:///{tmp_path / 'evolve.db'}")
        monkeypatch.setenv("AUTO_DEV_TENANT", "t1")

        async def register() -> None:
            autodev = AutoDev(load_settings())
            try:
                for name in ("get_order", "get_order_v1", "summarize"):
                    autodev.register_tool(name, TOOLS, name)
            finally:
                await autodev.aclose()

        asyncio.run(register())
        return files

    def test_registered_tools_are_used(self, tenant_db: dict[str, Path]) -> None:
        """The tenant's tools run in the sandbox and the retired one is switched."""
        args = ["workflows", "evolve", str(tenant_db["workflow"]), "--tasks",
                str(tenant_db["tasks"]), "--budget", "40", "--json"]
        result = CliRunner().invoke(app, args, catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
        data = _last_json(result.stdout)
        assert data["passed"] == 2 and data["best_workflow"]["steps"][0]["tool"] == "get_order"

    def test_no_database_is_never_created(self, files: dict[str, Path], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
        """Without --tools and without a database: exit 1 naming it, nothing created."""
        missing = tmp_path / "none.db"
        monkeypatch.setenv("AUTO_DEV_DATABASE_URL", f"sqlite:///{missing}")
        args = ["workflows", "evolve", str(files["workflow"]), "--tasks", str(files["tasks"])]
        result = CliRunner().invoke(app, args, catch_exceptions=False)
        assert result.exit_code == 1 and "none.db" in result.stderr
        assert not missing.exists()

    def test_unknown_tool_of_the_tenant(self, tenant_db: dict[str, Path]) -> None:
        """A tool the tenant does not have is a bad workflow: exit 2, the step named."""
        tenant_db["workflow"].write_text(json.dumps(
            {**WORKFLOW, "steps": [WORKFLOW["steps"][0], {**WORKFLOW["steps"][1],
                                                          "tool": "shout"}]}))
        args = ["workflows", "evolve", str(tenant_db["workflow"]), "--tasks",
                str(tenant_db["tasks"]), "--json"]
        result = CliRunner().invoke(app, args, catch_exceptions=False)
        assert result.exit_code == 2
        assert _last_json(result.stdout)["field"] == "workflow.steps[1].tool"
