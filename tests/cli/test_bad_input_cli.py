"""Bad input on the command line: one line naming the field, exit code 2, nothing created."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auto_dev.cli import app


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The database file the commands would use (not created yet)."""
    path = tmp_path / "cli.db"
    monkeypatch.setenv("AUTO_DEV_DATABASE_URL", f"sqlite:///{path}")
    monkeypatch.setenv("AUTO_DEV_SANDBOX", "process")
    monkeypatch.setenv("COLUMNS", "200")
    for name in ("AUTO_DEV_CONFIG", "AUTO_DEV_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)
    return path


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


class TestEvolveTestsFile:
    """`evolve -t` with a document json.loads itself cannot survive."""

    @pytest.mark.parametrize(("content", "field", "words"), [
        ("[" * 100_000 + "]" * 100_000, "--tests", "nests too deeply"),
        ('[{"args": [1], "expected": ' + "7" * 5000 + "}]", "tests[0].expected",
         "5000 digits"),
        # tests, tests[0] and args are three of the 64 levels
        ('[{"args": [' + "[" * 70 + "]" * 70 + "], \"expected\": 1}]",
         "tests[0].args" + "[0]" * 62, "deeper than 64 levels"),
        ('[{"args": [NaN], "expected": 1}]', "tests[0].args[0]", "finite number"),
    ], ids=["100k-deep", "5000-digits", "70-deep", "nan"])
    def test_exit_2_naming_the_field(
        self, env: Path, tmp_path: Path, content: str, field: str, words: str
    ) -> None:
        """No traceback: the JSON result names the field, the message says what is wrong."""
        program = tmp_path / "f.py"
        program.write_text("def f(x):\n    return x\n")
        tests = tmp_path / "tests.json"
        tests.write_text(content)
        code, output = _run("evolve", str(program), "-e", "f", "-t", str(tests), "--json")
        assert code == 2, output
        assert "Traceback" not in output
        result = json.loads(output.strip().splitlines()[-1])
        assert result["field"] == field and words in result["error"]


class TestScheduleInterval:
    """`schedule add --every` takes finite intervals within the configured bounds only."""

    @pytest.mark.parametrize("every", ["inf", "1e12", "nan", "-5", "0.5"])
    def test_refused_before_the_database_is_touched(self, env: Path, every: str) -> None:
        """Exit 2 naming --every and the bounds; no database file appears."""
        code, output = _run("schedule", "add", "alpha_evolver", "--every", every)
        assert code == 2, output
        assert "--every" in output and "between 1 and 31,622,400 (366 days)" in output
        assert not env.exists()

    def test_bounds_come_from_the_settings(self, env: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
        """A tighter configured maximum is enforced; an interval inside it is stored."""
        monkeypatch.setenv("AUTO_DEV_SCHEDULER_MAX_INTERVAL_S", "7200")
        code, output = _run("schedule", "add", "alpha_evolver", "--every", "7201")
        assert code == 2 and "7,200" in output
        code, output = _run("schedule", "add", "alpha_evolver", "--every", "7200")
        assert code == 0, output


class TestDbUpgrade:
    """`db upgrade` with a revision that does not exist."""

    def test_unknown_revision_is_one_line(self, env: Path) -> None:
        """Exit 2, one line naming the revision and the known ones, no database file."""
        code, output = _run("db", "upgrade", "bogusrev")
        assert code == 2
        lines = [line for line in output.splitlines() if line.strip()]
        assert len(lines) == 1
        assert re.fullmatch(r"error: revision: unknown revision 'bogusrev' "
                            r"\(known: head, base, (\d{4}, )*0001\)", lines[0]), lines
        assert not env.exists()
