"""Changing a tool's code: a manual candidate through the gated store, evaluated, audited,
reviewed and promoted like any other (through the AutoDev facade)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select

from auto_dev._exceptions import GateDeniedError, NotFoundError, ValidationError
from auto_dev.config import load_settings
from auto_dev.db import Database
from auto_dev.models import AuditEntry, EventRecord, TestCase, ToolMutation, ToolVersion
from auto_dev.sandbox.process import ProcessSandbox
from auto_dev.service import AutoDev

BUGGY = "def inc(x):\n    return x + 2\n"
FIXED = "def inc(x):\n    return x + 1\n"
TESTS = [{"args": [1], "expected": 2}, {"args": [5], "expected": 6}]


@pytest.fixture
async def autodev(database: Database, database_url: str) -> AsyncIterator[AutoDev]:
    sandbox = ProcessSandbox(workers=1)
    instance = AutoDev(load_settings(database_url=database_url, tenant="acme"),
                       database=database, sandbox=sandbox, builtin_engines=False,
                       load_plugins=False)
    instance.configure_tenant(enabled=True, alpha_evolver=True)
    instance.register_tool("inc", BUGGY, "inc", tests=TESTS)
    try:
        yield instance
    finally:
        await instance.aclose()
        await sandbox.aclose()


def _versions(autodev: AutoDev) -> list[tuple[int, bool, str]]:
    with autodev.database.session() as s:
        return [(v.version, v.is_active, v.source) for v in s.scalars(
            select(ToolVersion).order_by(ToolVersion.version))]


class TestRegisterThroughTheFacade:
    """register_tool on AutoDev: validated, idempotent, never a silent new version."""

    def test_same_code_again_is_a_no_op(self, autodev: AutoDev) -> None:
        """The same tool with the same tests: same id, one version, tests not doubled."""
        with autodev.database.session() as s:
            tool_id = s.scalars(select(ToolVersion.tool_id)).one()
        again = autodev.register_tool("inc", BUGGY, "inc",
                                      tests=[*TESTS, {"args": [9], "expected": 10}])
        assert again == tool_id and _versions(autodev) == [(1, True, "seed")]
        with autodev.database.session() as s:
            assert s.scalar(select(func.count()).select_from(TestCase)) == 3

    def test_new_code_is_refused(self, autodev: AutoDev) -> None:
        """Re-registering with new code does not create an active version."""
        with pytest.raises(ValidationError, match="propose_tool_change"):
            autodev.register_tool("inc", FIXED, "inc")
        assert autodev.active_code("inc") == BUGGY


class TestProposeToolChange:
    """propose_tool_change -> evaluated manual candidate -> review -> promote."""

    async def test_a_good_change_waits_for_review_then_promotes(self, autodev: AutoDev) -> None:
        """Passed against the tool's tests, audited with who and why, then approved and
        promoted by a human: v2 is the proposed code."""
        change = await autodev.propose_tool_change("inc", FIXED, actor="dana",
                                                   reason="fix off-by-one")
        assert (change.status, change.passed, change.total, change.parent_version) == \
            ("passed", 2, 2, 1)
        assert _versions(autodev) == [(1, True, "seed")]  # nothing live changed yet
        with autodev.database.session() as s:
            row = s.get(ToolMutation, change.candidate_id)
            assert row is not None and row.operator == "manual" and row.agent_id is None
            active = s.scalars(select(ToolVersion).where(ToolVersion.is_active.is_(True))).one()
            assert row.parent_version_id == active.id
            assert row.details["proposed_by"] == "dana"
            audit = s.scalars(select(AuditEntry).where(
                AuditEntry.action == "tool.change_proposed")).one()
            assert (audit.actor, audit.reason, audit.subject_id) == \
                ("dana", "fix off-by-one", change.candidate_id)
            event = s.scalars(select(EventRecord).where(
                EventRecord.type == "CandidateCreated")).one()
            assert event.payload["actor"] == "user:dana"
        assert change.candidate_id in {c.id for c in autodev.review.list_pending("acme")}
        autodev.review.approve("acme", change.candidate_id, "erin", "reviewed")
        result = await autodev.promote(change.candidate_id[:8], actor="erin", reason="ship")
        assert (result.version, result.previous_version) == (2, 1)
        assert autodev.active_code("inc") == FIXED

    async def test_a_change_breaking_a_case_fails(self, autodev: AutoDev) -> None:
        """A change that breaks a case the active version passes is failed, saying which."""
        autodev.add_test("inc", {"args": [0], "expected": 2})  # v1 passes only this one
        change = await autodev.propose_tool_change("inc", FIXED, actor="dana", reason="fix")
        assert change.status == "failed" and "breaks 1 case(s) v1 passes (2)" in change.reason
        assert change.candidate_id not in {c.id for c in autodev.review.list_pending("acme")}

    @pytest.mark.parametrize(("kwargs", "error", "field"), [
        ({"code": BUGGY}, ValidationError, "code"),  # the active version already
        ({"code": "# nothing\n" + BUGGY}, ValidationError, "code"),
        ({"code": "def inc(x):\n  return (\n"}, ValidationError, "code"),
        ({"code": "def dec(x):\n    return x\n"}, ValidationError, "entrypoint"),
        ({"reason": " "}, ValidationError, "reason"),
        ({"actor": "auto-dev"}, ValidationError, "actor"),
        ({"name": "nope"}, NotFoundError, None),
    ])
    async def test_bad_proposals_write_nothing(self, autodev: AutoDev, kwargs: dict[str, str],
                                               error: type[Exception], field: str | None
                                               ) -> None:
        """Each refusal is clear and leaves no candidate behind."""
        args = {"name": "inc", "code": FIXED, "actor": "dana", "reason": "fix", **kwargs}
        name, code = args.pop("name"), args.pop("code")
        with pytest.raises(error) as refused:
            await autodev.propose_tool_change(name, code, **args)
        if field is not None:
            assert refused.value.field == field  # type: ignore[attr-defined]
        with autodev.database.session() as s:
            assert s.scalar(select(func.count()).select_from(ToolMutation)) == 0

    async def test_the_gate_applies(self, autodev: AutoDev) -> None:
        """With auto-dev off for the tenant, no change is proposed (and that is audited)."""
        autodev.configure_tenant(enabled=False)
        with pytest.raises(GateDeniedError, match="turned off"):
            await autodev.propose_tool_change("inc", FIXED, actor="dana", reason="fix")
        with autodev.database.session() as s:
            assert s.scalar(select(func.count()).select_from(ToolMutation)) == 0
            denial = s.scalars(select(AuditEntry).where(AuditEntry.allowed.is_(False))).one()
            assert denial.action == "gate.propose"

    async def test_a_change_rejected_before_is_closed(self, autodev: AutoDev) -> None:
        """Proposing again what a reviewer rejected is closed with the rejection's reason."""
        first = await autodev.propose_tool_change("inc", FIXED, actor="dana", reason="fix")
        autodev.review.reject("acme", first.candidate_id, "erin", "use the library instead")
        again = await autodev.propose_tool_change("inc", FIXED, actor="dana", reason="please")
        assert again.status == "failed"
        assert again.reason.startswith("rejected before by erin") and "library" in again.reason
