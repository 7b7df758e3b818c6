"""Workflow versions: registration, activation by promotion, rollback. Called only through
:class:`~auto_dev.candidates.store.CandidateStore`, which is the one place versions change.

As for tool versions, every activation deactivates the old version and flushes *before* the new
one is inserted or re-activated (a partial unique index allows one active version per workflow),
and promotion and rollback run in the caller's savepoint: a failure half-way leaves the old
version active. A definition is validated (``auto_dev.workflows.validate_workflow``, with the
tenant's registered tools) before any version is written.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy.orm import Session

from auto_dev._event_types import CandidateRolledBack
from auto_dev._exceptions import NotFoundError, ValidationError
from auto_dev.candidates._events import emit
from auto_dev.candidates._kinds import CandidateKind
from auto_dev.candidates._rollback import rollback_target
from auto_dev.candidates.rejections import (
    WORKFLOW,
    definition_fingerprint,
    lift_fingerprint,
    remember,
)
from auto_dev.gates._audit import write_audit
from auto_dev.models import (
    CandidateStatus,
    ReviewDecision,
    Tenant,
    Workflow,
    WorkflowVariant,
    WorkflowVersion,
    transition,
)
from auto_dev.queries.workflows import (
    active_workflow_version,
    find_workflow,
    get_workflow,
    highest_version,
    tenant_tool_names,
    versions_of,
)

if TYPE_CHECKING:
    from auto_dev.candidates.store import CandidateStore

log = structlog.get_logger(__name__)

#: WorkflowVersion.source values.
USER_SOURCE = "user"
VARIANT_SOURCE = "variant"


@dataclass(frozen=True, slots=True)
class WorkflowRegistration:
    """What registering a definition did: the active version and whether it is new."""

    workflow_id: str
    name: str
    version: int
    version_id: str
    created: bool


@dataclass(frozen=True, slots=True)
class WorkflowRollbackResult:
    """What a workflow rollback did."""

    workflow_id: str
    name: str
    from_version: int
    to_version: int
    active_version_id: str
    rolled_back_candidate_id: str | None


def checked_definition(session: Session, tenant_id: str, definition: Any, *,
                       field: str = "workflow", kinds: Collection[str] = frozenset()
                       ) -> dict[str, Any]:
    """A validated deep copy of ``definition`` whose tool steps name the tenant's tools and
    whose custom steps name ``kinds`` (fail closed: none unless the caller registered some)."""
    from auto_dev.workflows import validate_workflow

    if not isinstance(definition, Mapping):
        raise ValidationError(field, "must be a JSON object (the workflow document)")
    return validate_workflow(dict(definition), tools=tenant_tool_names(session, tenant_id),
                             kinds=frozenset(kinds))


def _hash(definition: dict[str, Any]) -> str:
    from auto_dev.workflows import workflow_hash

    return workflow_hash(definition)


def activate_workflow_version(
    store: CandidateStore, session: Session, workflow: Workflow, *, definition: dict[str, Any],
    source: str, candidate_id: str | None, actor: str,
) -> tuple[WorkflowVersion, WorkflowVersion | None]:
    """Add a new active version of ``workflow``; return it and the version it replaced."""
    current = active_workflow_version(session, workflow)
    number = highest_version(session, workflow) + 1
    if current is not None:
        current.is_active = False
        session.flush()  # before the insert: one active version per workflow (an index)
    version = WorkflowVersion(
        tenant_id=workflow.tenant_id, workflow_id=workflow.id, version=number,
        definition=definition, definition_hash=_hash(definition), is_active=True, source=source,
        candidate_id=candidate_id, created_by=actor, created_at=store.gatekeeper.now())
    session.add(version)
    session.flush()
    return version, current


def register_workflow(
    store: CandidateStore, session: Session, *, tenant_id: str, definition: Any, actor: str,
    kinds: Collection[str] = frozenset(),
) -> WorkflowRegistration:
    """Create the workflow a definition names, or give it a new active version when the
    definition differs from the active one (identical: nothing changes). Audited."""
    if session.get(Tenant, tenant_id) is None:
        raise NotFoundError(f"tenant {tenant_id!r} does not exist")
    doc = checked_definition(session, tenant_id, definition, kinds=kinds)
    name = doc["name"]
    workflow = find_workflow(session, tenant_id, name)
    created_workflow = workflow is None
    if workflow is None:
        workflow = Workflow(tenant_id=tenant_id, name=name,
                            description=str(doc.get("description") or ""))
        session.add(workflow)
        session.flush()
    else:
        current = active_workflow_version(session, workflow)
        workflow.description = str(doc.get("description") or workflow.description)
        if current is not None and current.definition_hash == _hash(doc):
            # The same workflow (prose aside, as workflow_hash says): nothing to version.
            return WorkflowRegistration(workflow.id, name, current.version, current.id, False)
    version, previous = activate_workflow_version(
        store, session, workflow, definition=doc, source=USER_SOURCE, candidate_id=None,
        actor=actor)
    action = "workflow.registered" if created_workflow else "workflow.version_registered"
    write_audit(session, tenant_id=tenant_id, actor=actor, action=action,
                subject_kind="workflow", subject_id=workflow.id,
                reason=f"{name} v{version.version}",
                details={"version": version.version, "version_id": version.id,
                         "previous_version": previous.version if previous else None})
    log.info("workflow_registered", tenant_id=tenant_id, workflow=name, version=version.version,
             actor=actor)
    return WorkflowRegistration(workflow.id, name, version.version, version.id, True)


def promote_variant(
    store: CandidateStore, session: Session, candidate: WorkflowVariant, *, actor: str,
) -> tuple[Workflow, WorkflowVersion, WorkflowVersion | None]:
    """Make a workflow variant its workflow's new active version (the workflow is created if
    it was never registered). Runs inside the promotion's savepoint."""
    doc = checked_definition(session, candidate.tenant_id, candidate.definition,
                             field="definition")
    if doc["name"] != candidate.name:
        raise ValidationError("definition.name", f"is {doc['name']!r}, but the variant is of "
                              f"workflow {candidate.name!r}")
    workflow = find_workflow(session, candidate.tenant_id, candidate.name)
    if workflow is None:
        workflow = Workflow(tenant_id=candidate.tenant_id, name=candidate.name,
                            description=str(doc.get("description") or ""))
        session.add(workflow)
        session.flush()
    version, previous = activate_workflow_version(
        store, session, workflow, definition=doc, source=VARIANT_SOURCE,
        candidate_id=candidate.id, actor=actor)
    return workflow, version, previous


def version_variant(session: Session, version: WorkflowVersion) -> WorkflowVariant | None:
    """The variant whose promotion produced ``version`` (``None`` for registered ones)."""
    if not version.candidate_id:
        return None
    row = session.get(WorkflowVariant, version.candidate_id)
    return row if row is not None and row.tenant_id == version.tenant_id else None


def workflow_version_rolled_back(session: Session, version: WorkflowVersion) -> bool:
    variant = version_variant(session, version)
    return variant is not None and variant.status == CandidateStatus.ROLLED_BACK.value


def rollback_workflow_version(
    store: CandidateStore, session: Session, *, tenant_id: str, name: str, to_version: Any,
    actor: str, reason: str,
) -> WorkflowRollbackResult:
    """Re-activate version ``to_version`` of workflow ``name`` (``None``: the newest older one
    not itself rolled back). The variant that produced the replaced version becomes
    ``rolled_back`` and its definition is remembered, so it is never offered again."""
    for field, value in (("actor", actor), ("reason", reason), ("name", name)):
        if not isinstance(value, str) or not value.strip():
            raise ValidationError(field, "must be a non-empty string")
    actor, reason = actor.strip(), reason.strip()
    workflow = get_workflow(session, tenant_id, name)
    current = active_workflow_version(session, workflow)
    if current is None:
        raise NotFoundError(f"workflow {name!r} has no active version")
    versions = versions_of(session, workflow, newest_first=True)
    target = rollback_target(
        versions, current, to_version,
        rolled_back=lambda v: workflow_version_rolled_back(session, v),
        subject=f"workflow {name!r}", name=name, version_field="version", name_field="name")
    with session.begin_nested():
        current.is_active = False
        session.flush()  # one active version per workflow: deactivate before activating
        target.is_active = True
        session.flush()
        variant = version_variant(session, current)
        if variant is not None and variant.status == CandidateStatus.PROMOTED.value:
            transition(variant, CandidateStatus.ROLLED_BACK)
        target_hash, current_hash = (definition_fingerprint(target.definition),
                                     definition_fingerprint(current.definition))
        # As for tools: a human putting a version back lifts its rejection; taking one back
        # remembers it, so the same definition is never offered again.
        lift_fingerprint(session, tenant_id=tenant_id, target=(WORKFLOW, name),
                         code_hash=target_hash, actor=actor, reason=reason)
        if target.version < current.version and current_hash != target_hash:
            remember(store, session, tenant_id=tenant_id, target=(WORKFLOW, name),
                     code_hash=current_hash, decision="rolled_back", actor=actor, reason=reason,
                     candidate=variant)
        kind, subject_id = ((CandidateKind.WORKFLOW_VARIANT.value, variant.id)
                            if variant is not None else ("workflow_version", current.id))
        session.add(ReviewDecision(tenant_id=tenant_id, candidate_kind=kind,
                                   candidate_id=subject_id, decision="rolled_back", actor=actor,
                                   reason=reason, created_at=store.gatekeeper.now()))
        write_audit(session, tenant_id=tenant_id, actor=actor, action="workflow.rolled_back",
                    subject_kind="workflow", subject_id=workflow.id, reason=reason,
                    details={"workflow": name, "from_version": current.version,
                             "to_version": target.version,
                             "candidate_id": variant.id if variant else None})
        session.flush()
        emit(store.bus, session, CandidateRolledBack(
            tenant_id=tenant_id, candidate_kind=kind, candidate_id=subject_id, tool_name=name,
            actor=actor, reason=reason,
            metadata={"workflow": name, "workflow_version_id": target.id,
                      "from_version": current.version, "to_version": target.version}))
    log.info("workflow_rolled_back", tenant_id=tenant_id, workflow=name,
             from_version=current.version, to_version=target.version, actor=actor)
    return WorkflowRollbackResult(workflow.id, name, current.version, target.version, target.id,
                                  variant.id if variant is not None else None)


# -- review ---------------------------------------------------------------------------------


def variant_code_and_diff(session: Session, candidate: WorkflowVariant
                          ) -> tuple[str, str, str, str]:
    """A variant's definition (pretty JSON), its structural diff (steps added, removed,
    changed, moved; one per line), what the diff is against (the workflow's active version,
    or, once the variant is live or rolled back, the version it replaced; a parent variant
    when the workflow was never registered) and that base as pretty JSON."""
    import json

    from auto_dev.workflows.diff import structural_diff

    code = json.dumps(candidate.definition, indent=2, sort_keys=True) + "\n"
    base, label = _diff_base(session, candidate)
    if base is None:
        base, label = {"name": candidate.name, "steps": []}, "nothing (new workflow)"
    diff = structural_diff(base, dict(candidate.definition or {}))
    lines = diff.render_lines() if not diff.is_empty else ["(no structural change)"]
    base_code = json.dumps(base, indent=2, sort_keys=True) + "\n" if base.get("steps") else ""
    return code, "\n".join(lines) + "\n", label, base_code


def _diff_base(session: Session, candidate: WorkflowVariant) -> tuple[dict[str, Any] | None, str]:
    workflow = find_workflow(session, candidate.tenant_id, candidate.name)
    if workflow is not None:
        versions = versions_of(session, workflow)
        produced = next((v for v in versions if v.candidate_id == candidate.id), None)
        if produced is not None:
            before = next((v for v in reversed(versions) if v.version < produced.version), None)
            if before is not None:
                return dict(before.definition), f"{workflow.name} v{before.version} (replaced)"
            return None, "nothing (first version)"
        active = next((v for v in versions if v.is_active), None)
        if active is not None:
            return dict(active.definition), f"{workflow.name} v{active.version} (active)"
    parent = session.get(WorkflowVariant, candidate.parent_id) if candidate.parent_id else None
    if parent is not None and parent.tenant_id == candidate.tenant_id:
        return dict(parent.definition or {}), f"parent variant {parent.id[:12]}"
    return None, ""
