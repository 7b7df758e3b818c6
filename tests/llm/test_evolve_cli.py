"""`auto-dev evolve` with a model configured: LLM failures are in the output, not only in logs.

The model is :class:`~auto_dev.testing.OpenAICompatibleServer` on 127.0.0.1, refusing the key,
not serving the model, or absent (a closed port); litellm's real client talks to it.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from auto_dev.cli.evolve import app
from auto_dev.testing import OpenAICompatibleServer, ServerReply

BUGGY = "def add(a, b):\n    return a - b\n"
TESTS = [{"args": [1, 2], "expected": 3}, {"args": [0, 0], "expected": 0},
         {"args": [2, 5], "expected": 7}]
#: No program passes these: the run spends its whole budget, asking the LLM over and over.
IMPOSSIBLE = [{"args": [1, 2], "expected": "never"}]
PATCH = "<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE\n"
FELL_BACK = "AST repair operators (fell back: the LLM was unusable: "


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Path:
    for name in ("AUTO_DEV_LLM_MODEL", "AUTO_DEV_LLM_API_BASE", "AUTO_DEV_LLM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AUTO_DEV_SANDBOX", "process")
    monkeypatch.setenv("AUTO_DEV_DATABASE_URL", database_url)
    monkeypatch.setenv("COLUMNS", "250")
    (tmp_path / "add.py").write_text(BUGGY)
    (tmp_path / "tests.json").write_text(json.dumps(TESTS))
    (tmp_path / "impossible.json").write_text(json.dumps(IMPOSSIBLE))
    return tmp_path


@pytest.fixture
def model_server() -> Iterator[OpenAICompatibleServer]:
    """Serves model ``primary`` to key ``sk-right`` only, answering the correct patch."""
    with OpenAICompatibleServer(ServerReply(content=PATCH), api_key="sk-right",
                                models={"primary"}) as server:
        yield server


def configure(workdir: Path, monkeypatch: pytest.MonkeyPatch, *, api_base: str,
              api_key: str = "sk-right", model: str = "openai/primary",
              fraction: float = 0.9) -> None:
    """A TOML config: the model, no retry delay, and mostly-LLM steps."""
    config = workdir / "auto-dev.toml"
    config.write_text(f"""
[llm]
model = "{model}"
api_base = "{api_base}"
api_key = "{api_key}"
retry_backoff_s = 0
llm_mutation_fraction = {fraction}
prices = {{"{model}" = {{input_cost_per_token = 1e-6, output_cost_per_token = 2e-6}}}}
""")
    monkeypatch.setenv("AUTO_DEV_CONFIG", str(config))


def evolve(workdir: Path, *extra: str, tests: str = "tests.json") -> tuple[int, str, str]:
    args = [str(workdir / "add.py"), "-e", "add", "-t", str(workdir / tests),
            "--budget", "12", *extra]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def last_json(out: str) -> dict[str, Any]:
    return dict(json.loads(out.strip().splitlines()[-1]))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestUnusableLLMIsReported:
    """A refused key, an unknown model or an unreachable base: listed, and the fallback said."""

    @pytest.mark.parametrize(
        ("setup", "kind", "words"),
        [
            ({"api_key": "sk-wrong"}, "authentication", "Incorrect API key provided"),
            ({"model": "openai/gpt-nope"}, "unknown_model", "`gpt-nope` does not exist"),
            ({"api_base": "closed"}, "unreachable", "cannot reach http://127.0.0.1:"),
        ],
    )
    def test_json_lists_the_errors_and_the_fallback(
        self, workdir: Path, monkeypatch: pytest.MonkeyPatch,
        model_server: OpenAICompatibleServer, setup: dict[str, str], kind: str, words: str,
    ) -> None:
        """`--json`: `llm_errors` names the kind, model, message and count; `llm_health` the
        breaker; the strategy says AST took over, and every evaluation was the AST's."""
        options: dict[str, Any] = {"api_base": model_server.base_url, **setup}
        if options["api_base"] == "closed":
            options["api_base"] = f"http://127.0.0.1:{closed_port()}/v1"
        configure(workdir, monkeypatch, **options)
        code, out, err = evolve(workdir, "--json", tests="impossible.json")
        assert code == 0, err
        data = last_json(out)
        assert data["evaluations"] == 12
        assert all(op.startswith("ast.") for op in data["operator_stats"])
        first = data["llm_errors"][0]
        assert first["kind"] == kind and first["count"] >= 1
        assert first["model"] == options.get("model", "openai/primary")
        assert words in first["message"]
        health = data["llm_health"]
        assert health["usable"] is False and health["calls_answered"] == 0
        [breaker] = health["breakers"]
        assert breaker["state"] in ("closed", "open", "half_open")
        assert breaker["consecutive_failures"] == first["count"]
        assert data["strategy"] == f"{FELL_BACK}{kind} on {first['model']})"
        assert data["planned_strategy"] == "llm (90%) + AST repair operators"
        assert "warning: the LLM was unusable" in " ".join(err.split())

    def test_human_output_has_a_warning_line(
        self, workdir: Path, monkeypatch: pytest.MonkeyPatch,
        model_server: OpenAICompatibleServer,
    ) -> None:
        """Without --json, right after the original program's own outcome, a line warns,
        naming the kind, model and provider message; the mutators row says the run fell back."""
        configure(workdir, monkeypatch, api_base=model_server.base_url, api_key="sk-wrong")
        code, out, _ = evolve(workdir, tests="impossible.json")
        assert code == 0
        lines = [" ".join(line.split()) for line in out.splitlines() if line.strip()]
        [warning] = [line for line in lines if line.startswith("warning: the LLM was unusable")]
        assert lines.index(warning) < lines.index(next(x for x in lines if "llm calls" in x))
        assert warning.startswith("warning: the LLM was unusable (none of ")
        assert "authentication x" in warning and "on openai/primary" in warning
        assert "Incorrect API key provided" in warning
        assert any(FELL_BACK + "authentication on openai/primary)" in line for line in lines)
        assert any(line.startswith("│ llm calls │ 0 answered,") for line in lines)

    def test_llm_only_plan_does_not_claim_a_fallback(
        self, workdir: Path, monkeypatch: pytest.MonkeyPatch,
        model_server: OpenAICompatibleServer,
    ) -> None:
        """With llm_mutation_fraction = 1 and a refused key nothing is tried, and it says so."""
        configure(workdir, monkeypatch, api_base=model_server.base_url, api_key="sk-wrong",
                  fraction=1.0)
        code, out, _ = evolve(workdir, "--json", tests="impossible.json")
        data = last_json(out)
        assert code == 0 and data["evaluations"] == 0 and data["llm_health"]["calls_failed"] > 0
        assert data["strategy"].startswith("none: the LLM was unusable (authentication on ")


class TestWorkingLLM:
    """A model that answers is reported as such: no errors, no warning."""

    def test_no_errors_and_the_planned_strategy(
        self, workdir: Path, monkeypatch: pytest.MonkeyPatch,
        model_server: OpenAICompatibleServer,
    ) -> None:
        """The server's patch repairs the bug; `llm_errors` is empty, nothing is warned."""
        configure(workdir, monkeypatch, api_base=model_server.base_url, fraction=1.0)
        code, out, err = evolve(workdir, "--json")
        assert code == 0, err
        data = last_json(out)
        assert data["passed"] == 3 and data["best_operator"].startswith("llm.")
        assert data["llm_errors"] == [] and data["llm_warning"] is None
        assert data["llm_health"]["usable"] is True
        assert data["llm_health"]["calls_answered"] >= 1
        assert [b["state"] for b in data["llm_health"]["breakers"]] == ["closed"]
        assert data["strategy"] == data["planned_strategy"] == "llm (100%) + AST repair operators"
        assert "warning" not in err
