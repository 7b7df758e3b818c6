"""Alembic environment for auto-dev.

Three ways in:

* :meth:`auto_dev.db.Database.upgrade` passes a live connection in
  ``config.attributes["connection"]`` (no ``alembic.ini`` needed; the installed package migrates
  its own database);
* the ``alembic`` command line (``alembic.ini`` at the repository root) connects to the URL given
  by ``-x url=...``, else ``sqlalchemy.url`` in the ini file, else the auto-dev settings
  (``AUTO_DEV_DATABASE_URL``, the TOML file, the default ``./auto_dev.db``);
* ``alembic upgrade head --sql`` renders the SQL offline for the same URL.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection

import auto_dev.models  # noqa: F401 - registers every table on Base.metadata
from auto_dev.models.base import Base, UTCDateTime

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if url:
        return url
    from auto_dev.config import load_settings

    return load_settings().database_url


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    # Migrations are frozen history: render our UTC type as the plain column type it stores,
    # so that a later change to the model code cannot change what an old migration does.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _options(dialect_name: str) -> dict[str, Any]:
    return {
        "target_metadata": target_metadata,
        "compare_type": True,
        # SQLite can only ALTER a table by copying it: batch mode does that.
        "render_as_batch": dialect_name == "sqlite",
        "render_item": _render_item,
    }


def _run(connection: Connection) -> None:
    context.configure(connection=connection, **_options(connection.dialect.name))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    url = _url()
    from sqlalchemy.engine import make_url

    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **_options(make_url(url).get_backend_name()),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # Through Database, so SQLite gets the same pragmas and locking as the application.
    from auto_dev.db import Database

    database = Database(_url())
    try:
        with database.engine.begin() as conn:
            _run(conn)
    finally:
        database.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
