"""Workflows as stored, versioned things: ``workflows``, ``workflow_versions`` (one active per
workflow, kept by a partial unique index as for tool versions), ``workflow_tasks``,
``version_signals`` (signals recorded against a tool or a workflow version), a nullable
``episodes.workflow_id`` and ``workflow_variants.details`` (a variant's evidence and lineage).

SQLite adds a foreign key only by copying the table (batch mode), and dropping the old copy with
foreign keys on (they are, for every auto-dev connection) would cascade into
``episode_segments`` and null ``test_cases.episode_id``. So both directions save those rows
first and put them back after the copy.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 15:00:00
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ACTIVE = sa.text("is_active")


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                   name=op.f(f"fk_{table}_tenant_id_tenants"), ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _tenant_fk("workflows"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflows")),
        sa.UniqueConstraint("tenant_id", "name", name="uq_workflows_tenant_name"),
    )
    op.create_table(
        "workflow_versions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("workflow_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("definition_hash", sa.String(length=64), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("candidate_id", sa.String(length=32), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _tenant_fk("workflow_versions"),
        sa.ForeignKeyConstraint(["workflow_id"], ["workflows.id"],
                                name=op.f("fk_workflow_versions_workflow_id_workflows"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["candidate_id"], ["workflow_variants.id"],
                                name=op.f("fk_workflow_versions_candidate_id_workflow_variants"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_versions")),
        sa.UniqueConstraint("workflow_id", "version",
                            name="uq_workflow_versions_workflow_version"),
    )
    op.create_index("ix_workflow_versions_tenant_workflow", "workflow_versions",
                    ["tenant_id", "workflow_id"], unique=False)
    op.create_index("uq_workflow_versions_one_active", "workflow_versions", ["workflow_id"],
                    unique=True, sqlite_where=_ACTIVE, postgresql_where=_ACTIVE)
    op.create_table(
        "workflow_tasks",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("workflow_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("input", sa.JSON(), nullable=False),
        sa.Column("expected", sa.JSON(), nullable=True),
        sa.Column("has_expected", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("episode_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _tenant_fk("workflow_tasks"),
        sa.ForeignKeyConstraint(["workflow_id"], ["workflows.id"],
                                name=op.f("fk_workflow_tasks_workflow_id_workflows"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["episode_id"], ["episodes.id"],
                                name=op.f("fk_workflow_tasks_episode_id_episodes"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_tasks")),
        sa.UniqueConstraint("workflow_id", "key", name="uq_workflow_tasks_workflow_key"),
    )
    op.create_index("ix_workflow_tasks_tenant_workflow", "workflow_tasks",
                    ["tenant_id", "workflow_id"], unique=False)
    op.create_table(
        "version_signals",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("tool_version_id", sa.String(length=32), nullable=True),
        sa.Column("workflow_version_id", sa.String(length=32), nullable=True),
        sa.Column("kind", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("agent_id", sa.String(length=32), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _tenant_fk("version_signals"),
        sa.ForeignKeyConstraint(["tool_version_id"], ["tool_versions.id"],
                                name=op.f("fk_version_signals_tool_version_id_tool_versions"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["workflow_version_id"], ["workflow_versions.id"],
            name=op.f("fk_version_signals_workflow_version_id_workflow_versions"),
            ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"],
                                name=op.f("fk_version_signals_agent_id_agents"),
                                ondelete="SET NULL"),
        sa.CheckConstraint("(tool_version_id IS NULL) <> (workflow_version_id IS NULL)",
                           name=op.f("ck_version_signals_one_version")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_version_signals")),
    )
    op.create_index("ix_version_signals_tool_version", "version_signals",
                    ["tool_version_id", "kind", "created_at"], unique=False)
    op.create_index("ix_version_signals_workflow_version", "version_signals",
                    ["workflow_version_id", "kind", "created_at"], unique=False)
    op.create_index("ix_version_signals_tenant_created", "version_signals",
                    ["tenant_id", "created_at"], unique=False)

    # A variant's evidence and lineage (the engine's per-task results before and after).
    op.add_column("workflow_variants", sa.Column("details", sa.JSON(), nullable=False,
                                                 server_default="{}"))
    if op.get_context().dialect.name == "sqlite":
        with _episodes_copied_sqlite(copy_from=_episodes_0005()) as batch:
            batch.add_column(sa.Column("workflow_id", sa.String(length=32), nullable=True))
            batch.create_foreign_key("fk_episodes_workflow_id_workflows", "workflows",
                                     ["workflow_id"], ["id"], ondelete="SET NULL")
    else:
        op.add_column("episodes", sa.Column("workflow_id", sa.String(length=32), nullable=True))
        op.create_foreign_key("fk_episodes_workflow_id_workflows", "episodes", "workflows",
                              ["workflow_id"], ["id"], ondelete="SET NULL")
    op.create_index("ix_episodes_tenant_workflow_success", "episodes",
                    ["tenant_id", "workflow_id", "success", "created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_episodes_tenant_workflow_success", table_name="episodes")
    if op.get_context().dialect.name == "sqlite":
        with _episodes_copied_sqlite() as batch:
            batch.drop_constraint("fk_episodes_workflow_id_workflows", type_="foreignkey")
            batch.drop_column("workflow_id")
    else:
        op.drop_constraint("fk_episodes_workflow_id_workflows", "episodes", type_="foreignkey")
        op.drop_column("episodes", "workflow_id")
    op.drop_table("version_signals")
    op.drop_table("workflow_tasks")
    if op.get_context().dialect.name == "sqlite":
        with op.batch_alter_table("workflow_variants") as batch:
            batch.drop_column("details")
    else:
        op.drop_column("workflow_variants", "details")
    op.drop_index("uq_workflow_versions_one_active", table_name="workflow_versions")
    op.drop_table("workflow_versions")
    op.drop_table("workflows")


@contextlib.contextmanager
def _episodes_copied_sqlite(copy_from: sa.Table | None = None) -> Iterator[Any]:
    """Batch-alter ``episodes`` by copying it, keeping what dropping the old copy would take:
    its segments (ON DELETE CASCADE) and the test cases' and tasks' links to it (SET NULL)."""
    links = [t for t in ("test_cases", "workflow_tasks") if _has_table(t)]
    op.execute("CREATE TEMP TABLE _keep_segments AS SELECT * FROM episode_segments")
    for table in links:
        op.execute(f"CREATE TEMP TABLE _keep_{table} AS SELECT id, episode_id FROM {table} "
                   "WHERE episode_id IS NOT NULL")
    with op.batch_alter_table("episodes", recreate="always", copy_from=copy_from) as batch:
        yield batch
    op.execute("DELETE FROM episode_segments")
    op.execute("INSERT INTO episode_segments SELECT * FROM _keep_segments")
    op.execute("DROP TABLE _keep_segments")
    for table in links:
        op.execute(f"UPDATE {table} SET episode_id = (SELECT k.episode_id FROM _keep_{table} k "
                   f"WHERE k.id = {table}.id) WHERE id IN (SELECT id FROM _keep_{table})")
        op.execute(f"DROP TABLE _keep_{table}")


def _episodes_0005() -> sa.Table:
    """``episodes`` as revisions 0001-0005 left it: batch mode copies from this instead of
    reflecting the table, which also lets ``alembic upgrade --sql`` render this revision."""
    metadata = sa.MetaData()
    for parent in ("tenants", "agents"):
        sa.Table(parent, metadata, sa.Column("id", sa.String(length=64), primary_key=True))
    return sa.Table(
        "episodes", metadata,
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=32), nullable=False),
        sa.Column("task_description", sa.Text(), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("error_trace", sa.Text(), nullable=True),
        sa.Column("tool_name", sa.String(length=200), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], name="fk_episodes_agent_id_agents",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                name="fk_episodes_tenant_id_tenants", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_episodes"),
        sa.Index("ix_episodes_tenant_agent_created", "tenant_id", "agent_id", "created_at"),
        sa.Index("ix_episodes_tenant_tool_success", "tenant_id", "tool_name", "success",
                 "created_at"),
    )


def _has_table(name: str) -> bool:
    if op.get_context().as_sql:
        return name == "test_cases"  # offline rendering: what exists at this revision
    return sa.inspect(op.get_bind()).has_table(name)
