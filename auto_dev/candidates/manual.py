"""A human's change to a tool's code: a ``manual`` candidate, reviewed like any other.

``register_tool`` only creates tools; changing live code goes through the gated store:

1. validated (parses, defines the entrypoint; checked on the syntax tree only) and refused when
   it is the active code already;
2. stored as a ``manual`` tool mutation whose parent is the active version, gated like the
   proposer's approvals (the tenant's toggles, the named human instead of maturity), and
   audited (``tool.change_proposed``: who and why);
3. run in the sandbox with the active version against the tool's tests, and marked ``passed``
   when it breaks no case the active version passes (else ``failed``, with the cases it breaks).

A passed change then waits for a reviewer: approve, promote (or reject) as usual.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import select

from auto_dev._exceptions import AutoDevError, NotFoundError, ValidationError
from auto_dev.candidates._kinds import AUTO_ACTOR, CandidateKind
from auto_dev.candidates.reevaluation import compare_with_active, tool_cases
from auto_dev.candidates.registration import check_tool_code
from auto_dev.candidates.rejections import code_fingerprint
from auto_dev.candidates.staleness import active_version
from auto_dev.gates._audit import write_audit
from auto_dev.models import CandidateStatus, Tool

if TYPE_CHECKING:
    from auto_dev.candidates.reevaluation import PromotionService

log = structlog.get_logger(__name__)

MANUAL_OPERATOR = "manual"


@dataclass(frozen=True, slots=True)
class ManualChange:
    """The proposed change: its candidate, the status it reached and why."""

    candidate_id: str
    tool_name: str
    parent_version: int
    status: str  # passed (waiting for review) or failed
    passed: int
    total: int
    reason: str


def _text(field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, "must be a non-empty string")
    return value.strip()


async def propose_tool_change(
    service: PromotionService, tenant_id: str, name: str, code: str, *, actor: str,
    reason: str, entrypoint: str | None = None,
) -> ManualChange:
    """Make ``code`` a manual candidate for tool ``name``, evaluate it, and return the result."""
    name = _text("name", name)
    _text("code", code)
    actor = _text("actor", actor)
    if actor == AUTO_ACTOR:
        raise ValidationError("actor", "must name the human proposing the change")
    reason = _text("reason", reason)
    store = service.store
    with service.database.session() as session:
        tool = session.scalars(select(Tool).where(Tool.tenant_id == tenant_id,
                                                  Tool.name == name)).one_or_none()
        if tool is None:
            raise NotFoundError(f"name: tool {name!r} does not exist in tenant {tenant_id!r} "
                                "(register it with register_tool)")
        entry = entrypoint if entrypoint is not None else tool.entrypoint
        if not isinstance(entry, str) or not entry.isidentifier():
            raise ValidationError("entrypoint", f"must be a Python identifier, got {entry!r}")
        check_tool_code(code, entry)
        active = active_version(session, tool)
        if active is None:
            raise NotFoundError(f"tool {name!r} has no active version")
        if entry == active.entrypoint and code_fingerprint(code) == code_fingerprint(active.code):
            raise ValidationError("code", f"is the active version v{active.version} of {name!r} "
                                  "(formatting, comments and docstrings aside): nothing to "
                                  "propose")
        row = store.create_tool_mutation(
            session, tenant_id=tenant_id, tool_id=tool.id, code=code, entrypoint=entry,
            operator=MANUAL_OPERATOR, parent_version_id=active.id, proposed_by=actor,
            details={"reason": reason})
        write_audit(session, tenant_id=tenant_id, actor=actor, action="tool.change_proposed",
                    subject_kind=CandidateKind.TOOL_MUTATION.value, subject_id=row.id,
                    reason=reason, details={"tool": name, "parent_version": active.version})
        plan = (row.id, active.version, active.code, active.entrypoint,
                tool_cases(session, tool))
    candidate_id, version, active_code, active_entry, cases = plan
    try:
        comparison = await compare_with_active(
            service.sandbox(), service.limits, code=code, entrypoint=entry,
            active_code=active_code, active_entrypoint=active_entry, cases=cases)
    except Exception as exc:
        # The sandbox itself failed: close the candidate rather than leave it pending forever.
        try:
            with service.database.session() as session:
                store.set_status(session, tenant_id=tenant_id, candidate_id=candidate_id,
                                 status="failed", reason=f"sandbox failed: {exc}")
        except AutoDevError as close_error:
            log.warning("manual_change_not_closed", candidate_id=candidate_id,
                        error=str(close_error))
        raise
    broken = sorted(comparison.active_passed - comparison.candidate.passed_indices())
    if broken:
        shown = ", ".join(str(i) for i in broken[:5])
        verdict, why = CandidateStatus.FAILED, (f"breaks {len(broken)} case(s) v{version} "
                                               f"passes ({shown})")
    else:
        verdict, why = CandidateStatus.PASSED, (f"passes every case v{version} passes; "
                                                f"{comparison.verdict.reason}")
    with service.database.session() as session:
        store.record_evaluation(
            session, tenant_id=tenant_id, candidate_id=candidate_id,
            result=comparison.candidate, limits=service.limits.to_wire(),
            objectives=comparison.candidate_scores, parent_objectives=comparison.active_scores,
            parent_passed_cases=comparison.active_passed, verdict=verdict, reason=why)
        status = store.get(session, tenant_id, candidate_id).status
        if status != verdict.value:  # closed by the store (a change rejected before)
            decisions = store.decisions(session, tenant_id, candidate_id)
            why = decisions[-1].reason if decisions else why
    log.info("tool_change_proposed", tenant_id=tenant_id, tool=name, candidate_id=candidate_id,
             actor=actor, status=status, reason=why)
    return ManualChange(candidate_id=candidate_id, tool_name=name, parent_version=version,
                        status=status, passed=comparison.candidate.passed,
                        total=comparison.candidate.total, reason=why)
