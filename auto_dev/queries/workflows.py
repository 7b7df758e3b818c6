"""Reads and writes of the workflow aggregate (workflows, versions, tasks) and of the signals
recorded against tool and workflow versions, scoped to one tenant.

Session-level functions serve the candidate store (which alone activates versions) and the
registry; :class:`WorkflowQueries` is what engines and the facade read through.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import desc, func, select
from sqlalchemy.exc import IntegrityError

from auto_dev._exceptions import NotFoundError
from auto_dev.models import (
    Tool,
    ToolVersion,
    VersionSignal,
    Workflow,
    WorkflowTaskRecord,
    WorkflowVersion,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from auto_dev.db import Database

#: What a signal is recorded against.
TOOL_TARGET = "tool"
WORKFLOW_TARGET = "workflow"
#: The signal kinds auto-dev knows (the promotion watch judges them); any other name is a kind
#: of the user's own.
BUSINESS_VALUE = "business_value"
FEEDBACK = "feedback"


# -- value types ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkflowVersionInfo:
    """One version of a workflow as listings show it."""

    id: str
    version: int
    is_active: bool
    source: str
    candidate_id: str | None
    created_by: str
    created_at: datetime
    definition_hash: str


@dataclass(frozen=True, slots=True)
class WorkflowInfo:
    """A workflow with its active version number and counts."""

    id: str
    name: str
    description: str
    active_version: int | None
    versions: int
    tasks: int


@dataclass(frozen=True, slots=True)
class StoredWorkflowTask:
    """An input of a workflow and (when ``has_expected``) the output expected from it."""

    id: str
    input: dict[str, Any]
    expected: Any
    has_expected: bool
    source: str
    episode_id: str | None


@dataclass(frozen=True, slots=True)
class WorkflowSnapshot:
    """What an engine evolves a workflow from, read in one transaction: the active version,
    the stored tasks, and the inputs of recent failing runs that named no expected output."""

    workflow_id: str
    name: str
    version_id: str
    version: int
    definition: dict[str, Any]
    tasks: tuple[StoredWorkflowTask, ...]
    #: Inputs of failing runs without ``expected``, newest first, each once.
    failing_inputs: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True)
class SignalStats:
    """The signals of one kind recorded against one version."""

    kind: str
    count: int
    mean: float
    minimum: float
    maximum: float
    last_at: datetime


@dataclass(frozen=True, slots=True)
class SignalSummary:
    """Every kind of signal recorded against one tool or workflow version."""

    target_kind: str
    target: str
    version: int
    version_id: str
    kinds: dict[str, SignalStats] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"target_kind": self.target_kind, "target": self.target,
                "version": self.version, "version_id": self.version_id,
                "kinds": {k: {"count": s.count, "mean": s.mean, "min": s.minimum,
                              "max": s.maximum, "last_at": s.last_at.isoformat()}
                          for k, s in self.kinds.items()}}


# -- session-level helpers ------------------------------------------------------------------------


def find_workflow(session: Session, tenant_id: str, name: str) -> Workflow | None:
    return session.scalars(select(Workflow).where(
        Workflow.tenant_id == tenant_id, Workflow.name == name)).one_or_none()


def get_workflow(session: Session, tenant_id: str, name: str) -> Workflow:
    """The tenant's workflow ``name``, or :class:`NotFoundError`."""
    workflow = find_workflow(session, tenant_id, name)
    if workflow is None:
        raise NotFoundError(f"workflow {name!r} does not exist in tenant {tenant_id!r}")
    return workflow


def active_workflow_version(session: Session, workflow: Workflow) -> WorkflowVersion | None:
    return session.scalars(select(WorkflowVersion).where(
        WorkflowVersion.tenant_id == workflow.tenant_id,
        WorkflowVersion.workflow_id == workflow.id,
        WorkflowVersion.is_active.is_(True))).one_or_none()


def versions_of(session: Session, workflow: Workflow, *, newest_first: bool = False
                ) -> list[WorkflowVersion]:
    order = WorkflowVersion.version.desc() if newest_first else WorkflowVersion.version
    return list(session.scalars(select(WorkflowVersion).where(
        WorkflowVersion.tenant_id == workflow.tenant_id,
        WorkflowVersion.workflow_id == workflow.id).order_by(order)))


def highest_version(session: Session, workflow: Workflow) -> int:
    return int(session.scalar(select(func.max(WorkflowVersion.version)).where(
        WorkflowVersion.workflow_id == workflow.id)) or 0)


def tenant_tool_names(session: Session, tenant_id: str) -> list[str]:
    """The names of the tenant's registered tools (what a workflow's tool steps may name)."""
    return list(session.scalars(select(Tool.name).where(Tool.tenant_id == tenant_id)
                                .order_by(Tool.name)))


def task_key(input: dict[str, Any], expected: Any, has_expected: bool) -> str:
    """A task's identity: the same input and expected value are stored once per workflow."""
    text = json.dumps([input, expected if has_expected else None, has_expected],
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def add_task(session: Session, workflow: Workflow, *, input: dict[str, Any], expected: Any,
             has_expected: bool, source: str, episode_id: str | None = None
             ) -> tuple[WorkflowTaskRecord, bool]:
    """Store a task of ``workflow`` unless the same one is stored; return it and whether it
    is new. Race-safe: a concurrent insert of the same key is read back instead."""
    key = task_key(input, expected, has_expected)

    def existing() -> WorkflowTaskRecord | None:
        return session.scalars(select(WorkflowTaskRecord).where(
            WorkflowTaskRecord.workflow_id == workflow.id,
            WorkflowTaskRecord.key == key)).one_or_none()

    found = existing()
    if found is not None:
        return found, False
    row = WorkflowTaskRecord(tenant_id=workflow.tenant_id, workflow_id=workflow.id, key=key,
                             input=input, expected=expected if has_expected else None,
                             has_expected=has_expected, source=source, episode_id=episode_id)
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        found = existing()
        if found is None:
            raise
        return found, False
    return row, True


def tool_version_for(session: Session, tenant_id: str, tool_name: str,
                     version: int | None) -> ToolVersion:
    """Version ``version`` of a tool (``None``: the active one), or :class:`NotFoundError`."""
    tool = session.scalars(select(Tool).where(Tool.tenant_id == tenant_id,
                                              Tool.name == tool_name)).one_or_none()
    if tool is None:
        raise NotFoundError(f"tool {tool_name!r} does not exist in tenant {tenant_id!r}")
    query = select(ToolVersion).where(ToolVersion.tenant_id == tenant_id,
                                      ToolVersion.tool_id == tool.id)
    query = (query.where(ToolVersion.is_active.is_(True)) if version is None
             else query.where(ToolVersion.version == version))
    row = session.scalars(query).one_or_none()
    if row is None:
        what = "an active version" if version is None else f"a version {version}"
        raise NotFoundError(f"version: tool {tool_name!r} has no {what}")
    return row


def workflow_version_for(session: Session, tenant_id: str, name: str,
                         version: int | None) -> WorkflowVersion:
    """Version ``version`` of a workflow (``None``: the active one), or NotFoundError."""
    workflow = get_workflow(session, tenant_id, name)
    query = select(WorkflowVersion).where(WorkflowVersion.tenant_id == tenant_id,
                                          WorkflowVersion.workflow_id == workflow.id)
    query = (query.where(WorkflowVersion.is_active.is_(True)) if version is None
             else query.where(WorkflowVersion.version == version))
    row = session.scalars(query).one_or_none()
    if row is None:
        what = "an active version" if version is None else f"a version {version}"
        raise NotFoundError(f"version: workflow {name!r} has no {what}")
    return row


def add_signal(session: Session, *, tenant_id: str, target_kind: str, version_id: str,
               kind: str, value: float, agent_id: str | None,
               details: dict[str, Any]) -> VersionSignal:
    row = VersionSignal(
        tenant_id=tenant_id, kind=kind, value=value, agent_id=agent_id, details=details,
        tool_version_id=version_id if target_kind == TOOL_TARGET else None,
        workflow_version_id=version_id if target_kind == WORKFLOW_TARGET else None)
    session.add(row)
    session.flush()
    return row


def signal_values(session: Session, tenant_id: str, target_kind: str, version_id: str,
                  kind: str, *, limit: int | None = None) -> list[float]:
    """The values of one kind of signal of a version, oldest first (the first ``limit``)."""
    column = (VersionSignal.tool_version_id if target_kind == TOOL_TARGET
              else VersionSignal.workflow_version_id)
    query = (select(VersionSignal.value)
             .where(VersionSignal.tenant_id == tenant_id, column == version_id,
                    VersionSignal.kind == kind)
             .order_by(VersionSignal.created_at, VersionSignal.id))
    if limit is not None:
        query = query.limit(limit)
    return [float(v) for v in session.scalars(query)]


def signal_stats(session: Session, tenant_id: str, target_kind: str,
                 version_id: str) -> dict[str, SignalStats]:
    column = (VersionSignal.tool_version_id if target_kind == TOOL_TARGET
              else VersionSignal.workflow_version_id)
    rows = session.execute(
        select(VersionSignal.kind, func.count(), func.avg(VersionSignal.value),
               func.min(VersionSignal.value), func.max(VersionSignal.value),
               func.max(VersionSignal.created_at))
        .where(VersionSignal.tenant_id == tenant_id, column == version_id)
        .group_by(VersionSignal.kind).order_by(VersionSignal.kind)).all()
    out: dict[str, SignalStats] = {}
    for kind, count, mean, low, high, last in rows:
        if isinstance(last, str):  # SQLite hands an aggregate back as its stored text
            last = datetime.fromisoformat(last)
        if last.tzinfo is None:  # stored in UTC (see UTCDateTime)
            last = last.replace(tzinfo=UTC)
        out[kind] = SignalStats(kind, int(count), float(mean), float(low), float(high), last)
    return out


def version_info(row: WorkflowVersion) -> WorkflowVersionInfo:
    return WorkflowVersionInfo(row.id, row.version, row.is_active, row.source, row.candidate_id,
                               row.created_by, row.created_at, row.definition_hash)


def _workflow_info(session: Session, workflow: Workflow) -> WorkflowInfo:
    active = active_workflow_version(session, workflow)
    versions = session.scalar(select(func.count()).select_from(WorkflowVersion).where(
        WorkflowVersion.tenant_id == workflow.tenant_id,
        WorkflowVersion.workflow_id == workflow.id)) or 0
    tasks = session.scalar(select(func.count()).select_from(WorkflowTaskRecord).where(
        WorkflowTaskRecord.tenant_id == workflow.tenant_id,
        WorkflowTaskRecord.workflow_id == workflow.id)) or 0
    return WorkflowInfo(workflow.id, workflow.name, workflow.description,
                        active.version if active else None, int(versions), int(tasks))


# -- the tenant's view ----------------------------------------------------------------------------


class WorkflowQueries:
    """The workflows of one tenant, as engines and the facade read them."""

    def __init__(self, database: Database, tenant_id: str) -> None:
        self.database = database
        self.tenant_id = tenant_id

    def names(self) -> list[str]:
        with self.database.session(readonly=True) as session:
            return list(session.scalars(select(Workflow.name).where(
                Workflow.tenant_id == self.tenant_id).order_by(Workflow.name)))

    def workflow_id(self, name: str | None) -> str | None:
        """The id of workflow ``name``, or ``None`` when this tenant has no such workflow."""
        if not name:
            return None
        with self.database.session(readonly=True) as session:
            workflow = find_workflow(session, self.tenant_id, name)
            return workflow.id if workflow is not None else None

    def definition(self, name: str, version: int | None = None) -> dict[str, Any]:
        """The definition of the active version (or of ``version``)."""
        with self.database.session(readonly=True) as session:
            return dict(workflow_version_for(session, self.tenant_id, name, version).definition)

    def versions(self, name: str) -> list[WorkflowVersionInfo]:
        with self.database.session(readonly=True) as session:
            workflow = get_workflow(session, self.tenant_id, name)
            return [version_info(v) for v in versions_of(session, workflow)]

    def summaries(self, *, limit: int | None = None, offset: int = 0) -> list[WorkflowInfo]:
        """The tenant's workflows by name (``limit`` of them after ``offset``: all by
        default)."""
        with self.database.session(readonly=True) as session:
            query = (select(Workflow).where(Workflow.tenant_id == self.tenant_id)
                     .order_by(Workflow.name).offset(offset))
            if limit is not None:
                query = query.limit(limit)
            return [_workflow_info(session, w) for w in session.scalars(query)]

    def count(self) -> int:
        """How many workflows the tenant has."""
        with self.database.session(readonly=True) as session:
            return int(session.scalar(select(func.count()).select_from(Workflow).where(
                Workflow.tenant_id == self.tenant_id)) or 0)

    def summary(self, name: str) -> WorkflowInfo:
        """Workflow ``name`` with its active version and counts, or NotFoundError."""
        with self.database.session(readonly=True) as session:
            return _workflow_info(session, get_workflow(session, self.tenant_id, name))

    def tasks(self, name: str, *, limit: int | None = None, offset: int = 0
              ) -> list[StoredWorkflowTask]:
        """The workflow's tasks, oldest first (``limit`` of them after ``offset``: all by
        default)."""
        with self.database.session(readonly=True) as session:
            workflow = get_workflow(session, self.tenant_id, name)
            query = (select(WorkflowTaskRecord).where(
                WorkflowTaskRecord.tenant_id == self.tenant_id,
                WorkflowTaskRecord.workflow_id == workflow.id)
                .order_by(WorkflowTaskRecord.created_at, WorkflowTaskRecord.id).offset(offset))
            if limit is not None:
                query = query.limit(limit)
            return [StoredWorkflowTask(r.id, dict(r.input or {}), r.expected, r.has_expected,
                                       r.source, r.episode_id) for r in session.scalars(query)]

    def open_variants(self, name: str) -> list[str]:
        """Ids of the workflow's variants not decided yet (pending, evaluating, passed or
        approved), oldest first."""
        from auto_dev.models import WorkflowVariant

        with self.database.session(readonly=True) as session:
            return list(session.scalars(select(WorkflowVariant.id).where(
                WorkflowVariant.tenant_id == self.tenant_id, WorkflowVariant.name == name,
                WorkflowVariant.status.in_(("pending", "evaluating", "passed", "approved")))
                .order_by(WorkflowVariant.created_at, WorkflowVariant.id)))

    def snapshot(self, name: str, *, max_failing_runs: int = 50) -> WorkflowSnapshot:
        """The active version, the tasks and the inputs of the newest ``max_failing_runs``
        failing runs that gave no expected output (:class:`NotFoundError` if missing)."""
        from auto_dev.models import Episode

        with self.database.session(readonly=True) as session:
            version = workflow_version_for(session, self.tenant_id, name, None)
            rows = session.scalars(select(WorkflowTaskRecord).where(
                WorkflowTaskRecord.tenant_id == self.tenant_id,
                WorkflowTaskRecord.workflow_id == version.workflow_id)
                .order_by(WorkflowTaskRecord.created_at, WorkflowTaskRecord.id))
            tasks = tuple(StoredWorkflowTask(r.id, dict(r.input or {}), r.expected,
                                             r.has_expected, r.source, r.episode_id)
                          for r in rows)
            failing = session.scalars(
                select(Episode.details).where(
                    Episode.tenant_id == self.tenant_id,
                    Episode.workflow_id == version.workflow_id, Episode.success.is_(False))
                .order_by(desc(Episode.created_at), desc(Episode.id))
                .limit(max_failing_runs))
            inputs: dict[str, dict[str, Any]] = {}
            for details in failing:
                details = details or {}
                if "expected" in details or not isinstance(details.get("inputs"), dict):
                    continue  # a run with its expected output is a stored task already
                key = json.dumps(details["inputs"], sort_keys=True, default=str)
                inputs.setdefault(key, dict(details["inputs"]))
            return WorkflowSnapshot(version.workflow_id, name, version.id, version.version,
                                    dict(version.definition), tasks, tuple(inputs.values()))

    def signal_summary(self, *, tool: str | None = None, workflow: str | None = None,
                       version: int | None = None) -> SignalSummary:
        """Per kind: how many signals, their mean, min, max and when the last came, for the
        active version (or ``version``) of ``tool`` or ``workflow``."""
        from auto_dev._exceptions import ValidationError

        if (tool is None) == (workflow is None):
            raise ValidationError("tool", "name exactly one of tool and workflow")
        with self.database.session(readonly=True) as session:
            if tool is not None:
                tv = tool_version_for(session, self.tenant_id, tool, version)
                return SignalSummary(TOOL_TARGET, tool, tv.version, tv.id,
                                     signal_stats(session, self.tenant_id, TOOL_TARGET, tv.id))
            assert workflow is not None
            wv = workflow_version_for(session, self.tenant_id, workflow, version)
            return SignalSummary(WORKFLOW_TARGET, workflow, wv.version, wv.id,
                                 signal_stats(session, self.tenant_id, WORKFLOW_TARGET, wv.id))

    def failing_workflows(self, *, since: datetime) -> list[str]:
        """The tenant's workflows with failed runs since ``since``, most failures first."""
        from auto_dev.models import Episode

        with self.database.session(readonly=True) as session:
            rows = session.execute(
                select(Workflow.name, func.count())
                .join(Episode, Episode.workflow_id == Workflow.id)
                .where(Workflow.tenant_id == self.tenant_id,
                       Episode.tenant_id == self.tenant_id, Episode.success.is_(False),
                       Episode.created_at >= since)
                .group_by(Workflow.name)
                .order_by(desc(func.count()), Workflow.name)).all()
        return [name for name, _ in rows]

    def latest_failing_agent(self, name: str) -> str | None:
        """The key of the agent whose run of workflow ``name`` failed most recently."""
        from auto_dev.models import Agent, Episode

        with self.database.session(readonly=True) as session:
            workflow = find_workflow(session, self.tenant_id, name)
            if workflow is None:
                return None
            return session.scalars(
                select(Agent.key).join(Episode, Episode.agent_id == Agent.id)
                .where(Episode.tenant_id == self.tenant_id, Episode.workflow_id == workflow.id,
                       Episode.success.is_(False))
                .order_by(desc(Episode.created_at)).limit(1)).one_or_none()
