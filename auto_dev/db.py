"""The database: one :class:`Database` per URL, transactional sessions, migrations, error mapping.

SQLite files get WAL (readers never block the writer), foreign keys, a busy timeout and
``BEGIN IMMEDIATE`` for write sessions: a write transaction takes the lock when it starts and waits
up to the busy timeout for it, instead of failing half-way when a read turns into a write (WAL's
"busy snapshot", which no timeout can cure). PostgreSQL URLs (``postgresql+psycopg://...``) work
unchanged.

Every SQLAlchemy error leaving this module becomes a :class:`~auto_dev.StorageError` (a locked
SQLite file: :class:`~auto_dev.DatabaseLockedError`), so callers never import SQLAlchemy's
exceptions. The schema is created only by the alembic migrations shipped in
``auto_dev/migrations`` (:meth:`Database.upgrade`).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

import structlog
from sqlalchemy import Connection, Engine, create_engine, event, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from auto_dev._exceptions import (
    ConfigurationError,
    DatabaseLockedError,
    NotFoundError,
    StorageError,
    ValidationError,
)
from auto_dev.models import Agent, Tenant

log = structlog.get_logger(__name__)

T = TypeVar("T")

#: Where the migrations live inside the installed package.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: Execution option marking a read-only session's connection (deferred BEGIN on SQLite).
_READONLY_OPTION = "auto_dev_readonly"

#: Key under which alembic's env.py finds a live connection to migrate.
ALEMBIC_CONNECTION_KEY = "connection"

#: Arbitrary constant for the PostgreSQL advisory lock serialising concurrent upgrades.
_PG_MIGRATION_LOCK = 7_215_803_119

_TENANT_ID_MAX = 64

#: The transaction that :meth:`Database.session` joins inside :meth:`Database.transaction`.
_JOINED: ContextVar[tuple[Database, Session] | None] = ContextVar("auto_dev_joined_session",
                                                                  default=None)
_AGENT_KEY_MAX = 200


def _is_sqlite_locked(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", exc)
    if not isinstance(orig, sqlite3.OperationalError):
        return False
    message = str(orig).lower()
    return "locked" in message or "busy" in message


class Database:
    """A database reachable at ``url``: an SQLAlchemy 2.0 engine plus sessions and migrations.

    ``busy_timeout_s`` is how long an SQLite connection waits for another writer before
    :class:`~auto_dev.DatabaseLockedError` (ignored for other backends). Relative SQLite paths
    are resolved against the working directory once, here, and missing parent directories are
    created, so later ``chdir`` calls do not move the database. With ``create=False`` a missing
    SQLite file is a :class:`~auto_dev.NotFoundError` instead, and nothing is created (what
    read-only commands use).
    """

    def __init__(self, url: str | URL, *, echo: bool = False, busy_timeout_s: float = 5.0,
                 create: bool = True) -> None:
        if busy_timeout_s < 0:
            raise ValidationError("busy_timeout_s", f"must be >= 0, got {busy_timeout_s!r}")
        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError) as exc:
            raise ConfigurationError(
                f"database url {str(url)!r} is not a valid URL: {exc}"
            ) from exc
        self.busy_timeout_s = float(busy_timeout_s)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self.is_memory = False
        self._private_path: Path | None = None  # the SQLite file to keep owner-only
        engine_kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            parsed, engine_kwargs = self._sqlite_options(parsed, engine_kwargs, create)
        else:
            engine_kwargs["pool_pre_ping"] = True
        self.url: URL = parsed
        try:
            self.engine: Engine = create_engine(parsed, **engine_kwargs)
        except (ArgumentError, ImportError) as exc:
            raise ConfigurationError(
                f"database url {self.display_url!r} cannot be used: {exc}"
            ) from exc
        if self.is_sqlite:
            self._install_sqlite_hooks()
        self._maker = sessionmaker(self.engine, expire_on_commit=False)
        self._readonly_maker = sessionmaker(
            self.engine.execution_options(**{_READONLY_OPTION: True}), expire_on_commit=False
        )

    # -- construction helpers -------------------------------------------------------------

    def _sqlite_options(self, url: URL, kwargs: dict[str, Any], create: bool
                        ) -> tuple[URL, dict[str, Any]]:
        database = url.database or ""
        uri_mode = str(url.query.get("uri", "")).lower() in {"true", "1"}
        if database in {"", ":memory:"} or (uri_mode and "mode=memory" in database):
            # One shared connection: every pooled connection to ":memory:" would be a new,
            # empty database otherwise.
            self.is_memory = True
            kwargs["poolclass"] = StaticPool
            kwargs["connect_args"] = {"check_same_thread": False}
            return url, kwargs
        if not uri_mode:
            path = Path(database).expanduser().resolve()
            if not create and not path.is_file():
                raise NotFoundError(
                    f"database {path} does not exist (AUTO_DEV_DATABASE_URL="
                    f"{url.render_as_string(hide_password=True)}): create it with `auto-dev "
                    "init`, or point AUTO_DEV_DATABASE_URL at an existing database")
            path.parent.mkdir(parents=True, exist_ok=True)
            self._private_path = path
            url = url.set(database=str(path))
        return url, kwargs

    def _install_sqlite_hooks(self) -> None:
        busy_ms = int(self.busy_timeout_s * 1000)
        memory = self.is_memory

        private = self._private_path

        @event.listens_for(self.engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            if private is not None:
                _private_file(private)  # SQLite has just created the file, if it was missing
            # Take transaction control away from pysqlite: it would defer BEGIN to the first
            # write and commit implicitly before DDL. We emit BEGIN ourselves below.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
                cursor.execute("PRAGMA foreign_keys = ON")
                if not memory:
                    cursor.execute("PRAGMA journal_mode = WAL")
                    # Durable at every checkpoint, and what makes WAL commits cheap.
                    cursor.execute("PRAGMA synchronous = NORMAL")
            finally:
                cursor.close()

        @event.listens_for(self.engine, "begin")
        def _on_begin(conn: Connection) -> None:
            readonly = conn.get_execution_options().get(_READONLY_OPTION, False)
            conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    # -- identity -------------------------------------------------------------------------

    @property
    def display_url(self) -> str:
        """The URL with any password masked, for messages and logs."""
        return self.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """The backend name: ``sqlite``, ``postgresql``..."""
        return self.engine.dialect.name

    def __repr__(self) -> str:
        return f"Database({self.display_url!r})"

    # -- errors ---------------------------------------------------------------------------

    def translate_error(self, exc: SQLAlchemyError) -> StorageError:
        """Map an SQLAlchemy error to auto-dev's error tree (raise the result ``from exc``)."""
        if _is_sqlite_locked(exc):
            return DatabaseLockedError(
                f"the SQLite database {self.url.database!r} is locked: another process or "
                f"connection kept it busy for more than {self.busy_timeout_s:g} s. Wait for the "
                "other auto-dev process (a scheduler, a CLI command, a long transaction) to "
                "finish or stop it, then retry; for many concurrent writers point "
                "AUTO_DEV_DATABASE_URL at PostgreSQL."
            )
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        first = detail[0] if detail else type(exc).__name__
        if isinstance(exc, IntegrityError):
            return StorageError(f"constraint violated in {self.display_url}: {first}")
        return StorageError(f"database error on {self.display_url}: {first}")

    # -- sessions -------------------------------------------------------------------------

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """One transaction: committed when the block succeeds, rolled back on any error.

        ``readonly=True`` never commits (it always rolls back) and, on SQLite, does not take the
        write lock, so it runs alongside a writer. Objects stay usable after the block
        (``expire_on_commit=False``). Inside :meth:`transaction` the block is part of that
        transaction instead: it neither commits nor rolls back by itself.
        """
        joined = _JOINED.get()
        if joined is not None and joined[0] is self:
            try:
                yield joined[1]
            except SQLAlchemyError as exc:
                raise self.translate_error(exc) from exc
            return
        session = (self._readonly_maker if readonly else self._maker)()
        try:
            yield session
            if readonly:
                session.rollback()
            else:
                session.commit()
        except SQLAlchemyError as exc:
            self._safe_rollback(session)
            raise self.translate_error(exc) from exc
        except BaseException:
            self._safe_rollback(session)
            raise
        finally:
            session.close()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One write transaction that every :meth:`session` opened inside the block (in this
        thread or task) joins: what several calls write is committed together or not at all
        (a batch of episodes and the idempotency record of the request that sent it)."""
        if _JOINED.get() is not None:
            raise StorageError("Database.transaction() blocks cannot be nested")
        with self.session() as session:
            token = _JOINED.set((self, session))
            try:
                yield session
            finally:
                _JOINED.reset(token)

    def run(self, fn: Callable[[Session], T], *, readonly: bool = False) -> T:
        """Call ``fn(session)`` inside :meth:`session` and return its result."""
        with self.session(readonly=readonly) as session:
            return fn(session)

    @staticmethod
    def _safe_rollback(session: Session) -> None:
        try:
            session.rollback()
        except SQLAlchemyError as exc:  # the connection may already be gone
            log.warning("rollback failed", error=str(exc))

    # -- migrations -----------------------------------------------------------------------

    def alembic_config(self) -> Any:
        """An alembic ``Config`` for this database, built in code (no ``alembic.ini`` needed)."""
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        # ConfigParser interpolation: a literal % in the URL (an encoded password) must be doubled.
        config.set_main_option(
            "sqlalchemy.url", self.url.render_as_string(hide_password=False).replace("%", "%%")
        )
        return config

    def upgrade(self, revision: str = "head") -> None:
        """Migrate the schema up to ``revision``: the only way auto-dev creates its tables."""
        self._migrate("upgrade", revision)

    def downgrade(self, revision: str) -> None:
        """Migrate the schema down to ``revision`` (``"base"`` drops every table)."""
        self._migrate("downgrade", revision)

    def _migrate(self, direction: str, revision: str) -> None:
        from alembic import command
        from alembic.util import CommandError

        config = self.alembic_config()
        _check_revision(config, revision)  # before connecting: a typo creates no database file
        try:
            with self.engine.begin() as conn:
                if self.dialect == "postgresql":
                    # Two processes upgrading at once would both try to create the tables.
                    conn.execute(
                        text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK}
                    )
                config.attributes[ALEMBIC_CONNECTION_KEY] = conn
                if direction == "upgrade":
                    command.upgrade(config, revision)
                else:
                    command.downgrade(config, revision)
        except SQLAlchemyError as exc:
            raise self.translate_error(exc) from exc
        except CommandError as exc:
            raise StorageError(
                f"cannot {direction} {self.display_url} to {revision!r}: {exc}"
            ) from exc
        log.info("database migrated", direction=direction, revision=revision, url=self.display_url)

    def current_revision(self) -> str | None:
        """The migration revision the database is at (``None`` when never migrated)."""
        from alembic.runtime.migration import MigrationContext

        try:
            with self.engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()
        except SQLAlchemyError as exc:
            raise self.translate_error(exc) from exc

    @staticmethod
    def head_revision() -> str:
        """The newest revision shipped with this version of auto-dev."""
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        head = ScriptDirectory.from_config(config).get_current_head()
        if head is None:  # pragma: no cover - the package always ships a migration
            raise StorageError("auto-dev ships no migrations")
        return head

    def require_current(self) -> None:
        """Raise :class:`~auto_dev.StorageError` unless the schema is at the shipped head."""
        current = self.current_revision()
        head = self.head_revision()
        if current != head:
            state = "has no auto-dev schema" if current is None else f"is at revision {current}"
            raise StorageError(
                f"database {self.display_url} {state}, this auto-dev needs {head}: "
                "run `auto-dev db upgrade`"
            )

    # -- get-or-create helpers --------------------------------------------------------------

    def ensure_tenant(self, session: Session, tenant_id: str, *, name: str = "") -> Tenant:
        """Return tenant ``tenant_id``, creating it (settings all off) if it does not exist.

        Race-safe: a concurrent creator makes our insert hit the primary key, and we read
        theirs instead.
        """
        _check_identifier("tenant_id", tenant_id, _TENANT_ID_MAX)
        tenant = session.get(Tenant, tenant_id)
        if tenant is not None:
            return tenant
        return self._insert_or_fetch(
            session,
            Tenant(id=tenant_id, name=name or tenant_id, settings={}),
            lambda: session.get(Tenant, tenant_id, populate_existing=True),
        )

    def ensure_agent(self, session: Session, tenant_id: str, agent_key: str) -> Agent:
        """Return the agent known to the platform as ``agent_key``, creating it (and its tenant)."""
        _check_identifier("agent_key", agent_key, _AGENT_KEY_MAX)
        self.ensure_tenant(session, tenant_id)
        agent = self._find_agent(session, tenant_id, agent_key)
        if agent is not None:
            return agent
        return self._insert_or_fetch(
            session,
            Agent(tenant_id=tenant_id, key=agent_key),
            lambda: self._find_agent(session, tenant_id, agent_key),
        )

    @staticmethod
    def _find_agent(session: Session, tenant_id: str, agent_key: str) -> Agent | None:
        return session.scalars(
            select(Agent).where(Agent.tenant_id == tenant_id, Agent.key == agent_key)
        ).one_or_none()

    @staticmethod
    def _insert_or_fetch(session: Session, row: T, fetch: Callable[[], T | None]) -> T:
        try:
            # A savepoint, so that losing the race rolls back only this insert.
            with session.begin_nested():
                session.add(row)
        except IntegrityError:
            existing = fetch()
            if existing is None:
                raise
            return existing
        return row

    # -- lifecycle ------------------------------------------------------------------------

    def dispose(self) -> None:
        """Close every pooled connection (on SQLite this checkpoints and removes the WAL)."""
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()


def _private_file(path: Path) -> None:
    """Make the SQLite file readable by its owner only (SQLite gives the -wal and -shm files it
    creates later the same mode). Candidates run under other uids and must never read it."""
    try:
        info = path.stat()
        if info.st_uid == os.getuid() and info.st_mode & 0o077:
            os.chmod(path, 0o600)
    except FileNotFoundError:
        return
    except OSError as exc:  # not ours to change: say so rather than fail
        log.warning("sqlite file permissions not restricted", path=str(path), error=str(exc))


def _check_revision(config: Any, revision: str) -> None:
    """Refuse a revision the migrations do not have (``head``, ``base``, an id or a unique
    prefix of one are fine; relative forms like ``+1`` are left to alembic)."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    if not isinstance(revision, str) or not revision.strip():
        raise ValidationError("revision", "must be a revision id, 'head' or 'base'")
    if any(sign in revision for sign in "+-"):
        return
    script = ScriptDirectory.from_config(config)
    try:
        script.get_revisions(revision)
    except CommandError:
        known = ", ".join(["head", "base", *(s.revision for s in script.walk_revisions())])
        raise ValidationError("revision", f"unknown revision {revision!r} (known: {known})"
                              ) from None


def _check_identifier(field: str, value: object, max_len: int) -> None:
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValidationError(field, "must not be empty")
    if len(value) > max_len:
        raise ValidationError(field, f"must be at most {max_len} characters, got {len(value)}")
    if not value.isprintable():
        raise ValidationError(field, "must not contain control characters")
