"""``auto-dev candidates ...`` and ``auto-dev tools ...`` through typer's CliRunner."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from auto_dev.cli import candidates, tools
from auto_dev.db import Database
from auto_dev.models import ReviewDecision, TestCase, ToolMutation
from tests.gates.conftest import FIXED_CODE, TENANT, World, build_world

OTHER = "def inc(x):\n    return 1 + x\n"


@pytest.fixture
def cli_world(database_url: str, monkeypatch: pytest.MonkeyPatch) -> World:
    """The gates world, with the CLI pointed at the same database and tenant."""
    monkeypatch.setenv("AUTO_DEV_DATABASE_URL", database_url)
    monkeypatch.setenv("AUTO_DEV_TENANT", TENANT)
    monkeypatch.setenv("AUTO_DEV_ACTOR", "cli-user")
    monkeypatch.delenv("AUTO_DEV_CONFIG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps at 80 columns when not on a terminal
    return build_world(Database(database_url))


def _run(app: object, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)  # type: ignore[arg-type]
    return result.exit_code, result.stdout, result.stderr


class TestCandidatesCli:
    """The review flow from the terminal."""

    def test_list_and_show(self, cli_world: World) -> None:
        """list shows what awaits review; show prints diff, objectives, cases and lineage."""
        cid = cli_world.passed_mutation()
        cli_world.mutation(OTHER)  # still pending evaluation: not in the default list
        code, out, _ = _run(candidates.app, "list")
        assert code == 0 and cid[:12] in out and "passed" in out and out.count("inc") == 1
        code, out, _ = _run(candidates.app, "list", "--all")
        assert code == 0 and "pending" in out
        code, out, _ = _run(candidates.app, "show", cid[:8])
        assert code == 0
        for expected in ("-    return x + 2", "+    return x + 1", "inc v1 (active)",
                         "pass_rate", "sandbox results: 2/2", "lineage", "inc v1"):
            assert expected in out, expected

    def test_approve_promote_with_actor(self, cli_world: World) -> None:
        """approve and promote record the actor (default from AUTO_DEV_ACTOR) and reason."""
        cid = cli_world.passed_mutation()
        code, out, _ = _run(candidates.app, "approve", cid[:10], "--reason", "fixes it")
        assert code == 0 and "approved by cli-user" in out
        code, out, _ = _run(candidates.app, "promote", cid, "--actor", "dana",
                            "--reason", "release")
        assert code == 0 and "inc v2 is active (was v1)" in out
        with cli_world.database.session() as s:
            rows = [(d.decision, d.actor, d.reason) for d in s.query(ReviewDecision)
                    .order_by(ReviewDecision.created_at)]
        assert rows == [("approved", "cli-user", "fixes it"), ("promoted", "dana", "release")]

    def test_reject_requires_reason(self, cli_world: World) -> None:
        """reject without --reason is a usage error; with it, the candidate is rejected."""
        cid = cli_world.passed_mutation()
        code, _, err = _run(candidates.app, "reject", cid)
        assert code == 2 and "--reason" in err
        code, out, _ = _run(candidates.app, "reject", cid, "--reason", "wrong")
        assert code == 0 and "rejected by cli-user" in out
        assert cli_world.status(cid) == "rejected"

    def test_errors_are_one_line(self, cli_world: World) -> None:
        """Unknown ids, illegal moves and other tenants give a clear message and exit code."""
        cid = cli_world.passed_mutation()
        code, _, err = _run(candidates.app, "promote", cid)
        assert code == 1 and "approved" in err and "Traceback" not in err
        code, _, err = _run(candidates.app, "show", "ffffffff")
        assert code == 1 and "does not exist" in err
        code, _, err = _run(candidates.app, "show", cid, "--tenant", "beta")
        assert code == 1 and "does not exist in tenant 'beta'" in err
        code, _, err = _run(candidates.app, "list", "--kind", "rocket")
        assert code == 2 and "kind" in err


class TestCandidatesListing:
    """What list says about rows it does not show, and how it formats numbers."""

    def test_limit_says_what_it_left_out(self, cli_world: World) -> None:
        """With more rows than --limit, the output says how many exist and how to see them;
        the pass rate is a percentage, as in show."""
        ids = [cli_world.passed_mutation(f"def inc(x):\n    return x + {n}\n")
               for n in (1, 3, 4)]
        code, out, _ = _run(candidates.app, "list", "--all", "--limit", "2")
        assert code == 0 and "showing the newest 2 of 3; use --limit N to see more" in out
        assert ids[0][:12] not in out and ids[2][:12] in out
        assert "100%" in out
        code, out, _ = _run(candidates.app, "list", "--all")
        assert code == 0 and "3 in all" in out and "showing" not in out
        code, out, _ = _run(candidates.app, "show", ids[2])
        assert code == 0 and "pass_rate (max)" in out and "100%" in out

    def test_ids_are_whole_at_80_columns(self, cli_world: World,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
        """On a narrow terminal the id column keeps its 12 characters (other columns wrap)."""
        monkeypatch.setenv("COLUMNS", "80")
        cid = cli_world.passed_mutation()
        code, out, _ = _run(candidates.app, "list", "--all")
        assert code == 0 and cid[:12] in out and "…" not in out


class TestReadOnlyCommands:
    """Commands that only read never create a database or a directory."""

    @pytest.mark.parametrize("args", [
        ["tools", "list"], ["tools", "show", "inc"], ["candidates", "list"],
        ["candidates", "show", "abcdef"], ["schedule", "list"], ["db", "current"],
        ["llm", "spend"], ["candidates", "approve", "abcdef"],
    ])
    def test_missing_database_is_an_error_and_nothing_is_created(
            self, args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A missing SQLite path exits non-zero naming it; no file or directory appears."""
        from auto_dev.cli import app

        missing = tmp_path / "nested" / "dir" / "auto_dev.db"
        monkeypatch.setenv("AUTO_DEV_DATABASE_URL", f"sqlite:///{missing}")
        monkeypatch.delenv("AUTO_DEV_CONFIG", raising=False)
        result = CliRunner().invoke(app, args)
        assert result.exit_code in (1, 2), result.output
        assert str(missing) in result.stderr.replace("\n", "")
        assert list(tmp_path.iterdir()) == []

    def test_engines_list_needs_no_database(self, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
        """engines list works on a fresh machine and creates nothing; capability names are
        whole at 80 columns."""
        from auto_dev.cli import app

        monkeypatch.setenv("AUTO_DEV_DATABASE_URL", f"sqlite:///{tmp_path}/x/auto_dev.db")
        monkeypatch.setenv("COLUMNS", "80")
        result = CliRunner().invoke(app, ["engines", "list"])
        assert result.exit_code == 0, result.output
        assert "auto_dev.alpha_evolver" in result.stdout
        assert "auto_dev.memento_skills" in result.stdout
        assert list(tmp_path.iterdir()) == []

    def test_outdated_schema_is_named_not_migrated(self, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
        """An existing file without the schema is reported with the command that fixes it,
        and stays empty."""
        from auto_dev.cli import app

        empty = tmp_path / "empty.db"
        Database(f"sqlite:///{empty}").dispose()
        sqlite3.connect(empty).close()
        monkeypatch.setenv("AUTO_DEV_DATABASE_URL", f"sqlite:///{empty}")
        result = CliRunner().invoke(app, ["tools", "list"])
        assert result.exit_code == 1 and "auto-dev db upgrade" in result.stderr
        assert Database(f"sqlite:///{empty}").current_revision() is None


class TestToolsCli:
    """Tools, their versions and rollback from the terminal."""

    def test_list_show_rollback(self, cli_world: World) -> None:
        """After a promotion, tools show v2 active; rollback needs a reason and returns v1."""
        cid = cli_world.passed_mutation()
        cli_world.review.approve(TENANT, cid, "alice", "ok")
        cli_world.review.promote(TENANT, cid, "alice", "ship")
        code, out, _ = _run(tools.app, "list")
        assert code == 0 and "inc" in out and "v2" in out
        code, out, _ = _run(tools.app, "show", "inc")
        assert code == 0 and "mutation" in out and "return x + 1" in out
        code, _, err = _run(tools.app, "rollback", "inc")
        assert code == 2 and "--reason" in err
        code, out, _ = _run(tools.app, "rollback", "inc", "--reason", "regressed")
        assert code == 0 and "v2 -> v1" in out and "rolled back" in out
        assert cli_world.status(cid) == "rolled_back"
        code, _, err = _run(tools.app, "rollback", "inc", "--reason", "again")
        assert code == 2 and "no earlier version" in err
        code, out, _ = _run(tools.app, "rollback", "inc", "--to", "2", "--reason", "redo")
        assert code == 0 and "v1 -> v2" in out
        code, _, err = _run(tools.app, "show", "nope")
        assert code == 1 and "does not exist" in err

    def test_code_flag_and_empty_tenant(self, cli_world: World) -> None:
        """--no-code hides the source; a tenant without tools says so."""
        code, out, _ = _run(tools.app, "show", "inc", "--no-code")
        assert code == 0 and "return x + 2" not in out
        code, out, _ = _run(tools.app, "list", "--tenant", "empty")
        assert code == 0 and "no tools in tenant empty" in out
        assert FIXED_CODE  # the fixed code is what promotion tests install


HALF_FIX = "def inc(x):\n    return 2 if x == 1 else x + 2\n"


def _approved(world: World, code: str) -> str:
    cid = world.passed_mutation(code)
    world.review.approve(TENANT, cid, "alice", "ok")
    return cid


class TestStalePromotionCli:
    """`candidates promote` re-evaluates a candidate made against a replaced version."""

    def test_still_better_is_promoted_with_the_reevaluation(
        self, cli_world: World, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Made against v1 while v2 is live: run in the sandbox, then promoted as v3."""
        monkeypatch.setenv("AUTO_DEV_SANDBOX", "process")
        monkeypatch.setenv("AUTO_DEV_SANDBOX_WORKERS", "1")
        with cli_world.database.session() as s:
            for arg, expected in ((1, 2), (5, 6)):
                s.add(TestCase(tenant_id=TENANT, tool_id=cli_world.tool_id, args=[arg],
                               kwargs={}, expected=expected, has_expected=True, source="user"))
        half, full = _approved(cli_world, HALF_FIX), _approved(cli_world, FIXED_CODE)
        code, out, _ = _run(candidates.app, "promote", half[:10])
        assert code == 0 and "inc v2 is active (was v1)" in out and "re-evaluated" not in out
        code, out, err = _run(candidates.app, "promote", full[:10], "--reason", "better")
        assert code == 0, err
        assert "re-evaluated against v2: better on pass_rate" in out
        assert "inc v3 is active (was v2)" in out

    def test_identical_to_the_live_version_is_refused(self, cli_world: World) -> None:
        """The same program as v2 is refused in one line, and nothing changes."""
        first = _approved(cli_world, FIXED_CODE)
        twin = _approved(cli_world, "def inc(x):\n    return x + 1  # same\n")
        cli_world.review.promote(TENANT, first, "alice", "ship")
        code, _, err = _run(candidates.app, "promote", twin)
        assert code == 1 and "Traceback" not in err
        assert "made against inc v1, active is v2: identical to v2" in err
        assert cli_world.status(twin) == "approved"


class TestPruneCli:
    """`candidates prune` prints what it deletes (or would), in a table."""

    def _old_failed(self, world: World, n: int) -> list[str]:
        ids = []
        for i in range(n):
            cid = world.mutation(f"def inc(x):\n    return x + {i + 3}\n")
            world.evaluate(cid, "failed", passed=0)
            ids.append(cid)
        with world.database.session() as s:
            for row in s.scalars(select(ToolMutation).where(ToolMutation.id.in_(ids))):
                row.updated_at = datetime.now(UTC) - timedelta(days=45)
        return ids

    def test_dry_run_then_prune(self, cli_world: World) -> None:
        """The dry run counts; the real run deletes the same rows; the default is 30 days."""
        ids = self._old_failed(cli_world, 2)
        fresh = cli_world.mutation("def inc(x):\n    return x - 1\n")
        cli_world.evaluate(fresh, "failed", passed=0)
        code, out, _ = _run(candidates.app, "prune", "--dry-run")
        assert code == 0 and "would delete" in out and "30 day(s)" in out
        assert "tool_mutation" in out and "total" in out
        assert all(_exists(cli_world, cid) for cid in ids)
        code, out, _ = _run(candidates.app, "prune")
        assert code == 0 and "deleted" in out
        assert not any(_exists(cli_world, cid) for cid in ids) and _exists(cli_world, fresh)

    def test_retention_setting_and_bad_status(self, cli_world: World,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
        """AUTO_DEV_CANDIDATE_RETENTION_DAYS sets the default; a live status is refused."""
        ids = self._old_failed(cli_world, 1)
        monkeypatch.setenv("AUTO_DEV_CANDIDATE_RETENTION_DAYS", "60")
        code, out, _ = _run(candidates.app, "prune")
        assert code == 0 and "60 day(s)" in out and _exists(cli_world, ids[0])
        code, _, err = _run(candidates.app, "prune", "--status", "failed,approved")
        assert code == 2 and "status" in err and "approved" in err
        code, out, _ = _run(candidates.app, "prune", "--older-than", "40", "--status", "failed")
        assert code == 0 and not _exists(cli_world, ids[0])


def _exists(world: World, cid: str) -> bool:
    with world.database.session() as s:
        return s.get(ToolMutation, cid) is not None
