"""Workflow variants promoted to workflow versions (atomically), rolled back, and reviewed with
a structural diff."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from auto_dev._exceptions import ValidationError
from auto_dev.candidates.reevaluation import PromotionService
from auto_dev.models import (
    EventRecord,
    RejectedChange,
    ReviewDecision,
    WorkflowVariant,
    WorkflowVersion,
)
from auto_dev.queries.workflows import WorkflowQueries
from tests.gates.conftest import AGENT, TENANT, World
from tests.workflows._registry_fixtures import TOOLS, fixed_support, support


def _setup(world: World) -> None:
    """The support workflow's tools and v1, and the agent supervised for workflows."""
    world.maturity("supervised", "auto_dev.workflows")
    with world.database.session() as s:
        for name, code in TOOLS.items():
            world.store.register_tool(s, tenant_id=TENANT, name=name, code=code, entrypoint=name)
        world.store.register_workflow(s, tenant_id=TENANT, definition=support(), actor="alice")


def _variant(world: World, definition: dict[str, Any], *, approve: bool = True,
             **kw: Any) -> str:
    with world.database.session() as s:
        row = world.store.create_workflow_variant(
            s, tenant_id=TENANT, name="refund_request", definition=definition,
            agent_id=AGENT, operator=kw.pop("operator", "add_retry"), **kw)
        cid = row.id
    world.evaluate(cid, objectives={"pass_rate": 1.0})
    if approve:
        world.review.approve(TENANT, cid, "alice", "looks right")
    return cid


def _queries(world: World) -> WorkflowQueries:
    return WorkflowQueries(world.database, TENANT)


def _variant_status(world: World, cid: str) -> str:
    with world.database.session(readonly=True) as s:
        row = s.get(WorkflowVariant, cid)
        assert row is not None
        return row.status


def _count(world: World, model: Any) -> int:
    with world.database.session(readonly=True) as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


class TestWorkflowPromotion:
    """Promoting a variant creates the workflow's new active version, or changes nothing."""

    def test_promotion_creates_the_active_version(self, world: World) -> None:
        """An approved variant becomes v2 (source variant, candidate linked), v1 inactive,
        and the promotion event names the workflow version."""
        _setup(world)
        cid = _variant(world, fixed_support())
        result = world.review.promote(TENANT, cid, "alice", "ship it")
        assert (result.workflow_name, result.version, result.previous_version) == (
            "refund_request", 2, 1)
        assert result.tool_name is None
        versions = _queries(world).versions("refund_request")
        assert [(v.version, v.is_active) for v in versions] == [(1, False), (2, True)]
        assert versions[1].source == "variant" and versions[1].candidate_id == cid
        assert versions[1].id == result.version_id
        assert _queries(world).definition("refund_request") == fixed_support()
        assert _variant_status(world, cid) == "promoted"
        with world.database.session(readonly=True) as s:
            payload = s.scalars(select(EventRecord.payload).where(
                EventRecord.type == "CandidatePromoted")).one()
        assert payload["metadata"]["workflow_version_id"] == result.version_id
        assert payload["tool_version_id"] is None

    async def test_async_promotion_path(self, world: World) -> None:
        """PromotionService (AutoDev.promote, the CLI) promotes a workflow variant too."""
        _setup(world)
        cid = _variant(world, fixed_support())
        service = PromotionService(world.review, lambda: pytest.fail("no sandbox is needed"))
        result = await service.promote(TENANT, cid, "alice")
        assert result.version == 2 and result.workflow_name == "refund_request"

    def test_failure_mid_promotion_changes_nothing(self, world: World,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
        """When announcing the promotion fails after the version was written, v1 stays the
        only active version, no v2 exists and the variant is still approved."""
        _setup(world)
        cid = _variant(world, fixed_support())
        import auto_dev.candidates.promotion as promotion

        def broken(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("the bus is down")

        monkeypatch.setattr(promotion, "emit", broken)
        decisions = _count(world, ReviewDecision)
        with pytest.raises(RuntimeError, match="bus is down"):
            world.review.promote(TENANT, cid, "alice", "ship it")
        versions = _queries(world).versions("refund_request")
        assert [(v.version, v.is_active) for v in versions] == [(1, True)]
        assert _variant_status(world, cid) == "approved"
        assert _count(world, ReviewDecision) == decisions

    def test_invalid_definition_is_refused_at_promotion(self, world: World) -> None:
        """A variant naming a tool the tenant does not have is refused naming the field, and
        nothing changes."""
        _setup(world)
        doc = fixed_support()
        doc["steps"][0]["tool"] = "get_order_v2"
        cid = _variant(world, doc)
        with pytest.raises(ValidationError) as info:
            world.review.promote(TENANT, cid, "alice", "ship it")
        assert info.value.field == "workflow.steps[0].tool"
        assert _count(world, WorkflowVersion) == 1 and _variant_status(world, cid) == "approved"

    def test_variant_of_another_name_is_refused(self, world: World) -> None:
        """The document's name must be the variant's workflow."""
        _setup(world)
        cid = _variant(world, fixed_support() | {"name": "other_flow"})
        with pytest.raises(ValidationError) as info:
            world.review.promote(TENANT, cid, "alice", "ship it")
        assert info.value.field == "definition.name"
        assert _count(world, WorkflowVersion) == 1


class TestWorkflowRollbackOfVariants:
    """Rolling back a promoted variant closes it and remembers its definition."""

    def test_rolled_back_variant_is_never_offered_again(self, world: World) -> None:
        """After v2 (a variant) is rolled back to v1, the variant is rolled_back and an
        identical new variant ends failed instead of being offered."""
        _setup(world)
        cid = _variant(world, fixed_support())
        world.review.promote(TENANT, cid, "alice", "ship it")
        with world.database.session() as s:
            result = world.store.rollback_workflow(s, tenant_id=TENANT, name="refund_request",
                                                   actor="bob", reason="refunds dropped")
        assert (result.from_version, result.to_version) == (2, 1)
        assert result.rolled_back_candidate_id == cid
        assert _variant_status(world, cid) == "rolled_back"
        assert _count(world, RejectedChange) == 1
        again = _variant(world, fixed_support(), approve=False)
        assert _variant_status(world, again) == "failed"


class TestWorkflowReview:
    """The review shows a workflow variant's structural diff, not a text diff of JSON."""

    def test_diff_against_the_active_version(self, world: World) -> None:
        """Waiting for review: the changed steps, one per line, against v1 (active)."""
        _setup(world)
        cid = _variant(world, fixed_support())
        detail = world.review.show(TENANT, cid)
        assert detail.diff_base == "refund_request v1 (active)"
        lines = detail.diff.splitlines()
        assert any(line.startswith("~ changed step order") and "retry" in line
                   for line in lines), lines
        assert any("steps.order.status" in line for line in lines), lines
        assert "@@" not in detail.diff and '"steps"' not in detail.diff

    def test_diff_after_promotion_is_against_the_replaced_version(self, world: World) -> None:
        """Once live, the diff still shows what the variant changed (against v1)."""
        _setup(world)
        cid = _variant(world, fixed_support())
        world.review.promote(TENANT, cid, "alice", "ship it")
        detail = world.review.show(TENANT, cid)
        assert detail.diff_base == "refund_request v1 (replaced)"
        assert "~ changed step order" in detail.diff
