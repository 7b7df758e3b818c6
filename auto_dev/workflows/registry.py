"""``WorkflowRegistry``: workflows as stored, versioned, recorded things (``autodev.workflows``).

Register a definition (validated against the schema and the tenant's tools; a changed
definition becomes the next active version), read definitions and versions, roll back to an
older version (audited, with a reason), add tasks (an input and the output expected from it),
record signals (business value, feedback, or a kind of your own) against the active or a named
version of a tool or workflow, and read a version's signal summary. Every call is scoped to one
tenant (``tenant_id``, default the facade's). Version changes go through the candidate store;
the SQL is in :mod:`auto_dev.queries.workflows`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import structlog

from auto_dev._exceptions import ValidationError
from auto_dev.events import SignalRecorded
from auto_dev.payloads import NAME_MAX_CHARS, PayloadLimits, check_json, check_signal
from auto_dev.queries.workflows import (
    BUSINESS_VALUE,
    FEEDBACK,
    TOOL_TARGET,
    WORKFLOW_TARGET,
    SignalSummary,
    StoredWorkflowTask,
    WorkflowInfo,
    WorkflowQueries,
    WorkflowVersionInfo,
    add_signal,
    add_task,
    find_workflow,
    get_workflow,
    tool_version_for,
    workflow_version_for,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from auto_dev.candidates.store import CandidateStore
    from auto_dev.candidates.workflow_versions import (
        WorkflowRegistration,
        WorkflowRollbackResult,
    )
    from auto_dev.db import Database
    from auto_dev.events import EventBus
    from auto_dev.models import Workflow

log = structlog.get_logger(__name__)

__all__ = ["BUSINESS_VALUE", "FEEDBACK", "WorkflowRegistry"]

class WorkflowRegistry:
    """The workflows of every tenant of one database (``tenant_id`` is only the default)."""

    def __init__(self, database: Database, store: CandidateStore, *, bus: EventBus | None,
                 limits: PayloadLimits | None = None, tenant_id: str = "default",
                 custom_kinds: Iterable[str] = ()) -> None:
        self.database = database
        #: The custom step kinds registered definitions may use (none by default).
        self.custom_kinds = frozenset(custom_kinds)
        self.store = store
        self.bus = bus
        self.limits = limits or PayloadLimits()
        self.tenant_id = tenant_id

    def _tid(self, tenant_id: str | None) -> str:
        return tenant_id or self.tenant_id

    def queries(self, tenant_id: str | None = None) -> WorkflowQueries:
        return WorkflowQueries(self.database, self._tid(tenant_id))

    # -- definitions and versions -----------------------------------------------------------------

    def register(self, doc: Any, *, actor: str, tenant_id: str | None = None) -> int:
        """Register workflow ``doc`` and return its active version number: 1 for a new
        workflow, the same number for an identical definition, the next one for a changed
        definition. Raises :class:`~auto_dev.ValidationError` naming the field for a bad
        document (schema, unknown tools, expressions) and writes nothing then."""
        return self.registration(doc, actor=actor, tenant_id=tenant_id).version

    def registration(self, doc: Any, *, actor: str, tenant_id: str | None = None
                     ) -> WorkflowRegistration:
        """:meth:`register`, telling also the workflow's name and whether a version was
        created (``False`` for a definition identical to the active one)."""
        plain = check_json("workflow", doc, self.limits)
        tid = self._tid(tenant_id)
        with self.database.session() as session:
            self.database.ensure_tenant(session, tid)
            return self.store.register_workflow(session, tenant_id=tid, definition=plain,
                                                actor=actor, kinds=self.custom_kinds)

    def definition(self, name: str, *, version: int | None = None,
                   tenant_id: str | None = None) -> dict[str, Any]:
        """The definition of workflow ``name``'s active version (or of ``version``)."""
        return self.queries(tenant_id).definition(name, version)

    def versions(self, name: str, *, tenant_id: str | None = None) -> list[WorkflowVersionInfo]:
        """Every version of workflow ``name``, oldest first (exactly one is active)."""
        return self.queries(tenant_id).versions(name)

    def summaries(self, *, limit: int | None = None, offset: int = 0,
                  tenant_id: str | None = None) -> list[WorkflowInfo]:
        """The tenant's workflows by name, with their active version and counts (``limit``
        of them after ``offset``: all by default)."""
        return self.queries(tenant_id).summaries(limit=limit, offset=offset)

    def summary(self, name: str, *, tenant_id: str | None = None) -> WorkflowInfo:
        """Workflow ``name`` with its active version and counts."""
        return self.queries(tenant_id).summary(name)

    def rollback(self, name: str, version: int | None, *, actor: str, reason: str,
                 tenant_id: str | None = None) -> WorkflowRollbackResult:
        """Re-activate ``version`` of workflow ``name`` (``None``: the previous good one),
        audited with ``actor`` and ``reason``."""
        with self.database.session() as session:
            return self.store.rollback_workflow(session, tenant_id=self._tid(tenant_id),
                                                name=name, actor=actor, reason=reason,
                                                to_version=version)

    # -- tasks ------------------------------------------------------------------------------------

    def add_task(self, name: str, input: Any, expected: Any = ..., *, source: str = "user",
                 tenant_id: str | None = None) -> str:
        """Store a task of workflow ``name`` (an input object and, unless omitted, the
        expected output) once; return its id (the stored one's when it exists)."""
        from auto_dev._payload_json import JSONWalker

        walker = JSONWalker(self.limits)
        task_input = walker.object("input", input)
        has_expected = expected is not ...
        value = walker.value("expected", expected) if has_expected else None
        walker.check_encoded_size([task_input, value])
        with self.database.session() as session:
            workflow = get_workflow(session, self._tid(tenant_id), name)
            row, _ = add_task(session, workflow, input=task_input, expected=value,
                              has_expected=has_expected, source=source)
            return row.id

    def tasks(self, name: str, *, limit: int | None = None, offset: int = 0,
              tenant_id: str | None = None) -> list[StoredWorkflowTask]:
        """The tasks of workflow ``name``, oldest first (``limit`` of them after ``offset``:
        all by default)."""
        return self.queries(tenant_id).tasks(name, limit=limit, offset=offset)

    # -- what record_episode needs -----------------------------------------------------------------

    @staticmethod
    def episode_workflow(session: Session, tenant_id: str, name: str | None) -> Workflow | None:
        """The workflow an episode names (``None`` for none); an unknown name is a
        :class:`~auto_dev.ValidationError` naming ``workflow``."""
        if name is None:
            return None
        workflow = find_workflow(session, tenant_id, name)
        if workflow is None:
            raise ValidationError("workflow", f"{name!r} is not a registered workflow of tenant "
                                  f"{tenant_id!r}; register it first")
        return workflow

    @staticmethod
    def task_from_episode(session: Session, workflow: Workflow, *, input: dict[str, Any],
                          expected: Any, episode_id: str) -> str:
        row, _ = add_task(session, workflow, input=input, expected=expected, has_expected=True,
                          source="episode", episode_id=episode_id)
        return row.id

    # -- signals ----------------------------------------------------------------------------------

    def record_signal(self, *, kind: str, value: float, tool: str | None = None,
                      workflow: str | None = None, version: int | None = None,
                      agent: str | None = None, metadata: dict[str, Any] | None = None,
                      tenant_id: str | None = None) -> str:
        """Record a signal against the active version (or ``version``) of ``tool`` or
        ``workflow`` and announce it (``SignalRecorded``, same transaction) to the promotion
        watch; return the signal's id."""
        report = check_signal(self.limits, kind=kind, value=value, tool=tool, workflow=workflow,
                              version=version, agent=agent, metadata=metadata,
                              tenant_id=tenant_id)
        tid = report.tenant_id or self.tenant_id
        with self.database.session() as session:
            agent_id = (self.database.ensure_agent(session, tid, report.agent).id
                        if report.agent else None)
            if report.tool is not None:
                target_kind, target = TOOL_TARGET, report.tool
                found: Any = tool_version_for(session, tid, report.tool, report.version)
            else:
                assert report.workflow is not None
                target_kind, target = WORKFLOW_TARGET, report.workflow
                found = workflow_version_for(session, tid, report.workflow, report.version)
            row = add_signal(session, tenant_id=tid, target_kind=target_kind,
                             version_id=found.id, kind=report.kind, value=report.value,
                             agent_id=agent_id, details=report.metadata)
            if self.bus is not None:
                self.bus.emit(session, SignalRecorded(
                    tenant_id=tid, signal_id=row.id, target_kind=target_kind, target=target,
                    version_id=found.id, version=found.version, kind=report.kind,
                    value=report.value, agent_id=report.agent,
                    metadata=report.metadata))
            log.info("signal_recorded", tenant_id=tid, target=target, version=found.version,
                     kind=report.kind, value=report.value)
            return row.id

    def signal_summary(self, *, tool: str | None = None, workflow: str | None = None,
                       version: int | None = None, tenant_id: str | None = None
                       ) -> SignalSummary:
        """Per kind of signal: count, mean, min, max and the time of the last one, for the
        active version (or ``version``) of ``tool`` or ``workflow``."""
        for field, name in (("tool", tool), ("workflow", workflow)):
            if name is not None and (not isinstance(name, str) or not name.strip()
                                     or len(name) > NAME_MAX_CHARS):
                raise ValidationError(field, "must be a non-empty name")
        return self.queries(tenant_id).signal_summary(tool=tool, workflow=workflow,
                                                      version=version)
