"""WorkflowRegistry and the facade's workflow methods: register, versions, rollback, tasks,
episodes of workflows, signals, tenant isolation."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from auto_dev._exceptions import NotFoundError, ValidationError
from auto_dev.db import Database
from auto_dev.events import Event
from auto_dev.models import (
    Agent,
    AuditEntry,
    Episode,
    EventRecord,
    VersionSignal,
    Workflow,
    WorkflowTaskRecord,
    WorkflowVersion,
)
from auto_dev.service import AutoDev
from tests.workflows._registry_fixtures import (
    fixed_support,
    make_autodev,
    register_tools,
    support,
)


@pytest.fixture
async def autodev(database: Database, database_url: str) -> AsyncIterator[AutoDev]:
    """A facade for tenant ``t1`` (no engines) with the support workflow's tools."""
    instance = await make_autodev(database, database_url)
    try:
        yield instance
    finally:
        await instance.aclose()


def _count(autodev: AutoDev, model: object) -> int:
    with autodev.database.session(readonly=True) as session:
        count = session.scalar(select(func.count()).select_from(model))  # type: ignore[arg-type]
        return int(count or 0)


def _active_versions(autodev: AutoDev, name: str, tenant_id: str = "t1") -> list[int]:
    return [v.version for v in autodev.workflow_versions(name, tenant_id=tenant_id)
            if v.is_active]


def _events(autodev: AutoDev, type_name: str) -> list[Event]:
    with autodev.database.session(readonly=True) as session:
        rows = session.execute(select(EventRecord.type, EventRecord.payload)
                               .where(EventRecord.type == type_name)
                               .order_by(EventRecord.created_at)).all()
    return [Event.from_payload(t, p) for t, p in rows]


class TestRegister:
    """Registering definitions makes versions; bad documents write nothing."""

    def test_first_registration_is_version_one(self, autodev: AutoDev) -> None:
        """A new workflow starts at v1, active, with the definition as registered."""
        assert autodev.register_workflow(support(), actor="alice") == 1
        assert autodev.workflow_definition("refund_request") == support()
        [version] = autodev.workflow_versions("refund_request")
        assert version.is_active and version.source == "user" and version.created_by == "alice"

    def test_identical_is_a_no_op_and_a_change_is_the_next_version(self, autodev: AutoDev
                                                                     ) -> None:
        """The same definition (prose aside) keeps its version; a changed one becomes v2 and
        the only active version, and both registrations are audited."""
        autodev.register_workflow(support(), actor="alice")
        assert autodev.register_workflow(support(description="reworded"), actor="alice") == 1
        assert autodev.workflows.summaries()[0].description == "reworded"
        assert autodev.register_workflow(fixed_support(), actor="bob") == 2
        assert [v.version for v in autodev.workflow_versions("refund_request")] == [1, 2]
        assert _active_versions(autodev, "refund_request") == [2]
        assert autodev.workflow_definition("refund_request") == fixed_support()
        assert autodev.workflow_definition("refund_request", version=1) == support()
        with autodev.database.session(readonly=True) as session:
            actions = sorted(session.scalars(select(AuditEntry.action).where(
                AuditEntry.subject_kind == "workflow")))
        assert actions == ["workflow.registered", "workflow.version_registered"]

    def test_unknown_tool_is_refused_with_nothing_written(self, autodev: AutoDev) -> None:
        """A tool step naming no registered tool is an error naming the step's field."""
        doc = support()
        doc["steps"][0]["tool"] = "get_orders"
        with pytest.raises(ValidationError) as info:
            autodev.register_workflow(doc, actor="alice")
        assert info.value.field == "workflow.steps[0].tool"
        assert _count(autodev, Workflow) == 0 and _count(autodev, WorkflowVersion) == 0

    @pytest.mark.parametrize(("doc", "field"), [
        ({"name": "w", "steps": [{"id": "a", "set": {"x": {1, 2}}}]}, "workflow.steps[0]"),
        ("not a document", "workflow"),
        ({"name": "w", "steps": [{"id": "a", "set": {"x": 1}}, {"id": "a", "fail": "x"}]},
         "workflow.steps[1].id"),
    ])
    def test_bad_documents_name_the_field(self, autodev: AutoDev, doc: object,
                                          field: str) -> None:
        """Non-JSON values, non-objects and duplicate ids are refused, naming where."""
        with pytest.raises(ValidationError) as info:
            autodev.register_workflow(doc, actor="alice")  # type: ignore[arg-type]
        assert info.value.field.startswith(field)
        assert _count(autodev, Workflow) == 0

    def test_reading_an_unknown_workflow(self, autodev: AutoDev) -> None:
        """Definitions and versions of a workflow that does not exist are NotFoundError."""
        with pytest.raises(NotFoundError):
            autodev.workflow_definition("nope")
        with pytest.raises(NotFoundError):
            autodev.workflow_versions("nope")
        autodev.register_workflow(support(), actor="alice")
        with pytest.raises(NotFoundError, match="version"):
            autodev.workflow_definition("refund_request", version=7)


class TestRollback:
    """Rolling back re-activates an older version, audited with a reason."""

    def test_rollback_reactivates_and_audits(self, autodev: AutoDev) -> None:
        """v2 -> v1: v1 is the one active version; the audit entry carries who and why."""
        autodev.register_workflow(support(), actor="alice")
        autodev.register_workflow(fixed_support(), actor="alice")
        result = autodev.rollback_workflow("refund_request", 1, actor="bob",
                                           reason="v2 breaks refunds")
        assert (result.from_version, result.to_version) == (2, 1)
        assert _active_versions(autodev, "refund_request") == [1]
        assert autodev.workflow_definition("refund_request") == support()
        with autodev.database.session(readonly=True) as session:
            entry = session.scalars(select(AuditEntry).where(
                AuditEntry.action == "workflow.rolled_back")).one()
            assert entry.actor == "bob" and entry.reason == "v2 breaks refunds"
            assert entry.details["from_version"] == 2 and entry.details["to_version"] == 1
        # Forward again to v2 works the same way.
        autodev.rollback_workflow("refund_request", 2, actor="bob", reason="fixed elsewhere")
        assert _active_versions(autodev, "refund_request") == [2]

    @pytest.mark.parametrize(("version", "reason", "error", "field"), [
        (2, "why", ValidationError, "version"),       # already active
        (9, "why", NotFoundError, None),
        (0, "why", ValidationError, "version"),
        (1, "  ", ValidationError, "reason"),
    ])
    def test_refusals_change_nothing(self, autodev: AutoDev, version: int, reason: str,
                                     error: type[Exception], field: str | None) -> None:
        """An active, missing or nonsense version, or no reason, is refused; v2 stays."""
        autodev.register_workflow(support(), actor="alice")
        autodev.register_workflow(fixed_support(), actor="alice")
        with pytest.raises(error) as info:
            autodev.rollback_workflow("refund_request", version, actor="bob", reason=reason)
        if field is not None:
            assert info.value.field == field  # type: ignore[attr-defined]
        assert _active_versions(autodev, "refund_request") == [2]


class TestOneActiveVersion:
    """Whatever the sequence of registrations and rollbacks, exactly one version is active."""

    @settings(max_examples=15, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.one_of(st.tuples(st.just("register"), st.integers(0, 3)),
                              st.tuples(st.just("rollback"), st.integers(1, 6))),
                    min_size=1, max_size=8))
    def test_exactly_one_active(self, autodev: AutoDev, steps: list[tuple[str, int]]) -> None:
        """The active definition is always the one registered or rolled back to last."""
        tenant = "p" + uuid.uuid4().hex[:8]  # each example in a tenant of its own
        register_tools(autodev, tenant)
        outputs = ["steps.route", "steps.order", "steps.order.status", "steps.order.id"]
        definitions = [support(output=o) for o in outputs]
        expected = None
        for action, number in steps:
            if action == "register":
                autodev.register_workflow(definitions[number], actor="a", tenant_id=tenant)
                expected = definitions[number]
                continue
            if expected is None:
                continue
            versions = autodev.workflow_versions("refund_request", tenant_id=tenant)
            active = next(v.version for v in versions if v.is_active)
            if number > len(versions) or number == active:
                with pytest.raises((ValidationError, NotFoundError)):
                    autodev.rollback_workflow("refund_request", number, actor="a",
                                              reason="r", tenant_id=tenant)
                continue
            autodev.rollback_workflow("refund_request", number, actor="a", reason="r",
                                      tenant_id=tenant)
            expected = autodev.workflow_definition("refund_request", version=number,
                                                   tenant_id=tenant)
        if expected is None:
            return
        assert len(_active_versions(autodev, "refund_request", tenant)) == 1
        assert autodev.workflow_definition("refund_request", tenant_id=tenant) == expected


class TestRecordEpisode:
    """Episodes of a workflow: linked, tasks from expected outputs, events carry the name."""

    async def test_failed_run_with_expected_becomes_a_task(self, autodev: AutoDev) -> None:
        """The episode links the workflow, a task is made once, TaskFailed names the workflow."""
        autodev.register_workflow(support(), actor="alice")
        run = {"agent": "bot", "task": "refund #7", "success": False,
               "workflow": "refund_request", "inputs": {"order_id": 7},
               "output": "cancelled", "expected": "return started",
               "error_trace": "wrong branch"}
        first = await autodev.record_episode(**run)  # type: ignore[arg-type]
        await autodev.record_episode(**run)  # type: ignore[arg-type]
        with autodev.database.session(readonly=True) as session:
            episode = session.get(Episode, first)
            workflow = session.scalars(select(Workflow)).one()
            assert episode is not None and episode.workflow_id == workflow.id
            assert episode.details["inputs"] == {"order_id": 7}
        [task] = autodev.workflows.tasks("refund_request")
        assert (task.input, task.expected, task.source, task.episode_id) == (
            {"order_id": 7}, "return started", "episode", first)
        failed = _events(autodev, "TaskFailed")
        assert [e.workflow for e in failed] == ["refund_request"] * 2  # type: ignore[attr-defined]
        assert failed[0].expected == "return started"  # type: ignore[attr-defined]

    async def test_success_without_expected_makes_no_task(self, autodev: AutoDev) -> None:
        """A run with no expected output is recorded; TaskSucceeded carries the workflow."""
        autodev.register_workflow(support(), actor="alice")
        await autodev.record_episode(agent="bot", task="refund #8", success=True,
                                     workflow="refund_request", inputs={"order_id": 8},
                                     output="return started")
        assert autodev.workflows.tasks("refund_request") == []
        [event] = _events(autodev, "TaskSucceeded")
        assert event.workflow == "refund_request"  # type: ignore[attr-defined]
        assert event.inputs == {"order_id": 8}  # type: ignore[attr-defined]

    @pytest.mark.parametrize(("extra", "field"), [
        ({"workflow": "no_such_flow"}, "workflow"),
        ({"workflow": "refund_request", "tool_name": "get_order"}, "workflow"),
        ({"workflow": ""}, "workflow"),
        ({"workflow": "refund_request", "inputs": ["not", "an", "object"]}, "inputs"),
    ])
    async def test_bad_workflow_writes_nothing(self, autodev: AutoDev, extra: dict[str, object],
                                               field: str) -> None:
        """Unknown workflows and bad combinations are refused naming the field: no episode,
        no agent, no task, no event."""
        autodev.register_workflow(support(), actor="alice")
        before = {m: _count(autodev, m) for m in (Episode, Agent, WorkflowTaskRecord,
                                                  EventRecord)}
        with pytest.raises(ValidationError) as info:
            await autodev.record_episode(agent="new-bot", task="t", success=False,
                                         expected="x", **extra)  # type: ignore[arg-type]
        assert info.value.field == field
        assert {m: _count(autodev, m) for m in before} == before


class TestTasks:
    """Tasks added by hand are stored once per input and expected output."""

    def test_add_task_deduplicates(self, autodev: AutoDev) -> None:
        """The same task twice is one row; another expected value is another task."""
        autodev.register_workflow(support(), actor="alice")
        first = autodev.add_workflow_task("refund_request", {"order_id": 1}, "return started")
        again = autodev.add_workflow_task("refund_request", {"order_id": 1}, "return started")
        other = autodev.add_workflow_task("refund_request", {"order_id": 1}, "cancelled")
        unknown = autodev.add_workflow_task("refund_request", {"order_id": 2})
        assert first == again and len({first, other, unknown}) == 3
        tasks = {t.id: t for t in autodev.workflows.tasks("refund_request")}
        assert not tasks[unknown].has_expected and tasks[first].source == "user"

    def test_bad_tasks(self, autodev: AutoDev) -> None:
        """A non-object input names ``input``; an unknown workflow is NotFoundError."""
        autodev.register_workflow(support(), actor="alice")
        with pytest.raises(ValidationError) as info:
            autodev.add_workflow_task("refund_request", [1], "x")  # type: ignore[arg-type]
        assert info.value.field == "input"
        with pytest.raises(NotFoundError):
            autodev.add_workflow_task("nope", {}, "x")


class TestSignals:
    """Signals are stored against a version and summarised per kind."""

    async def test_summary_of_the_active_and_a_named_version(self, autodev: AutoDev) -> None:
        """Signals go to the active version unless one is named; the summary is per kind."""
        autodev.register_workflow(support(), actor="alice")
        await autodev.record_signal(workflow="refund_request", kind="feedback", value=1.0,
                                    agent="carol")
        autodev.register_workflow(fixed_support(), actor="alice")
        for value in (2.0, 4.0):
            await autodev.record_signal(workflow="refund_request", kind="business_value",
                                        value=value, metadata={"order": 1})
        await autodev.record_signal(workflow="refund_request", kind="feedback", value=0.0,
                                    version=1)
        await autodev.record_signal(tool="get_order", kind="nps", value=9)
        now = autodev.signal_summary(workflow="refund_request")
        assert now.version == 2 and set(now.kinds) == {"business_value"}
        stats = now.kinds["business_value"]
        assert (stats.count, stats.mean, stats.minimum, stats.maximum) == (2, 3.0, 2.0, 4.0)
        assert stats.last_at.tzinfo is not None and now.to_dict()["kinds"]["business_value"][
            "count"] == 2
        old = autodev.signal_summary(workflow="refund_request", version=1)
        assert old.kinds["feedback"].count == 2 and old.kinds["feedback"].mean == 0.5
        assert autodev.signal_summary(tool="get_order").kinds["nps"].mean == 9.0
        [event, *_] = _events(autodev, "SignalRecorded")
        assert event.kind == "feedback" and event.version == 1  # type: ignore[attr-defined]

    @pytest.mark.parametrize(("kwargs", "field"), [
        ({"workflow": "refund_request", "kind": "feedback", "value": float("nan")}, "value"),
        ({"workflow": "refund_request", "kind": "feedback", "value": True}, "value"),
        ({"workflow": "refund_request", "tool": "get_order", "kind": "f", "value": 1},
         "workflow"),
        ({"kind": "feedback", "value": 1}, "tool"),
        ({"workflow": "refund_request", "kind": "", "value": 1}, "kind"),
        ({"workflow": "refund_request", "kind": "f", "value": 1, "version": 0}, "version"),
    ])
    async def test_bad_signals_name_the_field(self, autodev: AutoDev, kwargs: dict[str, object],
                                              field: str) -> None:
        """Nonsense values and targets are refused, naming the field; nothing is stored."""
        autodev.register_workflow(support(), actor="alice")
        with pytest.raises(ValidationError) as info:
            await autodev.record_signal(**kwargs)  # type: ignore[arg-type]
        assert info.value.field == field
        assert _count(autodev, VersionSignal) == 0


class TestTenantIsolation:
    """Tenant B never sees or changes tenant A's workflows, tasks or signals."""

    async def test_b_cannot_see_or_change_a(self, autodev: AutoDev) -> None:
        """Every read and write of B about A's workflow fails; B's own same-named workflow is
        independent."""
        autodev.register_workflow(support(), actor="alice")
        autodev.register_workflow(fixed_support(), actor="alice")
        autodev.add_workflow_task("refund_request", {"order_id": 1}, "x")
        await autodev.record_signal(workflow="refund_request", kind="feedback", value=1)
        b = "tenant-b"
        with pytest.raises(NotFoundError):
            autodev.workflow_definition("refund_request", tenant_id=b)
        with pytest.raises(NotFoundError):
            autodev.workflow_versions("refund_request", tenant_id=b)
        with pytest.raises(NotFoundError):
            autodev.rollback_workflow("refund_request", 1, actor="eve", reason="x",
                                      tenant_id=b)
        with pytest.raises(NotFoundError):
            autodev.add_workflow_task("refund_request", {"order_id": 2}, "y", tenant_id=b)
        with pytest.raises(NotFoundError):
            await autodev.record_signal(workflow="refund_request", kind="feedback", value=0,
                                        tenant_id=b)
        with pytest.raises(ValidationError):
            await autodev.record_episode(agent="eve", task="t", success=False,
                                         workflow="refund_request", tenant_id=b)
        assert autodev.workflows.summaries(tenant_id=b) == []
        # A's workflow is untouched.
        assert _active_versions(autodev, "refund_request") == [2]
        assert len(autodev.workflows.tasks("refund_request")) == 1
        assert autodev.signal_summary(workflow="refund_request").kinds["feedback"].count == 1
        # B's tools are B's own: A's tools do not count for B's workflow.
        with pytest.raises(ValidationError, match="unknown tool"):
            autodev.register_workflow(support(), actor="eve", tenant_id=b)
        register_tools(autodev, b)
        assert autodev.register_workflow(support(), actor="eve", tenant_id=b) == 1
        assert _active_versions(autodev, "refund_request") == [2]


class TestTenantViewOfWorkflows:
    """What engines read: the tenant's workflows, and failures of no tool but not of workflows."""

    async def test_engines_see_workflows_apart_from_toolless_tasks(self, autodev: AutoDev
                                                                  ) -> None:
        """TenantView.workflows reads the tenant's workflows; a failed workflow run is not a
        'task that used no tool' for Memento, and Memento does not react to it."""
        from datetime import UTC, datetime, timedelta

        from auto_dev.engines.memento import Memento
        from auto_dev.events import TaskFailed
        from auto_dev.queries import TenantView

        autodev.register_workflow(support(), actor="alice")
        await autodev.record_episode(agent="bot", task="refund", success=False,
                                     workflow="refund_request", inputs={"order_id": 1},
                                     error_trace="ValueError: x")
        await autodev.record_episode(agent="bot", task="free text", success=False,
                                     error_trace="ValueError: x")
        view = TenantView(autodev.database, "t1")
        assert view.workflows.names() == ["refund_request"]
        assert view.workflows.latest_failing_agent("refund_request") == "bot"
        assert view.workflows.workflow_id("nope") is None
        since = datetime.now(UTC) - timedelta(hours=1)
        assert [f.task_description for f in view.episodes.failures(None, since=since)] == [
            "free text"]
        assert TenantView(autodev.database, "other").workflows.names() == []
        event = TaskFailed(tenant_id="t1", agent_id="bot", error_trace="ValueError: x",
                           workflow="refund_request")
        assert Memento(min_group_size=1).cycle_target(event, view) is None


@pytest.mark.postgres
class TestRegistryOnPostgres:
    """The same registry on PostgreSQL: versions, rollback, episodes, tasks, signals."""

    async def test_round_trip(self, postgres_database: Database, postgres_url: str) -> None:
        """Register two versions, record a run with its expected output and signals, roll
        back: one active version throughout, the task and the summary as on SQLite."""
        instance = await make_autodev(postgres_database, postgres_url)
        try:
            assert instance.register_workflow(support(), actor="alice") == 1
            assert instance.register_workflow(fixed_support(), actor="alice") == 2
            run = {"agent": "bot", "task": "refund", "success": False,
                   "workflow": "refund_request", "inputs": {"order_id": 1}, "expected": "r"}
            await instance.record_episode(**run)  # type: ignore[arg-type]
            await instance.record_episode(**run)  # type: ignore[arg-type]
            assert len(instance.workflows.tasks("refund_request")) == 1
            for value in (1.0, 3.0):
                await instance.record_signal(workflow="refund_request", kind="feedback",
                                             value=value)
            summary = instance.signal_summary(workflow="refund_request")
            assert summary.kinds["feedback"].mean == 2.0 and summary.version == 2
            instance.rollback_workflow("refund_request", 1, actor="bob", reason="r")
            assert _active_versions(instance, "refund_request") == [1]
        finally:
            await instance.aclose()
