"""Review: listing, showing, deciding, promoting (all or nothing) and rolling back, per tenant."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from auto_dev._exceptions import NotFoundError, ValidationError
from auto_dev.candidates import CandidateStore
from auto_dev.candidates.review import ReviewService
from auto_dev.models import (
    AuditEntry,
    EventRecord,
    ReviewDecision,
    SkillCandidate,
    TestCase,
    Tool,
    ToolMutation,
    ToolVersion,
    WorkflowVariant,
)
from tests.gates.conftest import AGENT, FIXED_CODE, TENANT, TOOL_CODE, World

OTHER = "def inc(x):\n    return 1 + x\n"


def _versions(world: World, tool: str = "inc", tenant: str = TENANT) -> list[tuple[int, bool, str]]:
    with world.database.session() as s:
        rows = s.scalars(select(ToolVersion).join(Tool).where(
            Tool.name == tool, Tool.tenant_id == tenant).order_by(ToolVersion.version))
        return [(v.version, v.is_active, v.source) for v in rows]


def _decisions(world: World, candidate_id: str) -> list[tuple[str, str, str]]:
    with world.database.session() as s:
        rows = s.scalars(select(ReviewDecision).where(ReviewDecision.candidate_id == candidate_id)
                         .order_by(ReviewDecision.created_at))
        return [(d.decision, d.actor, d.reason) for d in rows]


class TestListAndShow:
    """What a reviewer sees."""

    def test_list_pending(self, world: World) -> None:
        """Pending review means passed (to decide) or approved (to promote)."""
        waiting = world.passed_mutation()
        approved = world.passed_mutation(OTHER)
        world.review.approve(TENANT, approved, "alice", "ok")
        world.mutation("def inc(x):\n    return x - -1\n")  # pending evaluation: not listed
        failed = world.mutation("def inc(x):\n    return x\n")
        world.evaluate(failed, "failed")
        pending = world.review.list_pending(TENANT)
        assert [(c.id, c.status) for c in pending] == [(waiting, "passed"),
                                                      (approved, "approved")]
        assert pending[0].target == "inc" and pending[0].agent == AGENT
        assert world.review.list_pending(TENANT, kind="skill_candidate") == []
        assert len(world.review.list_candidates(TENANT)) == 4
        with pytest.raises(ValidationError, match="kind"):
            world.review.list_pending(TENANT, kind="spaceship")

    def test_show_everything(self, world: World) -> None:
        """show: diff against the active version, objectives against the parent, per-case
        results with their inputs, lineage back to the version, and decisions."""
        with world.database.session() as s:
            for i in range(2):
                s.add(TestCase(tenant_id=TENANT, tool_id=world.tool_id, args=[i],
                               expected=i + 1))
        first = world.mutation("def inc(x):\n    return x + 3\n")
        world.evaluate(first, "failed", passed=0, objectives={"pass_rate": 0.0,
                                                              "latency_s": 0.2})
        child = world.mutation(FIXED_CODE, parent_mutation_id=first, generation=1,
                               operator="ast.const_minus_one")
        world.evaluate(child, passed=2, objectives={"pass_rate": 1.0, "latency_s": 0.3})
        world.review.approve(TENANT, child, "alice", "fixes the off-by-one")
        detail = world.review.show(TENANT, child[:8])
        assert detail.summary.id == child and detail.diff_base == "inc v1 (active)"
        assert "-    return x + 2" in detail.diff and "+    return x + 1" in detail.diff
        rows = {r.name: r for r in detail.objectives}
        assert (rows["pass_rate"].candidate, rows["pass_rate"].parent,
                rows["pass_rate"].better) == (1.0, 0.0, True)
        assert rows["latency_s"].better is False
        assert [(c.index, c.status, c.inputs, c.expected) for c in detail.cases] == [
            (0, "ok", {"args": [0], "kwargs": {}}, 1), (1, "ok", {"args": [1], "kwargs": {}}, 2)]
        assert [(st.kind, st.id) for st in detail.lineage][:2] == [
            ("tool_mutation", child), ("tool_mutation", first)]
        assert detail.lineage[-1].kind == "tool_version" and detail.lineage[-1].label == "inc v1"
        assert [(d.decision, d.actor) for d in detail.decisions] == [("approved", "alice")]

    def test_show_skill_without_tool(self, world: World) -> None:
        """A skill with no tool diffs against nothing and shows where it came from."""
        world.maturity("intern", "auto_dev.memento_skills")
        with world.database.session() as s:
            skill = world.store.create_skill_candidate(
                s, tenant_id=TENANT, name="dec", agent_id=AGENT, entrypoint="dec",
                code="def dec(x):\n    return x - 1\n", strategy="template",
                failure_pattern="TypeError in dec", source_episode_ids=["ep1"],
                tests=[{"args": [3], "expected": 2}])
        detail = world.review.show(TENANT, skill.id)
        assert detail.diff_base == "nothing (new tool)" and "+def dec(x):" in detail.diff
        assert detail.extra["strategy"] == "template"
        assert detail.extra["source_episode_ids"] == ["ep1"]
        assert detail.evaluation is None and detail.lineage[0].kind == "skill_candidate"

    def test_prefixes(self, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
        """A unique prefix names a candidate; short or ambiguous prefixes are errors."""
        ids = iter(["abcd" + "1" * 28, "abcd" + "2" * 28])
        monkeypatch.setattr("auto_dev.candidates._creation.new_id", lambda: next(ids))
        world.mutation()
        world.mutation(OTHER)
        assert world.review.show(TENANT, "abcd1").summary.id == "abcd" + "1" * 28
        with pytest.raises(ValidationError, match="several"):
            world.review.show(TENANT, "abcd")
        with pytest.raises(ValidationError, match="at least 4"):
            world.review.show(TENANT, "ab")
        with pytest.raises(NotFoundError):
            world.review.show(TENANT, "ffff")


class TestPromotion:
    """Promotion makes a new active version in one transaction; every decision is recorded."""

    def test_approve_then_promote(self, world: World) -> None:
        """approved -> promoted: v2 active, v1 kept inactive, who and why recorded, event out."""
        cid = world.passed_mutation()
        world.review.approve(TENANT, cid, "alice", "looks right")
        result = world.review.promote(TENANT, cid, "bob", "ship it")
        assert (result.version, result.previous_version, result.tool_name) == (2, 1, "inc")
        assert _versions(world) == [(1, False, "seed"), (2, True, "mutation")]
        assert world.status(cid) == "promoted"
        assert _decisions(world, cid) == [("approved", "alice", "looks right"),
                                          ("promoted", "bob", "ship it")]
        with world.database.session() as s:
            version = s.get(ToolVersion, result.version_id)
            assert version is not None and version.code == FIXED_CODE
            assert version.created_by == "bob" and version.source_id == cid
            actions = {e.action for e in s.scalars(select(AuditEntry))}
            event = s.scalars(select(EventRecord).where(
                EventRecord.type == "CandidatePromoted")).one()
        assert {"candidate.approved", "candidate.promoted", "gate.promote"} <= actions
        assert event.payload["tool_version_id"] == result.version_id
        shown = world.review.show(TENANT, cid)  # once live, the diff is against its parent
        assert shown.diff_base == "its parent, inc v1" and "+    return x + 1" in shown.diff

    def test_skill_repairing_a_tool_keeps_its_parent(self, world: World) -> None:
        """A skill that repairs a tool diffs against the version it repaired, before and after
        its promotion, and becomes that tool's next version."""
        world.maturity("intern", "auto_dev.memento_skills")
        with world.database.session() as s:
            row = world.store.create_skill_candidate(
                s, tenant_id=TENANT, name="inc", agent_id=AGENT, entrypoint="inc",
                code=FIXED_CODE, strategy="retrieve_repair", tool_id=world.tool_id)
            world.store.set_status(s, tenant_id=TENANT, candidate_id=row.id, status="passed")
        before = world.review.show(TENANT, row.id)
        world.review.approve(TENANT, row.id, "alice", "ok")
        world.review.promote(TENANT, row.id, "alice", "ship")
        after = world.review.show(TENANT, row.id)
        assert before.diff == after.diff and "-    return x + 2" in after.diff
        assert [st.label for st in after.lineage] == ["skill inc", "inc v1"]
        assert _versions(world) == [(1, False, "seed"), (2, True, "skill")]

    def test_skill_promotion_creates_or_extends_tool(self, world: World) -> None:
        """A skill without a tool creates it; a later skill of the same name adds a version."""
        world.maturity("intern", "auto_dev.memento_skills")
        ids = []
        for body in ("return x - 1", "return x + -1"):
            with world.database.session() as s:
                row = world.store.create_skill_candidate(
                    s, tenant_id=TENANT, name="dec", agent_id=AGENT, entrypoint="dec",
                    code=f"def dec(x):\n    {body}\n", strategy="template")
                world.store.set_status(s, tenant_id=TENANT, candidate_id=row.id,
                                       status="passed")
                ids.append(row.id)
            world.review.approve(TENANT, row.id, "alice", "ok")
            world.review.promote(TENANT, row.id, "alice", "new skill")
        assert _versions(world, "dec") == [(1, False, "skill"), (2, True, "skill")]
        with world.database.session() as s:
            assert {s.get(SkillCandidate, i).tool_id for i in ids} == {  # type: ignore[union-attr]
                s.scalars(select(Tool.id).where(Tool.name == "dec")).one()}

    def test_workflow_promotion(self, world: World) -> None:
        """A workflow variant becomes its workflow's active version (the workflow is created
        when it was never registered); an invalid definition is refused, naming the field."""
        world.maturity("supervised", "auto_dev.workflows")
        flow = {"name": "flow", "steps": [{"id": "a", "set": {"x": 1}}]}
        ids = []
        for definition in (flow, {"steps": [1]}):
            with world.database.session() as s:
                row = world.store.create_workflow_variant(s, tenant_id=TENANT, name="flow",
                                                          definition=definition,
                                                          agent_id=AGENT)
                world.store.set_status(s, tenant_id=TENANT, candidate_id=row.id,
                                       status="passed")
            world.review.approve(TENANT, row.id, "alice", "ok")
            ids.append(row.id)
        result = world.review.promote(TENANT, ids[0], "alice", "go")
        assert (result.kind, result.workflow_name, result.version) == (
            "workflow_variant", "flow", 1)
        with pytest.raises(ValidationError) as info:
            world.review.promote(TENANT, ids[1], "alice", "go")
        assert info.value.field.startswith("workflow")
        with world.database.session() as s:
            assert s.get(WorkflowVariant, ids[0]).status == "promoted"  # type: ignore[union-attr]
            assert s.get(WorkflowVariant, ids[1]).status == "approved"  # type: ignore[union-attr]

    @pytest.mark.parametrize("where", ["after_new_version", "bus", "decision"])
    def test_failure_mid_promotion_changes_nothing(self, world: World, where: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
        """An error at any step of a promotion leaves v1 active, the candidate approved and
        no promotion recorded (even when the caller goes on and commits)."""
        cid = world.passed_mutation()
        world.review.approve(TENANT, cid, "alice", "ok")
        from auto_dev.candidates import promotion as _promotion

        def fail(*_a: Any, **_k: Any) -> Any:
            raise RuntimeError(f"injected failure at {where}")

        if where == "after_new_version":
            real = _promotion.activate_new_version

            def half(*a: Any, **k: Any) -> Any:
                real(*a, **k)  # v1 deactivated, v2 inserted and flushed...
                raise RuntimeError("injected failure at after_new_version")

            monkeypatch.setattr(_promotion, "activate_new_version", half)
        elif where == "bus":
            monkeypatch.setattr(world.bus, "emit", fail)
        else:
            real_record = _promotion.record_decision

            def record(store: Any, session: Any, candidate: Any, kind: str, decision: str,
                       *a: Any, **k: Any) -> None:
                if decision == "promoted":
                    fail()
                real_record(store, session, candidate, kind, decision, *a, **k)

            monkeypatch.setattr(_promotion, "record_decision", record)
        # The caller swallows the error and commits its transaction anyway.
        with world.database.session() as s, pytest.raises(RuntimeError, match="injected"):
            world.store.promote(s, tenant_id=TENANT, candidate_id=cid, actor="bob",
                                reason="ship")
        assert _versions(world) == [(1, True, "seed")]
        assert world.status(cid) == "approved"
        assert [d[0] for d in _decisions(world, cid)] == ["approved"]
        with pytest.raises(RuntimeError, match="injected"):
            world.review.promote(TENANT, cid, "bob", "ship")
        assert _versions(world) == [(1, True, "seed")]


class TestRollback:
    """Rollback re-activates an earlier version and marks the candidate rolled back."""

    def _promote(self, world: World, code: str) -> str:
        cid = world.passed_mutation(code)
        world.review.approve(TENANT, cid, "alice", "ok")
        world.review.promote(TENANT, cid, "alice", "ship")
        return cid

    def test_rollback_flips_and_records(self, world: World) -> None:
        """Rolling back makes v1 active again; the candidate is rolled_back; who/why kept."""
        cid = self._promote(world, FIXED_CODE)
        result = world.review.rollback(TENANT, "inc", "carol", "broke production")
        assert (result.from_version, result.to_version) == (2, 1)
        assert result.rolled_back_candidate_id == cid
        assert _versions(world) == [(1, True, "seed"), (2, False, "mutation")]
        assert world.status(cid) == "rolled_back"
        assert _decisions(world, cid)[-1] == ("rolled_back", "carol", "broke production")
        with world.database.session() as s:
            audit = s.scalars(select(AuditEntry).where(
                AuditEntry.action == "tool.rolled_back")).one()
            event = s.scalars(select(EventRecord).where(
                EventRecord.type == "CandidateRolledBack")).one()
        assert audit.actor == "carol" and audit.details["to_version"] == 1
        assert event.payload["candidate_id"] == cid

    def test_default_target_skips_rolled_back_versions(self, world: World) -> None:
        """After v2 was rolled back and v3 promoted, rolling back v3 returns to v1."""
        self._promote(world, FIXED_CODE)
        world.review.rollback(TENANT, "inc", "carol", "bad")
        self._promote(world, OTHER)
        result = world.review.rollback(TENANT, "inc", "carol", "bad again")
        assert (result.from_version, result.to_version) == (3, 1)
        with pytest.raises(ValidationError, match="no earlier version"):
            world.review.rollback(TENANT, "inc", "carol", "and again")

    def test_explicit_target_and_bad_input(self, world: World) -> None:
        """--to picks any other version; reasons are required; unknown tools are not found."""
        self._promote(world, FIXED_CODE)
        world.review.rollback(TENANT, "inc", "carol", "undo")
        assert world.review.rollback(TENANT, "inc", "carol", "redo", to_version=2).to_version == 2
        with pytest.raises(ValidationError, match="already active"):
            world.review.rollback(TENANT, "inc", "carol", "noop", to_version=2)
        with pytest.raises(NotFoundError, match="no version 9"):
            world.review.rollback(TENANT, "inc", "carol", "x", to_version=9)
        with pytest.raises(ValidationError, match="reason"):
            world.review.rollback(TENANT, "inc", "carol", "")
        with pytest.raises(NotFoundError):
            world.review.rollback(TENANT, "nope", "carol", "x")

    def test_tools_listing(self, world: World) -> None:
        """Tools show their active version, versions and candidates awaiting review."""
        self._promote(world, FIXED_CODE)
        world.passed_mutation(OTHER)
        [tool] = world.review.list_tools(TENANT)
        assert (tool.name, tool.active_version, tool.versions, tool.pending_candidates) == \
            ("inc", 2, 2, 1)
        detail = world.review.show_tool(TENANT, "inc")
        assert detail.active_code == FIXED_CODE
        assert [(v.version, v.candidate_status) for v in detail.versions] == \
            [(1, None), (2, "promoted")]


class TestTenantIsolation:
    """Tenant A can neither see nor act on tenant B's candidates or tools."""

    def test_other_tenant_is_invisible(self, world: World) -> None:
        """Every read and write of review is scoped to the caller's tenant."""
        world.configure("beta", enabled=True, alpha_evolver=True)
        world.maturity("supervised", agent="b-agent", tenant_id="beta")
        with world.database.session() as s:
            tool = world.store.register_tool(s, tenant_id="beta", name="inc", code=TOOL_CODE,
                                             entrypoint="inc")
        theirs = world.mutation(tenant_id="beta", tool_id=tool.id, agent="b-agent")
        world.evaluate(theirs, tenant_id="beta")
        world.review.approve("beta", theirs, "beta-admin", "ok")
        ours = world.passed_mutation()

        assert [c.id for c in world.review.list_candidates(TENANT)] == [ours]
        assert [t.id for t in world.review.list_tools(TENANT)] == [world.tool_id]
        for attempt in (
            lambda: world.review.show(TENANT, theirs),
            lambda: world.review.show(TENANT, theirs[:6]),
            lambda: world.review.approve(TENANT, theirs, "mallory", "x"),
            lambda: world.review.reject(TENANT, theirs, "mallory", "x"),
            lambda: world.review.promote(TENANT, theirs, "mallory", "x"),
        ):
            with pytest.raises(NotFoundError):
                attempt()
        with world.database.session() as s, pytest.raises(NotFoundError):
            world.store.set_status(s, tenant_id=TENANT, candidate_id=theirs, status="failed")
        assert world.status(theirs) == "approved"
        # Rolling back "inc" in acme never touches beta's tool of the same name.
        world.review.promote("beta", theirs, "beta-admin", "ship")
        with pytest.raises(ValidationError, match="no earlier version"):
            world.review.rollback(TENANT, "inc", "mallory", "x")
        assert _versions(world, tenant="beta") == [(1, False, "seed"), (2, True, "mutation")]

    def test_separate_services_share_nothing(self, world: World) -> None:
        """A second service over the same database sees tenants the same scoped way."""
        other = ReviewService(world.database, CandidateStore(world.database, world.gatekeeper))
        cid = world.passed_mutation()
        assert [c.id for c in other.list_pending(TENANT)] == [cid]
        assert other.list_pending("beta") == []
        with world.database.session() as s:
            assert s.get(ToolMutation, cid) is not None


@pytest.mark.postgres
class TestOnPostgres:
    """The same review flow on PostgreSQL (skipped locally without a server; required in CI)."""

    def test_promote_rollback_and_durable_denial(self, postgres_database: Any) -> None:
        """Promotion flips the partial unique index in the right order, rollback restores v1,
        and a denial's audit entry survives the caller's rollback."""
        from auto_dev._exceptions import GateDeniedError
        from tests.gates.conftest import build_world

        world = build_world(postgres_database)
        cid = world.passed_mutation()
        world.review.approve(TENANT, cid, "alice", "ok")
        world.review.promote(TENANT, cid, "alice", "ship")
        assert _versions(world) == [(1, False, "seed"), (2, True, "mutation")]
        world.review.rollback(TENANT, "inc", "carol", "undo")
        assert _versions(world) == [(1, True, "seed"), (2, False, "mutation")]
        world.configure(alpha_evolver=False)
        with pytest.raises(GateDeniedError):
            world.mutation(OTHER)
        with world.database.session() as s:
            denied = s.scalars(select(AuditEntry).where(AuditEntry.allowed.is_(False))).all()
        assert len(denied) == 1
