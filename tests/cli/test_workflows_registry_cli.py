"""``auto-dev workflows register|list|show|versions|rollback|signals`` through typer's
CliRunner, and one real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auto_dev.cli import app
from auto_dev.config import load_settings
from auto_dev.service import AutoDev
from tests.workflows._registry_fixtures import fixed_support, register_tools, support

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """wf.json (v1) and wf2.json (v2) of the support workflow; a database with its tools."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("AUTO_DEV_DATABASE_URL", url)
    monkeypatch.setenv("AUTO_DEV_TENANT", "t1")
    monkeypatch.setenv("AUTO_DEV_ACTOR", "alice")
    monkeypatch.setenv("COLUMNS", "200")
    for name in ("AUTO_DEV_CONFIG", "AUTO_DEV_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)
    instance = AutoDev(load_settings(database_url=url, tenant="t1"), load_plugins=False,
                       builtin_engines=False)
    register_tools(instance)
    instance.database.dispose()
    (tmp_path / "wf.json").write_text(json.dumps(support()))
    (tmp_path / "wf2.json").write_text(json.dumps(fixed_support()))
    return tmp_path


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["workflows", *args])
    return result.exit_code, result.stdout, result.stderr


class TestWorkflowsRegistryCli:
    """Register, list, show, versions, rollback and signals from the command line."""

    def test_register_versions_rollback(self, files: Path) -> None:
        """v1, unchanged, v2; versions lists both; rollback to v1 names who did it."""
        assert _cli("register", str(files / "wf.json"))[:2] == (
            0, "refund_request: v1 (active), registered\n")
        assert "v1 (active), unchanged" in _cli("register", str(files / "wf.json"))[1]
        assert "v2 (active), registered" in _cli("register", str(files / "wf2.json"))[1]
        code, out, _ = _cli("versions", "refund_request")
        assert code == 0 and "v1" in out and "v2" in out and out.count("yes") == 1
        code, out, _ = _cli("rollback", "refund_request", "1", "--reason", "refunds broke")
        assert code == 0 and "v2 -> v1 (active) by alice" in out
        code, out, _ = _cli("show", "refund_request")
        assert code == 0 and "definition of v1" in out and "steps.order.state" in out
        code, out, _ = _cli("list")
        assert code == 0 and "refund_request" in out and "v1" in out

    def test_signals(self, files: Path) -> None:
        """The summary per kind of a version's signals."""
        _cli("register", str(files / "wf.json"))
        code, out, _ = _cli("signals", "refund_request")
        assert code == 0 and "no signals for refund_request v1" in out

    def test_errors_name_the_field(self, files: Path) -> None:
        """A bad document exits 2 naming the field; a missing workflow exits 1; rolling back
        to the active version exits 2; --reason is required."""
        doc = support()
        doc["steps"][0]["tool"] = "nope"
        (files / "bad.json").write_text(json.dumps(doc))
        code, _, err = _cli("register", str(files / "bad.json"))
        assert code == 2 and "workflow.steps[0].tool" in err
        code, _, err = _cli("register", str(files / "missing.json"))
        assert code == 2 and "workflow" in err
        code, _, err = _cli("versions", "nope")
        assert code == 1 and "does not exist" in err
        _cli("register", str(files / "wf.json"))
        code, _, err = _cli("rollback", "refund_request", "1", "--reason", "x")
        assert code == 2 and "already active" in err
        assert _cli("rollback", "refund_request", "1")[0] == 2

    def test_real_subprocess(self, files: Path) -> None:
        """`python -m auto_dev.cli workflows register` from this worktree's code."""
        proc = subprocess.run(
            [sys.executable, "-m", "auto_dev.cli", "workflows", "register",
             str(files / "wf.json")],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.returncode == 0, proc.stderr
        assert "refund_request: v1 (active), registered" in proc.stdout
