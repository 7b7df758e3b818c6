"""Signals on probation: a freshly promoted version whose business value or feedback clearly
drops is rolled back (auto-dev promoted it) or flagged for its human promoter.

Part of the :class:`~auto_dev.candidates.watch.PromotionWatch`, judged like its success-rate
rule. Each ``SignalRecorded`` event of kind ``business_value`` or ``feedback`` about an active
version that a promotion produced (a tool mutation or skill, a workflow variant) looks at the
first ``watch_signals`` signals of that kind recorded against the version. Once there are
``min_signals`` of them, their mean is compared with the mean of the same kind for the version
it replaced (which needs ``min_signals`` too; without them there is nothing to compare and
nothing is concluded). A mean below the baseline by more than ``margin`` of the baseline's size
is a clear drop:

* a version auto-dev promoted by itself is rolled back to the version it replaced, through the
  candidate store (audited, with the figures in the reason);
* a version a human promoted is the human's responsibility: the drop is flagged once per kind
  (an audit entry ``watch.signal_drop`` and a warning in the log), nothing changes.

The signals are read from the database on each event, so a restart forgets nothing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy.orm import Session

from auto_dev._exceptions import ValidationError
from auto_dev.candidates._kinds import AUTO_ACTOR
from auto_dev.queries.audit import audit_subjects
from auto_dev.queries.workflows import (
    BUSINESS_VALUE,
    FEEDBACK,
    TOOL_TARGET,
    WORKFLOW_TARGET,
    signal_values,
)

if TYPE_CHECKING:
    from auto_dev.candidates.store import CandidateStore
    from auto_dev.db import Database
    from auto_dev.models import ToolVersion, WorkflowVersion

log = structlog.get_logger(__name__)

#: The kinds the watch judges (a kind of the user's own has no known direction).
JUDGED_KINDS = (BUSINESS_VALUE, FEEDBACK)
FLAG_ACTION = "watch.signal_drop"


@dataclass(frozen=True, slots=True)
class SignalVerdict:
    """What one signal concluded for a watched version."""

    tenant_id: str
    target_kind: str
    target: str
    version: int
    kind: str
    count: int
    mean: float
    baseline: float | None
    action: str  # watching | ok | no_baseline | rolled_back | flagged
    reason: str


class SignalWatch:
    """Judges freshly promoted versions on their business-value and feedback signals."""

    def __init__(self, database: Database, store: CandidateStore, *, min_signals: int = 20,
                 margin: float = 0.1, watch_signals: int = 200, actor: str) -> None:
        if not isinstance(min_signals, int) or min_signals < 1:
            raise ValidationError("min_signals", "must be a positive integer")
        if not isinstance(watch_signals, int) or watch_signals < min_signals:
            raise ValidationError("watch_signals", "must be an integer >= min_signals")
        if not 0.0 <= margin < 1.0:
            raise ValidationError("margin", "must be in [0, 1)")
        self.database = database
        self.store = store
        self.min_signals = min_signals
        self.margin = margin
        self.watch_signals = watch_signals
        self.actor = actor
        self._lock = threading.Lock()

    def attach(self, bus: Any) -> None:
        """Subscribe to every tenant's ``SignalRecorded`` on ``bus``."""
        from auto_dev.events import ALL_TENANTS, SignalRecorded

        bus.subscribe(SignalRecorded, self.handle,
                      name="auto_dev.candidates.signal_watch.SignalWatch", tenant=ALL_TENANTS)

    async def handle(self, event: Any) -> None:
        """Bus handler (async): see :meth:`observe`."""
        self.observe(event)

    def observe(self, event: Any) -> SignalVerdict | None:
        """Judge the version a ``SignalRecorded`` event names; ``None`` when it is not watched
        (not active, not promoted, past its probation, or a kind the watch does not judge)."""
        kind = getattr(event, "kind", None)
        if kind not in JUDGED_KINDS:
            return None
        tenant_id, target_kind = event.tenant_id, event.target_kind
        with self._lock, self.database.session() as session:
            version = _version(session, tenant_id, target_kind, event.version_id)
            if version is None or not version.is_active or not _promoted(version):
                return None
            values = signal_values(session, tenant_id, target_kind, version.id, kind,
                                   limit=self.watch_signals + 1)
            if len(values) > self.watch_signals:
                return None  # probation over for this kind
            return self._judge(session, event, version, values)

    # -- internals ------------------------------------------------------------------------------

    def _judge(self, session: Session, event: Any, version: Any,
               values: list[float]) -> SignalVerdict:
        tenant_id, target_kind, kind = event.tenant_id, event.target_kind, event.kind
        mean = sum(values) / len(values)
        previous = _previous(session, target_kind, version)
        before = (signal_values(session, tenant_id, target_kind, previous.id, kind,
                                limit=self.watch_signals) if previous is not None else [])
        baseline = sum(before) / len(before) if len(before) >= self.min_signals else None

        def verdict(action: str, reason: str) -> SignalVerdict:
            return SignalVerdict(tenant_id, target_kind, event.target, version.version, kind,
                                 len(values), mean, baseline, action, reason)

        figures = f"v{version.version}'s {kind} averaged {mean:.4g} over {len(values)} signals"
        if len(values) < self.min_signals:
            return verdict("watching", f"on probation: {len(values)}/{self.min_signals} "
                                       f"{kind} signals")
        if baseline is None or previous is None:
            return verdict("no_baseline", f"{figures}; the version it replaced has fewer than "
                                          f"{self.min_signals}: nothing to compare with")
        threshold = baseline - self.margin * (abs(baseline) or 1.0)
        if mean >= threshold:
            return verdict("ok", f"{figures}, v{previous.version}'s {baseline:.4g}")
        reason = (f"{kind} dropped after promotion: {figures}, below v{previous.version}'s "
                  f"{baseline:.4g} minus {self.margin:.0%}")
        if version.created_by.startswith(AUTO_ACTOR):
            if target_kind == TOOL_TARGET:
                self.store.rollback_tool(session, tenant_id=tenant_id, tool_name=event.target,
                                         actor=self.actor, reason=reason,
                                         to_version=previous.version)
            else:
                self.store.rollback_workflow(session, tenant_id=tenant_id, name=event.target,
                                             actor=self.actor, reason=reason,
                                             to_version=previous.version)
            log.warning("signal_drop_rolled_back", tenant_id=tenant_id, target=event.target,
                        version=version.version, kind=kind, mean=mean, baseline=baseline)
            return verdict("rolled_back", reason)
        flagged = {str((row.details or {}).get("kind")) for row in audit_subjects(
            session, tenant_id, FLAG_ACTION, version.id)}
        if kind not in flagged:
            self.store.audit(session, tenant_id=tenant_id, actor=self.actor, action=FLAG_ACTION,
                             subject_kind=f"{target_kind}_version", subject_id=version.id,
                             reason=f"{reason}; promoted by {version.created_by}: review it",
                             details={"kind": kind, target_kind: event.target,
                                      "version": version.version, "mean": mean,
                                      "baseline": baseline})
            log.warning("signal_drop_flagged", tenant_id=tenant_id, target=event.target,
                        version=version.version, kind=kind, mean=mean, baseline=baseline)
        return verdict("flagged", reason)


def _version(session: Session, tenant_id: str, target_kind: str,
             version_id: str) -> ToolVersion | WorkflowVersion | None:
    from auto_dev.models import ToolVersion, WorkflowVersion

    model: Any = ToolVersion if target_kind == TOOL_TARGET else WorkflowVersion
    row = session.get(model, version_id)
    return row if row is not None and row.tenant_id == tenant_id else None


def _promoted(version: Any) -> bool:
    """Did a promotion (not a registration) produce the version?"""
    from auto_dev.candidates.promotion import SOURCE_MODELS
    from auto_dev.candidates.workflow_versions import VARIANT_SOURCE

    return version.source in SOURCE_MODELS or version.source == VARIANT_SOURCE


def _previous(session: Session, target_kind: str, version: Any) -> Any:
    """The version this one replaced: the newest older one that was not rolled back."""
    if target_kind == WORKFLOW_TARGET:
        from auto_dev.candidates.workflow_versions import (
            workflow_version_rolled_back as workflow_rolled_back,
        )
        from auto_dev.queries.workflows import versions_of

        older = [v for v in versions_of(session, version.workflow, newest_first=True)
                 if v.version < version.version]
        return next((v for v in older if not workflow_rolled_back(session, v)), None)
    from auto_dev.candidates.promotion import was_rolled_back
    from auto_dev.queries.tools import older_versions

    return next((v for v in older_versions(session, version)
                 if not was_rolled_back(session, v)), None)
