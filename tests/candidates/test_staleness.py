"""Stale candidates (made against a version that is no longer active) never promote silently."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from auto_dev._exceptions import GateDeniedError, StaleCandidateError
from auto_dev.candidates.staleness import staleness
from auto_dev.models import SkillCandidate, Tool, ToolMutation, ToolVersion
from tests.gates.conftest import AGENT, FIXED_CODE, TENANT, World

OTHER = "def inc(x):\n    return 1 + x\n"


def _versions(world: World) -> list[tuple[int, bool]]:
    with world.database.session() as s:
        return [(v.version, v.is_active) for v in s.scalars(
            select(ToolVersion).join(Tool).where(Tool.name == "inc")
            .order_by(ToolVersion.version))]


def _approved(world: World, code: str) -> str:
    cid = world.passed_mutation(code)
    world.review.approve(TENANT, cid, "alice", "ok")
    return cid


class TestSyncPromotion:
    """ReviewService.promote refuses a stale candidate and says where to go instead."""

    def test_second_candidate_against_v1_is_refused(self, world: World) -> None:
        """Two candidates made against v1: the first makes v2, the second is refused (no v3)."""
        first, second = _approved(world, FIXED_CODE), _approved(world, OTHER)
        world.review.promote(TENANT, first, "alice", "ship")
        with pytest.raises(StaleCandidateError) as refused:
            world.review.promote(TENANT, second, "alice", "ship too")
        message = str(refused.value)
        assert "made against inc v1, active is v2" in message
        assert "auto-dev candidates promote" in message and "AutoDev.promote" in message
        assert _versions(world) == [(1, False), (2, True)]
        assert world.status(second) == "approved"

    def test_a_child_of_a_mutation_is_judged_by_its_root_version(self, world: World) -> None:
        """A mutation derived from another mutation is stale once its root version is not."""
        first = _approved(world, FIXED_CODE)
        parent = world.mutation("def inc(x):\n    return x + 3\n")
        child = world.passed_mutation(OTHER, parent_mutation_id=parent)
        world.review.approve(TENANT, child, "alice", "ok")
        world.review.promote(TENANT, first, "alice", "ship")
        with pytest.raises(StaleCandidateError, match="made against inc v1"):
            world.review.promote(TENANT, child, "alice", "ship")

    def test_rolling_back_to_its_base_makes_it_fresh_again(self, world: World) -> None:
        """Staleness is about the active version now: back on v1, the v1 candidate promotes."""
        first, second = _approved(world, FIXED_CODE), _approved(world, OTHER)
        world.review.promote(TENANT, first, "alice", "ship")
        world.review.rollback(TENANT, "inc", "alice", "regressed")
        result = world.review.promote(TENANT, second, "alice", "ship")
        assert (result.version, result.previous_version) == (3, 1)

    def test_skill_repairing_a_replaced_version_is_stale(self, world: World) -> None:
        """A skill repairing v1 is stale once a mutation made v2."""
        world.maturity("intern", "auto_dev.memento_skills")
        with world.database.session() as s:
            skill = world.store.create_skill_candidate(
                s, tenant_id=TENANT, name="inc", agent_id=AGENT, entrypoint="inc",
                code=OTHER, strategy="retrieve_repair", tool_id=world.tool_id)
            world.store.set_status(s, tenant_id=TENANT, candidate_id=skill.id, status="passed")
            skill_id = skill.id
        world.review.approve(TENANT, skill_id, "alice", "ok")
        world.review.promote(TENANT, _approved(world, FIXED_CODE), "alice", "ship")
        with pytest.raises(StaleCandidateError, match="made against inc v1, active is v2"):
            world.review.promote(TENANT, skill_id, "alice", "ship")

    def test_skill_made_before_its_tool_existed_is_stale(self, world: World) -> None:
        """Two new skills of one name: once the first created the tool, the second is stale."""
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
        world.review.promote(TENANT, ids[0], "alice", "new skill")
        with pytest.raises(StaleCandidateError, match="made before dec existed, active is v1"):
            world.review.promote(TENANT, ids[1], "alice", "new skill")
        with world.database.session() as s:
            assert s.get(SkillCandidate, ids[1]).status == "approved"  # type: ignore[union-attr]


class TestAutoPromotion:
    """Auto-promotion never promotes a stale candidate either."""

    def test_stale_auto_promotion_is_refused_with_versions(self, world: World) -> None:
        """The refusal names the version it was made against and the active one."""
        world.configure(auto_promotion=True)
        world.maturity("autonomous", "auto_dev.auto_promotion")
        late = world.mutation(OTHER)
        world.evaluate(late, objectives={"pass_rate": 1.0}, parent_objectives={"pass_rate": 0.5})
        world.review.promote(TENANT, _approved(world, FIXED_CODE), "alice", "ship")
        with pytest.raises(GateDeniedError, match="stale: made against inc v1, active is v2"), \
                world.database.session() as s:
            world.store.promote(s, tenant_id=TENANT, candidate_id=late, actor="auto-dev",
                                auto=True)

    def test_staleness_reports_nothing_for_a_fresh_candidate(self, world: World) -> None:
        """A candidate derived from the active version is not stale."""
        cid = world.passed_mutation(FIXED_CODE)
        with world.database.session() as s:
            candidate = s.get(ToolMutation, cid)
            assert candidate is not None and staleness(s, candidate) is None
