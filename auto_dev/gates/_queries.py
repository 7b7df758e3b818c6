"""Queries the gate shares with the candidate store: agents by id or key, today's counts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, bindparam, func, literal, select
from sqlalchemy.orm import Session

from auto_dev._exceptions import NotFoundError, ValidationError
from auto_dev.models import (
    Agent,
    ReviewDecision,
    SkillCandidate,
    Tenant,
    ToolMutation,
    WorkflowVariant,
)


def day_start(now: datetime) -> datetime:
    """Midnight UTC of ``now``'s day: daily limits count from here."""
    now = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


_AGENT_CACHE = "auto_dev.gates.agent_ids"
_KEEP = "auto_dev.gates.keep"


def keep(session: Session, row: object) -> None:
    """Hold ``row`` for the session's lifetime.

    The identity map only references rows weakly: a tenant or agent the gate looked up and let
    go of is forgotten, and the next ``session.get`` queries again. Sessions are short, so
    holding the few rows the gate reads turns those repeats into identity-map hits.
    """
    kept: dict[int, object] = session.info.setdefault(_KEEP, {})
    kept[id(row)] = row


def get_tenant(session: Session, tenant_id: str) -> Tenant | None:
    tenant = session.get(Tenant, tenant_id)
    if tenant is not None:
        keep(session, tenant)
    return tenant


def resolve_agent(session: Session, tenant_id: str, ref: str) -> Agent | None:
    """The tenant's agent with id ``ref``, else with key ``ref`` (events carry agent keys).

    Resolved ids are remembered for the session's lifetime, so later lookups are identity-map
    hits instead of two queries (agents are never re-keyed).
    """
    cache: dict[tuple[str, str], str] = session.info.setdefault(_AGENT_CACHE, {})
    known = cache.get((tenant_id, ref))
    if known is not None:
        agent = session.get(Agent, known)
        if agent is not None:
            return agent
    # Our ids are 32 hex digits; anything else can only be a platform key: skip the miss.
    agent = session.get(Agent, ref) if _looks_like_id(ref) else None
    if agent is None or agent.tenant_id != tenant_id:
        agent = session.scalars(
            select(Agent).where(Agent.tenant_id == tenant_id, Agent.key == ref)
        ).one_or_none()
    if agent is not None:
        cache[(tenant_id, ref)] = agent.id
        keep(session, agent)
    return agent


def _looks_like_id(ref: str) -> bool:
    return len(ref) == 32 and all(c in "0123456789abcdef" for c in ref)


def require_agent(session: Session, tenant_id: str, ref: str) -> Agent:
    if not isinstance(ref, str) or not ref.strip():
        raise ValidationError("agent_id", "must be a non-empty string")
    agent = resolve_agent(session, tenant_id, ref)
    if agent is None:
        raise NotFoundError(f"agent {ref!r} does not exist in tenant {tenant_id!r}")
    return agent


def _capped_count(model: Any, *, by_agent: bool, cap: str) -> Any:
    conditions = [model.tenant_id == bindparam("tenant_id"), model.created_at >= bindparam("since"),
                  # Candidates born or closed ``failed`` never reach a human or production, so
                  # they do not use up the daily allowance (a run records hundreds of them).
                  model.status != "failed"]
    if by_agent:
        conditions.append(model.agent_id == bindparam("agent_id"))
    capped = (select(literal(1)).select_from(model).where(*conditions)
              .limit(bindparam(cap, type_=Integer)).subquery())
    return select(func.count()).select_from(capped).scalar_subquery()


_KINDS = (ToolMutation, SkillCandidate, WorkflowVariant)
# Built once: constructing six subqueries per gate decision costs more than running them.
_TENANT_COUNTS = select(*(_capped_count(m, by_agent=False, cap="tenant_cap") for m in _KINDS))
_TENANT_AND_AGENT_COUNTS = select(
    *(_capped_count(m, by_agent=False, cap="tenant_cap") for m in _KINDS),
    *(_capped_count(m, by_agent=True, cap="agent_cap") for m in _KINDS),
)
_NO_CAP = 2**62


def count_candidates_today(
    session: Session,
    tenant_id: str,
    agent_id: str | None,
    since: datetime,
    *,
    limits: tuple[int, int] | None = None,
) -> dict[str, int]:
    """Candidates of every kind created since ``since`` and not failed: for the tenant and for
    the agent.

    One round trip: (up to) six scalar subqueries in a single SELECT. With ``limits`` (tenant,
    agent) each subquery stops counting at its limit, so a check costs O(limit) rather than
    O(today's candidates): the counts are then exact below the limit and capped at it, which is
    all a limit check needs (``sum(min(c, L)) >= L`` exactly when ``sum(c) >= L``).
    """
    tenant_cap, agent_cap = limits if limits is not None else (_NO_CAP, _NO_CAP)
    params: dict[str, Any] = {"tenant_id": tenant_id, "since": since, "tenant_cap": tenant_cap}
    if agent_id is None:
        row = session.execute(_TENANT_COUNTS, params).one()
        return {"tenant": sum(int(v or 0) for v in row), "agent": 0}
    params.update(agent_id=agent_id, agent_cap=agent_cap)
    values = [int(v or 0) for v in session.execute(_TENANT_AND_AGENT_COUNTS, params).one()]
    return {"tenant": sum(values[:3]), "agent": sum(values[3:])}


def count_promotions_today(session: Session, tenant_id: str, since: datetime) -> int:
    """Promotions recorded in the tenant since ``since`` (human and automatic alike)."""
    return int(session.scalar(
        select(func.count()).select_from(ReviewDecision).where(
            ReviewDecision.tenant_id == tenant_id,
            ReviewDecision.decision == "promoted",
            ReviewDecision.created_at >= since,
        )
    ) or 0)
