"""UsageRecorder: maturity evidence from what actually happens, recorded from the event bus.

An agent graduates (or is demoted) for a capability from the usage recorded for it
(:meth:`~auto_dev.gates.capability.Gatekeeper.record_usage`, rule in
:class:`~auto_dev.gates.settings.GraduationSettings`). This module turns real outcomes into that
usage. Each one is a *verified* use for **the agent the candidate was made for** and **the
capability of the engine that made it** (recorded on the candidate at creation):

* **Episodes** (``TaskSucceeded`` / ``TaskFailed``) naming a tool whose active version was promoted
  from a candidate: success is the episode's outcome. An episode that occurred before the active
  version existed (a late delivery) ran on an earlier version and counts for nobody.
* **Skill executions** (``SkillExecuted``) of such a version (the version the event names, else
  the active one): success is the execution's.
* **Review outcomes** of a candidate: a human approval or promotion is a success, a human
  rejection or a rollback (by a human, or by the promotion watch after a regression) a failure.
  Each candidate gives at most one review success and one review failure: approving and then
  promoting it is one verdict, not two.

What counts for nobody: versions auto-dev did not make (the seed, code registered by hand), which
are no engine's work; candidates without an agent (tenant-level cycles), which have no one to
graduate; and auto-promotions, where no reviewer decided (the agent's own gate did): their worth
shows in the episodes that follow and, if they regress, in the watch's rollback.

Everything is recorded in the event's own tenant (``event.tenant_id``). Delivery is at least once,
so each usage row carries a key, the event id (``review:<candidate>:<verdict>`` for reviews),
under a unique index per tenant: a redelivered event finds its key and is skipped, and of two
processes racing on one event, the loser's insert fails on the index and is rolled back to a
savepoint. Every maturity move is logged and audited by the gatekeeper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from auto_dev._event_types import (
    CandidateApproved,
    CandidatePromoted,
    CandidateRejected,
    CandidateRolledBack,
    Event,
    SkillExecuted,
    TaskFailed,
    TaskSucceeded,
)
from auto_dev._subscriptions import ALL_TENANTS
from auto_dev.candidates._kinds import AUTO_ACTOR, MODELS, Candidate, CandidateKind, capability_of
from auto_dev.candidates.promotion import version_candidate
from auto_dev.gates._maturity import GraduationResult
from auto_dev.models import Tool, ToolVersion

if TYPE_CHECKING:
    from auto_dev.db import Database
    from auto_dev.gates.capability import Gatekeeper

log = structlog.get_logger(__name__)

#: Handler names on the bus (stable across restarts: pending deliveries are matched by name).
EPISODE_HANDLER = "usage:episode"
SKILL_HANDLER = "usage:skill_execution"
REVIEW_HANDLER = "usage:review"


@dataclass(frozen=True, slots=True)
class RecordedUsage:
    """One use recorded from an event, and what graduation concluded."""

    tenant_id: str
    agent_id: str
    capability: str
    success: bool
    event_key: str
    graduation: GraduationResult


class UsageRecorder:
    """Records maturity evidence from episodes, skill executions and review outcomes.

    Subscribe it with :meth:`attach`; its handlers are synchronous (the bus runs them in worker
    threads), each in a transaction of its own. The ``record_*`` methods can also be called
    directly; each returns what it recorded, or ``None`` when the event counts for nobody or was
    already counted.
    """

    def __init__(self, database: Database, gatekeeper: Gatekeeper) -> None:
        self.database = database
        self.gatekeeper = gatekeeper

    def attach(self, bus: Any) -> None:
        """Subscribe to episodes, skill executions and review outcomes on ``bus``, for every
        tenant (each use is recorded in its event's tenant)."""
        bus.subscribe(TaskSucceeded | TaskFailed, self.record_episode, name=EPISODE_HANDLER,
                      tenant=ALL_TENANTS)
        bus.subscribe(SkillExecuted, self.record_skill_execution, name=SKILL_HANDLER,
                      tenant=ALL_TENANTS)
        bus.subscribe(CandidateApproved | CandidateRejected | CandidatePromoted
                      | CandidateRolledBack, self.record_review, name=REVIEW_HANDLER,
                      tenant=ALL_TENANTS)

    # -- handlers ---------------------------------------------------------------------------------

    def record_episode(self, event: TaskSucceeded | TaskFailed) -> RecordedUsage | None:
        """An episode's outcome, for the candidate behind the tool's active version."""
        if not event.tool_name:
            return None
        with self.database.session(readonly=True) as session:
            version = _tool_version(session, event.tenant_id, event.tool_name, None)
            if version is None or version.created_at > event.occurred_at:
                return None  # no such tool, or the episode ran on an earlier version
            use = self._use_of_version(session, event, version, "episode")
        return self._record(use, isinstance(event, TaskSucceeded))

    def record_skill_execution(self, event: SkillExecuted) -> RecordedUsage | None:
        """A skill execution's outcome, for the candidate behind the version that ran."""
        with self.database.session(readonly=True) as session:
            version = _tool_version(session, event.tenant_id, event.skill_name,
                                    event.tool_version_id)
            if version is None:
                return None
            if event.tool_version_id is None and version.created_at > event.occurred_at:
                return None
            use = self._use_of_version(session, event, version, "skill_execution")
        return self._record(use, event.success)

    def record_review(
        self, event: CandidateApproved | CandidateRejected | CandidatePromoted
        | CandidateRolledBack,
    ) -> RecordedUsage | None:
        """A review outcome of a candidate: approved or promoted by a human is a success,
        rejected or rolled back a failure."""
        if isinstance(event, CandidatePromoted) and (
                event.actor == AUTO_ACTOR or event.metadata.get("auto") is True):
            return None  # no reviewer decided: the agent's own gate did
        try:
            model = MODELS[CandidateKind(event.candidate_kind)]
        except ValueError:
            return None  # a rollback of a version no candidate made
        success = isinstance(event, CandidateApproved | CandidatePromoted)
        with self.database.session(readonly=True) as session:
            candidate = session.get(model, event.candidate_id)
            if candidate is None or candidate.tenant_id != event.tenant_id:
                return None
            verdict = "success" if success else "failure"
            use = self._use_of(session, event.tenant_id, candidate,
                               f"review:{candidate.id}:{verdict}", {
                                   "source": "review", "event_id": event.event_id,
                                   "event_type": event.type_name, "candidate_id": candidate.id,
                                   "candidate_kind": event.candidate_kind,
                                   "tool": event.tool_name, "actor": event.actor})
        return self._record(use, success)

    # -- internals --------------------------------------------------------------------------------
    # Deciding what an event is evidence of only reads; the write transaction (a lock on SQLite)
    # is taken only when there is something to record.

    def _use_of_version(
        self, session: Session, event: Event, version: ToolVersion, source: str
    ) -> _Use | None:
        candidate = version_candidate(session, version)
        if candidate is None:
            return None  # the seed or hand-registered code: no engine's work
        return self._use_of(session, event.tenant_id, candidate, event.event_id, {
            "source": source, "event_id": event.event_id, "event_type": event.type_name,
            "tool_version_id": version.id, "version": version.version,
            "candidate_id": candidate.id})

    def _use_of(
        self, session: Session, tenant_id: str, candidate: Candidate, key: str,
        details: dict[str, Any],
    ) -> _Use | None:
        if candidate.agent_id is None:
            return None  # a tenant-level candidate: there is no agent to graduate
        if self.gatekeeper.usage_recorded(session, tenant_id, key):
            log.debug("usage_already_recorded", tenant_id=tenant_id, event_key=key)
            return None
        return _Use(tenant_id, candidate.agent_id, capability_of(candidate), key, details)

    def _record(self, use: _Use | None, success: bool) -> RecordedUsage | None:
        if use is None:
            return None
        with self.database.session() as session:
            if self.gatekeeper.usage_recorded(session, use.tenant_id, use.key):
                return None  # recorded since we looked
            try:
                with session.begin_nested():
                    result = self.gatekeeper.record_usage(
                        session, use.tenant_id, use.agent_id, use.capability, success, True,
                        details=use.details, event_key=use.key)
            except IntegrityError:
                # Another process recorded this key between our check and our insert; anything
                # else that failed (a racing maturity change) is retried by the bus.
                if self.gatekeeper.usage_recorded(session, use.tenant_id, use.key):
                    log.debug("usage_already_recorded", tenant_id=use.tenant_id,
                              event_key=use.key)
                    return None
                raise
        log.debug("usage_recorded", tenant_id=use.tenant_id, agent_id=use.agent_id,
                  capability=use.capability, success=success, event_key=use.key,
                  source=use.details.get("source"), maturity=result.after.value)
        return RecordedUsage(use.tenant_id, use.agent_id, use.capability, success, use.key,
                             result)


@dataclass(frozen=True, slots=True)
class _Use:
    """What an event is evidence of, before it is recorded."""

    tenant_id: str
    agent_id: str
    capability: str
    key: str
    details: dict[str, Any]


def _tool_version(
    session: Session, tenant_id: str, tool_name: str, version_id: str | None
) -> ToolVersion | None:
    """Version ``version_id`` of the tenant's tool ``tool_name``, else its active version."""
    tool_id = session.scalar(select(Tool.id).where(Tool.tenant_id == tenant_id,
                                                   Tool.name == tool_name))
    if tool_id is None:
        return None
    if version_id is not None:
        version = session.get(ToolVersion, version_id)
        return version if version is not None and version.tool_id == tool_id else None
    return session.scalars(select(ToolVersion).where(
        ToolVersion.tool_id == tool_id, ToolVersion.is_active.is_(True))).one_or_none()


__all__ = ["EPISODE_HANDLER", "REVIEW_HANDLER", "SKILL_HANDLER", "RecordedUsage",
           "UsageRecorder"]
