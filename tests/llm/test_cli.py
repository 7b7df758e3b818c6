"""``auto-dev llm status`` and ``auto-dev llm spend`` over a real ledger."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog
from typer.testing import CliRunner

from auto_dev.cli.llm import app
from auto_dev.db import Database
from auto_dev.llm.client import LLMClient
from auto_dev.testing import OpenAICompatibleServer, ServerReply
from tests.llm.conftest import USER, llm_settings, two_group_settings

runner = CliRunner()


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[None]:
    for name in ("AUTO_DEV_LLM_MODEL", "AUTO_DEV_LLM_API_BASE", "AUTO_DEV_LLM_API_KEY",
                 "AUTO_DEV_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AUTO_DEV_DATABASE_URL", database_url)
    # The commands configure logging onto CliRunner's stderr, which is closed afterwards:
    # restore the suite's logging so later tests do not log into a closed file.
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def write_config(tmp_path: object, monkeypatch: pytest.MonkeyPatch, server_url: str) -> None:
    """A TOML config with a primary group falling back to a backup group."""
    from pathlib import Path

    path = Path(str(tmp_path)) / "auto-dev.toml"
    path.write_text(f"""
[llm]
model = "primary"
circuit_failure_threshold = 2
fallbacks = [{{primary = ["backup"]}}]
[[llm.model_list]]
model_name = "primary"
litellm_params = {{model = "openai/primary-model", api_base = "{server_url}", api_key = "k"}}
[[llm.model_list]]
model_name = "backup"
litellm_params = {{model = "openai/backup-model", api_base = "{server_url}", api_key = "k"}}
""")
    monkeypatch.setenv("AUTO_DEV_CONFIG", str(path))


class TestStatus:
    """Deployments with circuit states, or offline mode."""

    def test_offline(self) -> None:
        """No model: the command says offline mode and exits 0."""
        result = runner.invoke(app, ["status"])
        assert result.exit_code == 0, result.output
        assert "offline mode" in result.output
        result = runner.invoke(app, ["status", "--json"])
        assert json.loads(result.output) == {"configured": False, "deployments": []}

    async def test_circuit_states_from_ledger(
        self, server: OpenAICompatibleServer, database: Database, tmp_path: object,
        monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """After two failures the primary shows open, the backup closed, with fallbacks."""
        write_config(tmp_path, monkeypatch, server.base_url)
        settings = two_group_settings(server, num_retries=0, circuit_failure_threshold=2)
        client = LLMClient(settings, database, tenant_id="t1")
        server.script(ServerReply.server_error(), ServerReply.server_error(),
                      model="primary-model")
        for _ in range(2):
            assert (await client.complete(USER)).deployment == "backup"
        await client.aclose()
        result = runner.invoke(app, ["status", "--json"])
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        states = {d["id"]: d["circuit"] for d in data["deployments"]}
        assert states == {"primary": "open", "backup": "closed"}
        primary = next(d for d in data["deployments"] if d["id"] == "primary")
        assert primary["fallbacks"] == ["backup"] and primary["default"]
        assert primary["consecutive_failures"] == 2 and "api_key" not in primary
        table = runner.invoke(app, ["status"], env={"COLUMNS": "200"})
        assert table.exit_code == 0
        assert "open" in table.output and "closed" in table.output
        assert "openai/backup-model" in table.output

    async def test_last_error_names_its_kind(
        self, database: Database, tmp_path: object, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A refused key shows as the deployment's last error, kind authentication, until a
        call succeeds again."""
        with OpenAICompatibleServer(api_key="sk-b") as server:  # the backup's key only
            write_config(tmp_path, monkeypatch, server.base_url)
            refused = LLMClient(two_group_settings(server, num_retries=0), database,
                                tenant_id="t1")
            assert (await refused.complete(USER)).deployment == "backup"
            await refused.aclose()
            data = json.loads(runner.invoke(app, ["status", "--json"]).output)
            last = {d["id"]: d["last_error"] for d in data["deployments"]}
            assert last["backup"] is None
            assert last["primary"] == {"kind": "authentication",
                                       "message": "AuthenticationError: Incorrect API key "
                                                  "provided"}
            table = runner.invoke(app, ["status"], env={"COLUMNS": "250"})
            assert "authentication: AuthenticationError: Incorrect API key" in table.output
            server.api_key = None
            answered = LLMClient(two_group_settings(server, num_retries=0), database,
                                 tenant_id="t1")
            await answered.complete(USER)
            await answered.aclose()
        data = json.loads(runner.invoke(app, ["status", "--json"]).output)
        assert all(d["last_error"] is None for d in data["deployments"])

    def test_bad_config_names_the_setting(
        self, tmp_path: object, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A fallback naming an unknown group fails with the setting's path."""
        from pathlib import Path

        path = Path(str(tmp_path)) / "bad.toml"
        path.write_text('[llm]\nmodel = "openai/x"\nfallbacks = [{"openai/x" = ["nope"]}]\n')
        monkeypatch.setenv("AUTO_DEV_CONFIG", str(path))
        result = runner.invoke(app, ["status"])
        assert result.exit_code == 1
        assert "llm.fallbacks[0]" in result.output


class TestSpend:
    """Today's spend by tenant, model and engine, matching the ledger."""

    async def test_spend_figures(
        self, server: OpenAICompatibleServer, database: Database, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Totals per (tenant, model, engine) equal usage x price of the calls made."""
        monkeypatch.setenv("AUTO_DEV_LLM__TENANT_BUDGETS_USD", '{"t2": 1.0}')
        settings = llm_settings(server, tenant_budgets_usd={"t2": 1.0})
        a = LLMClient(settings, database, tenant_id="t1")
        b = LLMClient(settings, database, tenant_id="t2")
        server.set_default(ServerReply(content="ok", prompt_tokens=1000, completion_tokens=500))
        for _ in range(3):
            await a.complete(USER, engine="alpha_evolver")
        await a.complete(USER, engine="memento")
        await b.complete(USER, engine="memento")
        await a.aclose()
        await b.aclose()
        one = 1000 * 1e-6 + 500 * 2e-6
        result = runner.invoke(app, ["spend", "--json"])
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        rows = {(r["tenant_id"], r["engine"]): r for r in data["rows"]}
        assert rows[("t1", "alpha_evolver")]["calls"] == 3
        assert rows[("t1", "alpha_evolver")]["cost_usd"] == pytest.approx(3 * one)
        assert rows[("t1", "alpha_evolver")]["prompt_tokens"] == 3000
        assert rows[("t1", "memento")]["cost_usd"] == pytest.approx(one)
        assert rows[("t2", "memento")]["model"] == "openai/primary"
        assert data["tenants"]["t1"] == {"cost_usd": pytest.approx(4 * one), "budget_usd": None}
        assert data["tenants"]["t2"]["budget_usd"] == 1.0
        only = json.loads(runner.invoke(app, ["spend", "--json", "--tenant", "t2"]).output)
        assert [r["tenant_id"] for r in only["rows"]] == ["t2"]
        table = runner.invoke(app, ["spend"], env={"COLUMNS": "200"})
        assert table.exit_code == 0
        assert f"{3 * one:.6f}" in table.output and "alpha_evolver" in table.output
        assert "of $1.00 budget" in table.output

    def test_other_day_and_bad_date(self) -> None:
        """A day without calls is empty; a malformed date exits 2 naming the option."""
        result = runner.invoke(app, ["spend", "--date", "2001-01-01"])
        assert result.exit_code == 0 and "no model calls" in result.output
        result = runner.invoke(app, ["spend", "--date", "yesterday"])
        assert result.exit_code == 2 and "--date" in result.output

    def test_no_database(self, monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
        """Without a migrated database spend says to run init, and creates no file."""
        from pathlib import Path

        missing = Path(str(tmp_path)) / "none" / "x.db"
        monkeypatch.setenv("AUTO_DEV_DATABASE_URL", f"sqlite:///{missing}")
        result = runner.invoke(app, ["spend"])
        assert result.exit_code == 1 and "auto-dev init" in result.output
        assert not missing.exists()
