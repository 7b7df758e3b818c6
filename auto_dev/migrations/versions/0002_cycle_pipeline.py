"""The cycle pipeline: durable cycle jobs, leased runs, per-tenant schedules.

* ``cycle_jobs``: queued cycles (one queued job per tenant, engine and target) and running ones
  under a lease.
* ``evolution_runs``: ``owner``, ``lease_until``, ``agent`` and ``job_id``; the one-running-cycle
  index is per (tenant, target), whatever the engine.
* ``schedules``: keyed by ``(tenant_id, id)`` so that two tenants may use the same id; ``failures``
  and ``backoff_until`` for schedules whose cycles keep failing.

SQLite cannot change a primary key in place: ``batch_alter_table`` copies the table.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RUNNING = sa.text("status = 'running'")
_QUEUED = sa.text("status = 'queued'")


def _schedules_0001() -> sa.Table:
    """``schedules`` as revision 0001 made it: batch mode copies from this instead of reflecting
    the table, which also lets ``alembic upgrade --sql`` render this revision offline."""
    metadata = sa.MetaData(naming_convention={
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    })
    sa.Table("tenants", metadata, sa.Column("id", sa.String(length=64), primary_key=True))
    return sa.Table(
        "schedules", metadata,
        sa.Column("id", sa.String(length=64), primary_key=True),
        sa.Column("tenant_id", sa.String(length=64),
                  sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("engine", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=True),
        sa.Column("interval_s", sa.Float(), nullable=False),
        sa.Column("budget", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Index("ix_schedules_tenant", "tenant_id"),
    )


def upgrade() -> None:
    op.create_table(
        "cycle_jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("engine", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("agent", sa.String(length=200), nullable=True),
        sa.Column("budget", sa.Integer(), nullable=False),
        sa.Column("deadline_s", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("owner", sa.String(length=100), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("outcome", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_cycle_jobs_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cycle_jobs")),
    )
    op.create_index("ix_cycle_jobs_status_due", "cycle_jobs", ["status", "not_before"])
    op.create_index("ix_cycle_jobs_tenant_created", "cycle_jobs", ["tenant_id", "created_at"])
    op.create_index(
        "uq_cycle_jobs_one_queued", "cycle_jobs", ["tenant_id", "engine", "target"], unique=True,
        sqlite_where=_QUEUED, postgresql_where=_QUEUED,
    )

    op.drop_index("uq_evolution_runs_one_running", table_name="evolution_runs")
    with op.batch_alter_table("evolution_runs") as batch:
        batch.add_column(sa.Column("owner", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("agent", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("job_id", sa.String(length=32), nullable=True))
    op.create_index(
        "uq_evolution_runs_one_running", "evolution_runs", ["tenant_id", "target"], unique=True,
        sqlite_where=_RUNNING, postgresql_where=_RUNNING,
    )

    with op.batch_alter_table("schedules", recreate="always",
                              copy_from=_schedules_0001()) as batch:
        batch.add_column(sa.Column("failures", sa.Integer(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("backoff_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_job_ids", sa.JSON(), nullable=False,
                                   server_default="[]"))
        batch.drop_constraint("pk_schedules", type_="primary")
        batch.create_primary_key("pk_schedules", ["tenant_id", "id"])


def downgrade() -> None:
    with op.batch_alter_table("schedules", recreate="always") as batch:
        batch.drop_constraint("pk_schedules", type_="primary")
        batch.create_primary_key("pk_schedules", ["id"])
        batch.drop_column("last_job_ids")
        batch.drop_column("backoff_until")
        batch.drop_column("failures")
    op.drop_index("uq_evolution_runs_one_running", table_name="evolution_runs")
    with op.batch_alter_table("evolution_runs") as batch:
        batch.drop_column("job_id")
        batch.drop_column("agent")
        batch.drop_column("lease_until")
        batch.drop_column("owner")
    op.create_index(
        "uq_evolution_runs_one_running", "evolution_runs", ["tenant_id", "engine", "target"],
        unique=True, sqlite_where=_RUNNING, postgresql_where=_RUNNING,
    )
    op.drop_index("uq_cycle_jobs_one_queued", table_name="cycle_jobs")
    op.drop_index("ix_cycle_jobs_tenant_created", table_name="cycle_jobs")
    op.drop_index("ix_cycle_jobs_status_due", table_name="cycle_jobs")
    op.drop_table("cycle_jobs")
