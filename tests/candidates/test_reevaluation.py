"""PromotionService: a stale candidate is re-evaluated against the active version in the
sandbox, and promoted only if it is still better."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from auto_dev._exceptions import StaleCandidateError
from auto_dev._testing_sandbox import ScriptedSandbox
from auto_dev.candidates.reevaluation import PromotionService
from auto_dev.models import AuditEntry, Evaluation, ReviewDecision, TestCase, ToolMutation
from auto_dev.sandbox.base import Case
from auto_dev.sandbox.process import ProcessSandbox
from tests.gates.conftest import FIXED_CODE, TENANT, World

#: Fixes inc(1) only; FIXED_CODE fixes both cases.
HALF_FIX = "def inc(x):\n    return 2 if x == 1 else x + 2\n"
SAME_AS_FIXED = "def inc(x):\n    return 1 + x\n"


@pytest.fixture
async def sandbox() -> AsyncIterator[ProcessSandbox]:
    box = ProcessSandbox(workers=1)
    try:
        yield box
    finally:
        await box.aclose()


def _add_tests(world: World) -> None:
    with world.database.session() as s:
        for arg, expected in ((1, 2), (5, 6)):
            s.add(TestCase(tenant_id=TENANT, tool_id=world.tool_id, args=[arg], kwargs={},
                           expected=expected, has_expected=True, source="user"))


def _approved(world: World, code: str) -> str:
    cid = world.passed_mutation(code)
    world.review.approve(TENANT, cid, "alice", "ok")
    return cid


def _active_code(world: World) -> str:
    from auto_dev.models import ToolVersion

    with world.database.session() as s:
        return s.scalars(select(ToolVersion.code).where(ToolVersion.is_active.is_(True))).one()


def _by_text(code: str, case: Case) -> Any:
    """Scripted outcomes: what each known program returns (never executed)."""
    x = case.args[0]
    if "2 if x == 1" in code:
        return 2 if x == 1 else x + 2
    return x + 1 if "1" in code.split("return")[1] else x + 2


class TestStalePromotion:
    """Re-evaluate, record, then promote or refuse with the reason."""

    async def test_still_better_candidate_is_promoted_after_running_both(
        self, world: World, sandbox: ProcessSandbox,
    ) -> None:
        """Made against v1, v2 now fixes one case: the candidate fixing both becomes v3."""
        _add_tests(world)
        half, full = _approved(world, HALF_FIX), _approved(world, FIXED_CODE)
        service = PromotionService(world.review, sandbox)
        first = await service.promote(TENANT, half, "alice", "ship")
        assert first.version == 2 and first.reevaluated == ""
        result = await service.promote(TENANT, full, "alice", "ship")
        assert (result.version, result.previous_version) == (3, 2)
        assert result.reevaluated.startswith("re-evaluated against v2: better on pass_rate")
        assert _active_code(world) == FIXED_CODE
        with world.database.session() as s:
            row = s.get(ToolMutation, full)
            assert row is not None
            evaluation = s.get(Evaluation, row.evaluation_id)
            assert evaluation is not None and evaluation.backend == "process"
            assert (evaluation.passed, evaluation.total) == (2, 2)
            assert row.details["parent_objectives"]["pass_rate"] == 0.5
            assert row.details["parent_passed_cases"] == [0]
            promoted = s.scalars(select(ReviewDecision).where(
                ReviewDecision.candidate_id == full, ReviewDecision.decision == "promoted")).one()
            assert promoted.reason.startswith("ship (re-evaluated against v2: better on pass_rate")

    async def test_no_longer_better_is_refused_and_recorded(self, world: World) -> None:
        """Equivalent to v2: refused with the verdict, evaluation recorded, nothing promoted.
        (Scripted: a real sandbox's timings could make one of two equal programs "faster".)"""
        _add_tests(world)
        first, second = _approved(world, FIXED_CODE), _approved(world, SAME_AS_FIXED)
        service = PromotionService(world.review, ScriptedSandbox(_by_text))
        await service.promote(TENANT, first, "alice", "ship")
        with pytest.raises(StaleCandidateError) as refused:
            await service.promote(TENANT, second, "alice", "ship too")
        assert str(refused.value) == (
            f"candidate {second[:12]} was made against inc v1, active is v2: no longer better "
            "than v2: not strictly better than the active version on any objective")
        assert world.status(second) == "approved" and _active_code(world) == FIXED_CODE
        with world.database.session() as s:
            evaluations = s.scalars(select(Evaluation).where(
                Evaluation.candidate_id == second).order_by(Evaluation.created_at)).all()
            assert [e.backend for e in evaluations] == ["process", "scripted"]
            audit = s.scalars(select(AuditEntry).where(
                AuditEntry.action == "candidate.promotion_refused")).one()
            assert audit.actor == "alice" and audit.allowed is False
        with pytest.raises(StaleCandidateError):  # the sync path is not fooled by the record
            world.review.promote(TENANT, second, "alice", "ship")

    async def test_identical_to_the_active_version_is_refused_without_running(
        self, world: World,
    ) -> None:
        """The same program as v2 (other formatting) is refused before any sandbox run."""
        scripted = ScriptedSandbox(_by_text)
        first = _approved(world, FIXED_CODE)
        second = _approved(world, "def inc(x):\n    # fixed\n    return x + 1\n")
        service = PromotionService(world.review, lambda: scripted)
        await service.promote(TENANT, first, "alice", "ship")
        with pytest.raises(StaleCandidateError, match=r"made against inc v1, active is v2: "
                                                      r"identical to v2"):
            await service.promote(TENANT, second, "alice", "ship")
        assert scripted.jobs == []

    async def test_fresh_candidate_promotes_without_the_sandbox(self, world: World) -> None:
        """A candidate made against the active version is promoted as the sync path does."""
        def no_sandbox() -> Any:
            raise AssertionError("the sandbox must not be started")

        cid = _approved(world, FIXED_CODE)
        result = await PromotionService(world.review, no_sandbox).promote(TENANT, cid, "alice")
        assert result.version == 2

    async def test_active_version_changing_meanwhile_refuses(self, world: World) -> None:
        """If the active version changes while the sandbox runs, nothing is promoted."""
        _add_tests(world)
        half, full = _approved(world, HALF_FIX), _approved(world, FIXED_CODE)
        world.review.promote(TENANT, half, "alice", "ship")
        rolled: list[bool] = []

        def rollback_during_the_run(code: str, case: Case) -> Any:
            if not rolled:
                rolled.append(True)
                world.review.rollback(TENANT, "inc", "bob", "regressed")
            return _by_text(code, case)

        service = PromotionService(world.review, ScriptedSandbox(rollback_during_the_run))
        with pytest.raises(StaleCandidateError, match="changed while candidate"):
            await service.promote(TENANT, full, "alice", "ship")
        assert world.status(full) == "approved"

    async def test_bad_actor_is_refused_before_anything_runs(self, world: World) -> None:
        """auto-dev cannot promote through the human path."""
        from auto_dev._exceptions import ValidationError

        cid = _approved(world, FIXED_CODE)
        with pytest.raises(ValidationError, match="actor"):
            await PromotionService(world.review, ScriptedSandbox(_by_text)).promote(
                TENANT, cid, "auto-dev")
