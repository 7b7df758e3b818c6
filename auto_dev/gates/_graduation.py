"""Maturity state, usage records and graduation: the part of the gatekeeper that learns.

An agent's maturity for a capability moves one level at a time, from the usage recorded since its
last change (see :class:`~auto_dev.gates.settings.GraduationSettings` for the rule); an admin can
also set it by hand. Every move is logged and audited.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from auto_dev._exceptions import ValidationError
from auto_dev.gates._audit import write_audit
from auto_dev.gates._maturity import Evidence, GraduationResult, Maturity, evidence_of
from auto_dev.gates._queries import get_tenant, require_agent
from auto_dev.gates.settings import TenantSettings
from auto_dev.models import CapabilityState, UsageRecord

log = structlog.get_logger(__name__)

_STATES = "auto_dev.gates.capability_states"


class MaturityMixin:
    """Maturity reads and writes for :class:`~auto_dev.gates.capability.Gatekeeper`."""

    _clock: Callable[[], datetime]

    # -- maturity ---------------------------------------------------------------------------

    def get_maturity(
        self, session: Session, *, tenant_id: str, agent_id: str, capability: str
    ) -> Maturity:
        """The agent's maturity for ``capability`` (student until it graduates or is set)."""
        agent = require_agent(session, tenant_id, agent_id)
        return self._maturity_of(session, tenant_id, agent.id, capability)

    @staticmethod
    def _state(
        session: Session, tenant_id: str, agent_id: str, capability: str
    ) -> CapabilityState | None:
        # Remembered per session (an engine asks twice per candidate). A remembered row that a
        # savepoint rollback discarded is no longer in the session, and is looked up again.
        cache: dict[tuple[str, str, str], CapabilityState | None] = session.info.setdefault(
            _STATES, {})
        key = (tenant_id, agent_id, capability)
        if key in cache:
            hit = cache[key]
            if hit is None or hit in session:
                return hit
        row = session.scalars(
            select(CapabilityState).where(
                CapabilityState.tenant_id == tenant_id,
                CapabilityState.agent_id == agent_id,
                CapabilityState.capability == capability,
            )
        ).one_or_none()
        cache[key] = row
        return row

    @staticmethod
    def _lock_state(session: Session, tenant_id: str, agent_id: str, capability: str) -> None:
        """Re-read the agent's state row locked (PostgreSQL; SQLite writers are serial anyway),
        so two uses recorded at once cannot both move the maturity from the same reading."""
        row = session.scalars(
            select(CapabilityState).where(
                CapabilityState.tenant_id == tenant_id,
                CapabilityState.agent_id == agent_id,
                CapabilityState.capability == capability,
            ).with_for_update().execution_options(populate_existing=True)
        ).one_or_none()
        session.info.setdefault(_STATES, {})[(tenant_id, agent_id, capability)] = row

    def _maturity_of(
        self, session: Session, tenant_id: str, agent_id: str, capability: str
    ) -> Maturity:
        state = self._state(session, tenant_id, agent_id, capability)
        if state is None:
            return Maturity.STUDENT
        # A corrupt stored value raises here, which authorize() turns into a denial.
        return Maturity.parse(state.maturity, field="capability_states.maturity")

    def _set_state(
        self, session: Session, tenant_id: str, agent_id: str, capability: str, level: Maturity
    ) -> None:
        state = self._state(session, tenant_id, agent_id, capability)
        now = self._clock()
        if state is None:
            state = CapabilityState(tenant_id=tenant_id, agent_id=agent_id,
                                    capability=capability, maturity=level.value, updated_at=now)
            session.add(state)
            session.info.setdefault(_STATES, {})[(tenant_id, agent_id, capability)] = state
        else:
            state.maturity = level.value
            state.updated_at = now  # evidence for the next move starts here
        session.flush()

    def set_maturity(
        self,
        session: Session,
        *,
        tenant_id: str,
        agent_id: str,
        capability: str,
        maturity: Maturity | str,
        actor: str,
        reason: str = "",
    ) -> Maturity:
        """Set an agent's maturity by hand (an admin decision, audited). Returns the old level."""
        level = Maturity.parse(maturity)
        if not isinstance(capability, str) or not capability.strip():
            raise ValidationError("capability", "must be a non-empty string")
        if not isinstance(actor, str) or not actor.strip():
            raise ValidationError("actor", "must name who decided")
        agent = require_agent(session, tenant_id, agent_id)
        before = self._maturity_of(session, tenant_id, agent.id, capability)
        self._set_state(session, tenant_id, agent.id, capability, level)
        log.info("maturity_set", tenant_id=tenant_id, agent_id=agent.id, capability=capability,
                 before=before.value, after=level.value, actor=actor, reason=reason)
        write_audit(session, tenant_id=tenant_id, actor=actor, action="capability.set_maturity",
                    subject_kind="agent", subject_id=agent.id, allowed=None, reason=reason,
                    details={"capability": capability, "before": before.value,
                             "after": level.value})
        return before

    # -- usage and graduation -----------------------------------------------------------------

    def record_usage(
        self,
        session: Session,
        tenant_id: str,
        agent_id: str,
        capability: str,
        success: bool,
        verified: bool = False,
        *,
        details: Mapping[str, Any] | None = None,
        event_key: str | None = None,
    ) -> GraduationResult:
        """Record one use of ``capability`` and move the agent's maturity up or down one level
        if the evidence since its last change says so (audited when it moves).

        ``event_key`` names the outcome the use was recorded from (unique per tenant, see
        :meth:`usage_recorded`): recording the same key twice violates a unique index.
        """
        if event_key is not None and (not isinstance(event_key, str) or not event_key
                                      or len(event_key) > 80):
            raise ValidationError("event_key", "must be a string of 1-80 characters")
        if not isinstance(success, bool):
            raise ValidationError("success", "must be true or false")
        if not isinstance(verified, bool):
            raise ValidationError("verified", "must be true or false")
        if not isinstance(capability, str) or not capability.strip():
            raise ValidationError("capability", "must be a non-empty string")
        agent = require_agent(session, tenant_id, agent_id)
        tenant = get_tenant(session, tenant_id)
        assert tenant is not None  # _require_agent checked the agent belongs to it
        settings = TenantSettings.from_raw(tenant.settings)
        session.add(UsageRecord(tenant_id=tenant_id, agent_id=agent.id, capability=capability,
                                success=success, verified=verified, details=dict(details or {}),
                                event_key=event_key, created_at=self._clock()))
        session.flush()
        self._lock_state(session, tenant_id, agent.id, capability)
        return self._graduate(session, settings, tenant_id, agent.id, capability)

    @staticmethod
    def usage_recorded(session: Session, tenant_id: str, event_key: str) -> bool:
        """Whether a use with ``event_key`` is already recorded in the tenant."""
        return session.scalar(select(UsageRecord.id).where(
            UsageRecord.tenant_id == tenant_id, UsageRecord.event_key == event_key).limit(1)
        ) is not None

    def maturity_since(
        self, session: Session, *, tenant_id: str, agent_id: str, capability: str
    ) -> tuple[Maturity, datetime | None]:
        """The agent's maturity and when it last changed (``None``: never, still student)."""
        agent = require_agent(session, tenant_id, agent_id)
        state = self._state(session, tenant_id, agent.id, capability)
        return (self._maturity_of(session, tenant_id, agent.id, capability),
                state.updated_at if state is not None else None)

    def usage_history(
        self, session: Session, *, tenant_id: str, agent_id: str, capability: str, window: int
    ) -> list[tuple[bool, bool]]:
        """(success, verified) of the newest ``window`` uses since the last maturity change,
        newest first: exactly the records graduation reads."""
        agent = require_agent(session, tenant_id, agent_id)
        return self._history(session, tenant_id, agent.id, capability, window)

    def evidence(
        self, session: Session, *, tenant_id: str, agent_id: str, capability: str
    ) -> Evidence:
        """The usage evidence graduation would use now."""
        agent = require_agent(session, tenant_id, agent_id)
        tenant = get_tenant(session, tenant_id)
        assert tenant is not None
        graduation = TenantSettings.from_raw(tenant.settings).graduation
        return self._evidence(session, tenant_id, agent.id, capability, graduation.window,
                              graduation.confidence)

    def _evidence(
        self, session: Session, tenant_id: str, agent_id: str, capability: str, window: int,
        confidence: float,
    ) -> Evidence:
        return evidence_of(self._history(session, tenant_id, agent_id, capability, window),
                           confidence)

    def _history(
        self, session: Session, tenant_id: str, agent_id: str, capability: str, window: int
    ) -> list[tuple[bool, bool]]:
        state = self._state(session, tenant_id, agent_id, capability)
        query = select(UsageRecord.success, UsageRecord.verified).where(
            UsageRecord.tenant_id == tenant_id,
            UsageRecord.agent_id == agent_id,
            UsageRecord.capability == capability,
        )
        if state is not None:
            query = query.where(UsageRecord.created_at >= state.updated_at)
        rows = session.execute(
            query.order_by(UsageRecord.created_at.desc()).limit(window)
        ).all()
        return [(bool(ok), bool(checked)) for ok, checked in rows]

    def _graduate(
        self, session: Session, settings: TenantSettings, tenant_id: str, agent_id: str,
        capability: str,
    ) -> GraduationResult:
        rule = settings.graduation
        before = self._maturity_of(session, tenant_id, agent_id, capability)
        ev = self._evidence(session, tenant_id, agent_id, capability, rule.window, rule.confidence)
        after, reason = before, "no change"
        if (before < Maturity.AUTONOMOUS and ev.successes >= rule.min_verified_successes
                and ev.lower_bound >= rule.promote_lower_bound):
            after = before.next_up()
            reason = (f"graduated: {ev.successes} verified successes, success-rate lower bound "
                      f"{ev.lower_bound:.3f} >= {rule.promote_lower_bound}")
        elif (before > Maturity.STUDENT and ev.samples >= rule.min_samples_for_demotion
                and ev.lower_bound < rule.demote_lower_bound):
            after = before.next_down()
            reason = (f"demoted: success-rate lower bound {ev.lower_bound:.3f} < "
                      f"{rule.demote_lower_bound} over {ev.samples} uses")
        if after is not before:
            self._set_state(session, tenant_id, agent_id, capability, after)
            log.info("maturity_changed", tenant_id=tenant_id, agent_id=agent_id,
                     capability=capability, before=before.value, after=after.value, reason=reason)
            write_audit(session, tenant_id=tenant_id, actor="auto-dev:graduation",
                        action="capability.graduation", subject_kind="agent", subject_id=agent_id,
                        allowed=None, reason=reason,
                        details={"capability": capability, "before": before.value,
                                 "after": after.value, "successes": ev.successes,
                                 "samples": ev.samples, "lower_bound": ev.lower_bound})
        return GraduationResult(before, after, ev, reason)
