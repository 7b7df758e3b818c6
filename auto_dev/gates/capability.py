"""The capability gate: may this agent (or tenant) do this, right now? Fails closed.

:meth:`Gatekeeper.authorize` checks, in order, and stops at the first "no":

1. the request is well formed and the capability is known;
2. the tenant exists and its settings are valid (a bad setting denies, naming the key);
3. the tenant turned auto-dev on (``enabled``) and this capability's toggle on (both default off);
4. the agent's maturity for the capability reaches the requirement (tenant-level requests use the
   tenant's ``tenant_maturity``; a human-reviewed promotion is the human's call instead);
5. the daily limits: candidates per agent and per tenant for ``create_candidate``, promotions per
   tenant for ``promote`` (UTC days, counted from the tables, not from a counter that could drift).

Any exception on the way is a denial carrying the error. Every decision is logged with its reason
and written as an :class:`~auto_dev.models.AuditEntry`; a denial's entry survives the caller
rolling its transaction back (see :mod:`auto_dev.gates._audit`).

Maturity grows from recorded usage (:meth:`Gatekeeper.record_usage`): see
:class:`~auto_dev.gates.settings.GraduationSettings` for the rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.orm import Session

from auto_dev._exceptions import GateDeniedError, ValidationError
from auto_dev.gates._audit import write_audit
from auto_dev.gates._graduation import MaturityMixin
from auto_dev.gates._maturity import GraduationResult, Maturity, is_at_least, wilson_lower_bound
from auto_dev.gates._queries import (
    count_candidates_today,
    count_promotions_today,
    day_start,
    get_tenant,
    resolve_agent,
)
from auto_dev.gates.settings import CAPABILITY_TOGGLES, TenantSettings
from auto_dev.models import Agent, utcnow

log = structlog.get_logger(__name__)

#: Minimum maturity per capability (DESIGN.md "Capability gates").
DEFAULT_REQUIREMENTS: dict[str, Maturity] = {
    "auto_dev.memento_skills": Maturity.INTERN,  # candidates still need human approval
    "auto_dev.alpha_evolver": Maturity.SUPERVISED,  # mutations queued for review
    "auto_dev.workflows": Maturity.SUPERVISED,
    "auto_dev.background_evolution": Maturity.AUTONOMOUS,
    "auto_dev.auto_promotion": Maturity.AUTONOMOUS,
    # The default capability of a custom engine (BaseLearningEngine.capability).
    "auto_dev.custom": Maturity.SUPERVISED,
}

#: Actions with a daily limit attached; any other non-empty action name is allowed.
CREATE_CANDIDATE = "create_candidate"
PROMOTE = "promote"
USE = "use"
CHECK_LIMITS = "check_daily_limits"
APPROVE = "approve"
#: A named human proposing a change to a tool (a ``manual`` candidate) and its evaluation.
PROPOSE = "propose"
#: Actions a named human reviewer may take in place of the agent's maturity.
HUMAN_ACTIONS = frozenset({APPROVE, PROMOTE, PROPOSE})


@dataclass(frozen=True, slots=True)
class GateDecision:
    """The gate's answer. ``reason`` always says why, allowed or not."""

    allowed: bool
    reason: str
    capability: str
    action: str
    tenant_id: str
    agent_id: str | None = None  # the Agent id once resolved, else what the caller passed
    maturity: Maturity | None = None
    required: Maturity | None = None
    counts: dict[str, int] = field(default_factory=dict)
    agent_key: str | None = None


class Gatekeeper(MaturityMixin):
    """Maturity-based capability gates with graduation. One instance serves every tenant.

    ``requirements`` extends or overrides :data:`DEFAULT_REQUIREMENTS` (custom capabilities need
    an entry here and a toggle in the tenant's ``capabilities`` setting). ``clock`` returns the
    current UTC time (tests pass a fixed one).
    """

    def __init__(
        self,
        requirements: Mapping[str, Maturity | str] | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._requirements: dict[str, Maturity] = dict(DEFAULT_REQUIREMENTS)
        for name, level in (requirements or {}).items():
            self.register_capability(name, level)
        self._clock = clock

    # -- configuration ----------------------------------------------------------------------

    def register_capability(self, name: str, required: Maturity | str) -> None:
        """Make ``name`` a known capability needing at least ``required``."""
        if not isinstance(name, str) or not name.strip():
            raise ValidationError("capability", "must be a non-empty string")
        self._requirements[name] = Maturity.parse(required, field="required")

    def now(self) -> datetime:
        """The gatekeeper's clock: what "today" means for the daily limits."""
        return self._clock()

    def requirement(self, capability: str) -> Maturity | None:
        return self._requirements.get(capability)

    @property
    def requirements(self) -> dict[str, Maturity]:
        return dict(self._requirements)

    # -- decisions --------------------------------------------------------------------------

    def authorize(
        self,
        session: Session,
        *,
        tenant_id: str,
        agent_id: str | None,
        capability: str,
        action: str,
        reviewed_by: str | None = None,
        workspace_settings: Mapping[str, Any] | None = None,
        subject: tuple[str, str] | None = None,
    ) -> GateDecision:
        """Decide whether ``agent_id`` (an Agent id or key; ``None``: the tenant itself) may
        perform ``action`` with ``capability``. Never raises: every failure is a denial.

        ``reviewed_by`` names the human who approved what is being done; it replaces the maturity
        requirement (the human is the authority) but not the toggles or limits.
        ``workspace_settings`` (seed compatibility) can only narrow the stored settings.
        ``subject`` is ``(kind, id)`` of what the decision is about, for the audit trail.
        """
        errored = False
        try:
            # Reads only: flushing the caller's pending rows before each query would be wasted
            # work (the store flushes the rows the counts must see).
            with session.no_autoflush:
                decision = self._decide(session, tenant_id, agent_id, capability, action,
                                        reviewed_by, workspace_settings)
        except Exception as exc:  # fail closed: an error is a "no" that says what went wrong
            errored = True
            decision = GateDecision(
                allowed=False,
                reason=f"gate error ({type(exc).__name__}): {exc}",
                capability=str(capability),
                action=str(action),
                tenant_id=str(tenant_id),
                agent_id=agent_id if isinstance(agent_id, str) else None,
            )
        _log_decision(decision, errored=errored)
        self._audit_decision(session, decision, reviewed_by, subject)
        return decision

    def require(self, session: Session, **kwargs: Any) -> GateDecision:
        """:meth:`authorize`, raising :class:`GateDeniedError` with the reason on a denial."""
        decision = self.authorize(session, **kwargs)
        if not decision.allowed:
            raise GateDeniedError(decision.reason)
        return decision

    def can_use(
        self,
        session: Session,
        *,
        tenant_id: str,
        agent_id: str | None,
        capability: str,
        workspace_settings: Mapping[str, Any] | None = None,
    ) -> bool:
        """Seed-compatible: may the agent use ``capability`` at all (toggles and maturity)?"""
        return self.authorize(
            session, tenant_id=tenant_id, agent_id=agent_id, capability=capability,
            action=USE, workspace_settings=workspace_settings,
        ).allowed

    def check_daily_limits(
        self,
        session: Session,
        *,
        tenant_id: str,
        agent_id: str | None,
        capability: str,
        workspace_settings: Mapping[str, Any] | None = None,
    ) -> bool:
        """Seed-compatible: is the agent (and its tenant) still under today's candidate limits?

        Checks only the limits (not toggles or maturity) and, like every check here, says no
        when anything is missing or wrong.
        """
        return self.authorize(
            session, tenant_id=tenant_id, agent_id=agent_id, capability=capability,
            action=CHECK_LIMITS, workspace_settings=workspace_settings,
        ).allowed

    def _decide(
        self,
        session: Session,
        tenant_id: Any,
        agent_ref: Any,
        capability: Any,
        action: Any,
        reviewed_by: Any,
        workspace_settings: Mapping[str, Any] | None,
    ) -> GateDecision:
        for name, value in (("tenant_id", tenant_id), ("capability", capability),
                            ("action", action)):
            if not isinstance(value, str) or not value.strip():
                raise ValidationError(name, "must be a non-empty string")
        if agent_ref is not None and (not isinstance(agent_ref, str) or not agent_ref.strip()):
            raise ValidationError("agent_id", "must be a non-empty string or None")
        if reviewed_by is not None and (not isinstance(reviewed_by, str)
                                        or not reviewed_by.strip()):
            raise ValidationError("reviewed_by", "must name the human reviewer")
        if reviewed_by is not None and action not in HUMAN_ACTIONS:
            # A reviewer stands in for maturity only where a human decides: never for an
            # engine creating or evaluating candidates.
            raise ValidationError("reviewed_by", f"does not apply to {action!r} (only to "
                                  f"{', '.join(sorted(HUMAN_ACTIONS))})")

        agent: Agent | None = None

        def deny(reason: str, **extra: Any) -> GateDecision:
            return GateDecision(False, reason, capability, action, tenant_id,
                                agent.id if agent else agent_ref,
                                agent_key=agent.key if agent else None, **extra)

        required = self._requirements.get(capability)
        if required is None:
            return deny(f"unknown capability {capability!r} (not registered with the gatekeeper)")
        tenant = get_tenant(session, tenant_id)
        if tenant is None:
            return deny(f"tenant {tenant_id!r} does not exist")
        try:
            settings = TenantSettings.from_raw(tenant.settings)
        except ValidationError as exc:
            return deny(f"invalid tenant settings: {exc}")
        if workspace_settings is not None:
            try:
                narrowed = TenantSettings.from_raw(workspace_settings)
            except ValidationError as exc:
                return deny(f"invalid workspace settings: {exc}".replace("settings.", "", 1))
            settings = settings.restrict(narrowed)
        if agent_ref is not None:
            agent = resolve_agent(session, tenant_id, agent_ref)
            if agent is None:
                return deny(f"agent {agent_ref!r} does not exist in tenant {tenant_id!r}")
        agent_id = agent.id if agent is not None else None

        counts: dict[str, int] = {}
        maturity: Maturity | None = None
        if action != CHECK_LIMITS:
            if not settings.enabled:
                return deny(f"auto-dev is turned off for tenant {tenant_id!r} (setting "
                            "'enabled')", required=required)
            if not settings.toggle_for(capability):
                toggle = CAPABILITY_TOGGLES.get(capability, f"capabilities.{capability}")
                return deny(f"{capability} is turned off for tenant {tenant_id!r} "
                            f"(setting {toggle!r})", required=required)
            if reviewed_by is None:
                if agent_id is None:
                    maturity = settings.tenant_maturity
                else:
                    maturity = self._maturity_of(session, tenant_id, agent_id, capability)
                if not is_at_least(maturity, required):
                    who = "tenant-level maturity" if agent_id is None else "agent maturity"
                    return deny(f"{who} {maturity.value} is below {required.value} required "
                                f"for {capability}", maturity=maturity, required=required)
        if action in (CREATE_CANDIDATE, CHECK_LIMITS):
            counts = count_candidates_today(
                session, tenant_id, agent_id, day_start(self._clock()),
                limits=(settings.daily_candidates_per_tenant, settings.daily_candidates_per_agent))
            if counts["tenant"] >= settings.daily_candidates_per_tenant:
                return deny(f"daily candidate limit reached for tenant {tenant_id!r}: "
                            f"{counts['tenant']}/{settings.daily_candidates_per_tenant}",
                            maturity=maturity, required=required, counts=counts)
            if agent_id is not None and counts["agent"] >= settings.daily_candidates_per_agent:
                key = agent.key if agent is not None else agent_ref
                return deny(f"daily candidate limit reached for agent {key!r}: "
                            f"{counts['agent']}/{settings.daily_candidates_per_agent}",
                            maturity=maturity, required=required, counts=counts)
        elif action == PROMOTE:
            counts = {"promotions": count_promotions_today(
                session, tenant_id, day_start(self._clock()))}
            if counts["promotions"] >= settings.daily_promotions_per_tenant:
                return deny(f"daily promotion limit reached for tenant {tenant_id!r}: "
                            f"{counts['promotions']}/{settings.daily_promotions_per_tenant}",
                            maturity=maturity, required=required, counts=counts)
        parts = [f"{capability} {action} allowed"]
        if reviewed_by is not None and action != CHECK_LIMITS:
            parts.append(f"human-reviewed by {reviewed_by}")
        elif maturity is not None:
            parts.append(f"maturity {maturity.value} >= {required.value}")
        parts.extend(f"{k} today {v}" for k, v in counts.items())
        return GateDecision(True, "; ".join(parts), capability, action, tenant_id, agent_id,
                            agent_key=agent.key if agent else None,
                            maturity=maturity, required=required, counts=counts)

    def _audit_decision(
        self,
        session: Session,
        decision: GateDecision,
        reviewed_by: str | None,
        subject: tuple[str, str] | None,
    ) -> None:
        who = decision.agent_key or decision.agent_id
        actor = reviewed_by or (f"agent:{who}" if who else "tenant")
        kind, subject_id = subject if subject else ("capability", decision.capability)
        write_audit(
            session,
            tenant_id=decision.tenant_id,
            actor=actor,
            action=f"gate.{decision.action}",
            subject_kind=kind,
            subject_id=subject_id,
            allowed=decision.allowed,
            reason=decision.reason,
            details={
                "capability": decision.capability,
                "agent_id": decision.agent_id,
                "maturity": decision.maturity.value if decision.maturity else None,
                "required": decision.required.value if decision.required else None,
                "counts": dict(decision.counts),
            },
            durable=not decision.allowed,
        )


def _log_decision(decision: GateDecision, *, errored: bool) -> None:
    """Log a decision at the level it deserves. A denial by the tenant's policy (a toggle off,
    maturity too low, a daily limit reached) is the gate working as configured: info, like an
    allowance (debug). A request the gate could not judge (unknown capability, tenant or agent,
    invalid settings) is a warning; a gate that raised is an error."""
    if errored:
        level = log.error
    elif decision.allowed:
        level = log.debug
    elif decision.required is not None:  # set once the request was judged against the policy
        level = log.info
    else:
        level = log.warning
    level("gate_decision", allowed=decision.allowed, reason=decision.reason,
          tenant_id=decision.tenant_id, agent_id=decision.agent_id,
          capability=decision.capability, action=decision.action)


__all__ = [
    "APPROVE",
    "CHECK_LIMITS",
    "CREATE_CANDIDATE",
    "DEFAULT_REQUIREMENTS",
    "HUMAN_ACTIONS",
    "PROMOTE",
    "PROPOSE",
    "USE",
    "GateDecision",
    "Gatekeeper",
    "GraduationResult",
    "Maturity",
    "count_candidates_today",
    "count_promotions_today",
    "day_start",
    "is_at_least",
    "resolve_agent",
    "wilson_lower_bound",
]
