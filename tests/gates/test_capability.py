"""The capability gate: settings, maturity, fail-closed decisions, daily limits, graduation."""

from __future__ import annotations

import itertools
import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from auto_dev._exceptions import GateDeniedError, NotFoundError, ValidationError
from auto_dev.db import Database
from auto_dev.gates import Gatekeeper, Maturity, TenantSettings, is_at_least, wilson_lower_bound
from auto_dev.gates.capability import DEFAULT_REQUIREMENTS, count_candidates_today, day_start
from auto_dev.gates.settings import CAPABILITY_TOGGLES
from auto_dev.models import AuditEntry, CapabilityState, SkillCandidate, ToolMutation
from tests.gates.conftest import AGENT, TENANT, Clock, World, build_world

ALPHA = "auto_dev.alpha_evolver"


def _authorize(world: World, capability: str = ALPHA, action: str = "use",
               agent: str | None = AGENT, **kw: object):
    with world.database.session() as s:
        return world.gatekeeper.authorize(s, tenant_id=kw.pop("tenant_id", TENANT),
                                          agent_id=agent, capability=capability, action=action,
                                          **kw)  # type: ignore[arg-type]


def _audits(world: World, action: str | None = None) -> list[AuditEntry]:
    with world.database.session(readonly=True) as s:
        query = select(AuditEntry).order_by(AuditEntry.created_at)
        if action:
            query = query.where(AuditEntry.action == action)
        rows = list(s.scalars(query))
        s.expunge_all()  # keep the loaded values past the read-only rollback
        return rows


class TestMaturity:
    """Maturity levels order by trust, not alphabetically."""

    def test_order(self) -> None:
        """student < intern < supervised < autonomous, and sorting follows that order."""
        assert Maturity.STUDENT < Maturity.INTERN < Maturity.SUPERVISED < Maturity.AUTONOMOUS
        shuffled = [Maturity.SUPERVISED, Maturity.AUTONOMOUS, Maturity.STUDENT, Maturity.INTERN]
        assert sorted(shuffled) == list(Maturity)
        assert max(shuffled) is Maturity.AUTONOMOUS

    def test_parse_any_case(self) -> None:
        """Names parse in any case (the seed wrote SUPERVISED); nonsense names the field."""
        assert Maturity.parse("SUPERVISED") is Maturity.SUPERVISED
        assert is_at_least("autonomous", "Intern")
        assert not is_at_least("student", "intern")
        with pytest.raises(ValidationError) as err:
            Maturity.parse("guru")
        assert err.value.field == "maturity"

    def test_steps_saturate(self) -> None:
        """One level up or down at a time, never past the ends."""
        assert Maturity.STUDENT.next_up() is Maturity.INTERN
        assert Maturity.AUTONOMOUS.next_up() is Maturity.AUTONOMOUS
        assert Maturity.STUDENT.next_down() is Maturity.STUDENT

    def test_requirements_match_design(self) -> None:
        """The requirement table is DESIGN.md's."""
        assert DEFAULT_REQUIREMENTS["auto_dev.memento_skills"] is Maturity.INTERN
        assert DEFAULT_REQUIREMENTS["auto_dev.alpha_evolver"] is Maturity.SUPERVISED
        assert DEFAULT_REQUIREMENTS["auto_dev.workflows"] is Maturity.SUPERVISED
        assert DEFAULT_REQUIREMENTS["auto_dev.background_evolution"] is Maturity.AUTONOMOUS
        assert DEFAULT_REQUIREMENTS["auto_dev.auto_promotion"] is Maturity.AUTONOMOUS


class TestWilson:
    """The Wilson lower bound behaves like evidence should."""

    @given(st.integers(0, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
    def test_within_zero_and_rate(self, kn: tuple[int, int]) -> None:
        """The bound lies between 0 and the observed rate."""
        k, n = kn
        bound = wilson_lower_bound(k, n)
        assert 0.0 <= bound <= (k / n if n else 0.0)

    @given(st.integers(1, 400).flatmap(lambda n: st.tuples(st.integers(0, n - 1), st.just(n))))
    def test_monotone_in_successes(self, kn: tuple[int, int]) -> None:
        """One more success out of the same number of trials never lowers the bound."""
        k, n = kn
        assert wilson_lower_bound(k + 1, n) >= wilson_lower_bound(k, n)

    @given(st.integers(1, 100).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
           st.integers(2, 10))
    def test_more_evidence_same_rate(self, kn: tuple[int, int], m: int) -> None:
        """The same rate over more trials gives a bound at least as high (3/3 < 30/30)."""
        k, n = kn
        assert wilson_lower_bound(k * m, n * m) >= wilson_lower_bound(k, n) - 1e-12

    @given(st.integers(1, 200).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
           st.floats(0.6, 0.98), st.floats(0.0, 0.01))
    def test_lower_with_more_confidence(self, kn: tuple[int, int], conf: float,
                                        more: float) -> None:
        """Asking for more confidence never raises the bound."""
        k, n = kn
        assert wilson_lower_bound(k, n, conf + more) <= wilson_lower_bound(k, n, conf) + 1e-12

    def test_bad_input_names_field(self) -> None:
        """Impossible counts are errors naming the argument."""
        with pytest.raises(ValidationError, match="successes"):
            wilson_lower_bound(5, 3)
        with pytest.raises(ValidationError, match="total"):
            wilson_lower_bound(0, -1)
        assert wilson_lower_bound(0, 0) == 0.0


class TestTenantSettings:
    """Tenant settings: everything off by default, bad keys named."""

    def test_every_toggle_defaults_off(self) -> None:
        """A tenant with no settings has every toggle off."""
        defaults = TenantSettings.from_raw({})
        toggles = [name for name, f in TenantSettings.model_fields.items()
                   if f.annotation in (bool, "StrictBool") or isinstance(f.default, bool)]
        assert {"enabled", *CAPABILITY_TOGGLES.values()} <= set(toggles)
        assert not any(getattr(defaults, name) for name in toggles)
        assert not any(defaults.toggle_for(c) for c in DEFAULT_REQUIREMENTS)

    @pytest.mark.parametrize(("raw", "field"), [
        ({"enabld": True}, "settings.enabld"),
        ({"enabled": "yes"}, "settings.enabled"),
        ({"daily_candidates_per_agent": -1}, "settings.daily_candidates_per_agent"),
        ({"graduation": {"window": 0}}, "settings.graduation.window"),
        ({"tenant_maturity": "guru"}, "settings.tenant_maturity"),
        ([1, 2], "settings"),
    ])
    def test_bad_settings_name_the_key(self, raw: object, field: str) -> None:
        """Unknown keys and bad values raise ValidationError naming the key."""
        with pytest.raises(ValidationError) as err:
            TenantSettings.from_raw(raw)  # type: ignore[arg-type]
        assert err.value.field == field

    @given(st.fixed_dictionaries({k: st.booleans() for k in ("enabled", "alpha_evolver",
                                                              "memento_skills", "workflows")}),
           st.fixed_dictionaries({k: st.booleans() for k in ("enabled", "alpha_evolver",
                                                              "memento_skills", "workflows")}),
           st.integers(0, 100), st.integers(0, 100))
    def test_restrict_only_narrows(self, a: dict[str, bool], b: dict[str, bool], la: int,
                                   lb: int) -> None:
        """Combining stored and caller settings never turns on what either has off."""
        left = TenantSettings.from_raw({**a, "daily_candidates_per_agent": la})
        right = TenantSettings.from_raw({**b, "daily_candidates_per_agent": lb})
        both = left.restrict(right)
        for key in a:
            assert getattr(both, key) == (a[key] and b[key])
        assert both.daily_candidates_per_agent == min(la, lb)


class TestAuthorize:
    """Every check fails closed, says why, and leaves an audit entry."""

    def test_fresh_tenant_is_denied(self, database: Database) -> None:
        """A tenant nobody configured may do nothing, and the denial names the toggle."""
        gk = Gatekeeper()
        with database.session() as s:
            database.ensure_agent(s, "fresh", "a")
            decision = gk.authorize(s, tenant_id="fresh", agent_id="a", capability=ALPHA,
                                    action="use")
        assert not decision.allowed and "'enabled'" in decision.reason
        with database.session(readonly=True) as s:
            entry = s.scalars(select(AuditEntry).where(AuditEntry.tenant_id == "fresh")).one()
            s.expunge(entry)
        assert entry.allowed is False and entry.reason == decision.reason

    def test_toggle_off_is_denied(self, world: World) -> None:
        """With auto-dev on but the capability off, the denial names that toggle."""
        world.configure(alpha_evolver=False)
        decision = _authorize(world)
        assert not decision.allowed and "'alpha_evolver'" in decision.reason

    @pytest.mark.parametrize("capability", sorted(set(DEFAULT_REQUIREMENTS) - {"auto_dev.custom"}))
    def test_requirement_boundary(self, world: World, capability: str) -> None:
        """Just below the required maturity is denied; at it, allowed."""
        world.configure(**{CAPABILITY_TOGGLES[capability]: True})
        required = DEFAULT_REQUIREMENTS[capability]
        if required is not Maturity.STUDENT:
            world.maturity(required.next_down().value, capability)
            denied = _authorize(world, capability)
            assert not denied.allowed and f"below {required.value}" in denied.reason
        world.maturity(required.value, capability)
        assert _authorize(world, capability).allowed

    def test_unknown_capability_and_custom_registration(self, world: World) -> None:
        """Unknown capabilities are denied; registered ones need their own toggle."""
        assert "unknown capability" in _authorize(world, "acme.lint").reason
        world.gatekeeper.register_capability("acme.lint", "intern")
        world.maturity("intern", "acme.lint")
        assert "capabilities.acme.lint" in _authorize(world, "acme.lint").reason
        world.configure(capabilities={"acme.lint": True})
        assert _authorize(world, "acme.lint").allowed

    def test_missing_tenant_and_foreign_agent(self, world: World) -> None:
        """A missing tenant, or an agent of another tenant, is a denial, not a crash."""
        assert "does not exist" in _authorize(world, tenant_id="nobody").reason
        with world.database.session() as s:
            world.database.ensure_agent(s, "other", "intruder")
        decision = _authorize(world, agent="intruder")
        assert not decision.allowed and "does not exist in tenant 'acme'" in decision.reason

    def test_agent_by_id_or_key(self, world: World) -> None:
        """Agents are found by our id or by the platform's key."""
        by_key, by_id = _authorize(world, agent=AGENT), _authorize(world, agent=world.agent_id)
        assert by_key.allowed and by_id.allowed and by_key.agent_id == by_id.agent_id

    def test_corrupt_settings_deny_naming_key(self, world: World) -> None:
        """A stored setting of the wrong type denies with the key in the reason."""
        world.set_raw_settings({"enabled": "true", "alpha_evolver": True})
        decision = _authorize(world)
        assert not decision.allowed and "settings.enabled" in decision.reason

    def test_corrupt_maturity_denies(self, world: World) -> None:
        """A nonsense stored maturity level denies instead of guessing."""
        with world.database.session() as s:
            state = s.scalars(select(CapabilityState)).one()
            state.maturity = "guru"
        decision = _authorize(world)
        assert not decision.allowed and "gate error" in decision.reason

    def test_any_exception_denies(self, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
        """An exception anywhere in the check is a denial carrying the error."""
        def boom(*_a: object, **_k: object) -> object:
            raise RuntimeError("disk on fire")

        monkeypatch.setattr("auto_dev.gates.capability.count_candidates_today", boom)
        decision = _authorize(world, action="create_candidate")
        assert not decision.allowed and "disk on fire" in decision.reason

    def test_bad_arguments_deny(self, world: World) -> None:
        """Malformed requests are denied with the field named, never allowed."""
        decision = _authorize(world, capability="")
        assert not decision.allowed and "capability" in decision.reason

    def test_tenant_level_uses_tenant_maturity(self, world: World) -> None:
        """Without an agent the tenant's own maturity setting applies (student by default)."""
        assert not _authorize(world, agent=None).allowed
        world.configure(tenant_maturity="supervised")
        assert _authorize(world, agent=None).allowed

    def test_human_review_replaces_maturity_not_toggles(self, world: World) -> None:
        """A named reviewer stands in for maturity, but a disabled tenant stays disabled."""
        world.maturity("student")
        assert _authorize(world, action="approve", reviewed_by="alice").allowed
        engine_try = _authorize(world, action="create_candidate", reviewed_by="alice")
        assert not engine_try.allowed and "reviewed_by" in engine_try.reason
        world.configure(enabled=False)
        assert not _authorize(world, action="approve", reviewed_by="alice").allowed

    def test_workspace_settings_only_narrow(self, world: World) -> None:
        """Seed-style workspace settings can turn things off, never on."""
        with world.database.session() as s:
            kw = {"tenant_id": TENANT, "agent_id": AGENT, "capability": ALPHA}
            assert world.gatekeeper.can_use(s, **kw)
            assert not world.gatekeeper.can_use(s, **kw, workspace_settings={"enabled": False})
            assert not world.gatekeeper.can_use(s, **kw, workspace_settings={"enabled": "x"})
        world.configure(alpha_evolver=False)
        with world.database.session() as s:
            assert not world.gatekeeper.can_use(
                s, **kw, workspace_settings={"enabled": True, "alpha_evolver": True})

    def test_every_decision_is_audited_and_logged(self, world: World) -> None:
        """Each decision leaves one audit entry and one log line with its reason."""
        before = len(_audits(world))
        saved = structlog.get_config()
        # Another test may have configured a warning-level filter; info lines must pass here.
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
        try:
            with structlog.testing.capture_logs() as logs:
                decisions = [_authorize(world), _authorize(world, "auto_dev.auto_promotion")]
        finally:
            structlog.configure(**saved)
        entries = _audits(world)[before:]
        assert [e.allowed for e in entries] == [d.allowed for d in decisions] == [True, False]
        assert [e.reason for e in entries] == [d.reason for d in decisions]
        logged = [e for e in logs if e["event"] == "gate_decision"]
        assert [e["reason"] for e in logged] == [d.reason for d in decisions]

    def test_log_level_fits_the_decision(self, world: World,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
        """A policy denial (toggle off, maturity too low: expected, per candidate) is logged at
        info, an allowance at debug; a request the gate cannot judge is a warning and a gate
        that raised an error is an error."""
        saved = structlog.get_config()
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
        try:
            with structlog.testing.capture_logs() as logs:
                _authorize(world)  # allowed
                _authorize(world, "auto_dev.auto_promotion", action="auto_promote")  # maturity
                world.configure(alpha_evolver=False)
                _authorize(world)  # toggle off
                _authorize(world, "acme.unknown")  # cannot be judged
                monkeypatch.setattr("auto_dev.gates.capability.get_tenant",
                                    lambda *_a: 1 / 0)
                _authorize(world)  # the gate itself failed
        finally:
            structlog.configure(**saved)
        levels = [(e["log_level"], e["allowed"]) for e in logs if e["event"] == "gate_decision"]
        assert levels == [("debug", True), ("info", False), ("info", False),
                          ("warning", False), ("error", False)]

    def test_denial_audit_survives_rollback(self, world: World) -> None:
        """require() raising rolls the caller back, yet the denial stays on record."""
        world.configure(alpha_evolver=False)
        with pytest.raises(GateDeniedError), world.database.session() as s:
            world.gatekeeper.require(s, tenant_id=TENANT, agent_id=AGENT, capability=ALPHA,
                                     action="create_candidate")
        denied = [e for e in _audits(world, "gate.create_candidate") if e.allowed is False]
        assert len(denied) == 1 and "'alpha_evolver'" in denied[0].reason

    def test_denial_audit_survives_savepoint_rollback(self, world: World) -> None:
        """A savepoint rolled back after a denial keeps the denial in the outer transaction."""
        world.configure(alpha_evolver=False)
        with world.database.session() as s, pytest.raises(GateDeniedError), s.begin_nested():
            world.gatekeeper.require(s, tenant_id=TENANT, agent_id=AGENT,
                                     capability=ALPHA, action="create_candidate")
        assert len([e for e in _audits(world, "gate.create_candidate")
                    if e.allowed is False]) == 1

    def test_allowed_audit_rolls_back_with_the_work(self, world: World) -> None:
        """An allowed decision whose work is rolled back leaves nothing behind."""
        before = len(_audits(world))
        with pytest.raises(RuntimeError), world.database.session() as s:
            world.gatekeeper.require(s, tenant_id=TENANT, agent_id=AGENT, capability=ALPHA,
                                     action="use")
            raise RuntimeError("work failed")
        assert len(_audits(world)) == before


class TestDailyLimits:
    """Daily limits per agent and per tenant, counted from the tables, fail closed."""

    def test_per_agent_limit(self, world: World) -> None:
        """The agent's n+1-th candidate of the day is refused; another agent still may."""
        world.configure(daily_candidates_per_agent=2)
        world.maturity("supervised", agent="agent-2")
        world.mutation("def inc(x):\n    return x + 1\n")
        world.mutation("def inc(x):\n    return 1 + x\n")
        with pytest.raises(GateDeniedError, match="limit reached for agent 'agent-1': 2/2"):
            world.mutation("def inc(x):\n    return x - -1\n")
        world.mutation("def inc(x):\n    return x - -1\n", agent="agent-2")

    def test_per_tenant_limit_counts_every_kind(self, world: World) -> None:
        """Mutations, skills and workflow variants all count against the tenant limit."""
        world.configure(daily_candidates_per_tenant=3)
        world.maturity("intern", "auto_dev.memento_skills")
        world.maturity("supervised", "auto_dev.workflows")
        world.mutation()
        with world.database.session() as s:
            world.store.create_skill_candidate(s, tenant_id=TENANT, name="dec", agent_id=AGENT,
                                               code="def dec(x):\n    return x - 1\n",
                                               entrypoint="dec", strategy="template")
            world.store.create_workflow_variant(s, tenant_id=TENANT, name="flow",
                                                definition={"steps": [1]}, agent_id=AGENT)
        with pytest.raises(GateDeniedError, match="tenant 'acme': 3/3"):
            world.mutation()

    def test_new_day_resets(self, database: Database) -> None:
        """Tomorrow the limit starts over."""
        clock = Clock(datetime(2031, 3, 3, 23, 0, tzinfo=UTC))
        world = build_world(database, clock)
        world.configure(daily_candidates_per_agent=1)
        world.mutation()
        with pytest.raises(GateDeniedError):
            world.mutation()
        clock.advance(hours=2)
        world.mutation()

    def test_zero_means_none(self, world: World) -> None:
        """A limit of 0 refuses the first candidate, and check_daily_limits says so."""
        world.configure(daily_candidates_per_tenant=0)
        with world.database.session() as s:
            assert not world.gatekeeper.check_daily_limits(
                s, tenant_id=TENANT, agent_id=AGENT, capability=ALPHA)
        with pytest.raises(GateDeniedError, match="0/0"):
            world.mutation()

    @settings(max_examples=25, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.tuples(st.sampled_from(["mutation", "skill"]), st.integers(-3, 0),
                              st.booleans(), st.sampled_from(["pending", "passed", "failed"])),
                    max_size=12),
           st.integers(0, 6), st.integers(0, 6))
    def test_counting_matches_rows(self, world: World, rows: list[tuple[str, int, bool, str]],
                                   tenant_cap: int, agent_cap: int) -> None:
        """Today's counts equal the rows created since midnight UTC that did not fail, per
        tenant and agent; capped counts reach a limit exactly when the true counts do."""
        tenant = f"t{uuid.uuid4().hex[:10]}"
        now = datetime(2031, 5, 5, 15, 30, tzinfo=UTC)
        with world.database.session() as s:
            world.database.ensure_tenant(s, tenant)
            agent = world.database.ensure_agent(s, tenant, "x").id
            tool = world.store.register_tool(s, tenant_id=tenant, name="f", entrypoint="f",
                                             code="def f():\n    return 1\n")
            for kind, day, mine, status in rows:
                at = now + timedelta(days=day, hours=-10)
                owner = agent if mine else None
                if kind == "mutation":
                    s.add(ToolMutation(tenant_id=tenant, tool_id=tool.id, code="x", agent_id=owner,
                                       entrypoint="f", operator="t", created_at=at,
                                       status=status))
                else:
                    s.add(SkillCandidate(tenant_id=tenant, name="s", code="x", entrypoint="f",
                                         agent_id=owner, strategy="t", created_at=at,
                                         status=status))
            s.flush()
            counts = count_candidates_today(s, tenant, agent, day_start(now))
            capped = count_candidates_today(s, tenant, agent, day_start(now),
                                            limits=(tenant_cap, agent_cap))
        live = [r for r in rows if r[1] == 0 and r[3] != "failed"]
        assert counts["tenant"] == len(live)
        assert counts["agent"] == sum(1 for r in live if r[2])
        assert (capped["tenant"] >= tenant_cap) == (counts["tenant"] >= tenant_cap)
        assert (capped["agent"] >= agent_cap) == (counts["agent"] >= agent_cap)


class TestGraduation:
    """Maturity grows from verified successes and shrinks on failure, one level at a time."""

    def _use(self, world: World, success: bool, verified: bool = True,
             capability: str = "auto_dev.memento_skills"):
        with world.database.session() as s:
            return world.gatekeeper.record_usage(s, TENANT, AGENT, capability, success, verified)

    def test_promotes_when_bound_clears_threshold(self, world: World) -> None:
        """The agent becomes intern exactly when the Wilson bound reaches the threshold."""
        rule = TenantSettings().graduation
        for n in range(1, 40):
            result = self._use(world, True)
            expect = n >= rule.min_verified_successes and \
                wilson_lower_bound(n, n, rule.confidence) >= rule.promote_lower_bound
            assert result.changed == expect, n
            if result.changed:
                assert result.after is Maturity.INTERN
                break
        else:
            pytest.fail("never graduated")
        assert any(e.action == "capability.graduation" for e in _audits(world))

    def test_unverified_successes_are_not_evidence(self, world: World) -> None:
        """An agent's own unverified claims never graduate it."""
        for _ in range(60):
            assert not self._use(world, True, verified=False).changed
        with world.database.session() as s:
            ev = world.gatekeeper.evidence(s, tenant_id=TENANT, agent_id=AGENT,
                                           capability="auto_dev.memento_skills")
        assert ev.successes == 0 and ev.samples == 0

    def test_evidence_resets_after_a_move(self, world: World) -> None:
        """After graduating, the next level needs fresh evidence."""
        world.configure(graduation={"min_verified_successes": 3, "promote_lower_bound": 0.4})
        levels = [self._use(world, True).after for _ in range(8)]
        assert levels.count(Maturity.INTERN) >= 2
        assert levels[-1] <= Maturity.SUPERVISED
        assert all(b.rank - a.rank <= 1 for a, b in itertools.pairwise(levels))

    def test_demotes_on_failures(self, world: World) -> None:
        """A supervised agent that keeps failing drops to intern, with the reason audited."""
        world.maturity("supervised", "auto_dev.memento_skills")
        results = [self._use(world, False) for _ in range(10)]
        assert results[-1].after is Maturity.INTERN and results[-1].changed
        assert "demoted" in results[-1].reason
        assert not any(r.changed for r in results[:-1])

    @settings(max_examples=15, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=40))
    def test_one_level_per_record(self, world: World, uses: list[tuple[bool, bool]]) -> None:
        """Whatever the history, one usage record moves maturity by at most one level and the
        result agrees with the stored state."""
        capability = f"cap.{uuid.uuid4().hex[:8]}"
        world.configure(graduation={"min_verified_successes": 2, "promote_lower_bound": 0.3,
                                    "demote_lower_bound": 0.2, "min_samples_for_demotion": 3})
        for success, verified in uses:
            result = self._use(world, success, verified, capability)
            assert abs(result.after.rank - result.before.rank) <= 1
            with world.database.session(readonly=True) as s:
                stored = world.gatekeeper.get_maturity(s, tenant_id=TENANT, agent_id=AGENT,
                                                       capability=capability)
            assert stored is result.after

    def test_set_maturity_is_audited_and_validated(self, world: World) -> None:
        """Admins set maturity by hand (audited); bad levels and unknown agents are errors."""
        world.maturity("autonomous", "auto_dev.auto_promotion")
        entry = _audits(world, "capability.set_maturity")[-1]
        assert entry.actor == "admin" and entry.details["after"] == "autonomous"
        with world.database.session() as s:
            with pytest.raises(ValidationError):
                world.gatekeeper.set_maturity(s, tenant_id=TENANT, agent_id=AGENT,
                                              capability=ALPHA, maturity="guru", actor="a")
            with pytest.raises(NotFoundError):
                world.gatekeeper.record_usage(s, "other", AGENT, ALPHA, True, True)
            count = s.scalar(select(func.count()).select_from(CapabilityState))
        assert count == 2
