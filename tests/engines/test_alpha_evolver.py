"""AlphaEvolver: gated, locked, persisted cycles that repair real tools in the sandbox."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from auto_dev.engines.alpha_evolver import AlphaEvolver
from auto_dev.models import AuditEntry, Evaluation, EvolutionRun, ToolMutation
from auto_dev.service import AutoDev
from tests.engines.conftest import BUGGY_DISCOUNT, DISCOUNT_TESTS, ON


def _setup(autodev: AutoDev, *, maturity: str = "supervised", **toggles: bool) -> None:
    autodev.configure_tenant(**(toggles or ON))
    autodev.register_tool("apply_discount", BUGGY_DISCOUNT, "apply_discount",
                          tests=DISCOUNT_TESTS)
    autodev.set_maturity("bot", "auto_dev.alpha_evolver", maturity)


class TestRunCycle:
    """A manual cycle on a buggy tool."""

    async def test_repairs_and_offers_one_candidate_with_lineage(self, autodev: AutoDev) -> None:
        """The cycle fixes the operator bug, offers the fix for review and records lineage."""
        _setup(autodev)
        result = await autodev.engines.get("alpha_evolver").run_cycle(
            "apply_discount", 300, agent="bot")  # type: ignore[call-arg]
        assert result.status == "completed", result.reason
        assert result.pass_rate_before < 1.0 and result.pass_rate_after == 1.0
        assert len(result.offered_ids) == 1
        with autodev.database.session() as session:
            offered = session.get(ToolMutation, result.offered_ids[0])
            assert offered is not None and offered.status == "passed"
            assert offered.parent_version_id or offered.parent_mutation_id
            assert offered.run_id == result.run_id
            evaluation = session.get(Evaluation, offered.evaluation_id)
            assert evaluation is not None and evaluation.passed == evaluation.total == 4
            run = session.get(EvolutionRun, result.run_id)
            assert run is not None and run.status == "completed"
            assert run.stats["lineage_lines"], "every evaluated proposal has a lineage line"
            others = session.scalars(select(ToolMutation).where(
                ToolMutation.run_id == result.run_id, ToolMutation.id != offered.id)).all()
            assert all(o.status == "failed" for o in others)
            # Every candidate sent to the sandbox is kept, each with its parent.
            assert len(others) + 1 == result.evaluations
            assert all(o.parent_version_id or o.parent_mutation_id for o in others)
        detail = autodev.review.show("t1", result.offered_ids[0])
        assert "-    return round(price * (1 + percent / 100), 2)" in detail.diff

    async def test_denied_when_tenant_toggles_are_off(self, autodev: AutoDev) -> None:
        """Toggles default to off, so a cycle is denied, audited, and stores nothing."""
        autodev.register_tool("apply_discount", BUGGY_DISCOUNT, "apply_discount",
                              tests=DISCOUNT_TESTS)
        autodev.set_maturity("bot", "auto_dev.alpha_evolver", "autonomous")
        result = await autodev.run_cycle("alpha_evolver", "apply_discount", budget=50)
        assert result.status == "denied"
        assert "turned off" in result.reason
        with autodev.database.session() as session:
            assert session.scalars(select(ToolMutation)).first() is None
            assert session.scalars(select(AuditEntry).where(
                AuditEntry.allowed.is_(False))).first() is not None

    async def test_denied_below_supervised(self, autodev: AutoDev) -> None:
        """An intern agent may not have its tools evolved."""
        _setup(autodev, maturity="intern")
        result = await autodev.engines.get("alpha_evolver").run_cycle(
            "apply_discount", 50, agent="bot")  # type: ignore[call-arg]
        assert result.status == "denied"
        assert "intern is below supervised" in result.reason

    async def test_one_cycle_at_a_time_per_target(self, autodev: AutoDev) -> None:
        """Two concurrent cycles on one tool: one runs, the other is skipped."""
        _setup(autodev)
        engine = autodev.engines.get("alpha_evolver")
        results = await asyncio.gather(
            engine.run_cycle("apply_discount", 300, agent="bot"),  # type: ignore[call-arg]
            engine.run_cycle("apply_discount", 300, agent="bot"),  # type: ignore[call-arg]
        )
        statuses = sorted(r.status for r in results)
        assert statuses == ["completed", "skipped"]

    async def test_tool_without_tests_is_skipped(self, autodev: AutoDev) -> None:
        """Nothing to evaluate against means no candidates."""
        autodev.configure_tenant(**ON)
        autodev.register_tool("noop", "def noop(x):\n    return x\n", "noop")
        autodev.set_maturity("bot", "auto_dev.alpha_evolver", "supervised")
        result = await autodev.engines.get("alpha_evolver").run_cycle(
            "noop", 10, agent="bot")  # type: ignore[call-arg]
        assert result.status == "skipped"


class TestEvents:
    """AlphaEvolver reacts to TaskFailed events for known tools."""

    async def test_failure_event_starts_a_cycle(self, autodev: AutoDev) -> None:
        """A failing episode with an expected value becomes a test and triggers a repair."""
        _setup(autodev)
        await autodev.record_episode(agent="bot", task="discount", success=False,
                                     tool_name="apply_discount",
                                     inputs={"args": [10.0, 10]}, expected=9.0,
                                     error_trace="AssertionError: 11.0 != 9.0")
        await autodev.drain()
        pending = autodev.review.list_pending("t1")
        assert [p.target for p in pending] == ["apply_discount"]

    async def test_validate_change_refuses_unchanged_code(self, autodev: AutoDev) -> None:
        """A proposal identical to the active version is never passed."""
        from auto_dev.evolution.program import Proposal

        _setup(autodev)
        engine = autodev.engines.get("alpha_evolver")
        assert isinstance(engine, AlphaEvolver)
        same = Proposal(code=BUGGY_DISCOUNT + "# no change\n", entrypoint="apply_discount",
                        operator="manual")
        verdict = await engine.validate_change(same, tool_name="apply_discount")
        assert not verdict.passed and "identical" in verdict.reason
        fixed = Proposal(code=BUGGY_DISCOUNT.replace("1 +", "1 -"), entrypoint="apply_discount",
                         operator="manual")
        verdict = await engine.validate_change(fixed, tool_name="apply_discount")
        assert verdict.passed and verdict.sandbox.all_passed
