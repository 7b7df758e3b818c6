"""Reviewer decisions stick: rejected and rolled-back changes are never offered again."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

from auto_dev._exceptions import GateDeniedError
from auto_dev.db import Database
from auto_dev.evolution.dedup import normalized_hash
from auto_dev.models import (
    AuditEntry,
    RejectedChange,
    ReviewDecision,
    Tenant,
    Tool,
    ToolMutation,
    WorkflowVariant,
)
from tests.gates.conftest import AGENT, FIXED_CODE, TENANT, World

#: FIXED_CODE as another engine run would write it: same program, other formatting.
REFORMATTED = '"""Increment."""\n\ndef inc(x):\n    # off by one, fixed\n    return (x + 1)\n'
OTHER = "def inc(x):\n    return 1 + x\n"


def _decisions(world: World, candidate_id: str) -> list[tuple[str, str, str]]:
    with world.database.session() as s:
        rows = s.scalars(select(ReviewDecision).where(ReviewDecision.candidate_id == candidate_id)
                         .order_by(ReviewDecision.created_at))
        return [(d.decision, d.actor, d.reason) for d in rows]


def _reject(world: World, code: str = FIXED_CODE, reason: str = "wrong approach") -> str:
    cid = world.passed_mutation(code)
    world.review.reject(TENANT, cid, "bob", reason)
    return cid


class TestRejectedChanges:
    """A change a reviewer rejected is closed, not offered, whenever it comes back."""

    def test_the_same_change_from_a_later_run_is_closed(self, world: World) -> None:
        """The next cycle's identical diff (other formatting) is failed with who, when, why."""
        _reject(world)
        again = world.mutation(REFORMATTED)
        world.evaluate(again)  # the engine says passed
        assert world.status(again) == "failed"
        why = f"rejected before by bob on {world.clock.now:%Y-%m-%d}: wrong approach"
        assert _decisions(world, again) == [("failed", "auto-dev", why)]
        assert again not in {c.id for c in world.review.list_pending(TENANT)}
        assert [d.reason for d in world.review.show(TENANT, again).decisions] == [why]

    def test_set_status_passed_is_closed_too(self, world: World) -> None:
        """Offering through set_status (as AlphaEvolver does) is refused the same way."""
        _reject(world)
        again = world.mutation(FIXED_CODE)
        with world.database.session() as s:
            row = world.store.set_status(s, tenant_id=TENANT, candidate_id=again,
                                         status="passed", reason="best of the run")
            assert row.status == "failed"

    def test_identical_candidates_waiting_for_review_go_with_it(self, world: World) -> None:
        """Rejecting one candidate rejects the identical ones still in the review list."""
        first = world.passed_mutation(FIXED_CODE)
        twin = world.passed_mutation(REFORMATTED)
        world.review.approve(TENANT, twin, "carol", "looks fine")
        different = world.passed_mutation(OTHER)
        world.review.reject(TENANT, first, "bob", "wrong approach")
        assert world.status(twin) == "rejected" and world.status(different) == "passed"
        decision = _decisions(world, twin)[-1]
        assert decision[:2] == ("rejected", "bob")
        assert "same change was rejected before by bob" in decision[2]

    def test_other_tools_and_tenants_are_not_affected(self, world: World) -> None:
        """The memory is per (tenant, target): the same code elsewhere is offered."""
        _reject(world)
        with world.database.session() as s:
            other_tool = world.store.register_tool(s, tenant_id=TENANT, name="inc2",
                                                   code="def inc(x):\n    return x\n",
                                                   entrypoint="inc")
            other_tool_id = other_tool.id
            world.database.ensure_tenant(s, "beta")
            world.database.ensure_agent(s, "beta", AGENT)
            beta_tool = world.store.register_tool(s, tenant_id="beta", name="inc",
                                                  code="def inc(x):\n    return x\n",
                                                  entrypoint="inc")
            beta_tool_id = beta_tool.id
        world.configure("beta", enabled=True, alpha_evolver=True)
        world.maturity("supervised", tenant_id="beta")
        here = world.passed_mutation(FIXED_CODE, tool_id=other_tool_id)
        there = world.passed_mutation(FIXED_CODE, tool_id=beta_tool_id, tenant_id="beta")
        assert world.status(here) == "passed"
        with world.database.session() as s:
            assert s.get(ToolMutation, there).status == "passed"  # type: ignore[union-attr]

    def test_auto_promotion_refuses_it(self, world: World) -> None:
        """Auto-promotion of a change rejected before is refused with the reason, audited."""
        world.configure(auto_promotion=True)
        world.maturity("autonomous", "auto_dev.auto_promotion")
        cid = world.mutation(FIXED_CODE)
        world.evaluate(cid, objectives={"pass_rate": 1.0}, parent_objectives={"pass_rate": 0.5})
        _reject(world, REFORMATTED, "breaks the API")
        with pytest.raises(GateDeniedError, match=r"rejected before by bob.*breaks the API"), \
                world.database.session() as s:
            world.store.promote(s, tenant_id=TENANT, candidate_id=cid, actor="auto-dev",
                                auto=True)
        with world.database.session() as s:
            assert s.scalars(select(ToolMutation.status).where(ToolMutation.id == cid)).one() \
                == "rejected"

    def test_a_rejected_workflow_definition_is_not_offered_again(self, world: World) -> None:
        """Workflow variants are remembered by their definition."""
        world.maturity("supervised", "auto_dev.workflows")

        def variant() -> str:
            with world.database.session() as s:
                row = world.store.create_workflow_variant(
                    s, tenant_id=TENANT, name="flow", definition={"steps": [{"tool": "inc"}]},
                    agent_id=AGENT)
                world.store.set_status(s, tenant_id=TENANT, candidate_id=row.id,
                                       status="passed")
                return row.id

        first = variant()
        world.review.reject(TENANT, first, "bob", "too slow")
        again = variant()
        with world.database.session() as s:
            assert s.get(WorkflowVariant, again).status == "failed"  # type: ignore[union-attr]

    @settings(max_examples=25, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(comment=st.text(st.characters(codec="utf-8", exclude_characters="\r\n\x00"),
                           max_size=20),
           blank_lines=st.integers(0, 3), docstring=st.booleans(),
           parens=st.booleans())
    def test_formatting_never_sneaks_a_rejected_change_back(
        self, world: World, comment: str, blank_lines: int, docstring: bool, parens: bool,
    ) -> None:
        """Whatever the comments, blank lines, docstrings or redundant parentheses, the same
        program as a rejected one is never offered."""
        if not world.extra.get("rejected"):
            world.extra["rejected"] = _reject(world)
        body = "(x + 1)" if parens else "x + 1"
        doc = '    """Add one."""\n' if docstring else ""
        code = (f"# {comment}\n" + "\n" * blank_lines + f"def inc(x):\n{doc}"
                f"    return {body}  # {comment}\n")
        again = world.mutation(code)
        world.evaluate(again)
        assert world.status(again) == "failed"


class TestRolledBackChanges:
    """A version taken back is remembered like a rejection; putting it back lifts that."""

    def _promote_and_roll_back(self, world: World, actor: str = "alice") -> str:
        cid = world.passed_mutation(FIXED_CODE)
        world.review.approve(TENANT, cid, "alice", "ok")
        world.review.promote(TENANT, cid, "alice", "ship")
        world.review.rollback(TENANT, "inc", actor, "regressed in production")
        return cid

    def test_a_rolled_back_fix_is_not_promoted_again(self, world: World) -> None:
        """The demo run twice: the second run's identical fix is closed, naming the rollback."""
        self._promote_and_roll_back(world)
        again = world.mutation(REFORMATTED)
        world.evaluate(again)
        assert world.status(again) == "failed"
        assert _decisions(world, again)[0][2].startswith(
            f"rolled back before by alice on {world.clock.now:%Y-%m-%d}: regressed in production")

    def test_a_human_putting_it_back_lifts_the_memory(self, world: World) -> None:
        """rollback --to the rolled-back version is a human's new decision: it is offered again."""
        self._promote_and_roll_back(world)
        world.review.rollback(TENANT, "inc", "alice", "it was fine after all", to_version=2)
        with world.database.session() as s:
            assert s.scalars(select(RejectedChange)).all() == []
            assert s.scalars(select(AuditEntry).where(
                AuditEntry.action == "candidate.rejection_lifted")).one().actor == "alice"

    def test_auto_dev_never_lifts_a_humans_no(self, world: World) -> None:
        """When auto-dev re-activates remembered code, the memory stays."""
        self._promote_and_roll_back(world)
        world.review.rollback(TENANT, "inc", "auto-dev", "watch", to_version=2)
        with world.database.session() as s:
            assert len(s.scalars(select(RejectedChange)).all()) == 1


class TestQueries:
    """What a search can use, and what outlives the candidates."""

    def test_rejected_hashes_are_the_dedup_digests(self, world: World) -> None:
        """rejected_hashes returns the 16-byte digests a Deduplicator holds, per target."""
        _reject(world)
        with world.database.session() as s:
            hashes = world.store.rejected_hashes(s, TENANT, "inc")
            assert hashes == {normalized_hash(REFORMATTED)}
            assert normalized_hash(OTHER) not in hashes
            assert world.store.rejected_hashes(s, TENANT, "other") == frozenset()
            assert world.store.rejected_hashes(s, "beta", "inc") == frozenset()

    def test_the_memory_survives_pruning(self, world: World) -> None:
        """Pruning deletes the rejected candidate, not the fact that it was rejected."""
        cid = _reject(world)
        world.clock.advance(days=31)
        with world.database.session() as s:
            result = world.store.prune(s, tenant_id=TENANT, older_than_days=30, actor="ops")
            assert result.candidates == 1 and s.get(ToolMutation, cid) is None
        again = world.mutation(FIXED_CODE)
        world.evaluate(again)
        assert world.status(again) == "failed"


class TestBackfill:
    """Upgrading a database copies the rejections it already holds."""

    def test_upgrade_remembers_existing_rejections(self, tmp_path: Path) -> None:
        """A rejected candidate from before the upgrade is remembered with its decision."""
        db = Database(f"sqlite:///{tmp_path}/old.db")
        try:
            db.upgrade("0001")
            now = datetime.now(UTC)
            with db.engine.begin() as conn:
                conn.execute(insert(Tenant.__table__).values(id=TENANT, name=TENANT, settings={},
                                                             created_at=now))
                conn.execute(insert(Tool.__table__).values(id="t" * 32, tenant_id=TENANT,
                                                           name="inc", description="",
                                                           entrypoint="inc", created_at=now))
                conn.execute(insert(ToolMutation.__table__).values(
                    id="m" * 32, tenant_id=TENANT, tool_id="t" * 32, code=FIXED_CODE,
                    entrypoint="inc", diff="", operator="op", island=0, generation=0,
                    status="rejected", objectives={}, details={}, created_at=now,
                    updated_at=now))
                conn.execute(insert(ReviewDecision.__table__).values(
                    id="d" * 32, tenant_id=TENANT, candidate_kind="tool_mutation",
                    candidate_id="m" * 32, decision="rejected", actor="bob", reason="no",
                    created_at=now))
            db.upgrade()
            with db.session() as s:
                row = s.scalars(select(RejectedChange)).one()
                assert (row.target, row.actor, row.reason, row.candidate_id) == \
                    ("inc", "bob", "no", "m" * 32)
                assert bytes.fromhex(row.code_hash) == normalized_hash(REFORMATTED)
        finally:
            db.dispose()

