"""PromotionWatch: auto-promoted versions are rolled back when their success rate regresses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from auto_dev._exceptions import ValidationError
from auto_dev.candidates.watch import WATCH_ACTOR, PromotionWatch, _Runs
from auto_dev.events import SkillExecuted
from auto_dev.models import AuditEntry, ToolVersion
from tests.gates.conftest import AGENT, TENANT, World


def _auto_promote(world: World) -> str:
    world.configure(auto_promotion=True)
    world.maturity("autonomous", "auto_dev.auto_promotion")
    cid = world.mutation()
    world.evaluate(cid, objectives={"pass_rate": 1.0}, parent_objectives={"pass_rate": 0.5})
    with world.database.session() as s:
        world.store.promote(s, tenant_id=TENANT, candidate_id=cid, actor="auto-dev", auto=True)
    return cid


def _active(world: World) -> int:
    with world.database.session() as s:
        return s.scalars(select(ToolVersion.version).where(
            ToolVersion.tool_id == world.tool_id, ToolVersion.is_active.is_(True))).one()


def _version_id(world: World, number: int) -> str:
    with world.database.session() as s:
        return s.scalars(select(ToolVersion.id).where(
            ToolVersion.tool_id == world.tool_id, ToolVersion.version == number)).one()


def _runs(world: World, watch: PromotionWatch, version: int, outcomes: list[bool],
          *, persist: bool = False):
    version_id = _version_id(world, version)
    verdict = None
    for ok in outcomes:
        event = SkillExecuted(tenant_id=TENANT, agent_id=AGENT, skill_name="inc", success=ok,
                              execution_seconds=0.01, tool_version_id=version_id)
        if persist:  # as the service does: the event is in the outbox before any handler
            with world.database.session() as s:
                world.bus.emit(s, event)
        verdict = watch.observe(event)
    return verdict


def _watch(world: World, **kw: object) -> PromotionWatch:
    return PromotionWatch(world.database, world.store, min_executions=10,
                          watch_executions=30, **kw)  # type: ignore[arg-type]


class TestPromotionWatch:
    """Probation of auto-promoted versions."""

    def test_regression_rolls_back(self, world: World) -> None:
        """v1 succeeded 95%; auto-promoted v2 succeeds 50%: v1 is active again, audited."""
        watch = _watch(world)
        _runs(world, watch, 1, [True] * 19 + [False])
        cid = _auto_promote(world)
        verdict = _runs(world, watch, 2, [True, False] * 5)
        assert verdict is not None and verdict.rolled_back
        assert verdict.baseline == pytest.approx(0.95)
        assert "v2 succeeded 5/10" in verdict.reason and "v1's 95%" in verdict.reason
        assert _active(world) == 1 and world.status(cid) == "rolled_back"
        with world.database.session() as s:
            audit = s.scalars(select(AuditEntry).where(
                AuditEntry.action == "tool.rolled_back")).one()
        assert audit.actor == WATCH_ACTOR and "regression" in audit.reason

    def test_probation_then_stable(self, world: World) -> None:
        """A version as good as its predecessor stays, and is declared stable after a while."""
        watch = _watch(world)
        _runs(world, watch, 1, [True] * 9 + [False])
        _auto_promote(world)
        early = _runs(world, watch, 2, [True] * 5)
        assert early is not None and "probation" in early.reason
        last = _runs(world, watch, 2, [True] * 8 + [False] + [True] * 16)
        assert last is not None and not last.rolled_back and last.reason.startswith("stable")
        assert _active(world) == 2
        assert _runs(world, watch, 2, [False] * 30) is None  # no longer watched
        with world.database.session() as s:
            assert s.scalars(select(AuditEntry).where(
                AuditEntry.action == "watch.stable")).one().actor == WATCH_ACTOR

    def test_floor_without_baseline(self, world: World) -> None:
        """With no runs of the previous version, the absolute floor decides."""
        watch = _watch(world, floor=0.6)
        _auto_promote(world)
        verdict = _runs(world, watch, 2, [True] * 5 + [False] * 5)
        assert verdict is not None and verdict.rolled_back and "floor 60%" in verdict.reason

    def test_human_promotions_are_not_watched(self, world: World) -> None:
        """A version a human promoted is the human's responsibility: no automatic rollback."""
        watch = _watch(world)
        cid = world.passed_mutation()
        world.review.approve(TENANT, cid, "alice", "ok")
        world.review.promote(TENANT, cid, "alice", "ship")
        assert _runs(world, watch, 2, [False] * 20) is None
        assert _active(world) == 2
        assert watch.stats(_version_id(world, 2)) == (0, 20)

    def test_restart_rebuilds_from_the_outbox(self, world: World) -> None:
        """A new watch (after a restart) recounts from stored events, never twice."""
        first = _watch(world)
        _runs(world, first, 1, [True] * 20, persist=True)
        _auto_promote(world)
        _runs(world, first, 2, [True, False] * 3, persist=True)
        second = _watch(world)
        verdict = _runs(world, second, 2, [False] * 4, persist=True)
        assert second.stats(_version_id(world, 1)) == (20, 20)
        assert second.stats(_version_id(world, 2)) == (3, 10)
        assert verdict is not None and verdict.rolled_back

    async def test_through_the_bus(self, world: World) -> None:
        """Attached to the event bus, the watch sees published SkillExecuted events."""
        watch = _watch(world)
        watch.attach(world.bus)
        _auto_promote(world)
        version_id = _version_id(world, 2)
        for _ in range(10):
            await world.bus.publish(SkillExecuted(
                tenant_id=TENANT, agent_id=AGENT, skill_name="inc", success=False,
                execution_seconds=0.01, tool_version_id=version_id), wait=True)
        await world.bus.drain()
        assert _active(world) == 1

    def test_bad_configuration_and_events(self, world: World) -> None:
        """Nonsense thresholds and malformed events are errors naming the field."""
        with pytest.raises(ValidationError, match="margin"):
            PromotionWatch(world.database, world.store, margin=2.0)
        with pytest.raises(ValidationError, match="watch_executions"):
            PromotionWatch(world.database, world.store, min_executions=50, watch_executions=10)
        with pytest.raises(ValidationError, match="event"):
            _watch(world).observe(object())
        unknown = SkillExecuted(tenant_id=TENANT, agent_id=AGENT, skill_name="nope",
                                success=True, execution_seconds=0.0)
        assert _watch(world).observe(unknown) is None

    @given(st.lists(st.tuples(st.integers(0, 30), st.booleans()), max_size=80),
           st.integers(1, 20))
    def test_window_counts_each_event_once(self, events: list[tuple[int, bool]],
                                           window: int) -> None:
        """Counts cover the last ``window`` distinct events; a repeated event id is ignored."""
        runs = _Runs(window)
        kept: list[tuple[str, bool]] = []
        for number, ok in events:
            event_id = f"e{number}"
            if event_id in {e for e, _ in kept}:
                assert not runs.add(event_id, ok)
                continue
            assert runs.add(event_id, ok)
            kept = [*kept, (event_id, ok)][-window:]
        assert runs.total == len(kept) <= window
        assert runs.successes == sum(1 for _, ok in kept if ok)
