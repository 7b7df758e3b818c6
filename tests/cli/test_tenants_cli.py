"""``auto-dev tenants show|set`` through typer's CliRunner."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from auto_dev.cli import tenants
from auto_dev.db import Database
from auto_dev.gates import TenantSettings
from auto_dev.models import AuditEntry, Tenant
from tests.gates.conftest import ON, TENANT, World, build_world


@pytest.fixture
def tenant_world(database_url: str, monkeypatch: pytest.MonkeyPatch) -> World:
    """The gates world (tenant acme with auto-dev on), the CLI on its database."""
    monkeypatch.setenv("AUTO_DEV_DATABASE_URL", database_url)
    monkeypatch.setenv("AUTO_DEV_TENANT", TENANT)
    monkeypatch.setenv("AUTO_DEV_ACTOR", "cli-user")
    monkeypatch.delenv("AUTO_DEV_CONFIG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    return build_world(Database(database_url))


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(tenants.app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _stored(world: World, tenant_id: str = TENANT) -> Any:
    with world.database.session() as s:
        row = s.get(Tenant, tenant_id)
        return None if row is None else row.settings


def _audits(world: World) -> list[tuple[str, str, str, dict[str, Any]]]:
    with world.database.session() as s:
        return [(a.tenant_id, a.actor, a.reason, a.details) for a in s.scalars(
            select(AuditEntry).where(AuditEntry.action == "tenant.settings_changed")
            .order_by(AuditEntry.created_at))]


class TestTenantsShow:
    """Every setting with its default, and today's counts against the limits."""

    def test_table_and_json(self, tenant_world: World) -> None:
        """The toggles the world turned on show as on; JSON is the validated settings."""
        code, out, _ = _run("show")
        assert code == 0
        for expected in ("enabled", "alpha_evolver", "daily_candidates_per_agent",
                         "graduation.min_verified_successes", "today (UTC): 0/500 candidates",
                         "0/10 promotions", "LLM budget the global setting"):
            assert expected in out, expected
        code, out, _ = _run("show", "--json")
        data = json.loads(out)
        assert TenantSettings.from_raw(data["settings"]) == \
            TenantSettings.from_raw(_stored(tenant_world))
        assert data["settings"]["enabled"] is True and data["today"] == {
            "candidates": 0, "promotions": 0}

    def test_broken_row_and_missing_tenant(self, tenant_world: World) -> None:
        """A corrupt stored value is reported naming its key; a missing tenant is an error."""
        tenant_world.set_raw_settings({**ON, "enabled": "yes"})
        code, _, err = _run("show")
        assert code == 2 and "settings.enabled" in err and "Traceback" not in err
        code, _, err = _run("show", "--tenant", "nobody")
        assert code == 1 and "tenant 'nobody' does not exist" in err


class TestTenantsSet:
    """Changes are validated as a whole and audited with actor and reason."""

    def test_changes_are_stored_and_audited(self, tenant_world: World) -> None:
        """Toggles, limits, the budget, graduation and custom capabilities, in one change."""
        code, out, _ = _run("set", "workflows=false", "daily_candidates_per_agent=5",
                            "daily_budget_usd=2.5", "graduation.min_verified_successes=20",
                            "capabilities.acme.lint=true", "tenant_maturity=intern",
                            "--reason", "pilot week")
        assert code == 0 and "by cli-user: pilot week" in out
        settings = TenantSettings.from_raw(_stored(tenant_world))
        assert not settings.workflows and settings.daily_candidates_per_agent == 5
        assert settings.daily_budget_usd == 2.5 and settings.tenant_maturity == "intern"
        assert settings.graduation.min_verified_successes == 20
        assert settings.graduation.window == 200  # the rest of the rule is kept
        assert settings.capabilities == {"acme.lint": True}
        (audit,) = _audits(tenant_world)
        assert audit[:3] == (TENANT, "cli-user", "pilot week")
        assert audit[3]["changes"] == {
            "workflows": {"before": True, "after": False},
            "daily_candidates_per_agent": {"before": 50, "after": 5},
            "daily_budget_usd": {"before": None, "after": 2.5},
            "graduation.min_verified_successes": {"before": 10, "after": 20},
            "capabilities.acme.lint": {"before": None, "after": True},
            "tenant_maturity": {"before": "student", "after": "intern"},
        }

    @pytest.mark.parametrize(("pairs", "message"), [
        (["daily_candidates_per_agent=-1"], "settings.daily_candidates_per_agent: "),
        (["enabled=yes"], "settings.enabled: Input should be a valid boolean"),
        (["bogus=1"], "settings.bogus: unknown setting"),
        (["graduation.nope=1"], "settings.graduation.nope: unknown setting"),
        (["graduation.demote_lower_bound=0.95"],
         "settings.graduation: demote_lower_bound must be below promote_lower_bound"),
        (["daily_budget_usd=NaN"], "settings.daily_budget_usd"),
        (["tenant_maturity=boss"], "settings.tenant_maturity: must be one of"),
        (["enabled"], "settings: expected KEY=VALUE, got 'enabled'"),
        (["enabled=true", "enabled=false"], "settings.enabled: is given more than once"),
        (["sandbox.x=1"], "settings.sandbox.x: unknown setting"),
    ])
    def test_bad_values_name_the_field(self, tenant_world: World, pairs: list[str],
                                       message: str) -> None:
        """Each bad value exits with 2 naming the key; valid pairs given with it are not
        applied either, and nothing is audited."""
        before = _stored(tenant_world)
        code, _, err = _run("set", "daily_promotions_per_tenant=3", *pairs, "--reason", "x")
        assert code == 2 and message in err and "Traceback" not in err
        assert _stored(tenant_world) == before and _audits(tenant_world) == []

    def test_reason_is_required(self, tenant_world: World) -> None:
        """No --reason (or a blank one) is refused before anything changes."""
        code, _, err = _run("set", "enabled=false")
        assert code == 2 and "--reason" in err
        code, _, err = _run("set", "enabled=false", "--reason", " ")
        assert code == 2 and "reason: must say why" in err
        assert TenantSettings.from_raw(_stored(tenant_world)).enabled

    def test_null_resets_and_repairs(self, tenant_world: World) -> None:
        """null puts a key back to its default; changing a broken key repairs the row."""
        tenant_world.set_raw_settings({**ON, "daily_budget_usd": 4.0, "enabled": "yes"})
        code, _, err = _run("set", "daily_budget_usd=null", "--reason", "r")
        assert code == 2 and "settings.enabled" in err  # still broken: refused
        code, _, _ = _run("set", "enabled=true", "daily_budget_usd=null", "--reason", "repair")
        assert code == 0
        settings = TenantSettings.from_raw(_stored(tenant_world))
        assert settings.enabled and settings.daily_budget_usd is None
        assert _audits(tenant_world)[-1][3]["changes"]["enabled"] == {
            "before": "yes", "after": True}

    def test_missing_tenant_needs_create(self, tenant_world: World) -> None:
        """A typo in --tenant does not create a tenant; --create does, audited."""
        code, _, err = _run("set", "enabled=true", "--tenant", "newco", "--reason", "onboard")
        assert code == 1 and "tenant 'newco' does not exist" in err
        assert _stored(tenant_world, "newco") is None
        code, out, _ = _run("set", "enabled=true", "--tenant", "newco", "--create",
                            "--reason", "onboard")
        assert code == 0 and "created tenant newco" in out
        assert TenantSettings.from_raw(_stored(tenant_world, "newco")).enabled
        audit = _audits(tenant_world)[-1]
        assert audit[0] == "newco" and audit[3]["created"] is True

    def test_nothing_changed_is_not_audited(self, tenant_world: World) -> None:
        """Setting a value the tenant already has says so and writes no audit entry."""
        code, out, _ = _run("set", "enabled=true", "--reason", "again")
        assert code == 0 and "nothing changed" in out
        assert _audits(tenant_world) == []
