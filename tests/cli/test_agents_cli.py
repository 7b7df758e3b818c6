"""``auto-dev agents list|show|set-maturity`` through typer's CliRunner."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from auto_dev.cli import agents, candidates
from auto_dev.config import load_settings
from auto_dev.db import Database
from auto_dev.gates import Maturity, wilson_lower_bound
from auto_dev.gates.usage import REVIEW_HANDLER
from auto_dev.models import AuditEntry, CapabilityState, EventDelivery, EventRecord, utcnow
from auto_dev.service import AutoDev
from tests.gates.conftest import AGENT, TENANT, World, build_world

ALPHA = "auto_dev.alpha_evolver"


@pytest.fixture
def agents_world(database_url: str, monkeypatch: pytest.MonkeyPatch) -> World:
    """The gates world (agent-1 supervised for alpha_evolver), the CLI on its database."""
    monkeypatch.setenv("AUTO_DEV_DATABASE_URL", database_url)
    monkeypatch.setenv("AUTO_DEV_TENANT", TENANT)
    monkeypatch.setenv("AUTO_DEV_ACTOR", "cli-user")
    monkeypatch.delenv("AUTO_DEV_CONFIG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    return build_world(Database(database_url))


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(agents.app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _uses(world: World, outcomes: list[bool], capability: str = ALPHA) -> None:
    with world.database.session() as s:
        for ok in outcomes:
            world.gatekeeper.record_usage(s, TENANT, AGENT, capability, ok, True)


def _audits(world: World, action: str) -> list[AuditEntry]:
    with world.database.session() as s:
        rows = list(s.scalars(select(AuditEntry).where(AuditEntry.action == action)))
        s.expunge_all()
        return rows


class TestAgentsList:
    """The tenant's agents with their maturities and usage."""

    def test_table_and_json(self, agents_world: World) -> None:
        """agent-1 is listed supervised for alpha_evolver with its uses; JSON says the same."""
        _uses(agents_world, [True, False, True])
        with agents_world.database.session() as s:
            agents_world.database.ensure_agent(s, TENANT, "agent-2")
        code, out, _ = _run("list")
        assert code == 0
        assert "agent-1" in out and "alpha_evolver supervised" in out and "agent-2" in out
        code, out, _ = _run("list", "--json")
        data = json.loads(out)
        by_key = {a["key"]: a for a in data["agents"]}
        assert by_key["agent-1"]["maturity"] == {ALPHA: "supervised"}
        assert by_key["agent-1"]["uses"] == 3 and by_key["agent-2"]["uses"] == 0
        assert by_key["agent-2"]["maturity"] == {} and by_key["agent-2"]["last_used"] is None

    def test_unknown_tenant(self, agents_world: World) -> None:
        """A tenant that does not exist is an error, not an empty list."""
        code, _, err = _run("list", "--tenant", "nobody")
        assert code == 1 and "tenant 'nobody' does not exist" in err


class TestAgentsShow:
    """Evidence since the last change, the bound against the thresholds, the next move."""

    def test_evidence_and_what_the_next_level_needs(self, agents_world: World) -> None:
        """5 verified successes: the bound of 5/5, 11 more to reach autonomous (16 in a row),
        and the failures in a row that would demote it."""
        _uses(agents_world, [True] * 5)
        code, out, _ = _run("show", AGENT, "--json")
        assert code == 0
        row = next(c for c in json.loads(out)["capabilities"] if c["capability"] == ALPHA)
        assert (row["maturity"], row["required"], row["may_use"]) == (
            "supervised", "supervised", True)
        assert (row["verified_successes"], row["samples"]) == (5, 5)
        assert row["lower_bound"] == pytest.approx(wilson_lower_bound(5, 5), abs=1e-6)
        assert row["next_level"] == "autonomous" and row["successes_to_graduate"] == 11
        demote = next(k for k in range(1, 100)
                      if 5 + k >= 10 and wilson_lower_bound(5, 5 + k) < 0.3)
        assert row["failures_to_demote"] == demote
        code, out, _ = _run("show", AGENT)
        assert code == 0
        for expected in ("alpha_evolver", "supervised", "5/5 verified", "bound 0.566",
                         "autonomous after 11 successes", f"intern after {demote} failures",
                         "memento_skills", "may not use"):
            assert expected in out, expected

    def test_top_level_and_unknown_agent(self, agents_world: World) -> None:
        """An autonomous agent is at the top; an unknown agent is a clear error."""
        agents_world.maturity("autonomous")
        code, out, _ = _run("show", AGENT, "--json")
        row = next(c for c in json.loads(out)["capabilities"] if c["capability"] == ALPHA)
        assert row["next_level"] is None and row["needs"] == "top level"
        code, _, err = _run("show", "ghost")
        assert code == 1 and "agent 'ghost' does not exist in tenant 'acme'" in err


class TestSetMaturity:
    """An admin's decision: validated, reasoned, audited."""

    def test_sets_and_audits(self, agents_world: World) -> None:
        """A short built-in name is accepted; the change is audited with actor and reason."""
        code, out, _ = _run("set-maturity", AGENT, "memento_skills", "INTERN",
                            "--reason", "pilot")
        assert code == 0 and "auto_dev.memento_skills student -> intern" in out
        with agents_world.database.session() as s:
            assert agents_world.gatekeeper.get_maturity(
                s, tenant_id=TENANT, agent_id=AGENT,
                capability="auto_dev.memento_skills") is Maturity.INTERN
        (audit,) = _audits(agents_world, "capability.set_maturity")[-1:]
        assert (audit.actor, audit.reason) == ("cli-user", "pilot")
        assert audit.details == {"capability": "auto_dev.memento_skills", "before": "student",
                                 "after": "intern"}

    @pytest.mark.parametrize(("args", "code", "message"), [
        (["alpha_evolver", "boss", "--reason", "x"], 2,
         "level: must be one of student, intern, supervised, autonomous"),
        (["alpha", "intern", "--reason", "x"], 2, "capability: unknown capability 'alpha'"),
        (["alpha_evolver", "intern", "--reason", "  "], 2, "reason: must say why"),
        (["alpha_evolver", "intern"], 2, "--reason"),
    ])
    def test_bad_values_name_the_field(self, agents_world: World, args: list[str], code: int,
                                       message: str) -> None:
        """Each bad value exits with 2, names what is wrong, and changes nothing."""
        before = len(_audits(agents_world, "capability.set_maturity"))
        got, _, err = _run("set-maturity", AGENT, *args)
        assert got == code and message in err and "Traceback" not in err
        assert len(_audits(agents_world, "capability.set_maturity")) == before
        with agents_world.database.session() as s:
            levels = set(s.scalars(select(CapabilityState.maturity)))
        assert levels == {"supervised"}

    def test_unknown_agent_is_not_created(self, agents_world: World) -> None:
        """Setting maturity for an agent that does not exist fails (no typo-agents appear)."""
        code, _, err = _run("set-maturity", "agent-x", "alpha_evolver", "intern",
                            "--reason", "x")
        assert code == 1 and "agent 'agent-x' does not exist" in err


class TestReviewsFromTheCli:
    """A verdict given in the CLI is maturity evidence too."""

    async def test_cli_approval_counts_once_a_process_runs_the_bus(
            self, agents_world: World, database_url: str) -> None:
        """The CLI leaves the approval's usage delivery in the outbox; the next AutoDev to
        start delivers it, and agents show counts it."""
        cid = agents_world.passed_mutation()
        result = CliRunner().invoke(candidates.app, ["approve", cid, "--reason", "ok"],
                                    catch_exceptions=False)
        assert result.exit_code == 0
        with agents_world.database.session() as s:
            status = s.scalar(select(EventDelivery.status).where(
                EventDelivery.handler == REVIEW_HANDLER))
        assert status == "pending"
        with agents_world.database.session() as s:  # the next process starts a minute later
            s.execute(update(EventRecord).values(created_at=utcnow() - timedelta(minutes=1)))
        autodev = AutoDev(load_settings(database_url=database_url, tenant=TENANT),
                          database=agents_world.database, builtin_engines=False,
                          load_plugins=False)
        try:
            await autodev.start()
            await autodev.events.drain()
        finally:
            await autodev.aclose()
        code, out, _ = _run("show", AGENT, "--json")
        row = next(c for c in json.loads(out)["capabilities"] if c["capability"] == ALPHA)
        assert code == 0 and (row["verified_successes"], row["samples"]) == (1, 1)
