"""The ``auto-dev`` command itself: ``--version`` and the help of every sub-command."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from auto_dev.cli import app

ROOT = Path(__file__).resolve().parents[2]


def _command_paths() -> list[list[str]]:
    paths: list[list[str]] = []

    def walk(command: Any, path: list[str]) -> None:
        paths.append(path)
        for name, sub in getattr(command, "commands", {}).items():  # a group
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


class TestVersion:
    """--version prints the installed package version."""

    def test_version(self) -> None:
        """The number comes from the package metadata, and nothing else runs."""
        done = subprocess.run([sys.executable, "-m", "auto_dev.cli", "--version"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"auto-dev {version('auto-dev')}"


class TestHelp:
    """Every command's help reads as written: no raw reST markup, no text lost to rich."""

    @pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "auto-dev")
    def test_help_is_clean(self, path: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
        """No ``double backticks``; no word swallowed by markup (a space left before '.' or
        ','); options whose default comes from a setting say which."""
        monkeypatch.setenv("COLUMNS", "200")
        result = CliRunner().invoke(app, [*path, "--help"])
        assert result.exit_code == 0, result.output
        text = result.output
        assert "``" not in text
        assert not re.search(r"\w \.(\s|$)|\w ,", text), text

    def test_defaults_from_settings_are_shown(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """evolve --budget names its default instead of reading 'spend .'."""
        monkeypatch.setenv("COLUMNS", "200")
        text = CliRunner().invoke(app, ["evolve", "--help"]).output
        assert "AUTO_DEV_EVOLUTION_BUDGET, else 200" in text
        assert "AUTO_DEV_SANDBOX, else auto" in text
