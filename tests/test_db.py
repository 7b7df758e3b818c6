"""Tests for auto_dev.db: engine setup, transactions, error mapping, migrations, get-or-create."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select, text

from auto_dev._exceptions import (
    ConfigurationError,
    DatabaseLockedError,
    NotFoundError,
    StorageError,
    ValidationError,
)
from auto_dev.db import Database
from auto_dev.models import Agent, EvolutionRun, Tenant


def _hold_write_lock(path: str) -> sqlite3.Connection:
    """Open a raw connection that holds SQLite's write lock until closed or rolled back."""
    raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    raw.execute("BEGIN IMMEDIATE")
    return raw


class TestConstruction:
    """Building a Database from a URL."""

    def test_relative_sqlite_path_is_resolved_once(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A relative path is resolved against the working directory at construction time."""
        monkeypatch.chdir(tmp_path)
        db = Database("sqlite:///./data/nested/auto_dev.db")
        try:
            assert db.url.database == str(tmp_path / "data" / "nested" / "auto_dev.db")
            db.upgrade()
            monkeypatch.chdir("/")
            with db.session() as s:
                db.ensure_tenant(s, "t")
            assert (tmp_path / "data" / "nested" / "auto_dev.db").exists()
        finally:
            db.dispose()

    def test_create_false_refuses_a_missing_file_and_creates_nothing(self, tmp_path: Path
                                                                     ) -> None:
        """create=False names the missing file and leaves no file or directory behind; an
        existing file opens as usual."""
        missing = tmp_path / "no" / "such" / "auto_dev.db"
        with pytest.raises(NotFoundError) as info:
            Database(f"sqlite:///{missing}", create=False)
        assert str(missing) in str(info.value) and "auto-dev init" in str(info.value)
        assert list(tmp_path.iterdir()) == []
        Database(f"sqlite:///{tmp_path}/made.db").upgrade()
        existing = Database(f"sqlite:///{tmp_path}/made.db", create=False)
        assert existing.current_revision() == Database.head_revision()
        existing.dispose()

    def test_invalid_url_is_a_configuration_error(self) -> None:
        """A string that is not a URL names the problem instead of a SQLAlchemy traceback."""
        with pytest.raises(ConfigurationError, match="not a valid URL"):
            Database("not a url")

    def test_unknown_driver_is_a_configuration_error(self) -> None:
        """An unknown backend is refused at construction."""
        with pytest.raises(ConfigurationError, match="cannot be used"):
            Database("nosuchdb://host/db")

    def test_negative_busy_timeout_is_refused(self, tmp_path: Path) -> None:
        """busy_timeout_s must be >= 0 and the error names it."""
        with pytest.raises(ValidationError) as info:
            Database(f"sqlite:///{tmp_path}/x.db", busy_timeout_s=-1)
        assert info.value.field == "busy_timeout_s"

    def test_in_memory_database_is_shared_by_all_sessions(self) -> None:
        """sqlite:// keeps one database for every session (a static pool)."""
        db = Database("sqlite://")
        try:
            db.upgrade()
            with db.session() as s:
                db.ensure_tenant(s, "mem")
            with db.session() as s:
                assert s.get(Tenant, "mem") is not None
        finally:
            db.dispose()

    def test_display_url_hides_the_password(self) -> None:
        """Messages and logs never show a database password."""
        db = Database("postgresql+psycopg://user:secret@localhost/db")
        assert "secret" not in db.display_url
        assert "secret" not in repr(db)
        db.dispose()


class TestSqlitePragmas:
    """SQLite connections are configured for safe concurrent use."""

    def test_wal_foreign_keys_and_busy_timeout(self, database: Database) -> None:
        """Every connection runs in WAL mode with foreign keys and a 5 s busy timeout."""
        with database.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000

    def test_foreign_keys_are_enforced(self, database: Database) -> None:
        """An agent of a tenant that does not exist is refused with a StorageError."""
        with pytest.raises(StorageError, match="constraint"), database.session() as s:
            s.add(Agent(tenant_id="nobody", key="a"))

    def test_timestamps_come_back_aware_utc(self, database: Database, tenant_id: str) -> None:
        """SQLite returns timezone-aware UTC datetimes, converted from any offset on the way in."""
        local = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
        with database.session() as s:
            s.add(
                EvolutionRun(id="r1", tenant_id=tenant_id, engine="e", target="t", started_at=local)
            )
        with database.session() as s:
            run = s.get(EvolutionRun, "r1")
            assert run is not None
            assert run.started_at.tzinfo is not None
            assert run.started_at == local
            assert run.started_at.utcoffset() == timedelta(0)
            earlier = s.scalars(
                select(EvolutionRun.id).where(
                    EvolutionRun.started_at < datetime(2024, 5, 1, 10, 30, tzinfo=UTC)
                )
            ).all()
            assert earlier == ["r1"]


class TestSession:
    """session() is one transaction with mapped errors."""

    def test_commits_on_success(self, database: Database) -> None:
        """Work done in the block is visible to the next session."""
        with database.session() as s:
            s.add(Tenant(id="a", name="A"))
        with database.session() as s:
            tenant = s.get(Tenant, "a")
            assert tenant is not None and tenant.name == "A"

    def test_rolls_back_and_reraises_other_errors(self, database: Database) -> None:
        """A non-database error propagates unchanged and nothing from the block is kept."""
        with pytest.raises(KeyError), database.session() as s:
            s.add(Tenant(id="b"))
            s.flush()
            raise KeyError("boom")
        with database.session() as s:
            assert s.get(Tenant, "b") is None

    def test_database_errors_become_storage_errors(self, database: Database) -> None:
        """An SQLAlchemy error leaves as StorageError with the original as its cause."""
        with pytest.raises(StorageError) as info, database.session() as s:
            s.execute(text("SELECT * FROM no_such_table"))
        assert "no_such_table" in str(info.value)
        assert info.value.__cause__ is not None

    def test_objects_stay_loaded_after_commit(self, database: Database) -> None:
        """expire_on_commit=False: attributes are readable after the block without a query."""
        with database.session() as s:
            tenant = Tenant(id="c", name="C")
            s.add(tenant)
        assert tenant.name == "C"
        assert tenant.created_at.tzinfo is not None

    def test_readonly_session_never_commits(self, database: Database) -> None:
        """Writes in a readonly session are rolled back."""
        with database.session(readonly=True) as s:
            s.add(Tenant(id="ro"))
            s.flush()
        with database.session() as s:
            assert s.get(Tenant, "ro") is None

    def test_readonly_session_reads_while_a_writer_holds_the_lock(
        self, database: Database, tenant_id: str
    ) -> None:
        """WAL lets a reader run while another connection holds the write lock."""
        raw = _hold_write_lock(str(database.url.database))
        try:
            started = time.perf_counter()
            with database.session(readonly=True) as s:
                assert s.get(Tenant, tenant_id) is not None
            assert time.perf_counter() - started < 1.0
        finally:
            raw.close()

    def test_run_returns_the_result(self, database: Database, tenant_id: str) -> None:
        """run(fn) calls fn in a session and returns what it returns."""
        count = database.run(lambda s: s.scalar(select(func.count()).select_from(Tenant)))
        assert count == 1


class TestTransaction:
    """Sessions opened inside ``Database.transaction()`` join it: all or nothing."""

    def test_inner_sessions_commit_together(self, database: Database) -> None:
        with database.transaction() as outer:
            with database.session() as inner:
                assert inner is outer
                database.ensure_tenant(inner, "joined-1")
            with database.session(readonly=True) as reader:
                assert reader.get(Tenant, "joined-1") is not None  # sees the uncommitted row
            database.ensure_tenant(outer, "joined-2")
        with database.session(readonly=True) as session:
            assert session.get(Tenant, "joined-1") is not None
            assert session.get(Tenant, "joined-2") is not None

    def test_an_error_undoes_every_inner_write(self, database: Database) -> None:
        with pytest.raises(ValidationError), database.transaction():
            with database.session() as inner:
                database.ensure_tenant(inner, "undone")
            with database.session() as inner:
                database.ensure_tenant(inner, "")  # refused: the block fails
        with database.session(readonly=True) as session:
            assert session.get(Tenant, "undone") is None

    def test_database_errors_inside_are_translated(self, database: Database) -> None:
        with pytest.raises(StorageError), database.transaction(), \
                database.session() as inner:
            inner.execute(text("SELECT * FROM no_such_table"))

    def test_not_nested_and_scoped_to_its_database(self, database: Database,
                                                   tmp_path: Path) -> None:
        other = Database(f"sqlite:///{tmp_path / 'other.db'}")
        other.upgrade()
        with database.transaction() as outer:
            with pytest.raises(StorageError, match="nested"), database.transaction():
                pass
            with other.session() as separate:
                assert separate is not outer  # another database: its own transaction
        other.dispose()
        with database.session() as after:
            assert after is not outer


class TestLocking:
    """A locked SQLite file gives DatabaseLockedError and nothing half-written."""

    def test_locked_database_raises_after_the_busy_timeout(self, database_url: str) -> None:
        """A writer blocked past the busy timeout gets an actionable DatabaseLockedError."""
        db = Database(database_url, busy_timeout_s=0.2)
        raw = _hold_write_lock(str(db.url.database))
        try:
            started = time.perf_counter()
            with pytest.raises(DatabaseLockedError) as info, db.session() as s:
                s.add(Tenant(id="blocked"))
            assert time.perf_counter() - started >= 0.15
            message = str(info.value)
            assert "locked" in message and "retry" in message
            assert isinstance(info.value, StorageError)
        finally:
            raw.close()
        with db.session() as s:
            assert s.get(Tenant, "blocked") is None
        db.dispose()

    def test_waits_for_a_short_lock(self, database_url: str) -> None:
        """A lock released within the busy timeout is waited for, not reported."""
        db = Database(database_url, busy_timeout_s=5)
        raw = _hold_write_lock(str(db.url.database))
        releaser = threading.Timer(0.2, raw.rollback)
        releaser.start()
        try:
            with db.session() as s:
                s.add(Tenant(id="patient"))
        finally:
            releaser.join()
            raw.close()
        with db.session() as s:
            assert s.get(Tenant, "patient") is not None
        db.dispose()

    def test_concurrent_writers_serialise(self, database: Database, tenant_id: str) -> None:
        """Threads doing read-modify-write never lose an update (BEGIN IMMEDIATE)."""

        def bump() -> None:
            for _ in range(10):
                with database.session() as s:
                    tenant = s.get(Tenant, tenant_id)
                    assert tenant is not None
                    tenant.settings = {"n": tenant.settings.get("n", 0) + 1}

        threads = [threading.Thread(target=bump) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with database.session() as s:
            tenant = s.get(Tenant, tenant_id)
            assert tenant is not None and tenant.settings == {"n": 40}


class TestMigrations:
    """upgrade/downgrade/current_revision through the packaged migrations."""

    def test_fresh_database_upgrades_to_head(self, tmp_path: Path) -> None:
        """A new file has no revision; upgrade brings it to the shipped head."""
        db = Database(f"sqlite:///{tmp_path}/fresh.db")
        try:
            assert db.current_revision() is None
            with pytest.raises(StorageError, match="auto-dev db upgrade"):
                db.require_current()
            db.upgrade()
            assert db.current_revision() == Database.head_revision()
            db.require_current()
            db.upgrade()  # already at head: a no-op
            assert db.current_revision() == Database.head_revision()
        finally:
            db.dispose()

    def test_downgrade_to_base_removes_every_table(self, database: Database) -> None:
        """Downgrading to base leaves only alembic's version table; upgrading again works."""
        database.downgrade("base")
        assert inspect(database.engine).get_table_names() == ["alembic_version"]
        assert database.current_revision() is None
        database.upgrade()
        assert "event_records" in inspect(database.engine).get_table_names()

    def test_unknown_revision_is_bad_input(self, database: Database) -> None:
        """Asking for a revision that does not exist is bad input naming it and the known ones,
        not a traceback from alembic."""
        known = r"known: head, base, (\d{4}, )*0001\)"  # newest first
        with pytest.raises(ValidationError, match=r"'nope'.*" + known) as info:
            database.upgrade("nope")
        assert info.value.field == "revision"

    def test_unreachable_server_is_a_storage_error(self) -> None:
        """A PostgreSQL URL nobody answers becomes a StorageError."""
        db = Database("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
        with pytest.raises(StorageError):
            db.current_revision()
        db.dispose()


class TestEnsure:
    """ensure_tenant / ensure_agent get-or-create."""

    def test_ensure_tenant_is_idempotent(self, database: Database) -> None:
        """The first call creates the tenant with every setting off, the next ones return it."""
        with database.session() as s:
            first = database.ensure_tenant(s, "acme")
            assert first.settings == {}
        with database.session() as s:
            again = database.ensure_tenant(s, "acme")
            assert again.id == "acme"
            assert s.scalar(select(func.count()).select_from(Tenant)) == 1

    def test_ensure_agent_creates_tenant_and_agent_once(self, database: Database) -> None:
        """An agent key maps to one row per tenant; other tenants get their own."""
        with database.session() as s:
            a1 = database.ensure_agent(s, "t1", "agent-7")
        with database.session() as s:
            a2 = database.ensure_agent(s, "t1", "agent-7")
            other = database.ensure_agent(s, "t2", "agent-7")
        assert a1.id == a2.id
        assert other.id != a1.id and other.tenant_id == "t2"

    @pytest.mark.parametrize("bad", ["", "   ", "x" * 65, "a\nb", "nul\x00", "\ud800", 5, None])
    def test_bad_tenant_ids_are_refused(self, database: Database, bad: object) -> None:
        """Empty, too long, control characters or non-strings: ValidationError on tenant_id."""
        with pytest.raises(ValidationError) as info, database.session() as s:
            database.ensure_tenant(s, bad)  # type: ignore[arg-type]
        assert info.value.field == "tenant_id"

    def test_bad_agent_key_is_refused(self, database: Database) -> None:
        """An empty agent key names agent_key."""
        with pytest.raises(ValidationError) as info, database.session() as s:
            database.ensure_agent(s, "t1", "")
        assert info.value.field == "agent_key"

    def test_lost_race_returns_the_winner(
        self, database: Database, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If another writer inserts between our lookup and our insert, we return its row."""
        with database.session() as s:
            winner = database.ensure_agent(s, "t1", "racer")
        real_find = Database._find_agent
        calls = {"n": 0}

        def stale_first_lookup(session, tenant_id, key):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            return None if calls["n"] == 1 else real_find(session, tenant_id, key)

        monkeypatch.setattr(Database, "_find_agent", staticmethod(stale_first_lookup))
        with database.session() as s:
            got = database.ensure_agent(s, "t1", "racer")
            assert got.id == winner.id
            # The session survived the failed insert: it can still write.
            database.ensure_tenant(s, "after-race")
        with database.session() as s:
            assert s.scalar(select(func.count()).select_from(Agent)) == 1
            assert s.get(Tenant, "after-race") is not None

    def test_concurrent_threads_create_one_agent(self, database: Database) -> None:
        """Eight threads asking for the same agent at once all get the same row."""
        ids: list[str] = []
        barrier = threading.Barrier(8)

        def worker() -> None:
            barrier.wait()
            with database.session() as s:
                ids.append(database.ensure_agent(s, "t1", "shared").id)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(set(ids)) == 1 and len(ids) == 8


@pytest.mark.postgres
class TestPostgres:
    """The same Database behaviour on a real PostgreSQL server."""

    def test_session_commit_rollback_and_errors(self, postgres_database: Database) -> None:
        """Commit, rollback and error mapping work on PostgreSQL."""
        db = postgres_database
        assert db.dialect == "postgresql"
        with db.session() as s:
            db.ensure_tenant(s, "pg")
        with pytest.raises(RuntimeError), db.session() as s:
            db.ensure_tenant(s, "rolled-back")
            raise RuntimeError("abort")
        with pytest.raises(StorageError, match="constraint"), db.session() as s:
            s.add(Agent(tenant_id="missing", key="k"))
        with db.session() as s:
            assert s.get(Tenant, "pg") is not None
            assert s.get(Tenant, "rolled-back") is None
            created = s.get(Tenant, "pg")
            assert created is not None and created.created_at.utcoffset() == timedelta(0)

    def test_concurrent_ensure_agent_races_safely(self, postgres_database: Database) -> None:
        """Real concurrent inserts on PostgreSQL resolve to a single agent row."""
        db = postgres_database
        with db.session() as s:
            db.ensure_tenant(s, "t1")
        ids: list[str] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(6)

        def worker() -> None:
            try:
                barrier.wait()
                with db.session() as s:
                    ids.append(db.ensure_agent(s, "t1", "contended").id)
            except BaseException as exc:  # surfaced by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        assert len(set(ids)) == 1
