"""Pruning old closed candidates (``auto-dev candidates prune``).

An evolution run keeps every evaluated mutation for lineage, so the candidate tables grow by
hundreds of rows per run. Closed candidates (``failed``, ``rejected``) older than the retention
period are deleted with their evaluations, in the caller's transaction, except:

* anything that is not closed: ``pending``/``evaluating``, ``passed``/``approved`` (waiting for a
  human), ``promoted``/``rolled_back`` (the source of a tool version);
* a parent or lineage ancestor of any candidate that stays (whose own ancestors then stay too),
  so that no kept candidate, and no tool version, loses its lineage;
* candidates of a run that is still running (its children may still name them as parents).

What a reviewer rejected is remembered in ``rejected_changes`` (see
:mod:`auto_dev.candidates.rejections`), which pruning never touches.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from auto_dev._exceptions import ValidationError
from auto_dev.candidates._kinds import MODELS, CandidateKind
from auto_dev.gates._audit import write_audit
from auto_dev.models import CandidateStatus, Evaluation, EvolutionRun

if TYPE_CHECKING:
    from auto_dev.candidates.store import CandidateStore

log = structlog.get_logger(__name__)

#: The statuses a candidate may be pruned in.
PRUNABLE = (CandidateStatus.FAILED.value, CandidateStatus.REJECTED.value)
_CHUNK = 500  # ids per DELETE: well under every backend's bound-parameter limit

#: Columns naming a candidate's parents, per kind.
_PARENTS: dict[CandidateKind, tuple[str, ...]] = {
    CandidateKind.TOOL_MUTATION: ("parent_mutation_id", "second_parent_id"),
    CandidateKind.SKILL_CANDIDATE: (),
    CandidateKind.WORKFLOW_VARIANT: ("parent_id",),
}


@dataclass(frozen=True, slots=True)
class PruneCount:
    """What pruning did (or would do) to one kind of candidate."""

    kind: str
    candidates: int
    evaluations: int
    kept_as_ancestors: int


@dataclass(frozen=True, slots=True)
class PruneResult:
    tenant_id: str
    cutoff: datetime
    statuses: tuple[str, ...]
    dry_run: bool
    counts: tuple[PruneCount, ...]

    @property
    def candidates(self) -> int:
        return sum(c.candidates for c in self.counts)

    @property
    def evaluations(self) -> int:
        return sum(c.evaluations for c in self.counts)


def check_statuses(statuses: Iterable[Any]) -> tuple[str, ...]:
    if isinstance(statuses, str):
        statuses = statuses.split(",")
    out: list[str] = []
    for status in statuses:
        value = status.strip() if isinstance(status, str) else status
        if value not in PRUNABLE:
            raise ValidationError("status", f"only closed candidates can be pruned "
                                  f"({', '.join(PRUNABLE)}), got {status!r}")
        if value not in out:
            out.append(value)
    if not out:
        raise ValidationError("status", f"name at least one of {', '.join(PRUNABLE)}")
    return tuple(out)


def check_days(days: Any) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= 36_500:
        raise ValidationError("older_than_days", f"must be a whole number of days between 0 "
                              f"and 36500, got {days!r}")
    return days


def prune(
    store: CandidateStore, session: Session, *, tenant_id: str, older_than_days: int,
    statuses: Iterable[str] = PRUNABLE, actor: str, dry_run: bool = False,
) -> PruneResult:
    """Delete the tenant's prunable candidates (see the module docstring) and their
    evaluations; with ``dry_run`` count them and change nothing. Audited."""
    days = check_days(older_than_days)
    wanted = check_statuses(statuses)
    if not isinstance(actor, str) or not actor.strip():
        raise ValidationError("actor", "must name who prunes")
    cutoff = store.gatekeeper.now() - timedelta(days=days)
    running = set(session.scalars(select(EvolutionRun.id).where(
        EvolutionRun.tenant_id == tenant_id, EvolutionRun.status == "running")))
    counts = []
    for kind in CandidateKind:
        doomed, kept = _doomed(session, kind, tenant_id, cutoff, wanted, running)
        if not dry_run:  # candidates first: they point at their evaluation
            model = MODELS[kind]
            for chunk in _chunks(doomed):
                session.execute(delete(model).where(model.tenant_id == tenant_id,
                                                    model.id.in_(chunk))
                                .execution_options(synchronize_session=False))
        evaluations = _evaluations(session, kind, tenant_id, doomed, remove=not dry_run)
        counts.append(PruneCount(kind.value, len(doomed), evaluations, kept))
    result = PruneResult(tenant_id, cutoff, wanted, bool(dry_run), tuple(counts))
    if not dry_run:
        session.expire_all()  # deleted rows must not linger in the identity map
        write_audit(session, tenant_id=tenant_id, actor=actor.strip(),
                    action="candidates.pruned", subject_kind="tenant", subject_id=tenant_id,
                    reason=f"{', '.join(wanted)} candidates closed more than {days} day(s) ago",
                    details={c.kind: {"candidates": c.candidates, "evaluations": c.evaluations,
                                      "kept_as_ancestors": c.kept_as_ancestors}
                             for c in counts} | {"cutoff": cutoff.isoformat()})
    log.info("candidates_pruned", tenant_id=tenant_id, dry_run=bool(dry_run),
             candidates=result.candidates, evaluations=result.evaluations, actor=actor)
    return result


def _doomed(session: Session, kind: CandidateKind, tenant_id: str, cutoff: datetime,
            statuses: Sequence[str], running: set[str]) -> tuple[list[str], int]:
    """(ids to delete, how many old closed ones are kept as ancestors of what stays)."""
    model = MODELS[kind]
    parent_columns = [getattr(model, name) for name in _PARENTS[kind]]
    rows = session.execute(select(model.id, model.status, model.updated_at, model.run_id,
                                  *parent_columns).where(model.tenant_id == tenant_id)).all()
    parents: dict[str, list[str]] = {}
    old: set[str] = set()
    for row in rows:
        parents[row[0]] = [p for p in row[4:] if p]
        if row[1] in statuses and row[2] < cutoff and row[3] not in running:
            old.add(row[0])
    # Everything that stays keeps its whole ancestry: walk up from each kept candidate.
    stack = [p for cid, ps in parents.items() if cid not in old for p in ps]
    protected: set[str] = set()
    while stack:
        cid = stack.pop()
        if cid in old and cid not in protected:
            protected.add(cid)
            stack.extend(parents.get(cid, ()))
    return sorted(old - protected), len(protected)


def _evaluations(session: Session, kind: CandidateKind, tenant_id: str, ids: list[str], *,
                 remove: bool) -> int:
    total = 0
    for chunk in _chunks(ids):
        where = (Evaluation.tenant_id == tenant_id, Evaluation.candidate_kind == kind.value,
                 Evaluation.candidate_id.in_(chunk))
        if remove:
            total += session.execute(delete(Evaluation).where(*where)
                                     .execution_options(synchronize_session=False)
                                     ).rowcount or 0  # type: ignore[attr-defined]
        else:
            total += session.scalar(select(func.count()).select_from(Evaluation)
                                    .where(*where)) or 0
    return int(total)


def _chunks(ids: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start:start + _CHUNK]
