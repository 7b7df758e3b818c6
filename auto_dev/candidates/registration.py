"""Registering a platform tool: validated (it parses and defines its entrypoint, checked on
the syntax tree, never executed), created once, and never silently replaced.

Re-registering identical code is a no-op; different code for an existing tool is refused with a
pointer to :meth:`auto_dev.service.AutoDev.propose_tool_change`, which makes it a ``manual``
candidate that is evaluated, reviewed and promoted like any other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from auto_dev._exceptions import NotFoundError, ValidationError
from auto_dev.candidates.promotion import _require_text, activate_new_version
from auto_dev.candidates.rejections import code_fingerprint
from auto_dev.candidates.staleness import active_version
from auto_dev.gates._audit import write_audit
from auto_dev.models import Tenant, Tool

if TYPE_CHECKING:
    from auto_dev.candidates.store import CandidateStore


def check_tool_code(code: str, entrypoint: str) -> None:
    """Refuse code that does not parse or does not define ``entrypoint`` at top level.

    Checked on the syntax tree only: nothing is executed.
    """
    from auto_dev.evolution.dedup import SyntaxProblem, defines, parse

    tree = parse(code)
    if isinstance(tree, SyntaxProblem):
        raise ValidationError("code", f"does not parse ({tree})")
    if not defines(tree, entrypoint):
        raise ValidationError("entrypoint", f"{entrypoint!r} is not defined at the top level "
                              f"of the code (expected `def {entrypoint}(...)`)")


def register_tool(
    store: CandidateStore, session: Session, *, tenant_id: str, name: str, code: str,
    entrypoint: str, description: str, actor: str,
) -> Tool:
    name = _require_text("name", name)
    if len(name) > 200:
        raise ValidationError("name", "must be at most 200 characters")
    _require_text("code", code)
    if not isinstance(entrypoint, str) or not entrypoint.isidentifier():
        raise ValidationError("entrypoint", f"must be a Python identifier, got {entrypoint!r}")
    check_tool_code(code, entrypoint)
    actor = _require_text("actor", actor)
    if session.get(Tenant, tenant_id) is None:
        raise NotFoundError(f"tenant {tenant_id!r} does not exist")
    tool = session.scalars(select(Tool).where(Tool.tenant_id == tenant_id,
                                              Tool.name == name)).one_or_none()
    if tool is None:
        tool = Tool(tenant_id=tenant_id, name=name, description=description or "",
                    entrypoint=entrypoint)
        session.add(tool)
        session.flush()
        version, _ = activate_new_version(store, session, tool, code=code, entrypoint=entrypoint,
                                          source="seed", source_id=None, actor=actor)
        action = "tool.registered"
    else:
        current = active_version(session, tool)
        if current is not None:
            if current.entrypoint != entrypoint or \
                    code_fingerprint(current.code) != code_fingerprint(code):
                # Changing live code is a candidate like any other: evaluated, reviewed,
                # promoted through the gate. Registration only ever creates.
                raise ValidationError(
                    "code", f"tool {name!r} already exists with different code (active "
                    f"v{current.version}); propose the change for review with "
                    f"AutoDev.propose_tool_change({name!r}, code, actor=..., reason=...)")
            # Identical (formatting, comments and docstrings aside): nothing to do.
            if description and description != tool.description:
                tool.description = description
            return tool
        # No active version at all (nothing live to replace): restore one, audited.
        version, _ = activate_new_version(store, session, tool, code=code, entrypoint=entrypoint,
                                          source="manual", source_id=None, actor=actor)
        action = "tool.version_registered"
    write_audit(session, tenant_id=tenant_id, actor=actor, action=action, subject_kind="tool",
                subject_id=tool.id, reason=f"{name} v{version.version}",
                details={"version": version.version, "version_id": version.id})
    return tool
