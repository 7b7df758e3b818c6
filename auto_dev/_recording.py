"""What ``AutoDev.record_episode`` does inside its transaction, once the report is checked:
the episode (linked to its workflow), a tool test or a workflow task when the expected output is
known, and ``TaskFailed``/``TaskSucceeded`` in the same transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING

from auto_dev.events import Event, TaskFailed, TaskSucceeded
from auto_dev.queries.episodes import insert_episode
from auto_dev.queries.tools import find_tool, test_case_row
from auto_dev.workflows.registry import WorkflowRegistry

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from auto_dev.db import Database
    from auto_dev.events import EventBus
    from auto_dev.payloads import EpisodeReport


def store_episode(database: Database, bus: EventBus, session: Session, tenant_id: str,
                  report: EpisodeReport) -> str:
    """Store ``report`` for ``tenant_id`` in ``session`` and emit its event; return its id.

    An unknown workflow is refused before anything is written."""
    workflow = WorkflowRegistry.episode_workflow(session, tenant_id, report.workflow)
    agent_row = database.ensure_agent(session, tenant_id, report.agent)
    episode = insert_episode(session, tenant_id, agent_row.id, report,
                             workflow_id=workflow.id if workflow is not None else None)
    if report.case is not None and report.tool_name:
        tool = find_tool(session, tenant_id, report.tool_name)
        if tool is not None:
            session.add(test_case_row(tenant_id, tool.id, report.case, source="episode",
                                      episode_id=episode.id))
    if workflow is not None and report.expected is not ...:
        WorkflowRegistry.task_from_episode(session, workflow, input=report.inputs,
                                           expected=report.expected, episode_id=episode.id)
    event: Event
    if report.success:
        event = TaskSucceeded(
            tenant_id=tenant_id, agent_id=report.agent, task_description=report.task,
            tool_name=report.tool_name, episode_id=episode.id, inputs=report.inputs,
            output=report.output, metadata=report.metadata or {}, workflow=report.workflow)
    else:
        event = TaskFailed(
            tenant_id=tenant_id, agent_id=report.agent, task_description=report.task,
            error_trace=report.error_trace or "", tool_name=report.tool_name,
            episode_id=episode.id, inputs=report.inputs,
            expected=None if report.expected is ... else report.expected,
            metadata=report.metadata or {}, workflow=report.workflow)
    bus.emit(session, event)
    return episode.id
