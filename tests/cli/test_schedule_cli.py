"""``auto-dev schedule ...`` and ``auto-dev scheduler run --once`` from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from auto_dev.cli import app


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("AUTO_DEV_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("AUTO_DEV_SANDBOX", "process")
    monkeypatch.delenv("AUTO_DEV_CONFIG", raising=False)
    return {"COLUMNS": "200"}


class TestScheduleCommands:
    """Schedules are managed from the CLI and stored in the database."""

    def test_add_list_run_once_remove(self, env: dict[str, str]) -> None:
        """A schedule survives between commands; bad input exits 2 naming the field."""
        runner = CliRunner()
        added = runner.invoke(app, ["schedule", "add", "alpha_evolver", "--every", "600",
                                    "--budget", "20", "--id", "nightly"], env=env)
        assert added.exit_code == 0, added.output
        listed = runner.invoke(app, ["schedule", "list"], env=env)
        assert "nightly" in listed.output and "600" in listed.output
        once = runner.invoke(app, ["scheduler", "run", "--once"], env=env)
        assert once.exit_code == 0, once.output  # no failing tools: nothing to do
        bad = runner.invoke(app, ["schedule", "add", "no_such_engine"], env=env)
        assert bad.exit_code == 2 and "engine" in bad.output
        removed = runner.invoke(app, ["schedule", "remove", "nightly"], env=env)
        assert removed.exit_code == 0
        assert "nightly" not in runner.invoke(app, ["schedule", "list"], env=env).output
        missing = runner.invoke(app, ["schedule", "remove", "nightly"], env=env)
        assert missing.exit_code == 1

    def test_init_and_db_current(self, env: dict[str, str]) -> None:
        """init migrates; db current reports the head revision."""
        runner = CliRunner()
        assert runner.invoke(app, ["init"], env=env).exit_code == 0
        current = runner.invoke(app, ["db", "current"], env=env)
        from auto_dev.db import Database

        assert current.exit_code == 0 and Database.head_revision() in current.output
        engines = runner.invoke(app, ["engines", "list"], env=env)
        assert "alpha_evolver" in engines.output and "memento" in engines.output

    def test_tenant_option_and_interval_default(self, env: dict[str, str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
        """--tenant picks the tenant of schedule add/list/remove and scheduler run; --every
        defaults to AUTO_DEV_SCHEDULER_INTERVAL_S."""
        monkeypatch.setenv("AUTO_DEV_SCHEDULER_INTERVAL_S", "900")
        runner = CliRunner()
        added = runner.invoke(app, ["schedule", "add", "alpha_evolver", "--id", "acme-nightly",
                                    "--tenant", "acme"], env=env)
        assert added.exit_code == 0 and "tenant acme" in added.output, added.output
        mine = runner.invoke(app, ["schedule", "list", "--tenant", "acme"], env=env)
        assert "acme-nightly" in mine.output and "900" in mine.output
        assert "acme-nightly" not in runner.invoke(app, ["schedule", "list"], env=env).output
        once = runner.invoke(app, ["scheduler", "run", "--once", "--tenant", "acme"], env=env)
        assert once.exit_code == 0 and "scheduled cycles" in once.output, once.output
        removed = runner.invoke(app, ["schedule", "remove", "acme-nightly", "--tenant", "acme"],
                                env=env)
        assert removed.exit_code == 0, removed.output
        assert "acme-nightly" not in runner.invoke(
            app, ["schedule", "list", "--tenant", "acme"], env=env).output
