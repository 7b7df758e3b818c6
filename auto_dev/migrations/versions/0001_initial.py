"""Initial schema: every table of DESIGN.md, plus APScheduler's job table.

Generated with ``alembic revision --autogenerate`` against the models, then reviewed by hand:
foreign keys and constraint names follow ``Base.metadata``'s naming convention (identical on
SQLite and PostgreSQL), timestamps are ``DateTime(timezone=True)`` (the models' ``UTCDateTime``
stores exactly that), and the two partial unique indexes (one active version per tool, one running
evolution run per target) carry their ``WHERE`` clause for both backends. ``apscheduler_jobs``
mirrors APScheduler 3's ``SQLAlchemyJobStore`` table so that the job store finds it and never
creates it itself. ``llm_budget_days`` is kept equal to ``llm_calls`` by triggers (SQL at the end of
this file; alembic's autogenerate does not see triggers, the ledger tests do).
``tests/models/test_schema.py`` proves this file and the models agree.

Revision ID: 0001
Revises:
Create Date: 2026-11-21 18:52:59.795091
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "apscheduler_jobs",
        sa.Column("id", sa.Unicode(length=191), nullable=False),
        sa.Column("next_run_time", sa.Float(precision=25), nullable=True),
        sa.Column("job_state", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apscheduler_jobs")),
    )
    op.create_index(
        op.f("ix_apscheduler_jobs_next_run_time"),
        "apscheduler_jobs",
        ["next_run_time"],
        unique=False,
    )
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
    )
    op.create_table(
        "agents",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_agents_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
        sa.UniqueConstraint("tenant_id", "key", name="uq_agents_tenant_key"),
    )
    op.create_table(
        "audit_entries",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("subject_kind", sa.String(length=32), nullable=True),
        sa.Column("subject_id", sa.String(length=64), nullable=True),
        sa.Column("allowed", sa.Boolean(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_audit_entries_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_entries")),
    )
    op.create_index(
        "ix_audit_entries_tenant_created",
        "audit_entries",
        ["tenant_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "evaluations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("candidate_kind", sa.String(length=32), nullable=False),
        sa.Column("candidate_id", sa.String(length=32), nullable=True),
        sa.Column("backend", sa.String(length=32), nullable=False),
        sa.Column("limits", sa.JSON(), nullable=False),
        sa.Column("cases", sa.JSON(), nullable=False),
        sa.Column("passed", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("peak_memory_kb", sa.Integer(), nullable=False),
        sa.Column("logs", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_evaluations_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluations")),
    )
    op.create_index(
        "ix_evaluations_candidate", "evaluations", ["candidate_kind", "candidate_id"], unique=False
    )
    op.create_table(
        "event_records",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_event_records_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_records")),
    )
    op.create_index(
        "ix_event_records_status_created", "event_records", ["status", "created_at"], unique=False
    )
    op.create_table(
        "review_decisions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("candidate_kind", sa.String(length=32), nullable=False),
        sa.Column("candidate_id", sa.String(length=32), nullable=False),
        sa.Column("decision", sa.String(length=20), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_review_decisions_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_decisions")),
    )
    op.create_index(
        "ix_review_decisions_candidate",
        "review_decisions",
        ["candidate_kind", "candidate_id"],
        unique=False,
    )
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("engine", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=True),
        sa.Column("interval_s", sa.Float(), nullable=False),
        sa.Column("budget", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_schedules_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
    )
    op.create_index("ix_schedules_tenant", "schedules", ["tenant_id"], unique=False)
    op.create_table(
        "tools",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("entrypoint", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_tools_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tools")),
        sa.UniqueConstraint("tenant_id", "name", name="uq_tools_tenant_name"),
    )
    op.create_table(
        "capability_states",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=32), nullable=False),
        sa.Column("capability", sa.String(length=100), nullable=False),
        sa.Column("maturity", sa.String(length=20), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_capability_states_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_capability_states_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_capability_states")),
        sa.UniqueConstraint(
            "tenant_id", "agent_id", "capability", name="uq_capability_states_agent_capability"
        ),
    )
    op.create_table(
        "episodes",
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
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_episodes_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_episodes_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_episodes")),
    )
    op.create_index(
        "ix_episodes_tenant_agent_created",
        "episodes",
        ["tenant_id", "agent_id", "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_episodes_tenant_tool_success",
        "episodes",
        ["tenant_id", "tool_name", "success", "created_at"],
        unique=False,
    )
    op.create_table(
        "event_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=32), nullable=False),
        sa.Column("handler", sa.String(length=300), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["event_records.id"],
            name=op.f("fk_event_deliveries_event_id_event_records"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_event_deliveries_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_deliveries")),
        sa.UniqueConstraint("event_id", "handler", name="uq_event_deliveries_event_handler"),
    )
    op.create_index(
        "ix_event_deliveries_status_next",
        "event_deliveries",
        ["status", "next_attempt_at"],
        unique=False,
    )
    op.create_table(
        "evolution_runs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("engine", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("tool_id", sa.String(length=32), nullable=True),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("budget", sa.Integer(), nullable=False),
        sa.Column("evaluations", sa.Integer(), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_evolution_runs_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tool_id"],
            ["tools.id"],
            name=op.f("fk_evolution_runs_tool_id_tools"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evolution_runs")),
    )
    op.create_index(
        "ix_evolution_runs_tenant_started",
        "evolution_runs",
        ["tenant_id", "started_at"],
        unique=False,
    )
    op.create_index(
        "uq_evolution_runs_one_running",
        "evolution_runs",
        ["tenant_id", "engine", "target"],
        unique=True,
        sqlite_where=sa.text("status = 'running'"),
        postgresql_where=sa.text("status = 'running'"),
    )
    op.create_table(
        "tool_versions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("tool_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("entrypoint", sa.String(length=200), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=32), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_tool_versions_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tool_id"],
            ["tools.id"],
            name=op.f("fk_tool_versions_tool_id_tools"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tool_versions")),
        sa.UniqueConstraint("tool_id", "version", name="uq_tool_versions_tool_version"),
    )
    op.create_index(
        "ix_tool_versions_tenant_tool", "tool_versions", ["tenant_id", "tool_id"], unique=False
    )
    op.create_index(
        "uq_tool_versions_one_active",
        "tool_versions",
        ["tool_id"],
        unique=True,
        sqlite_where=sa.text("is_active"),
        postgresql_where=sa.text("is_active"),
    )
    op.create_table(
        "usage_records",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=32), nullable=False),
        sa.Column("capability", sa.String(length=100), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_usage_records_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_usage_records_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_records")),
    )
    op.create_index(
        "ix_usage_records_agent_capability",
        "usage_records",
        ["tenant_id", "agent_id", "capability", "created_at"],
        unique=False,
    )
    op.create_table(
        "episode_segments",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("episode_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("tool_name", sa.String(length=200), nullable=True),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("output", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["episode_id"],
            ["episodes.id"],
            name=op.f("fk_episode_segments_episode_id_episodes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_episode_segments_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_episode_segments")),
    )
    op.create_index(
        "ix_episode_segments_episode_seq", "episode_segments", ["episode_id", "seq"], unique=False
    )
    op.create_table(
        "llm_calls",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("engine", sa.String(length=100), nullable=True),
        sa.Column("purpose", sa.String(length=100), nullable=True),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("deployment", sa.String(length=200), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("latency_s", sa.Float(), nullable=False),
        sa.Column("cache_hit", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["evolution_runs.id"],
            name=op.f("fk_llm_calls_run_id_evolution_runs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_llm_calls_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_llm_calls")),
    )
    op.create_index(
        "ix_llm_calls_tenant_created", "llm_calls", ["tenant_id", "created_at"], unique=False
    )
    op.create_table(
        "llm_budget_days",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("committed_usd", sa.Float(), nullable=False),
        sa.Column("reserved_usd", sa.Float(), nullable=False),
        sa.Column("reserved_calls", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_llm_budget_days_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "day", name=op.f("pk_llm_budget_days")),
    )
    for statement in _budget_day_triggers(op.get_context().dialect.name):
        op.execute(statement)
    op.create_table(
        "skill_candidates",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=32), nullable=True),
        sa.Column("tool_id", sa.String(length=32), nullable=True),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("evaluation_id", sa.String(length=32), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("entrypoint", sa.String(length=200), nullable=False),
        sa.Column("diff", sa.Text(), nullable=False),
        sa.Column("strategy", sa.String(length=50), nullable=False),
        sa.Column("failure_pattern", sa.Text(), nullable=False),
        sa.Column("source_episode_ids", sa.JSON(), nullable=False),
        sa.Column("tests", sa.JSON(), nullable=False),
        sa.Column("validation", sa.JSON(), nullable=False),
        sa.Column("exchange", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("objectives", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_skill_candidates_agent_id_agents"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["evaluation_id"],
            ["evaluations.id"],
            name=op.f("fk_skill_candidates_evaluation_id_evaluations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["evolution_runs.id"],
            name=op.f("fk_skill_candidates_run_id_evolution_runs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_skill_candidates_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tool_id"],
            ["tools.id"],
            name=op.f("fk_skill_candidates_tool_id_tools"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_skill_candidates")),
    )
    op.create_index(
        "ix_skill_candidates_tenant_created",
        "skill_candidates",
        ["tenant_id", "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_skill_candidates_tenant_status",
        "skill_candidates",
        ["tenant_id", "status"],
        unique=False,
    )
    op.create_table(
        "test_cases",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("tool_id", sa.String(length=32), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("kwargs", sa.JSON(), nullable=False),
        sa.Column("expected", sa.JSON(), nullable=True),
        sa.Column("has_expected", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("episode_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["episode_id"],
            ["episodes.id"],
            name=op.f("fk_test_cases_episode_id_episodes"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_test_cases_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tool_id"], ["tools.id"], name=op.f("fk_test_cases_tool_id_tools"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_test_cases")),
    )
    op.create_index(
        "ix_test_cases_tenant_tool", "test_cases", ["tenant_id", "tool_id"], unique=False
    )
    op.create_table(
        "tool_mutations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("tool_id", sa.String(length=32), nullable=False),
        sa.Column("agent_id", sa.String(length=32), nullable=True),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("parent_version_id", sa.String(length=32), nullable=True),
        sa.Column("parent_mutation_id", sa.String(length=32), nullable=True),
        sa.Column("second_parent_id", sa.String(length=32), nullable=True),
        sa.Column("evaluation_id", sa.String(length=32), nullable=True),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("entrypoint", sa.String(length=200), nullable=False),
        sa.Column("diff", sa.Text(), nullable=False),
        sa.Column("operator", sa.String(length=100), nullable=False),
        sa.Column("ast_hash", sa.String(length=64), nullable=True),
        sa.Column("island", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("objectives", sa.JSON(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_tool_mutations_agent_id_agents"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["evaluation_id"],
            ["evaluations.id"],
            name=op.f("fk_tool_mutations_evaluation_id_evaluations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["parent_mutation_id"],
            ["tool_mutations.id"],
            name=op.f("fk_tool_mutations_parent_mutation_id_tool_mutations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["parent_version_id"],
            ["tool_versions.id"],
            name=op.f("fk_tool_mutations_parent_version_id_tool_versions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["evolution_runs.id"],
            name=op.f("fk_tool_mutations_run_id_evolution_runs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["second_parent_id"],
            ["tool_mutations.id"],
            name=op.f("fk_tool_mutations_second_parent_id_tool_mutations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_tool_mutations_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tool_id"],
            ["tools.id"],
            name=op.f("fk_tool_mutations_tool_id_tools"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tool_mutations")),
    )
    op.create_index("ix_tool_mutations_run", "tool_mutations", ["run_id"], unique=False)
    op.create_index(
        "ix_tool_mutations_tenant_created",
        "tool_mutations",
        ["tenant_id", "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_tool_mutations_tenant_tool_status",
        "tool_mutations",
        ["tenant_id", "tool_id", "status"],
        unique=False,
    )
    op.create_index(
        "ix_tool_mutations_tool_hash", "tool_mutations", ["tool_id", "ast_hash"], unique=False
    )
    op.create_table(
        "workflow_variants",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=32), nullable=True),
        sa.Column("parent_id", sa.String(length=32), nullable=True),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("operator", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("objectives", sa.JSON(), nullable=False),
        sa.Column("fitness", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_workflow_variants_agent_id_agents"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["workflow_variants.id"],
            name=op.f("fk_workflow_variants_parent_id_workflow_variants"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["evolution_runs.id"],
            name=op.f("fk_workflow_variants_run_id_evolution_runs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_workflow_variants_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_variants")),
    )
    op.create_index(
        "ix_workflow_variants_tenant_agent",
        "workflow_variants",
        ["tenant_id", "agent_id"],
        unique=False,
    )
    op.create_index(
        "ix_workflow_variants_tenant_status",
        "workflow_variants",
        ["tenant_id", "status"],
        unique=False,
    )


def downgrade() -> None:
    # Dropping a table drops its indexes; children before parents.
    op.drop_table("workflow_variants")
    op.drop_table("tool_mutations")
    op.drop_table("test_cases")
    op.drop_table("skill_candidates")
    op.drop_table("llm_budget_days")
    op.drop_table("llm_calls")  # its triggers go with it
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP FUNCTION llm_calls_budget_days()")
    op.drop_table("episode_segments")
    op.drop_table("usage_records")
    op.drop_table("tool_versions")
    op.drop_table("evolution_runs")
    op.drop_table("event_deliveries")
    op.drop_table("episodes")
    op.drop_table("capability_states")
    op.drop_table("tools")
    op.drop_table("schedules")
    op.drop_table("review_decisions")
    op.drop_table("event_records")
    op.drop_table("evaluations")
    op.drop_table("audit_entries")
    op.drop_table("agents")
    op.drop_table("tenants")
    op.drop_table("apscheduler_jobs")


# -- llm_budget_days: kept equal to llm_calls by triggers ------------------------------------------
#
# A ledger row counts towards (tenant_id, its created_at's UTC day): ``reserved`` rows as
# reserved_usd (+1 reserved_calls), every other status as committed_usd. Each insert, update or
# delete of a ledger row moves its contribution in the same statement, so the day row can never
# disagree with the ledger, whoever writes it and however a process dies. When no reservation is
# left, reserved_usd is reset to exactly 0 (no floating-point residue from the subtractions).


def _sqlite_contribution(row: str) -> str:
    reserved = f"{row}.status = 'reserved'"
    return (
        f"{row}.tenant_id, date({row}.created_at), "
        f"CASE WHEN {reserved} THEN 0.0 ELSE {row}.cost_usd END, "
        f"CASE WHEN {reserved} THEN {row}.cost_usd ELSE 0.0 END, "
        f"CASE WHEN {reserved} THEN 1 ELSE 0 END"
    )


_SQLITE_ADD = """INSERT INTO llm_budget_days
        (tenant_id, day, committed_usd, reserved_usd, reserved_calls)
        VALUES ({values})
        ON CONFLICT (tenant_id, day) DO UPDATE SET
            committed_usd = committed_usd + excluded.committed_usd,
            reserved_usd = reserved_usd + excluded.reserved_usd,
            reserved_calls = reserved_calls + excluded.reserved_calls;"""

_SQLITE_REMOVE = """UPDATE llm_budget_days SET
            committed_usd = committed_usd
                - CASE WHEN OLD.status = 'reserved' THEN 0.0 ELSE OLD.cost_usd END,
            reserved_usd = CASE
                WHEN reserved_calls - (OLD.status = 'reserved') <= 0 THEN 0.0
                ELSE reserved_usd
                    - CASE WHEN OLD.status = 'reserved' THEN OLD.cost_usd ELSE 0.0 END
            END,
            reserved_calls = max(reserved_calls - (OLD.status = 'reserved'), 0)
        WHERE tenant_id = OLD.tenant_id AND day = date(OLD.created_at);"""

_POSTGRES_FUNCTION = """CREATE FUNCTION llm_calls_budget_days() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE llm_budget_days SET
            committed_usd = committed_usd
                - CASE WHEN OLD.status = 'reserved' THEN 0.0 ELSE OLD.cost_usd END,
            reserved_usd = CASE
                WHEN reserved_calls - (CASE WHEN OLD.status = 'reserved' THEN 1 ELSE 0 END) <= 0
                    THEN 0.0
                ELSE reserved_usd
                    - CASE WHEN OLD.status = 'reserved' THEN OLD.cost_usd ELSE 0.0 END
            END,
            reserved_calls = GREATEST(
                reserved_calls - (CASE WHEN OLD.status = 'reserved' THEN 1 ELSE 0 END), 0
            )
        WHERE tenant_id = OLD.tenant_id
            AND day = (OLD.created_at AT TIME ZONE 'UTC')::date;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO llm_budget_days
            (tenant_id, day, committed_usd, reserved_usd, reserved_calls)
        VALUES (
            NEW.tenant_id,
            (NEW.created_at AT TIME ZONE 'UTC')::date,
            CASE WHEN NEW.status = 'reserved' THEN 0.0 ELSE NEW.cost_usd END,
            CASE WHEN NEW.status = 'reserved' THEN NEW.cost_usd ELSE 0.0 END,
            CASE WHEN NEW.status = 'reserved' THEN 1 ELSE 0 END
        )
        ON CONFLICT (tenant_id, day) DO UPDATE SET
            committed_usd = llm_budget_days.committed_usd + excluded.committed_usd,
            reserved_usd = llm_budget_days.reserved_usd + excluded.reserved_usd,
            reserved_calls = llm_budget_days.reserved_calls + excluded.reserved_calls;
    END IF;
    RETURN NULL;
END
$$"""

# The columns a row's contribution depends on: updates of other columns (error, tokens) skip it.
_WATCHED = "tenant_id, created_at, status, cost_usd"


def _budget_day_triggers(dialect: str) -> list[str]:
    """The DDL of the triggers keeping llm_budget_days equal to llm_calls."""
    if dialect == "sqlite":
        add = _SQLITE_ADD.format(values=_sqlite_contribution("NEW"))
        return [
            f"CREATE TRIGGER trg_llm_calls_budget_insert AFTER INSERT ON llm_calls\n"
            f"BEGIN\n    {add}\nEND",
            f"CREATE TRIGGER trg_llm_calls_budget_update AFTER UPDATE OF {_WATCHED} "
            f"ON llm_calls\nBEGIN\n    {_SQLITE_REMOVE}\n    {add}\nEND",
            f"CREATE TRIGGER trg_llm_calls_budget_delete AFTER DELETE ON llm_calls\n"
            f"BEGIN\n    {_SQLITE_REMOVE}\nEND",
        ]
    if dialect == "postgresql":
        return [
            _POSTGRES_FUNCTION,
            "CREATE TRIGGER trg_llm_calls_budget AFTER INSERT OR DELETE OR UPDATE OF "
            f"{_WATCHED} ON llm_calls FOR EACH ROW EXECUTE FUNCTION llm_calls_budget_days()",
        ]
    from auto_dev._exceptions import ConfigurationError

    raise ConfigurationError(
        f"database dialect {dialect!r} is not supported: the LLM budget triggers exist for "
        "SQLite and PostgreSQL"
    )
