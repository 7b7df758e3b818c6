"""Usage records carry the key of the outcome they were recorded from, unique per tenant.

The usage recorder (:mod:`auto_dev.gates.usage`) records maturity evidence from events, which are
delivered at least once. ``usage_records.event_key`` holds the event id (or a candidate's review
verdict), and a unique index on ``(tenant_id, event_key)`` makes a redelivered event count once
even when two processes handle it at the same time. Rows written by direct calls keep ``NULL``,
which the index allows any number of times on both SQLite and PostgreSQL.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("event_key", sa.String(length=80), nullable=True))
    op.create_index(
        "uq_usage_records_tenant_event_key",
        "usage_records",
        ["tenant_id", "event_key"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_usage_records_tenant_event_key", table_name="usage_records")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("event_key")
