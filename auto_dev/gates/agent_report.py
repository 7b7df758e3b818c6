"""Where each agent stands: its maturity per capability, the evidence since the last change, and
what the graduation rule needs next. Reads only; every query is tenant-scoped.

The figures are the gatekeeper's own (:meth:`~auto_dev.gates.capability.Gatekeeper.usage_history`
is exactly what graduation reads), so what ``auto-dev agents show`` says is what the next recorded
use will be judged by.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from auto_dev._exceptions import NotFoundError, ValidationError
from auto_dev.gates._maturity import Maturity, evidence_of, wilson_lower_bound
from auto_dev.gates._queries import get_tenant, require_agent
from auto_dev.gates.settings import GraduationSettings, TenantSettings
from auto_dev.models import Agent, CapabilityState, Tenant, UsageRecord

if TYPE_CHECKING:
    from auto_dev.gates.capability import Gatekeeper

_BUILTIN_PREFIX = "auto_dev."


@dataclass(frozen=True, slots=True)
class CapabilityStanding:
    """One agent's standing for one capability."""

    capability: str
    maturity: Maturity
    since: datetime | None  # last maturity change (None: never changed, still student)
    required: Maturity | None  # what the capability needs (None: not known here)
    enabled: bool  # the tenant's toggle for it
    verified_successes: int  # since the last change, within the rule's window
    samples: int
    lower_bound: float
    next_level: Maturity | None  # None at the top
    successes_to_graduate: int | None  # verified successes in a row; None: never, as things are
    failures_to_demote: int | None  # failures in a row; None: cannot be demoted (student)

    @property
    def may_use(self) -> bool:
        """Whether the gate lets the agent use the capability today (toggle and maturity)."""
        return self.enabled and self.required is not None and self.maturity >= self.required

    def needs(self, rule: GraduationSettings) -> str:
        """What the agent needs for the next level, in words."""
        if self.next_level is None:
            return "top level"
        if self.successes_to_graduate is None:
            return (f"cannot reach {self.next_level.value}: the window ({rule.window} uses) is "
                    f"too small for {rule.min_verified_successes} verified successes")
        return (f"{self.next_level.value} after {self.successes_to_graduate} verified "
                "successes in a row")


@dataclass(frozen=True, slots=True)
class AgentStanding:
    """An agent and its standing for every capability that concerns it."""

    tenant_id: str
    agent_id: str
    key: str
    created_at: datetime
    rule: GraduationSettings
    capabilities: list[CapabilityStanding]


@dataclass(frozen=True, slots=True)
class AgentSummary:
    """One row of the agent list."""

    agent_id: str
    key: str
    created_at: datetime
    uses: int  # usage records, all time
    last_used: datetime | None
    maturities: dict[str, Maturity]  # capabilities whose maturity was ever set or changed


def list_agents(session: Session, tenant_id: str) -> list[AgentSummary]:
    """The tenant's agents by key, with their recorded maturities and how much usage they have."""
    _require_tenant(session, tenant_id)
    agents = list(session.scalars(select(Agent).where(Agent.tenant_id == tenant_id)
                                  .order_by(Agent.key)))
    states: dict[str, dict[str, Maturity]] = {}
    for agent_id, capability, level in session.execute(
            select(CapabilityState.agent_id, CapabilityState.capability, CapabilityState.maturity)
            .where(CapabilityState.tenant_id == tenant_id)):
        states.setdefault(agent_id, {})[capability] = _level(level)
    usage: dict[str, tuple[int, datetime | None]] = {
        agent_id: (int(count), last) for agent_id, count, last in session.execute(
            select(UsageRecord.agent_id, func.count(), func.max(UsageRecord.created_at))
            .where(UsageRecord.tenant_id == tenant_id).group_by(UsageRecord.agent_id))}
    rows = []
    for agent in agents:
        uses, last = usage.get(agent.id, (0, None))
        rows.append(AgentSummary(agent.id, agent.key, agent.created_at, uses, last,
                                 dict(sorted(states.get(agent.id, {}).items()))))
    return rows


def agent_standing(
    session: Session, gatekeeper: Gatekeeper, tenant_id: str, agent_ref: str
) -> AgentStanding:
    """Standing of agent ``agent_ref`` (id or key) for the gatekeeper's capabilities, the tenant's
    custom ones and any it has maturity or usage for."""
    tenant = _require_tenant(session, tenant_id)
    agent = require_agent(session, tenant_id, agent_ref)
    settings = TenantSettings.from_raw(tenant.settings)
    rule = settings.graduation
    names = set(gatekeeper.requirements) | set(settings.capabilities)
    names |= set(session.scalars(select(CapabilityState.capability).where(
        CapabilityState.tenant_id == tenant_id, CapabilityState.agent_id == agent.id)))
    names |= set(session.scalars(select(UsageRecord.capability).distinct().where(
        UsageRecord.tenant_id == tenant_id, UsageRecord.agent_id == agent.id)))
    standings = []
    for capability in sorted(names):
        maturity, since = gatekeeper.maturity_since(session, tenant_id=tenant_id,
                                                    agent_id=agent.id, capability=capability)
        history = gatekeeper.usage_history(session, tenant_id=tenant_id, agent_id=agent.id,
                                           capability=capability, window=rule.window)
        evidence = evidence_of(history, rule.confidence)
        top = maturity is Maturity.AUTONOMOUS
        standings.append(CapabilityStanding(
            capability=capability, maturity=maturity, since=since,
            required=gatekeeper.requirement(capability),
            enabled=settings.enabled and settings.toggle_for(capability),
            verified_successes=evidence.successes, samples=evidence.samples,
            lower_bound=evidence.lower_bound,
            next_level=None if top else maturity.next_up(),
            successes_to_graduate=None if top else successes_to_graduate(history, rule),
            failures_to_demote=(None if maturity is Maturity.STUDENT
                                else failures_to_demote(history, rule)),
        ))
    return AgentStanding(tenant_id, agent.id, agent.key, agent.created_at, rule, standings)


def resolve_capability(
    session: Session, gatekeeper: Gatekeeper, tenant_id: str, name: str
) -> str:
    """The capability ``name`` means: a known one (built-ins also by their short name, e.g.
    ``alpha_evolver``), a custom one the tenant has a toggle for, or one with recorded
    maturity or usage in the tenant. Anything else is a typo, reported with the choices."""
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("capability", "must be a non-empty capability name")
    name = name.strip()
    tenant = _require_tenant(session, tenant_id)
    known = set(gatekeeper.requirements)
    # A broken settings row must not stop an admin from setting maturity.
    with contextlib.suppress(ValidationError):
        known |= set(TenantSettings.from_raw(tenant.settings).capabilities)
    known |= set(session.scalars(select(CapabilityState.capability).distinct().where(
        CapabilityState.tenant_id == tenant_id)))
    if name in known:
        return name
    if _BUILTIN_PREFIX + name in known:
        return _BUILTIN_PREFIX + name
    raise ValidationError("capability", f"unknown capability {name!r} (known: "
                          f"{', '.join(sorted(known))})")


# -- the rule, looking ahead ----------------------------------------------------------------------


def successes_to_graduate(history: list[tuple[bool, bool]], rule: GraduationSettings) -> int | None:
    """How many verified successes in a row would graduate the agent (at least 1: maturity
    moves when a use is recorded), or ``None`` if no number would under ``rule``.

    ``history`` is what graduation reads now, newest first (at most ``rule.window`` uses);
    each new use pushes the oldest out of the window once it is full.
    """
    return _uses_until(history, rule, (True, True), lambda s, n: (
        s >= rule.min_verified_successes
        and wilson_lower_bound(s, n, rule.confidence) >= rule.promote_lower_bound))


def failures_to_demote(history: list[tuple[bool, bool]], rule: GraduationSettings) -> int | None:
    """How many failures in a row would demote the agent (see :func:`successes_to_graduate`)."""
    return _uses_until(history, rule, (False, True), lambda s, n: (
        n >= rule.min_samples_for_demotion
        and wilson_lower_bound(s, n, rule.confidence) < rule.demote_lower_bound))


def _uses_until(history: list[tuple[bool, bool]], rule: GraduationSettings,
                use: tuple[bool, bool], moves: Callable[[int, int], bool]) -> int | None:
    window = rule.window
    kept = history[:window]
    successes = sum(1 for ok, checked in kept if ok and checked)
    samples = sum(1 for ok, checked in kept if checked or not ok)
    added_success, added_sample = int(use[0] and use[1]), int(use[1] or not use[0])
    # After `window` identical uses the window holds nothing else: more cannot change the count.
    for count in range(1, window + 1):
        dropped = window - count  # the use that leaves the window as this one enters
        if 0 <= dropped < len(kept):
            ok, checked = kept[dropped]
            successes -= int(ok and checked)
            samples -= int(checked or not ok)
        successes += added_success
        samples += added_sample
        if moves(successes, samples):
            return count
    return None


# -- helpers --------------------------------------------------------------------------------------


def _require_tenant(session: Session, tenant_id: str) -> Tenant:
    tenant = get_tenant(session, tenant_id) if isinstance(tenant_id, str) else None
    if tenant is None:
        raise NotFoundError(f"tenant {tenant_id!r} does not exist")
    return tenant


def _level(value: str) -> Maturity:
    return Maturity.parse(value, field="capability_states.maturity")


__all__ = [
    "AgentStanding",
    "AgentSummary",
    "CapabilityStanding",
    "agent_standing",
    "failures_to_demote",
    "list_agents",
    "resolve_capability",
    "successes_to_graduate",
]
