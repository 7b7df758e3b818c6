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


class TestSeedOutcome:
    """The original program's own result comes first: why it fails, not only that it does."""

    @pytest.mark.parametrize(("prelude", "status", "says"), [
        ("import no_such_module_here\n", "error", "ModuleNotFoundError"),
        ("import sys\nsys.exit(3)\n", "error", "SystemExit: 3"),
        ("while True:\n    pass\n", "timeout", "no answer within"),
        ("print('x' * 10_000_000)\n", "output_exceeded", "output exceeded"),
    ])
    def test_program_that_fails_at_import(self, files: tuple[Path, Path], prelude: str,
                                          status: str, says: str) -> None:
        """Import errors, sys.exit at import, hangs and floods are named in the JSON `seed`
        and in the human output."""
        program, tests = files
        program.write_text(prelude + BUGGY)
        args = (str(program), "-e", "add", "-t", str(tests), "--budget", "2", "--timeout", "0.5")
        code, out, _ = _invoke(*args, "--json")
        assert code == 0
        data = json.loads(out.strip().splitlines()[-1])
        seed = data["seed"]
        assert seed["passed"] == 0 and seed["total"] == 3 and seed["statuses"] == {status: 3}
        first = seed["first_failure"]
        assert first["case"] == 0 and first["status"] == status and says in first["summary"]
        assert data["rng_seed"] == 0
        code, out, _ = _invoke(*args)
        assert code == 0 and "the original program: 0/3 cases pass" in out and says in out
        assert out.index("the original program") < out.index("auto-dev evolve")

    def test_wrong_answer_shows_what_came_back(self, files: tuple[Path, Path]) -> None:
        """A wrong answer reports the returned and the expected value."""
        program, tests = files
        code, out, _ = _invoke(str(program), "-e", "add", "-t", str(tests), "--budget", "20",
                               "--json")
        seed = json.loads(out.strip().splitlines()[-1])["seed"]
        assert code == 0 and seed["passed"] == 1
        assert seed["statuses"] == {"ok": 1, "wrong_answer": 2}
        assert seed["first_failure"]["summary"] == "returned -1, expected 3"


class TestSandboxFlag:
    """The reason for the sandbox names where the choice came from."""

    def test_flag_is_named_not_the_variable(self, files: tuple[Path, Path],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
        """--sandbox process says so; without the flag the variable is named."""
        program, tests = files
        monkeypatch.delenv("AUTO_DEV_SANDBOX", raising=False)
        args = (str(program), "-e", "add", "-t", str(tests), "--budget", "5", "--json")
        code, out, _ = _invoke(*args, "--sandbox", "process")
        data = json.loads(out.strip().splitlines()[-1])
        assert code == 0 and data["sandbox_reason"].startswith("--sandbox process")
        assert "AUTO_DEV_SANDBOX" not in data["sandbox_reason"]
        monkeypatch.setenv("AUTO_DEV_SANDBOX", "process")
        code, out, _ = _invoke(*args)
        assert "AUTO_DEV_SANDBOX=process" in json.loads(out.strip().splitlines()[-1])[
            "sandbox_reason"]
