"""Reads of the tool aggregate (tools, active versions, test cases), scoped to one tenant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from auto_dev._exceptions import NotFoundError
from auto_dev.evolution.program import Program
from auto_dev.models import TestCase, Tool, ToolVersion
from auto_dev.sandbox.base import Case

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from auto_dev.db import Database


@dataclass(frozen=True, slots=True)
class ToolSnapshot:
    """A tool's active version and its test cases, read in one transaction."""

    tool_id: str
    name: str
    description: str
    version_id: str
    version: int
    program: Program
    cases: tuple[Case, ...]


def load_tool(session: Session, tenant_id: str, name: str) -> ToolSnapshot:
    """Read ``name``'s active version and tests, or raise :class:`NotFoundError`."""
    tool = session.scalars(
        select(Tool).where(Tool.tenant_id == tenant_id, Tool.name == name)
    ).one_or_none()
    if tool is None:
        raise NotFoundError(f"tool {name!r} does not exist in tenant {tenant_id!r}")
    active = session.scalars(
        select(ToolVersion).where(
            ToolVersion.tenant_id == tenant_id,
            ToolVersion.tool_id == tool.id,
            ToolVersion.is_active.is_(True),
        )
    ).one_or_none()
    if active is None:
        raise NotFoundError(f"tool {name!r} has no active version")
    rows = session.scalars(
        select(TestCase)
        .where(TestCase.tenant_id == tenant_id, TestCase.tool_id == tool.id)
        .order_by(TestCase.created_at, TestCase.id)
    ).all()
    cases = tuple(
        Case(args=tuple(r.args or []), kwargs=dict(r.kwargs or {}), expected=r.expected,
             has_expected=r.has_expected, name=r.id)
        for r in rows
    )
    return ToolSnapshot(
        tool_id=tool.id, name=tool.name, description=tool.description, version_id=active.id,
        version=active.version,
        program=Program(code=active.code, entrypoint=active.entrypoint, id=active.id),
        cases=cases,
    )


def test_case_row(tenant_id: str, tool_id: str, case: Case, *, source: str,
                  episode_id: str | None = None) -> TestCase:
    """A new :class:`TestCase` row of ``case`` (the caller adds it to its session)."""
    return TestCase(
        tenant_id=tenant_id, tool_id=tool_id, args=list(case.args), kwargs=dict(case.kwargs),
        expected=case.expected, has_expected=case.has_expected, source=source,
        episode_id=episode_id,
    )


def find_tool(session: Session, tenant_id: str, name: str) -> Tool | None:
    return session.scalars(select(Tool).where(Tool.tenant_id == tenant_id,
                                              Tool.name == name)).one_or_none()


def older_versions(session: Session, version: ToolVersion) -> list[ToolVersion]:
    """The versions of ``version``'s tool older than it, newest first."""
    return list(session.scalars(select(ToolVersion).where(
        ToolVersion.tenant_id == version.tenant_id, ToolVersion.tool_id == version.tool_id,
        ToolVersion.version < version.version).order_by(ToolVersion.version.desc())))


class ToolQueries:
    """The tools of one tenant, as engines and the facade read them."""

    def __init__(self, database: Database, tenant_id: str) -> None:
        self.database = database
        self.tenant_id = tenant_id

    def snapshot(self, name: str) -> ToolSnapshot:
        """The active version and tests of tool ``name`` (:class:`NotFoundError` if missing)."""
        with self.database.session(readonly=True) as session:
            return load_tool(session, self.tenant_id, name)

    def tool_id(self, name: str | None) -> str | None:
        """The id of tool ``name``, or ``None`` when this tenant has no such tool."""
        if not name:
            return None
        with self.database.session(readonly=True) as session:
            return session.scalars(select(Tool.id).where(
                Tool.tenant_id == self.tenant_id, Tool.name == name)).one_or_none()

    def active_programs(self) -> dict[str, Program]:
        """Every tool's active version as a program (code and entrypoint), by tool name."""
        with self.database.session(readonly=True) as session:
            rows = session.execute(
                select(Tool.name, ToolVersion.id, ToolVersion.code, ToolVersion.entrypoint)
                .join(ToolVersion, ToolVersion.tool_id == Tool.id)
                .where(Tool.tenant_id == self.tenant_id, ToolVersion.tenant_id == self.tenant_id,
                       ToolVersion.is_active.is_(True))
                .order_by(Tool.name)).all()
        return {name: Program(code=code, entrypoint=entry, id=vid)
                for name, vid, code, entry in rows}

    def catalogue(self) -> list[tuple[str, str]]:
        """Every tool's ``(name, description)``, by name."""
        with self.database.session(readonly=True) as session:
            return [(r.name, r.description) for r in session.execute(
                select(Tool.name, Tool.description).where(Tool.tenant_id == self.tenant_id)
                .order_by(Tool.name))]
