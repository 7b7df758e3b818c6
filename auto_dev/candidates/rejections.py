"""Reviewer decisions that stick: rejected and rolled-back changes are remembered per (tenant,
target) by normalised hash and never offered again.

* A human rejection, and a rollback of a version, :func:`remember` the change's fingerprint
  (normalised-AST hash of the code; canonical JSON for a workflow) in
  :class:`~auto_dev.models.RejectedChange`, which survives pruning the candidates. Identical
  candidates of the same target still waiting for a human are rejected with it, so the same diff
  does not stay in the review list under another id.
* The store refuses to offer (``passed``) or auto-promote a candidate whose fingerprint is
  remembered: it is closed ``failed`` with "rejected before by <actor> on <date>: <reason>".
* :func:`rejected_hashes` is the set a search can skip cheaply (16-byte digests, as
  :class:`~auto_dev.evolution.dedup.Deduplicator` stores them).
* A human re-activating a rolled-back version (``rollback --to``) lifts what it remembered.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from auto_dev.candidates._kinds import AUTO_ACTOR, MODELS, Candidate, CandidateKind, kind_of
from auto_dev.evolution.dedup import normalized_hash
from auto_dev.gates._audit import write_audit
from auto_dev.models import (
    CandidateStatus,
    RejectedChange,
    SkillCandidate,
    Tool,
    WorkflowVariant,
    transition,
)

if TYPE_CHECKING:
    from auto_dev.candidates.store import CandidateStore

log = structlog.get_logger(__name__)

TOOL = "tool"
WORKFLOW = "workflow"
_WAITING = (CandidateStatus.PASSED.value, CandidateStatus.APPROVED.value)


def code_fingerprint(code: str) -> str:
    """Hex normalised-AST hash of ``code`` (formatting, comments and docstrings do not count);
    code that does not parse is fingerprinted by its text."""
    digest = normalized_hash(code)
    if digest is not None:
        return digest.hex()
    return "raw:" + hashlib.blake2b(code.encode("utf-8", "surrogatepass"),
                                    digest_size=16).hexdigest()


def definition_fingerprint(definition: Any) -> str:
    """Fingerprint of a workflow definition: its canonical JSON."""
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"), default=str)
    return "json:" + hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def target_of(session: Session, candidate: Candidate) -> tuple[str, str] | None:
    """``(target_kind, target)`` a candidate changes: the tool's name (a skill without a tool:
    the tool it will create), or the workflow's name."""
    if isinstance(candidate, WorkflowVariant):
        return WORKFLOW, candidate.name
    if candidate.tool_id:
        tool = session.get(Tool, candidate.tool_id)
        if tool is not None:
            return TOOL, tool.name
    return (TOOL, candidate.name) if isinstance(candidate, SkillCandidate) else None


def fingerprint_of(candidate: Candidate) -> str:
    if isinstance(candidate, WorkflowVariant):
        return definition_fingerprint(candidate.definition)
    return code_fingerprint(candidate.code)


def describe(row: RejectedChange) -> str:
    """"rejected before by <actor> on <date>: <reason>" (or "rolled back before ...")."""
    what = "rolled back" if row.decision == "rolled_back" else "rejected"
    return (f"{what} before by {row.actor} on {row.created_at:%Y-%m-%d}: "
            f"{row.reason or 'no reason given'}")


def _lookup(session: Session, tenant_id: str, target: tuple[str, str], code_hash: str
            ) -> RejectedChange | None:
    return session.scalars(select(RejectedChange).where(
        RejectedChange.tenant_id == tenant_id, RejectedChange.target_kind == target[0],
        RejectedChange.target == target[1], RejectedChange.code_hash == code_hash,
    ).order_by(RejectedChange.created_at).limit(1)).first()


def rejected_before(session: Session, candidate: Candidate) -> RejectedChange | None:
    """The remembered rejection of this candidate's change, if any."""
    target = target_of(session, candidate)
    if target is None:
        return None
    return _lookup(session, candidate.tenant_id, target, fingerprint_of(candidate))


def rejected_hashes(session: Session, tenant_id: str, target: str,
                    target_kind: str = TOOL) -> frozenset[bytes]:
    """The 16-byte normalised-AST digests rejected for ``target`` (what a search may skip)."""
    out = set()
    for code_hash in session.scalars(select(RejectedChange.code_hash).where(
            RejectedChange.tenant_id == tenant_id, RejectedChange.target_kind == target_kind,
            RejectedChange.target == target)):
        try:
            out.add(bytes.fromhex(code_hash))
        except ValueError:
            continue  # a workflow or unparsable fingerprint: not an AST digest
    return frozenset(out)


def remember(
    store: CandidateStore, session: Session, *, tenant_id: str, target: tuple[str, str],
    code_hash: str, decision: str, actor: str, reason: str,
    candidate: Candidate | None = None,
) -> RejectedChange:
    """Record that ``code_hash`` was turned down for ``target`` (once per target and hash), and
    reject the identical candidates still waiting for a human."""
    row = _lookup(session, tenant_id, target, code_hash)
    if row is None:
        row = RejectedChange(
            tenant_id=tenant_id, target_kind=target[0], target=target[1][:200],
            code_hash=code_hash, decision=decision, actor=actor, reason=reason,
            candidate_kind=kind_of(candidate).value if candidate is not None else None,
            candidate_id=candidate.id if candidate is not None else None,
            created_at=store.gatekeeper.now())
        session.add(row)
        session.flush()
    _close_identical(store, session, tenant_id, target, code_hash, row,
                     exclude=candidate.id if candidate is not None else None)
    return row


def _close_identical(
    store: CandidateStore, session: Session, tenant_id: str, target: tuple[str, str],
    code_hash: str, row: RejectedChange, exclude: str | None,
) -> None:
    from auto_dev.candidates.promotion import record_decision

    why = f"the same change was {describe(row)}"
    kinds = ([CandidateKind.WORKFLOW_VARIANT] if target[0] == WORKFLOW
             else [CandidateKind.TOOL_MUTATION, CandidateKind.SKILL_CANDIDATE])
    for kind in kinds:
        model = MODELS[kind]
        waiting = session.scalars(select(model).where(
            model.tenant_id == tenant_id, model.status.in_(_WAITING), model.id != exclude))
        for other in waiting:
            if target_of(session, other) != target or fingerprint_of(other) != code_hash:
                continue
            transition(other, CandidateStatus.REJECTED)
            record_decision(store, session, other, kind.value, "rejected", row.actor, why)
    session.flush()


def remember_candidate(store: CandidateStore, session: Session, candidate: Candidate,
                       decision: str, actor: str, reason: str) -> None:
    """:func:`remember` a candidate's own change (a human rejection)."""
    target = target_of(session, candidate)
    if target is None:
        return
    remember(store, session, tenant_id=candidate.tenant_id, target=target,
             code_hash=fingerprint_of(candidate), decision=decision, actor=actor,
             reason=reason, candidate=candidate)


def lift(session: Session, *, tenant_id: str, tool_name: str, code: str, actor: str,
         reason: str) -> int:
    """Forget the rejection of ``code`` for ``tool_name`` (a human put it back live)."""
    return lift_fingerprint(session, tenant_id=tenant_id, target=(TOOL, tool_name),
                            code_hash=code_fingerprint(code), actor=actor, reason=reason)


def lift_fingerprint(session: Session, *, tenant_id: str, target: tuple[str, str],
                     code_hash: str, actor: str, reason: str) -> int:
    """Forget the rejection of ``code_hash`` for ``target`` (a human put it back live)."""
    if actor == AUTO_ACTOR:
        return 0  # auto-dev never overrides a human's "no"
    rows = list(session.scalars(select(RejectedChange).where(
        RejectedChange.tenant_id == tenant_id, RejectedChange.target_kind == target[0],
        RejectedChange.target == target[1], RejectedChange.code_hash == code_hash)))
    for row in rows:
        session.delete(row)
    lifted = len(rows)
    if lifted:
        write_audit(session, tenant_id=tenant_id, actor=actor, action="candidate.rejection_lifted",
                    subject_kind=target[0], subject_id=None, reason=reason,
                    details={target[0]: target[1], "code_hash": code_hash})
        log.info("rejection_lifted", tenant_id=tenant_id, target=target[1], actor=actor)
    return lifted
