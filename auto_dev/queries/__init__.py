"""Tenant-scoped reads and writes, one module per aggregate: engines, the CLI and the service ask
here (or the candidate store) and write no SQL themselves."""

from __future__ import annotations

from typing import TYPE_CHECKING

from auto_dev.queries.episodes import EpisodeQueries, FailedEpisode
from auto_dev.queries.tools import ToolQueries, ToolSnapshot, load_tool
from auto_dev.queries.workflows import WorkflowQueries

if TYPE_CHECKING:
    from auto_dev.db import Database


class TenantView:
    """What one tenant's data looks like to an engine: its tools, workflows and episodes."""

    def __init__(self, database: Database, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self.tools = ToolQueries(database, tenant_id)
        self.episodes = EpisodeQueries(database, tenant_id)
        self.workflows = WorkflowQueries(database, tenant_id)
        self._database = database

    def open_skill_candidate(self, signature: str) -> bool:
        """Whether a skill candidate for failure ``signature`` is still open."""
        from auto_dev.candidates.store import CandidateStore

        with self._database.session(readonly=True) as session:
            return CandidateStore.open_skill_candidate_exists(session, self.tenant_id, signature)


__all__ = [
    "EpisodeQueries",
    "FailedEpisode",
    "TenantView",
    "ToolQueries",
    "ToolSnapshot",
    "WorkflowQueries",
    "load_tool",
]
