"""Declarative base, naming convention and column helpers shared by every model."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, ForeignKey, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# A naming convention keeps constraint names identical on SQLite and PostgreSQL, which is what
# lets alembic's autogenerate compare the migrated schema with the models.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp, always stored and returned in UTC.

    SQLite has no timestamp type: SQLAlchemy stores the text without an offset and hands back
    naive datetimes, which cannot be compared with ``utcnow()``. This type converts every value
    to UTC on the way in (a naive value is taken to be UTC already) and attaches UTC on the way
    out, so both backends return aware UTC datetimes and SQLite's text ordering stays correct.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class UnreadableJSON:
    """What a :class:`TolerantJSON` column reads when the stored text is not JSON (a row edited
    by hand, a torn write): the text and the parser's complaint, for an error that names the row.
    Not a mapping, so no reader can mistake it for empty settings."""

    __slots__ = ("error", "text")

    def __init__(self, text: str, error: str) -> None:
        self.text = text
        self.error = error

    def __repr__(self) -> str:
        shown = self.text if len(self.text) <= 60 else self.text[:60] + "..."
        return f"UnreadableJSON({shown!r}: {self.error})"


class TolerantJSON(TypeDecorator[Any]):
    """JSON whose corrupt stored values read as :class:`UnreadableJSON` instead of raising.

    Loading a row must not fail because one column is corrupt: the row's other columns are
    needed to say which row it is, and the code that uses the column refuses the marker with a
    message naming it (see ``TenantSettings.from_raw``). Only SQLite can hold such text; a
    PostgreSQL ``json`` column refuses it on write.
    """

    impl = JSON
    cache_ok = True

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        # Wraps (rather than replaces, as process_result_value would) the dialect's own
        # deserializer, which is where the error is raised.
        load = self.impl_instance.result_processor(dialect, coltype)
        if load is None:
            return None

        def process(value: Any) -> Any:
            try:
                return load(value)
            except ValueError as exc:  # json.JSONDecodeError, and ints too long to convert
                return UnreadableJSON(str(value), str(exc))

        return process


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UTCDateTime}


def id_column() -> Mapped[str]:
    return mapped_column(String(32), primary_key=True, default=new_id)


def tenant_column() -> Mapped[str]:
    return mapped_column(
        String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
    )


def created_column() -> Mapped[datetime]:
    return mapped_column(UTCDateTime(), nullable=False, default=utcnow)
