"""One page of a tenant-scoped list: the rows, how many there are in all, and where the page is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from auto_dev._exceptions import ValidationError

T = TypeVar("T")

MAX_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


def check_window(limit: Any, offset: Any) -> tuple[int, int]:
    """``(limit, offset)`` checked: 1 <= limit <= 500, offset >= 0."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValidationError("limit", f"must be an integer between 1 and {MAX_LIMIT}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValidationError("offset", "must be an integer >= 0")
    return limit, offset


def count_of(session: Session, query: Select[Any] | Any) -> int:
    """How many rows ``query`` (without its order, limit and offset) returns."""
    inner = query.order_by(None).limit(None).offset(None).subquery()
    return int(session.scalar(select(func.count()).select_from(inner)) or 0)
