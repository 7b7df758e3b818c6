"""Reads of the episode aggregate (episodes, their agents and segments), scoped to one tenant."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import desc, func, select

from auto_dev._exceptions import NotFoundError
from auto_dev.failures import describe_signature, exception_of, failure_signature
from auto_dev.models import Agent, Episode, Tool

if TYPE_CHECKING:
    from auto_dev.db import Database


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
            query = (query.where(Episode.tool_name == tool_name) if tool_name
                     else query.where(Episode.tool_name.is_(None)))
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
