"""Is a candidate still about the active version?

A tool mutation or skill is compared with the version it was derived from. Once another
promotion (or a rollback) changed the active version, that comparison says nothing about the
code that is live now: promoting the candidate as is could replace a better version, or add one
identical to it. Such a candidate is *stale* until it has been re-evaluated against the active
version and found still promotable (``PROMOTABLE_AGAINST`` recorded with that evaluation, see
:mod:`auto_dev.candidates.reevaluation`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from auto_dev.candidates._kinds import Candidate
from auto_dev.models import SkillCandidate, Tool, ToolMutation, ToolVersion

#: Key in a candidate's details (mutation) / validation (skill): the active version id it was
#: last re-evaluated against and found promotable.
PROMOTABLE_AGAINST = "promotable_against_version_id"


@dataclass(frozen=True, slots=True)
class Staleness:
    """A candidate made against ``base`` (``None``: before the tool existed) while ``active``
    is live now."""

    tool: Tool
    base: ToolVersion | None
    active: ToolVersion
    cleared: bool  # re-evaluated against ``active`` and still promotable

    def describe(self) -> str:
        made = (f"made against {self.tool.name} v{self.base.version}" if self.base is not None
                else f"made before {self.tool.name} existed")
        return f"{made}, active is v{self.active.version}"


def active_version(session: Session, tool: Tool) -> ToolVersion | None:
    return session.scalars(select(ToolVersion).where(
        ToolVersion.tenant_id == tool.tenant_id, ToolVersion.tool_id == tool.id,
        ToolVersion.is_active.is_(True))).one_or_none()


def root_version_id(session: Session, mutation: ToolMutation) -> str | None:
    """The tool version a chain of mutations started from."""
    seen: set[str] = set()
    node: ToolMutation | None = mutation
    while node is not None and node.id not in seen:
        seen.add(node.id)
        if node.parent_version_id:
            return node.parent_version_id
        node = session.get(ToolMutation, node.parent_mutation_id) if node.parent_mutation_id \
            else None
    return None


def target_tool(session: Session, candidate: Candidate) -> Tool | None:
    """The tool a candidate would become a version of (a skill: its own or the same-named)."""
    if isinstance(candidate, ToolMutation):
        return session.get(Tool, candidate.tool_id)
    if isinstance(candidate, SkillCandidate):
        if candidate.tool_id:
            tool = session.get(Tool, candidate.tool_id)
            if tool is not None and tool.tenant_id == candidate.tenant_id:
                return tool
        return session.scalars(select(Tool).where(Tool.tenant_id == candidate.tenant_id,
                                                  Tool.name == candidate.name)).one_or_none()
    return None


def _base_version_id(session: Session, candidate: Candidate) -> str | None:
    if isinstance(candidate, ToolMutation):
        return root_version_id(session, candidate)
    if isinstance(candidate, SkillCandidate):
        if not candidate.tool_id:
            return None  # made as a new tool
        recorded = (candidate.validation or {}).get("parent_version_id")
        return recorded if isinstance(recorded, str) else None
    return None


def _made_before(session: Session, candidate: Candidate, tool: Tool) -> bool:
    """Was ``candidate`` created before ``tool``'s first version (on the gate's clock)?"""
    first = session.scalars(select(ToolVersion.created_at).where(
        ToolVersion.tool_id == tool.id).order_by(ToolVersion.version).limit(1)).first()
    return first is not None and candidate.created_at < first


def _promotable_against(candidate: Candidate) -> str | None:
    if isinstance(candidate, ToolMutation):
        value = (candidate.details or {}).get(PROMOTABLE_AGAINST)
    elif isinstance(candidate, SkillCandidate):
        value = (candidate.validation or {}).get(PROMOTABLE_AGAINST)
    else:
        value = None
    return value if isinstance(value, str) else None


def staleness(session: Session, candidate: Candidate) -> Staleness | None:
    """How a candidate is stale, or ``None`` when it was derived from the active version (or
    is a workflow variant, or its tool has no active version)."""
    if not isinstance(candidate, ToolMutation | SkillCandidate):
        return None
    if isinstance(candidate, SkillCandidate) and "parent_version_id" not in (
            candidate.validation or {}):
        return None  # a row from before the parent was recorded: nothing to compare with
    tool = target_tool(session, candidate)
    if tool is None:
        return None
    active = active_version(session, tool)
    if active is None:
        return None
    base_id = _base_version_id(session, candidate)
    if base_id == active.id:
        return None
    if base_id is None and not _made_before(session, candidate, tool):
        return None  # a new skill named after a tool that already existed: adds a version
    base = session.get(ToolVersion, base_id) if base_id else None
    return Staleness(tool=tool, base=base, active=active,
                     cleared=_promotable_against(candidate) == active.id)
