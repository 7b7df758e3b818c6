"""Shared fixtures: migrated databases (SQLite always, PostgreSQL when available).

* ``database``: a fresh, migrated SQLite file :class:`~auto_dev.db.Database` per test. The
  migration runs once per session into a template file that each test copies, which keeps the
  schema created by alembic (never ``create_all``) and the fixture cheap.
* ``database_url``: the URL of that file, for code that builds its own ``Database``.
* ``session``: one transaction on ``database``, committed after the test.
* ``tenant_id``: ``"t1"``, created in ``database``.
* ``postgres_url``: a fresh, empty PostgreSQL database per test (dropped afterwards) on the server
  named by ``AUTO_DEV_TEST_POSTGRES_URL`` (default: the local socket, see
  ``.ci/setup-postgres.sh``). Skips when the server is unreachable, fails instead when
  ``AUTO_DEV_REQUIRE_POSTGRES=1``. Mark such tests ``@pytest.mark.postgres``.
* ``postgres_database``: a fresh, migrated PostgreSQL :class:`Database` per test.
* ``ray_session``: a local Ray instance (2 CPUs, no dashboard) started by the first test that
  asks for it and shut down at the end of the session. Skips when Ray is not installed, fails
  instead when ``AUTO_DEV_REQUIRE_RAY=1``. Mark such tests ``@pytest.mark.ray``.
* ``chromium``: the path of a Chromium executable (``AUTO_DEV_CHROMIUM``, else ``chromium`` on
  the PATH; ``.ci/setup-browser.sh`` installs Debian's) with Playwright importable. Skips when
  either is missing, fails instead when ``AUTO_DEV_REQUIRE_BROWSER=1``. Mark such tests
  ``@pytest.mark.browser``.
* ``artifacts``: the directory for test artifacts (screenshots): ``AUTO_DEV_ARTIFACTS``, default
  ``test-artifacts/`` in the repository (git-ignored).

Logging: structlog keeps its default levels and processors, except that exceptions are rendered
as plain tracebacks (the default rich rendering with locals costs about half a second per logged
exception) and lines go to whatever ``sys.stderr`` is at the time, so pytest's capture works.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import settings as hypothesis_settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session

from auto_dev.db import Database
from tests._services import require_service

# CI runs every property with the same examples (a failure there is reproducible, never a
# one-in-twenty flake); locally the default profile keeps exploring new ones.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "default")

DEFAULT_POSTGRES_URL = "postgresql+psycopg:///autodev_test?host=/var/run/postgresql"


class _CurrentStderrLoggerFactory:
    """Loggers that write to the ``sys.stderr`` of the moment (pytest swaps it per test)."""

    def __call__(self, *args: object) -> structlog.PrintLogger:
        return structlog.PrintLogger(file=sys.stderr)


@pytest.fixture(scope="session", autouse=True)
def _plain_logging() -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.StackInfoRenderer(),
            structlog.dev.set_exc_info,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=structlog.dev.plain_traceback
            ),
        ],
        logger_factory=_CurrentStderrLoggerFactory(),
        cache_logger_on_first_use=False,
    )


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db-template") / "template.db"
    template = Database(f"sqlite:///{path}")
    template.upgrade()
    template.dispose()  # checkpoints the WAL into the main file, so copying it is enough
    return path


@pytest.fixture
def database_url(tmp_path: Path, _sqlite_template: Path) -> str:
    target = tmp_path / "auto_dev.db"
    shutil.copyfile(_sqlite_template, target)
    return f"sqlite:///{target}"


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    yield db
    db.dispose()


@pytest.fixture
def session(database: Database) -> Iterator[Session]:
    with database.session() as s:
        yield s


@pytest.fixture
def tenant_id(database: Database) -> str:
    with database.session() as s:
        database.ensure_tenant(s, "t1")
    return "t1"


# -- PostgreSQL ----------------------------------------------------------------------------------


def _postgres_base_url() -> URL:
    return make_url(os.environ.get("AUTO_DEV_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))


@pytest.fixture(scope="session")
def _postgres_admin() -> Iterator[tuple[URL | None, str]]:
    """(URL of the configured database, "") when the server answers, else (None, why)."""
    url = _postgres_base_url()
    try:
        import psycopg  # noqa: F401
    except ImportError:
        yield None, "psycopg is not installed"
        return
    engine = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not available here"
        yield None, f"cannot connect to {url.render_as_string(hide_password=True)}: {exc}"
        return
    finally:
        engine.dispose()
    yield url, ""


def _admin_execute(url: URL, statement: str) -> None:
    # CREATE/DROP DATABASE cannot run inside a transaction.
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()


@pytest.fixture
def postgres_url(_postgres_admin: tuple[URL | None, str]) -> Iterator[str]:
    admin, why = _postgres_admin
    require_service("PostgreSQL", "AUTO_DEV_REQUIRE_POSTGRES", admin is not None, why)
    assert admin is not None
    name = f"autodev_t_{uuid.uuid4().hex[:12]}"
    _admin_execute(admin, f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        _admin_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[Database]:
    db = Database(postgres_url)
    db.upgrade()
    yield db
    db.dispose()


# -- Ray -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ray_session() -> Iterator[Any]:
    """The ``ray`` module, initialised once for the session on a local instance."""
    try:
        import ray
    except ImportError as exc:
        require_service("Ray", "AUTO_DEV_REQUIRE_RAY", False, f"Ray is not installed: {exc}")
        raise  # pragma: no cover - require_service has skipped or failed
    # Two CPUs as on the CI machine; the object store at its floor: jobs and results are small.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=80 * 1024 * 1024, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()


# -- headless Chromium ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium executable the browser tests drive through Playwright."""
    path = os.environ.get("AUTO_DEV_CHROMIUM") or next(
        (found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))),
        None)
    available, why = path is not None and os.access(path, os.X_OK), "chromium is not installed"
    if available:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError as exc:
            available, why = False, f"playwright is not installed: {exc}"
    require_service("Chromium", "AUTO_DEV_REQUIRE_BROWSER", available, why)
    assert path is not None
    return path


@pytest.fixture(scope="session")
def artifacts() -> Path:
    root = Path(__file__).resolve().parent.parent
    directory = Path(os.environ.get("AUTO_DEV_ARTIFACTS") or root / "test-artifacts")
    directory.mkdir(parents=True, exist_ok=True)
    return directory
