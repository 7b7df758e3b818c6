"""The workflow tables: one active version per workflow, signals about exactly one version, and
a migration that keeps episodes' segments on SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from auto_dev._exceptions import StorageError
from auto_dev.db import Database
from auto_dev.models import (
    Agent,
    Episode,
    EpisodeSegment,
    TestCase,
    Tool,
    VersionSignal,
    Workflow,
    WorkflowVersion,
)


def _workflow(database: Database, tenant_id: str) -> tuple[str, str]:
    """A workflow with an active v1; returns (workflow id, version id)."""
    with database.session() as s:
        flow = Workflow(tenant_id=tenant_id, name="w")
        s.add(flow)
        s.flush()
        version = WorkflowVersion(tenant_id=tenant_id, workflow_id=flow.id, version=1,
                                  definition={"name": "w", "steps": []}, definition_hash="h1",
                                  is_active=True)
        s.add(version)
        s.flush()
        return flow.id, version.id


def _check_one_active(database: Database, tenant_id: str) -> None:
    flow_id, _ = _workflow(database, tenant_id)
    with pytest.raises(StorageError, match="constraint"), database.session() as s:
        s.add(WorkflowVersion(tenant_id=tenant_id, workflow_id=flow_id, version=2,
                              definition={}, definition_hash="h2", is_active=True))
        s.flush()
    with database.session() as s:  # inactive versions are as many as you like
        for number in (2, 3):
            s.add(WorkflowVersion(tenant_id=tenant_id, workflow_id=flow_id, version=number,
                                  definition={}, definition_hash=f"h{number}", is_active=False))
    # Version numbers are unique per workflow.
    with pytest.raises(StorageError, match="constraint"), database.session() as s:
        s.add(WorkflowVersion(tenant_id=tenant_id, workflow_id=flow_id, version=3,
                              definition={}, definition_hash="h", is_active=False))
        s.flush()


def _check_signal_target(database: Database, tenant_id: str) -> None:
    _, version_id = _workflow(database, tenant_id)
    with pytest.raises(StorageError, match="constraint"), database.session() as s:
        s.add(VersionSignal(tenant_id=tenant_id, kind="feedback", value=1.0))  # no version
        s.flush()
    with database.session() as s:
        s.add(VersionSignal(tenant_id=tenant_id, workflow_version_id=version_id,
                            kind="feedback", value=1.0))


class TestWorkflowTablesSqlite:
    """The constraints on SQLite."""

    def test_one_active_version_per_workflow(self, database: Database, tenant_id: str) -> None:
        """A second active version of the same workflow is refused by the database itself."""
        _check_one_active(database, tenant_id)

    def test_a_signal_is_about_exactly_one_version(self, database: Database,
                                                   tenant_id: str) -> None:
        """A signal without a version is refused by the check constraint."""
        _check_signal_target(database, tenant_id)


@pytest.mark.postgres
class TestWorkflowTablesPostgres:
    """The same constraints on PostgreSQL."""

    def test_one_active_version_per_workflow(self, postgres_database: Database) -> None:
        """A second active version of the same workflow is refused by the database itself."""
        with postgres_database.session() as s:
            postgres_database.ensure_tenant(s, "t1")
        _check_one_active(postgres_database, "t1")

    def test_a_signal_is_about_exactly_one_version(self, postgres_database: Database) -> None:
        """A signal without a version is refused by the check constraint."""
        with postgres_database.session() as s:
            postgres_database.ensure_tenant(s, "t1")
        _check_signal_target(postgres_database, "t1")


class TestMigrationKeepsEpisodes:
    """Copying ``episodes`` on SQLite (to add or drop its foreign key) loses nothing."""

    def test_upgrade_and_downgrade_keep_segments_and_links(self, tmp_path: Path) -> None:
        """Episodes, their segments and the test cases made from them survive 0005 -> 0006
        -> 0005 -> 0006, with foreign keys on."""
        db = Database(f"sqlite:///{tmp_path}/m.db")
        try:
            db.upgrade("0005")
            with db.session() as s:
                agent = db.ensure_agent(s, "t1", "a")
                tool = Tool(tenant_id="t1", name="inc", entrypoint="inc")
                s.add(tool)
                s.flush()
                # Without the ORM class: at 0005 episodes has no workflow_id column yet.
                episode_id = "e" * 32
                s.execute(Episode.__table__.insert().values(
                    id=episode_id, tenant_id="t1", agent_id=agent.id, task_description="",
                    success=False, details={}))
                s.add(EpisodeSegment(tenant_id="t1", episode_id=episode_id, seq=0, inputs={}))
                s.add(TestCase(tenant_id="t1", tool_id=tool.id, episode_id=episode_id))

            def check() -> None:
                with db.engine.connect() as conn:
                    segments = conn.execute(select(func.count()).select_from(
                        EpisodeSegment.__table__)).scalar()
                    link = conn.execute(select(TestCase.__table__.c.episode_id)).scalar()
                    agents = conn.execute(select(func.count()).select_from(
                        Agent.__table__)).scalar()
                assert (segments, link, agents) == (1, episode_id, 1)

            for revision in ("0006", "0005", "0006"):
                if revision == "0005":
                    db.downgrade(revision)
                else:
                    db.upgrade(revision)
                check()
        finally:
            db.dispose()
