"""Reads of the episode aggregate (episodes, their agents and segments), scoped to one tenant."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import desc, func, select

from auto_dev._exceptions import NotFoundError
from auto_dev.failures import describe_signature, exception_of, failure_signature
from auto_dev.models import Agent, Episode, EpisodeSegment, Tool
from auto_dev.queries.paging import Page, check_window, count_of

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from auto_dev.db import Database
    from auto_dev.payloads import EpisodeReport


def insert_episode(session: Session, tenant_id: str, agent_id: str, report: EpisodeReport, *,
                   workflow_id: str | None = None) -> Episode:
    """Store a checked episode and its segments in ``session``."""
    episode = Episode(
        tenant_id=tenant_id, agent_id=agent_id, task_description=report.task,
        success=report.success, error_trace=report.error_trace, tool_name=report.tool_name,
        workflow_id=workflow_id,
        details={"inputs": report.inputs, "output": report.output,
                 "metadata": report.metadata or {},
                 **({"expected": report.expected} if report.expected is not ... else {})},
    )
    session.add(episode)
    session.flush()
    for seq, seg in enumerate(report.segments):
        session.add(EpisodeSegment(
            tenant_id=tenant_id, episode_id=episode.id, seq=seq,
            kind=str(seg.get("kind", "tool_call")), tool_name=seg.get("tool_name"),
            inputs=seg.get("inputs") or {}, output=seg.get("output"),
            error=seg.get("error"), duration_s=seg.get("duration_s"),
        ))
    return episode


@dataclass(frozen=True, slots=True)
class FailedEpisode:
    """One failed episode as the engines group and learn from it."""

    id: str
    agent_key: str
    tool_name: str | None
    task_description: str
    error_trace: str | None
    details: dict[str, Any] = field(default_factory=dict)


class EpisodeQueries:
    """The episodes of one tenant, as engines and the scheduler read them."""

    def __init__(self, database: Database, tenant_id: str) -> None:
        self.database = database
        self.tenant_id = tenant_id

    def analysis(self, episode_id: str) -> dict[str, Any]:
        """The learning signal of one episode: tool, inputs, expected value, error, pattern."""
        with self.database.session(readonly=True) as session:
            episode = session.get(Episode, episode_id)
            if episode is None or episode.tenant_id != self.tenant_id:
                raise NotFoundError(
                    f"episode {episode_id!r} does not exist in tenant {self.tenant_id!r}")
            exc_type, message = exception_of(episode.error_trace)
            details = episode.details or {}
            return {
                "episode_id": episode.id,
                "tenant_id": episode.tenant_id,
                "tool_name": episode.tool_name,
                "task_description": episode.task_description,
                "success": episode.success,
                "error_trace": episode.error_trace,
                "error_type": exc_type,
                "error_message": message,
                "signature": failure_signature(episode.tool_name, episode.error_trace),
                "pattern": describe_signature(episode.tool_name, episode.error_trace),
                "inputs": details.get("inputs") or {},
                "expected": details.get("expected"),
                "has_expected": "expected" in details,
                "segments": len(episode.segments),
            }

    def latest_failing_agent(self, tool_name: str | None) -> str | None:
        """The key of the agent whose failure with ``tool_name`` is the most recent."""
        if not tool_name:
            return None
        with self.database.session(readonly=True) as session:
            return session.scalars(
                select(Agent.key).join(Episode, Episode.agent_id == Agent.id)
                .where(Episode.tenant_id == self.tenant_id, Episode.tool_name == tool_name,
                       Episode.success.is_(False))
                .order_by(desc(Episode.created_at)).limit(1)
            ).one_or_none()

    def latest_agent(self, tool_name: str) -> str | None:
        """The key of the agent that used ``tool_name`` most recently, failing or not."""
        with self.database.session(readonly=True) as session:
            return session.scalars(
                select(Agent.key).join(Episode, Episode.agent_id == Agent.id)
                .where(Episode.tenant_id == self.tenant_id, Episode.tool_name == tool_name)
                .order_by(desc(Episode.created_at)).limit(1)
            ).one_or_none()

    def failures(self, tool_name: str | None, *, since: datetime,
                 limit: int = 500) -> list[FailedEpisode]:
        """Failed episodes since ``since``, newest first: of ``tool_name``, or (``None``) of
        tasks that used no tool."""
        with self.database.session(readonly=True) as session:
            query = (
                select(Episode, Agent.key).join(Agent, Agent.id == Episode.agent_id)
                .where(Episode.tenant_id == self.tenant_id, Episode.success.is_(False),
                       Episode.created_at >= since)
                .order_by(desc(Episode.created_at)).limit(limit)
            )
            # Without a tool: tasks that used none, not runs of a registered workflow (those
            # are the workflow engine's to learn from).
            query = (query.where(Episode.tool_name == tool_name) if tool_name
                     else query.where(Episode.tool_name.is_(None), Episode.workflow_id.is_(None)))
            return [
                FailedEpisode(id=e.id, agent_key=key, tool_name=e.tool_name,
                              task_description=e.task_description, error_trace=e.error_trace,
                              details=dict(e.details or {}))
                for e, key in session.execute(query).all()
            ]

    def failing_tools(self, *, since: datetime) -> list[str]:
        """Registered tools with failed episodes since ``since``, most failures first."""
        with self.database.session(readonly=True) as session:
            rows = session.execute(
                select(Episode.tool_name, func.count())
                .join(Tool, (Tool.tenant_id == Episode.tenant_id)
                      & (Tool.name == Episode.tool_name))
                .where(Episode.tenant_id == self.tenant_id, Episode.success.is_(False),
                       Episode.created_at >= since)
                .group_by(Episode.tool_name)
                .order_by(desc(func.count()), Episode.tool_name)
            ).all()
        return [name for name, _ in rows if name]


@dataclass(frozen=True, slots=True)
class EpisodeRow:
    """One episode as the review API lists and shows it."""

    id: str
    agent: str
    task: str
    success: bool
    tool_name: str | None
    error_trace: str | None
    created_at: datetime
    details: dict[str, Any] = field(default_factory=dict)
    segments: list[dict[str, Any]] = field(default_factory=list)


class EpisodeBrowser:
    """The episodes of one tenant for a reviewer: newest first, filtered and paged."""

    def __init__(self, database: Database, tenant_id: str) -> None:
        self.database = database
        self.tenant_id = tenant_id

    def page(self, *, agent: str | None = None, tool_name: str | None = None,
             success: bool | None = None, limit: int = 50, offset: int = 0) -> Page[EpisodeRow]:
        limit, offset = check_window(limit, offset)
        query = (select(Episode, Agent.key).join(Agent, Agent.id == Episode.agent_id)
                 .where(Episode.tenant_id == self.tenant_id))
        if agent is not None:
            query = query.where(Agent.key == agent)
        if tool_name is not None:
            query = query.where(Episode.tool_name == tool_name)
        if success is not None:
            query = query.where(Episode.success.is_(success))
        with self.database.session(readonly=True) as session:
            total = count_of(session, query)
            rows = session.execute(query.order_by(desc(Episode.created_at), desc(Episode.id))
                                   .limit(limit).offset(offset)).all()
            items = [_episode_row(e, key, with_segments=False) for e, key in rows]
        return Page(items, total, limit, offset)

    def get(self, episode_id: str) -> EpisodeRow:
        with self.database.session(readonly=True) as session:
            episode = session.get(Episode, episode_id) if isinstance(episode_id, str) else None
            if episode is None or episode.tenant_id != self.tenant_id:
                raise NotFoundError(
                    f"episode {episode_id!r} does not exist in tenant {self.tenant_id!r}")
            agent = session.get(Agent, episode.agent_id)
            return _episode_row(episode, agent.key if agent else "", with_segments=True)


def _episode_row(episode: Episode, agent_key: str, *, with_segments: bool) -> EpisodeRow:
    segments = [{"seq": s.seq, "kind": s.kind, "tool_name": s.tool_name, "inputs": s.inputs,
                 "output": s.output, "error": s.error, "duration_s": s.duration_s}
                for s in episode.segments] if with_segments else []
    return EpisodeRow(id=episode.id, agent=agent_key, task=episode.task_description,
                      success=episode.success, tool_name=episode.tool_name,
                      error_trace=episode.error_trace, created_at=episode.created_at,
                      details=dict(episode.details or {}), segments=segments)
