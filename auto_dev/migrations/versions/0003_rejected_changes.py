"""Rejected changes: what reviewers turned down (and what was rolled back), per target, by
normalised hash, in a table that survives pruning the candidates themselves.

Existing rejected and rolled-back candidates are copied in, with the actor, reason and date of
the decision that closed them, so that pruning after this upgrade forgets nothing. The
fingerprint is computed here the way ``auto_dev.candidates.rejections`` computes it (a migration
is frozen code: it does not import the store).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 10:00:00.000000
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rejected_changes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("target_kind", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=20), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("candidate_kind", sa.String(length=32), nullable=True),
        sa.Column("candidate_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_rejected_changes_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rejected_changes")),
    )
    op.create_index(
        "ix_rejected_changes_target",
        "rejected_changes",
        ["tenant_id", "target_kind", "target", "code_hash"],
        unique=False,
    )
    _backfill()


def downgrade() -> None:
    op.drop_table("rejected_changes")


# -- backfill --------------------------------------------------------------------------------------


def _code_hash(code: str) -> str:
    from auto_dev.evolution.dedup import normalized_hash

    digest = normalized_hash(code)
    if digest is not None:
        return digest.hex()
    return "raw:" + hashlib.blake2b(code.encode("utf-8", "surrogatepass"),
                                    digest_size=16).hexdigest()


def _definition_hash(definition: Any) -> str:
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"), default=str)
    return "json:" + hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def _backfill() -> None:
    if op.get_context().as_sql:
        return  # offline SQL rendering: there are no rows to copy
    bind = op.get_bind()
    meta = sa.MetaData()
    tables = {name: sa.Table(name, meta, autoload_with=bind) for name in (
        "tool_mutations", "skill_candidates", "workflow_variants", "tools", "review_decisions",
        "rejected_changes")}
    tools = {row.id: row.name for row in bind.execute(
        sa.select(tables["tools"].c.id, tables["tools"].c.name))}
    decisions = tables["review_decisions"]
    latest: dict[tuple[str, str], Any] = {}
    for row in bind.execute(sa.select(decisions).where(
            decisions.c.decision.in_(["rejected", "rolled_back"]))
            .order_by(decisions.c.created_at)):
        latest[(row.candidate_id, row.decision)] = row
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str, str]] = set()

    def add(tenant_id: str, target_kind: str, target: str | None, code_hash: str,
            status: str, kind: str, candidate_id: str, closed_at: Any) -> None:
        if not target:
            return
        key = (tenant_id, target_kind, target, code_hash)
        if key in seen:
            return
        seen.add(key)
        decision = latest.get((candidate_id, status))
        rows.append({
            "id": uuid.uuid4().hex, "tenant_id": tenant_id, "target_kind": target_kind,
            "target": target[:200], "code_hash": code_hash, "decision": status,
            "actor": decision.actor if decision is not None else "unknown",
            "reason": decision.reason if decision is not None else "",
            "candidate_kind": kind, "candidate_id": candidate_id,
            "created_at": (decision.created_at if decision is not None else closed_at)
            or datetime.now(UTC),
        })

    closed = ["rejected", "rolled_back"]
    mutations = tables["tool_mutations"]
    for row in bind.execute(sa.select(mutations).where(mutations.c.status.in_(closed))):
        add(row.tenant_id, "tool", tools.get(row.tool_id), _code_hash(row.code), row.status,
            "tool_mutation", row.id, row.updated_at)
    skills = tables["skill_candidates"]
    for row in bind.execute(sa.select(skills).where(skills.c.status.in_(closed))):
        target = tools.get(row.tool_id) if row.tool_id else row.name
        add(row.tenant_id, "tool", target, _code_hash(row.code), row.status,
            "skill_candidate", row.id, row.updated_at)
    variants = tables["workflow_variants"]
    for row in bind.execute(sa.select(variants).where(variants.c.status.in_(closed))):
        add(row.tenant_id, "workflow", row.name, _definition_hash(row.definition), row.status,
            "workflow_variant", row.id, row.updated_at)
    if rows:
        bind.execute(sa.insert(tables["rejected_changes"]), rows)
