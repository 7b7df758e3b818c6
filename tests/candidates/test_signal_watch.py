"""The promotion watch judges business-value and feedback signals of freshly promoted versions."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from auto_dev._exceptions import ValidationError
from auto_dev.candidates.signal_watch import FLAG_ACTION, SignalVerdict, SignalWatch
from auto_dev.candidates.watch import WATCH_ACTOR, PromotionWatch
from auto_dev.models import AuditEntry, EventRecord
from auto_dev.queries.workflows import WorkflowQueries
from auto_dev.workflows.registry import WorkflowRegistry
from tests.candidates.test_workflow_versions import _setup, _variant, _variant_status
from tests.gates.conftest import AGENT, TENANT, World
from tests.workflows._registry_fixtures import fixed_support, support


def _watch(world: World) -> PromotionWatch:
    return PromotionWatch(world.database, world.store, min_executions=5, watch_executions=10)


def _registry(world: World) -> WorkflowRegistry:
    return WorkflowRegistry(world.database, world.store, bus=world.bus, tenant_id=TENANT)


def _signals(world: World, watch: PromotionWatch, kind: str, values: list[float],
             version: int | None = None, **target: str) -> SignalVerdict | None:
    """Record signals against the workflow (or ``tool=...``) and hand each one's event to the
    watch."""
    from auto_dev.events import Event

    registry = _registry(world)
    verdict = None
    for value in values:
        registry.record_signal(kind=kind, value=value, version=version,
                               **(target or {"workflow": "refund_request"}))
        with world.database.session(readonly=True) as s:
            row = s.execute(select(EventRecord.type, EventRecord.payload).where(
                EventRecord.type == "SignalRecorded")
                .order_by(EventRecord.created_at.desc()).limit(1)).one()
        verdict = watch.signals.observe(Event.from_payload(row[0], row[1]))
    return verdict


def _auto_promote(world: World) -> str:
    """A variant auto-promoted to v2 (auto-promotion on, the agent autonomous)."""
    world.configure(auto_promotion=True)
    world.maturity("autonomous", "auto_dev.auto_promotion")
    world.maturity("autonomous", "auto_dev.workflows")
    with world.database.session() as s:
        seed = world.store.create_workflow_variant(
            s, tenant_id=TENANT, name="refund_request", definition=support(),
            agent_id=AGENT, objectives={"pass_rate": 0.5})
        seed_id = seed.id
    cid = _variant(world, fixed_support(), approve=False, parent_id=seed_id)
    with world.database.session() as s:
        world.store.promote(s, tenant_id=TENANT, candidate_id=cid, actor="auto-dev", auto=True)
    return cid


def _active(world: World) -> int:
    versions = WorkflowQueries(world.database, TENANT).versions("refund_request")
    return next(v.version for v in versions if v.is_active)


class TestSignalWatch:
    """Business value and feedback after a promotion: rolled back, flagged, or fine."""

    def test_drop_rolls_back_an_auto_promoted_workflow(self, world: World) -> None:
        """v1 earned 10 per run; auto-promoted v2 earns 5: v1 is active again, audited."""
        _setup(world)
        watch = _watch(world)
        _signals(world, watch, "business_value", [10.0] * 6)
        cid = _auto_promote(world)
        early = _signals(world, watch, "business_value", [5.0] * 3)
        assert early is not None and early.action == "watching"
        verdict = _signals(world, watch, "business_value", [5.0] * 2)
        assert verdict is not None and verdict.action == "rolled_back"
        assert verdict.baseline == pytest.approx(10.0) and verdict.mean == pytest.approx(5.0)
        assert _active(world) == 1 and _variant_status(world, cid) == "rolled_back"
        with world.database.session(readonly=True) as s:
            entry = s.scalars(select(AuditEntry).where(
                AuditEntry.action == "workflow.rolled_back")).one()
            assert entry.actor == WATCH_ACTOR and "business_value dropped" in entry.reason

    def test_no_drop_keeps_the_version(self, world: World) -> None:
        """Feedback as good as before (within the margin) changes nothing."""
        _setup(world)
        watch = _watch(world)
        _signals(world, watch, "feedback", [1.0] * 5)
        _auto_promote(world)
        verdict = _signals(world, watch, "feedback", [1.0, 0.95, 1.0, 0.9, 1.0])
        assert verdict is not None and verdict.action == "ok"
        assert _active(world) == 2

    def test_human_promotion_is_flagged_once(self, world: World) -> None:
        """A drop of a version a human promoted is flagged (one audit entry per kind), and
        the version stays active."""
        _setup(world)
        watch = _watch(world)
        _signals(world, watch, "feedback", [1.0] * 5)
        cid = _variant(world, fixed_support())
        world.review.promote(TENANT, cid, "alice", "ship it")
        verdict = _signals(world, watch, "feedback", [0.0] * 7)
        assert verdict is not None and verdict.action == "flagged"
        assert _active(world) == 2
        with world.database.session(readonly=True) as s:
            flags = list(s.scalars(select(AuditEntry.reason).where(
                AuditEntry.action == FLAG_ACTION)))
        assert len(flags) == 1 and "promoted by alice" in flags[0]

    def test_what_is_not_judged(self, world: World) -> None:
        """Kinds of the user's own, registered (not promoted) versions, a version without a
        baseline and signals after probation are not judged."""
        _setup(world)
        watch = _watch(world)
        assert _signals(world, watch, "nps", [1.0]) is None
        assert _signals(world, watch, "feedback", [1.0]) is None  # v1 was registered
        _auto_promote(world)
        verdict = _signals(world, watch, "feedback", [0.0] * 5)
        assert verdict is not None and verdict.action == "no_baseline"
        assert _signals(world, watch, "feedback", [0.0] * 6) is None  # 11 > watch of 10
        assert _active(world) == 2

    async def test_through_the_bus(self, world: World) -> None:
        """Attached to the bus, the watch sees SignalRecorded events as they are delivered."""
        _setup(world)
        watch = _watch(world)
        watch.attach(world.bus)
        registry = _registry(world)
        for _ in range(5):
            registry.record_signal(workflow="refund_request", kind="feedback", value=1.0)
        _auto_promote(world)
        for _ in range(5):
            registry.record_signal(workflow="refund_request", kind="feedback", value=0.1)
        await world.bus.start()
        try:
            await world.bus.drain()
        finally:
            await world.bus.aclose()
        assert _active(world) == 1

    def test_bad_configuration(self, world: World) -> None:
        """Nonsense thresholds are errors naming the field."""
        kw: dict[str, Any] = {"actor": WATCH_ACTOR}
        with pytest.raises(ValidationError, match="min_signals"):
            SignalWatch(world.database, world.store, min_signals=0, **kw)
        with pytest.raises(ValidationError, match="watch_signals"):
            SignalWatch(world.database, world.store, min_signals=5, watch_signals=2, **kw)

    def test_drop_rolls_back_an_auto_promoted_tool(self, world: World) -> None:
        """Tools are judged alike: v2 of ``inc`` (auto-promoted) losing business value goes."""
        from tests.candidates.test_watch import _active as tool_active
        from tests.candidates.test_watch import _auto_promote as auto_promote_tool

        watch = _watch(world)
        _signals(world, watch, "business_value", [4.0] * 5, tool="inc")
        cid = auto_promote_tool(world)
        verdict = _signals(world, watch, "business_value", [1.0] * 5, tool="inc")
        assert verdict is not None and verdict.action == "rolled_back"
        assert tool_active(world) == 1 and world.status(cid) == "rolled_back"
