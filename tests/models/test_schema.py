"""The migrated schema and the models agree, on SQLite and on PostgreSQL."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Integer, MetaData, inspect

from auto_dev.db import Database
from auto_dev.models import Base

REPO = Path(__file__).resolve().parents[2]


def _schema_diff(db: Database, metadata: MetaData = Base.metadata) -> list[Any]:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "target_metadata": metadata}
        )
        return list(compare_metadata(context, metadata))


def _partial_index_where(db: Database, table: str, name: str) -> str:
    for index in inspect(db.engine).get_indexes(table):
        if index["name"] == name:
            options = index.get("dialect_options", {})
            where = options.get(f"{db.dialect}_where")
            assert index["unique"], f"{name} must be unique"
            return str(where)
    raise AssertionError(f"index {name} missing on {table}")


def _check_migrated_schema(db: Database) -> None:
    db.upgrade()
    assert db.current_revision() == Database.head_revision()
    assert _schema_diff(db) == []
    assert "is_active" in _partial_index_where(db, "tool_versions", "uq_tool_versions_one_active")
    assert "running" in _partial_index_where(db, "evolution_runs", "uq_evolution_runs_one_running")
    # The comparison can fail: a model the migration does not know about shows up.
    extended = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(extended)
    extended.tables["tenants"].append_column(Column("extra", Integer))
    diff = _schema_diff(db, extended)
    assert any(d[0] == "add_column" and d[3].name == "extra" for d in diff), diff
    db.downgrade("base")
    assert inspect(db.engine).get_table_names() == ["alembic_version"]
    db.upgrade()
    assert _schema_diff(db) == []


class TestSqliteSchema:
    """The migration on SQLite."""

    def test_migrated_schema_matches_models(self, tmp_path: Path) -> None:
        """Autogenerate finds no difference after upgrade; downgrade to base and back works."""
        db = Database(f"sqlite:///{tmp_path}/schema.db")
        try:
            _check_migrated_schema(db)
        finally:
            db.dispose()

    def test_every_model_table_is_created(self, database: Database) -> None:
        """Each table of the metadata (APScheduler's included) exists after migrating."""
        tables = set(inspect(database.engine).get_table_names())
        assert set(Base.metadata.tables) <= tables
        assert "apscheduler_jobs" in tables


@pytest.mark.postgres
class TestPostgresSchema:
    """The migration on PostgreSQL."""

    def test_migrated_schema_matches_models(self, postgres_url: str) -> None:
        """Autogenerate finds no difference after upgrade; downgrade to base and back works."""
        db = Database(postgres_url)
        try:
            _check_migrated_schema(db)
        finally:
            db.dispose()


class TestMigrationScripts:
    """The shipped scripts and the developer configuration."""

    def test_single_linear_head(self) -> None:
        """There is exactly one head and every revision chains back to the initial one."""
        config = Config()
        config.set_main_option("script_location", "auto_dev:migrations")
        script = ScriptDirectory.from_config(config)
        assert script.get_heads() == [Database.head_revision()]
        revisions = list(script.walk_revisions())
        assert revisions[-1].down_revision is None

    def test_repository_alembic_ini_points_at_the_package(self) -> None:
        """alembic.ini at the repository root finds the same migrations as Database."""
        config = Config(str(REPO / "alembic.ini"))
        script = ScriptDirectory.from_config(config)
        assert script.get_current_head() == Database.head_revision()

    def test_offline_sql_renders_every_table(self, tmp_path: Path) -> None:
        """`alembic upgrade head --sql` renders the DDL without a database (env.py offline)."""
        buffer = io.StringIO()
        config = Config(str(REPO / "alembic.ini"), output_buffer=buffer)
        config.cmd_opts = type("Opts", (), {"x": [f"url=sqlite:///{tmp_path}/offline.db"]})()
        command.upgrade(config, "head", sql=True)
        sql = buffer.getvalue()
        for table in Base.metadata.tables:
            assert re.search(rf"CREATE TABLE {table}\b", sql), table
        assert not (tmp_path / "offline.db").exists()

    def test_schema_is_created_only_by_migrations(self) -> None:
        """No library code calls metadata.create_all: the migration is the only way in."""
        offenders = [
            str(path.relative_to(REPO))
            for path in (REPO / "auto_dev").rglob("*.py")
            if "create_all(" in path.read_text(encoding="utf-8")
        ]
        assert offenders == []
