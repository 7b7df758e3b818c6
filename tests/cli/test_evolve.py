"""`auto-dev evolve`: a standalone repair run against a JSON test file (process sandbox)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auto_dev.cli.evolve import app

BUGGY = "def add(a, b):\n    return a - b\n"
TESTS = [{"args": [1, 2], "expected": 3}, {"args": [0, 0], "expected": 0},
         {"args": [2, 5], "kwargs": {}, "expected": 7}]


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setenv("AUTO_DEV_SANDBOX", "process")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("AUTO_DEV_CONFIG", raising=False)
    monkeypatch.delenv("AUTO_DEV_LLM_MODEL", raising=False)
    program = tmp_path / "add.py"
    program.write_text(BUGGY)
    tests = tmp_path / "tests.json"
    tests.write_text(json.dumps(TESTS))
    return program, tests


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


class TestEvolveRuns:
    """Completed runs exit 0, with a table or one JSON object last."""

    def test_json_repair(self, files: tuple[Path, Path], tmp_path: Path) -> None:
        """The buggy `a - b` is repaired; the last stdout line is the JSON summary."""
        program, tests = files
        out_file = tmp_path / "best.py"
        code, out, _ = _invoke(str(program), "--entrypoint", "add", "--tests", str(tests),
                               "--budget", "50", "--seed", "3", "--json", "-o", str(out_file))
        assert code == 0
        data = json.loads(out.strip().splitlines()[-1])
        for key in ("best_code", "pass_rate", "passed", "total", "evaluations", "improved",
                    "seconds"):
            assert key in data
        assert data["passed"] == data["total"] == 3 and data["improved"] is True
        assert "a + b" in data["best_code"] and 0 < data["evaluations"] <= 50
        assert data["sandbox"] == "process" and "offline" in data["strategy"]
        assert out_file.read_text() == data["best_code"]
        # Offline: no model calls; the deadlines' accounting is reported either way.
        assert data["llm_calls"] == data["llm_calls_wasted"] == 0
        for key in ("deadline_cuts", "deadline_saved_s", "deadline_rechecks", "composed"):
            assert data[key] >= 0

    def test_human_output(self, files: tuple[Path, Path]) -> None:
        """Without --json a table with the verdict and the diff is printed."""
        program, tests = files
        code, out, _ = _invoke(str(program), "-e", "add", "-t", str(tests), "--budget", "50")
        assert code == 0
        assert "repaired" in out and "+    return a + b" in out

    def test_no_improvement_still_exits_zero(
        self, files: tuple[Path, Path], tmp_path: Path
    ) -> None:
        """An unrepairable target completes with improved false and exit 0."""
        program, _ = files
        impossible = tmp_path / "impossible.json"
        impossible.write_text(json.dumps([{"args": [1, 1], "expected": "never"}]))
        code, out, _ = _invoke(str(program), "-e", "add", "-t", str(impossible), "--budget", "5",
                               "--json")
        data = json.loads(out.strip().splitlines()[-1])
        assert code == 0 and data["improved"] is False and data["evaluations"] <= 5

    def test_standalone_module(self, files: tuple[Path, Path]) -> None:
        """`python -m auto_dev.cli.evolve` works on its own."""
        program, tests = files
        proc = subprocess.run(
            [sys.executable, "-W", "ignore::RuntimeWarning", "-m", "auto_dev.cli.evolve",
             str(program), "--entrypoint", "add", "--tests", str(tests), "--budget", "30",
             "--json"],
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout.strip().splitlines()[-1])["passed"] == 3


class TestEvolveBadInput:
    """Bad input: a clear message naming the element and field, exit code 2."""

    @pytest.mark.parametrize(
        ("content", "expected"),
        [
            ("{not json", "not valid JSON"),
            ('{"args": []}', "must be a JSON list"),
            ("[]", "is empty"),
            ('[{"args": [1, 2], "expected": 3}, 7]', "tests[1]: must be an object"),
            ('[{"args": [1, 2], "expected": 3}, {"args": "12"}]', "tests[1].args: must be a list"),
            ('[{"args": [1], "kwargs": [1]}]', "tests[0].kwargs"),
            ('[{"args": [1], "expect": 2}]', "tests[0].expect: unknown field"),
        ],
    )
    def test_bad_test_files(
        self, files: tuple[Path, Path], tmp_path: Path, content: str, expected: str
    ) -> None:
        """Each malformed TESTS.json is refused with the element and field named."""
        program, _ = files
        bad = tmp_path / "bad.json"
        bad.write_text(content)
        code, out, err = _invoke(str(program), "-e", "add", "-t", str(bad), "--json")
        assert code == 2
        assert expected in " ".join(err.split())
        assert "error" in json.loads(out.strip().splitlines()[-1])

    def test_missing_files_and_entrypoint(self, files: tuple[Path, Path], tmp_path: Path) -> None:
        """Missing program, missing tests, unknown entrypoint and a syntax error all exit 2."""
        program, tests = files
        assert _invoke(str(tmp_path / "nope.py"), "-e", "add", "-t", str(tests))[0] == 2
        assert _invoke(str(program), "-e", "add", "-t", str(tmp_path / "nope.json"))[0] == 2
        code, _, err = _invoke(str(program), "-e", "sub", "-t", str(tests))
        assert code == 2 and "'sub' is not defined" in err and "add" in err
        broken = tmp_path / "broken.py"
        broken.write_text("def add(a, b)\n    return a\n")
        code, _, err = _invoke(str(broken), "-e", "add", "-t", str(tests))
        assert code == 2 and "line 1" in err
