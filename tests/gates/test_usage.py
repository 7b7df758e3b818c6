"""UsageRecorder: maturity graduates and demotes from real outcomes, counted once, per tenant."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from auto_dev.config import load_settings
from auto_dev.db import Database
from auto_dev.events import (
    CandidateApproved,
    CandidateRejected,
    Event,
    SkillExecuted,
    TaskFailed,
    TaskSucceeded,
)
from auto_dev.gates import GraduationSettings, Maturity, wilson_lower_bound
from auto_dev.gates.usage import EPISODE_HANDLER, UsageRecorder
from auto_dev.models import (
    AuditEntry,
    EventDelivery,
    EventRecord,
    ToolVersion,
    UsageRecord,
    utcnow,
)
from auto_dev.service import AutoDev
from tests.gates.conftest import AGENT, FIXED_CODE, ON, TENANT, World, build_world

LINT = "acme.lint"  # a custom engine's capability that students may use
ALPHA = "auto_dev.alpha_evolver"


def _recorder(world: World) -> UsageRecorder:
    recorder = UsageRecorder(world.database, world.gatekeeper)
    recorder.attach(world.bus)
    return recorder


def _promote_by_human(world: World, *, agent: str | None = AGENT, capability: str = ALPHA,
                      code: str = FIXED_CODE) -> str:
    """A candidate made for ``agent`` under ``capability``, approved and promoted by dana."""
    with world.database.session() as s:
        cid = world.store.create_tool_mutation(
            s, tenant_id=TENANT, tool_id=world.tool_id, code=code, operator="ast.const",
            agent_id=agent, capability=capability).id
    world.evaluate(cid)
    world.review.approve(TENANT, cid, "dana", "looks right")
    world.review.promote(TENANT, cid, "dana", "release")
    return cid


def _emit(world: World, event: Event) -> Event:
    with world.database.session() as s:  # as the service does: in the episode's transaction
        world.bus.emit(s, event)
    return event


def _episode(world: World, ok: bool, *, tool: str = "inc", **kw: object) -> Event:
    cls = TaskSucceeded if ok else TaskFailed
    kw.setdefault("occurred_at", world.clock())  # after the promotion, on the store's clock
    return _emit(world, cls(tenant_id=TENANT, agent_id=AGENT, tool_name=tool,  # type: ignore[arg-type]
                            **kw))


def _maturity(world: World, agent: str = AGENT, capability: str = ALPHA,
              tenant_id: str = TENANT) -> Maturity:
    with world.database.session() as s:
        return world.gatekeeper.get_maturity(s, tenant_id=tenant_id, agent_id=agent,
                                             capability=capability)


def _usage(database: Database, tenant_id: str = TENANT) -> list[UsageRecord]:
    with database.session() as s:
        return list(s.scalars(select(UsageRecord).where(UsageRecord.tenant_id == tenant_id)
                              .order_by(UsageRecord.created_at)))


def _moves(world: World) -> list[tuple[str, str, str]]:
    with world.database.session() as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.action == "capability.graduation")
                         .order_by(AuditEntry.created_at))
        return [(r.details["before"], r.details["after"], r.reason) for r in rows]


def _in_a_row_to_graduate(rule: GraduationSettings) -> int:
    """The documented rule, applied to n verified successes out of n."""
    return next(n for n in range(rule.min_verified_successes, 10_000)
                if wilson_lower_bound(n, n, rule.confidence) >= rule.promote_lower_bound)


class TestEpisodes:
    """Episode outcomes of a promoted version are evidence for the candidate's agent."""

    async def test_forty_successes_graduate_a_student(self, world: World) -> None:
        """A student's promoted version succeeds 40 times: intern, then supervised, exactly
        where the rule says (16 verified successes in a row with the defaults)."""
        needed = _in_a_row_to_graduate(GraduationSettings())
        assert needed == 16
        world.gatekeeper.register_capability(LINT, "student")
        world.configure(capabilities={LINT: True})
        _recorder(world)
        with world.database.session() as s:
            world.database.ensure_agent(s, TENANT, "learner")
        _promote_by_human(world, agent="learner", capability=LINT)
        await world.bus.drain()
        assert [u.details["source"] for u in _usage(world.database)] == ["review"]
        levels = []
        for _ in range(40):
            _episode(world, True)
            await world.bus.drain()
            levels.append(_maturity(world, "learner", LINT))
        # The review success counts too: `needed - 1` episodes finish the first step.
        first = needed - 1
        assert levels[:first - 1] == [Maturity.STUDENT] * (first - 1)
        assert levels[first - 1] is Maturity.INTERN
        assert levels[first + needed - 2] is Maturity.INTERN
        assert levels[first + needed - 1:] == [Maturity.SUPERVISED] * (40 - first - needed + 1)
        moves = _moves(world)
        assert [m[:2] for m in moves] == [("student", "intern"), ("intern", "supervised")]
        assert all("graduated: 16 verified successes" in m[2] for m in moves)
        usage = _usage(world.database)
        assert len(usage) == 41 and all(u.verified and u.success for u in usage)
        assert {u.capability for u in usage} == {LINT}

    async def test_failures_demote(self, world: World) -> None:
        """A supervised agent's promoted version fails: intern after 10 uses with a lower
        bound under 0.3, then student after 10 more; audited with the figures."""
        _recorder(world)
        _promote_by_human(world)
        await world.bus.drain()
        levels = []
        for _ in range(19):
            _episode(world, False, error_trace="boom")
            await world.bus.drain()
            levels.append(_maturity(world))
        assert levels[:8] == [Maturity.SUPERVISED] * 8
        assert levels[8:18] == [Maturity.INTERN] * 10  # 1 success + 9 failures: 10 samples
        assert levels[18] is Maturity.STUDENT
        moves = _moves(world)
        assert [m[:2] for m in moves] == [("supervised", "intern"), ("intern", "student")]
        assert "demoted: success-rate lower bound 0.018 < 0.3 over 10 uses" in moves[0][2]

    async def test_demoted_agent_graduates_back(self, world: World) -> None:
        """Evidence restarts at each change: after a demotion, successes graduate it again."""
        _recorder(world)
        _promote_by_human(world)
        for _ in range(9):
            _episode(world, False)
            await world.bus.drain()
        assert _maturity(world) is Maturity.INTERN
        for i in range(16):
            assert _maturity(world) is Maturity.INTERN, i
            _episode(world, True)
            await world.bus.drain()
        assert _maturity(world) is Maturity.SUPERVISED

    def test_what_counts_for_nobody(self, world: World) -> None:
        """Seed versions, unknown tools, no tool, episodes older than the active version and
        candidates without an agent record nothing."""
        recorder = UsageRecorder(world.database, world.gatekeeper)
        seed_episode = TaskSucceeded(tenant_id=TENANT, agent_id=AGENT, tool_name="inc")
        assert recorder.record_episode(seed_episode) is None  # v1 is the seed
        _promote_by_human(world)
        for event in (TaskSucceeded(tenant_id=TENANT, agent_id=AGENT, tool_name="nope"),
                      TaskSucceeded(tenant_id=TENANT, agent_id=AGENT),
                      TaskFailed(tenant_id=TENANT, agent_id=AGENT, tool_name="inc",
                                 occurred_at=world.clock.now - timedelta(hours=1))):
            assert recorder.record_episode(event) is None
        world.configure(tenant_maturity="supervised")  # a tenant-level candidate: no agent
        _promote_by_human(world, agent=None, code="def inc(x):\n    y = x\n    return y + 1\n")
        late = TaskSucceeded(tenant_id=TENANT, agent_id=AGENT, tool_name="inc",
                             occurred_at=world.clock())
        assert recorder.record_episode(late) is None
        assert _usage(world.database) == []

    def test_recorded_usage_names_its_evidence(self, world: World) -> None:
        """A recorded use says where it came from: event, version and candidate."""
        recorder = UsageRecorder(world.database, world.gatekeeper)
        cid = _promote_by_human(world)
        event = TaskSucceeded(tenant_id=TENANT, agent_id=AGENT, tool_name="inc",
                              occurred_at=world.clock())
        recorded = recorder.record_episode(event)
        assert recorded is not None and recorded.capability == ALPHA and recorded.success
        assert recorded.agent_id == world.agent_id and recorded.event_key == event.event_id
        (row,) = _usage(world.database)
        assert row.details["candidate_id"] == cid and row.details["version"] == 2
        assert row.details["source"] == "episode" and row.event_key == event.event_id


class TestSkillExecutions:
    """Skill executions count for the version that ran."""

    def test_version_that_ran_decides(self, world: World) -> None:
        """An execution of promoted v2 counts; one reported against the seed v1 does not, even
        while v2 is active; without a version id the active one is meant."""
        recorder = UsageRecorder(world.database, world.gatekeeper)
        _promote_by_human(world)
        with world.database.session() as s:
            ids = dict(s.execute(select(ToolVersion.version, ToolVersion.id)
                                 .where(ToolVersion.tool_id == world.tool_id)).all())

        def run(version_id: str | None, ok: bool) -> object:
            return recorder.record_skill_execution(SkillExecuted(
                tenant_id=TENANT, agent_id=AGENT, skill_name="inc", success=ok,
                execution_seconds=0.1, tool_version_id=version_id, occurred_at=world.clock()))

        assert run(ids[1], True) is None
        assert run(ids[2], False) is not None
        assert run(None, True) is not None
        assert [(u.success, u.details["source"]) for u in _usage(world.database)] == [
            (False, "skill_execution"), (True, "skill_execution")]


class TestReviewOutcomes:
    """Human review verdicts on an engine's candidates are evidence for its agent."""

    async def test_approval_and_promotion_are_one_success(self, world: World) -> None:
        """Approving, then promoting, one candidate records a single verified success."""
        _recorder(world)
        cid = world.passed_mutation()
        world.review.approve(TENANT, cid, "dana")
        await world.bus.drain()
        world.review.promote(TENANT, cid, "dana")
        await world.bus.drain()
        (row,) = _usage(world.database)
        assert row.success and row.verified and row.capability == ALPHA
        assert row.event_key == f"review:{cid}:success"
        assert row.details["event_type"] == "CandidateApproved"

    async def test_rejection_and_rollback_are_failures(self, world: World) -> None:
        """A rejected candidate and a promoted one rolled back each count as a failure."""
        _recorder(world)
        rejected = world.passed_mutation()
        world.review.reject(TENANT, rejected, "dana", "wrong")
        rolled = _promote_by_human(world, code="def inc(x):\n    return 1 + x\n")
        world.review.rollback(TENANT, "inc", "dana", "broke checkout")
        await world.bus.drain()
        got = sorted((u.event_key, u.success) for u in _usage(world.database))
        assert got == sorted([(f"review:{rejected}:failure", False),
                              (f"review:{rolled}:success", True),
                              (f"review:{rolled}:failure", False)])

    async def test_auto_promotion_is_no_review(self, world: World) -> None:
        """An auto-promotion is the agent's own gate deciding: it records nothing."""
        _recorder(world)
        world.configure(auto_promotion=True)
        world.maturity("autonomous", "auto_dev.auto_promotion")
        cid = world.mutation()
        world.evaluate(cid, objectives={"pass_rate": 1.0}, parent_objectives={"pass_rate": 0.5})
        with world.database.session() as s:
            world.store.promote(s, tenant_id=TENANT, candidate_id=cid, actor="auto-dev",
                                auto=True)
        await world.bus.drain()
        assert _usage(world.database) == []

    def test_decisions_are_events_of_their_transaction(self, world: World) -> None:
        """Approve and reject emit CandidateApproved/CandidateRejected with the decision."""
        approved, rejected = world.passed_mutation(), world.passed_mutation(
            "def inc(x):\n    return 1 + x\n")
        world.review.approve(TENANT, approved, "dana", "ok")
        world.review.reject(TENANT, rejected, "erin", "no")
        with world.database.session() as s:
            rows = {r.type: r.payload for r in s.scalars(select(EventRecord).where(
                EventRecord.type.in_(["CandidateApproved", "CandidateRejected"])))}
        assert rows["CandidateApproved"]["candidate_id"] == approved
        assert rows["CandidateApproved"]["actor"] == "dana"
        assert rows["CandidateRejected"]["candidate_id"] == rejected
        assert rows["CandidateRejected"]["reason"] == "no"
        assert rows["CandidateRejected"]["tool_name"] == "inc"
        assert issubclass(CandidateApproved, Event) and issubclass(CandidateRejected, Event)


class TestIdempotence:
    """A redelivered event counts once."""

    def test_same_event_twice(self, world: World) -> None:
        """Handling one episode or review event twice records one use."""
        recorder = UsageRecorder(world.database, world.gatekeeper)
        cid = _promote_by_human(world)
        event = TaskSucceeded(tenant_id=TENANT, agent_id=AGENT, tool_name="inc",
                              occurred_at=world.clock())
        assert recorder.record_episode(event) is not None
        assert recorder.record_episode(event) is None
        review = CandidateRejected(tenant_id=TENANT, candidate_kind="tool_mutation",
                                   candidate_id=cid, actor="dana")
        assert recorder.record_review(review) is not None
        assert recorder.record_review(review) is None
        assert len(_usage(world.database)) == 2

    async def test_bus_redelivery_after_a_crash(self, world: World) -> None:
        """A delivery that ran but was never marked delivered (the process died, its lease
        expired) runs again on recovery, and the use is still counted once."""
        _recorder(world)
        _promote_by_human(world)
        event = _episode(world, True)
        await world.bus.drain()
        with world.database.session() as s:  # what a process killed mid-delivery leaves
            s.execute(update(EventDelivery).where(EventDelivery.event_id == event.event_id,
                                                  EventDelivery.handler == EPISODE_HANDLER)
                      .values(status="running", delivered_at=None,
                              next_attempt_at=utcnow() - timedelta(seconds=1)))
        assert await world.bus.recover() >= 1
        await world.bus.drain()
        with world.database.session() as s:
            status = s.scalar(select(EventDelivery.status).where(
                EventDelivery.event_id == event.event_id,
                EventDelivery.handler == EPISODE_HANDLER))
        assert status == "delivered"
        assert [u.event_key for u in _usage(world.database)].count(event.event_id) == 1

    @pytest.mark.postgres
    def test_racing_processes_count_once(self, postgres_database: Database) -> None:
        """Eight threads handle the same event at once (PostgreSQL): one row, no error, and
        distinct events recorded concurrently graduate the agent exactly once."""
        world = build_world(postgres_database)
        recorder = UsageRecorder(world.database, world.gatekeeper)
        _promote_by_human(world)
        same = TaskSucceeded(tenant_id=TENANT, agent_id=AGENT, tool_name="inc",
                             occurred_at=world.clock())
        distinct = [TaskSucceeded(tenant_id=TENANT, agent_id=AGENT, tool_name="inc",
                                  occurred_at=world.clock()) for _ in range(16)]
        results: list[object] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(8)

        def handle(events: list[Event]) -> None:
            barrier.wait()
            try:
                for ev in events:
                    results.append(recorder.record_episode(ev))  # type: ignore[arg-type]
            except BaseException as exc:  # collected for the assertion
                errors.append(exc)

        threads = [threading.Thread(target=handle, args=([same, *distinct[i::8]],))
                   for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert sum(r is not None for r in results) == 17  # `same` once, each distinct once
        assert [m[:2] for m in _moves(world)] == [("supervised", "autonomous")]


class TestTenants:
    """Usage lands in the event's tenant, never the facade's default one."""

    async def test_two_tenants(self, database: Database, database_url: str) -> None:
        """Episodes of tenant B graduate B's agent; A's same-named agent and the facade's
        default tenant are untouched."""
        autodev = AutoDev(load_settings(database_url=database_url, tenant="home"),
                          database=database, builtin_engines=False, load_plugins=False)
        try:
            for tenant in ("A", "B"):
                autodev.configure_tenant(tenant, **ON)
                autodev.register_tool("inc", "def inc(x):\n    return x + 2\n", "inc",
                                      tenant_id=tenant)
                autodev.set_maturity(AGENT, ALPHA, "supervised", tenant_id=tenant)
                with database.session() as s:
                    tool_id = s.scalar(select(ToolVersion.tool_id).where(
                        ToolVersion.tenant_id == tenant))
                    cid = autodev.store.create_tool_mutation(
                        s, tenant_id=tenant, tool_id=tool_id, code=FIXED_CODE, operator="x",
                        agent_id=AGENT).id
                    autodev.store.record_evaluation(
                        s, tenant_id=tenant, candidate_id=cid, backend="process", cases=[],
                        passed=1, total=1, objectives={"pass_rate": 1.0}, verdict="passed")
                autodev.review.approve(tenant, cid, "dana")
                autodev.review.promote(tenant, cid, "dana")
            for _ in range(15):
                await autodev.record_episode(agent="caller", task="t", success=True,
                                             tool_name="inc", tenant_id="B")
            await autodev.events.drain()
            with database.session() as s:
                def level(tenant: str) -> Maturity:
                    return autodev.gates.get_maturity(s, tenant_id=tenant, agent_id=AGENT,
                                                      capability=ALPHA)
                assert level("B") is Maturity.AUTONOMOUS
                assert level("A") is Maturity.SUPERVISED
            assert len(_usage(database, "B")) == 16
            assert [u.details["source"] for u in _usage(database, "A")] == ["review"]
            assert _usage(database, "home") == []
        finally:
            await autodev.aclose()
