"""The rest of the review API: episodes, agents and their maturity, runs, schedules, the audit
log, and (for admins) the tenant's tokens. Reads need a reviewer token; changing maturity and
managing tokens need an admin token. Everything is the token's tenant's.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.encoders import jsonable_encoder

from auto_dev._exceptions import ValidationError
from auto_dev.queries.audit import AuditLog
from auto_dev.queries.episodes import EpisodeBrowser
from auto_dev.queries.runs import RunHistory
from auto_dev.queries.tokens import Role, TokenInfo
from auto_dev.server import auth
from auto_dev.server.bodies import parse_body
from auto_dev.server.review import _LIMIT, _OFFSET, page_body
from auto_dev.server.schemas import MaturityIn, TokenIn, json_body

if TYPE_CHECKING:
    from auto_dev.models import AuditEntry, EvolutionRun, Schedule
    from auto_dev.server.auth import Principal
    from auto_dev.service import AutoDev

router = APIRouter(prefix="/v1", tags=["review"])
admin_router = APIRouter(prefix="/v1", tags=["admin"])


def _autodev(request: Request) -> AutoDev:
    return request.app.state.autodev


# -- episodes -------------------------------------------------------------------------------------


@router.get("/episodes", summary="List episodes")
async def list_episodes(
    request: Request,
    agent: str | None = Query(None, description="Only this agent's (by key)."),
    tool: str | None = Query(None, description="Only episodes that used this tool."),
    success: bool | None = Query(None, description="Only successes (true) or failures."),
    limit: int = _LIMIT, offset: int = _OFFSET,
    principal: Principal = Depends(auth.reviewer),
) -> dict[str, Any]:
    """Episodes of the token's tenant, newest first (without their segments)."""
    browser = EpisodeBrowser(_autodev(request).database, principal.tenant_id)
    page = await asyncio.to_thread(browser.page, agent=agent, tool_name=tool, success=success,
                                   limit=limit, offset=offset)
    return page_body(page.items, page.total, page.limit, page.offset)


@router.get("/episodes/{episode_id}", summary="Show an episode")
async def show_episode(request: Request, episode_id: str,
                       principal: Principal = Depends(auth.reviewer)) -> Any:
    """One episode with its inputs, output, metadata and segments."""
    browser = EpisodeBrowser(_autodev(request).database, principal.tenant_id)
    return jsonable_encoder(await asyncio.to_thread(browser.get, episode_id))


# -- agents and maturity --------------------------------------------------------------------------


@router.get("/agents", summary="List agents")
async def list_agents(request: Request, principal: Principal = Depends(auth.reviewer)
                      ) -> dict[str, Any]:
    """Agents with their maturity per capability and how much usage they have."""
    from auto_dev.gates.agent_report import list_agents as query

    database = _autodev(request).database

    def read() -> list[Any]:
        with database.session(readonly=True) as session:
            return query(session, principal.tenant_id)

    rows = await asyncio.to_thread(read)
    return {"items": jsonable_encoder(rows), "total": len(rows)}


@router.get("/agents/{agent}", summary="Show an agent's standing")
async def show_agent(request: Request, agent: str,
                     principal: Principal = Depends(auth.reviewer)) -> Any:
    """Per capability: maturity, evidence since the last change, and what the next level
    needs. ``agent`` is the agent's key or id."""
    from auto_dev.gates.agent_report import agent_standing

    autodev = _autodev(request)

    def read() -> Any:
        with autodev.database.session(readonly=True) as session:
            standing = agent_standing(session, autodev.gates, principal.tenant_id, agent)
        body = jsonable_encoder(standing)
        for row, capability in zip(body["capabilities"], standing.capabilities, strict=True):
            row["may_use"] = capability.may_use
            row["needs"] = capability.needs(standing.rule)
        return body

    return await asyncio.to_thread(read)


@admin_router.put("/agents/{agent}/maturity", summary="Set an agent's maturity",
                  openapi_extra=json_body(MaturityIn, batch=False))
async def set_maturity(request: Request, agent: str,
                       principal: Principal = Depends(auth.admin)) -> dict[str, Any]:
    """Set an agent's maturity for a capability by hand (admin; audited with the token's name
    and the reason; the evidence restarts)."""
    from auto_dev.gates._maturity import Maturity
    from auto_dev.gates.agent_report import resolve_capability

    body = await parse_body(request, MaturityIn)
    autodev = _autodev(request)
    level = Maturity.parse(body.maturity, field="maturity")

    def write() -> dict[str, Any]:
        with autodev.database.session() as session:
            name = resolve_capability(session, autodev.gates, principal.tenant_id,
                                      body.capability)
            before = autodev.gates.set_maturity(
                session, tenant_id=principal.tenant_id, agent_id=agent, capability=name,
                maturity=level, actor=principal.actor, reason=body.reason.strip())
        return {"agent": agent, "capability": name, "before": before.value,
                "maturity": level.value}

    return await asyncio.to_thread(write)


# -- runs, schedules, audit -----------------------------------------------------------------------


@router.get("/runs", summary="List evolution runs")
async def list_runs(
    request: Request,
    status: str | None = Query(None, description="running, completed, failed, ..."),
    engine: str | None = Query(None), target: str | None = Query(None),
    limit: int = _LIMIT, offset: int = _OFFSET,
    principal: Principal = Depends(auth.reviewer),
) -> dict[str, Any]:
    """Evolution runs (cycles) of the token's tenant, newest first."""
    history = RunHistory(_autodev(request).database, principal.tenant_id)
    page = await asyncio.to_thread(history.page, status=status, engine=engine, target=target,
                                   limit=limit, offset=offset)
    return page_body([_run(r) for r in page.items], page.total, page.limit, page.offset)


@router.get("/schedules", summary="List schedules")
async def list_schedules(request: Request, principal: Principal = Depends(auth.reviewer)
                         ) -> dict[str, Any]:
    """Scheduled cycles of the token's tenant: engine, target, interval, last run, backoff."""
    scheduler = _autodev(request).scheduler
    rows = await asyncio.to_thread(scheduler.schedules, principal.tenant_id)
    return {"items": [_schedule(r) for r in rows], "total": len(rows)}


@router.get("/audit", summary="The audit log")
async def list_audit(
    request: Request,
    action: str | None = Query(None, description="e.g. capability.set_maturity"),
    actor: str | None = Query(None), subject_id: str | None = Query(None),
    limit: int = _LIMIT, offset: int = _OFFSET,
    principal: Principal = Depends(auth.reviewer),
) -> dict[str, Any]:
    """Gate decisions and state changes of the token's tenant, newest first."""
    log = AuditLog(_autodev(request).database, principal.tenant_id)
    page = await asyncio.to_thread(log.page, action=action, actor=actor, subject_id=subject_id,
                                   limit=limit, offset=offset)
    return page_body([_audit(e) for e in page.items], page.total, page.limit, page.offset)


# -- tokens (admin) -------------------------------------------------------------------------------


@admin_router.get("/tokens", summary="List the tenant's tokens")
async def list_tokens(request: Request, principal: Principal = Depends(auth.admin)
                      ) -> dict[str, Any]:
    rows = await asyncio.to_thread(request.app.state.tokens.list, principal.tenant_id)
    return {"items": [_token(r) for r in rows], "total": len(rows)}


@admin_router.post("/tokens", status_code=201, summary="Create a token of the tenant",
                   openapi_extra=json_body(TokenIn, batch=False))
async def create_token(request: Request, principal: Principal = Depends(auth.admin)
                       ) -> dict[str, Any]:
    """A new token of the caller's tenant; ``token`` is in this response only."""
    body = await parse_body(request, TokenIn)
    role = Role.parse(body.role)
    new = await asyncio.to_thread(request.app.state.tokens.create, principal.tenant_id, role,
                                  name=body.name, created_by=principal.actor)
    return {**_token(new.info), "token": new.token}


@admin_router.delete("/tokens/{token_id}", summary="Revoke a token of the tenant")
async def revoke_token(request: Request, token_id: str,
                       principal: Principal = Depends(auth.admin)) -> dict[str, Any]:
    if token_id == principal.token_id:
        raise ValidationError("token_id", "a token cannot revoke itself; use another admin "
                              "token or `auto-dev tokens revoke`")
    info = await asyncio.to_thread(request.app.state.tokens.revoke, token_id,
                                   tenant_id=principal.tenant_id)
    return _token(info)


# -- rows as JSON ---------------------------------------------------------------------------------


def _run(row: EvolutionRun) -> dict[str, Any]:
    return jsonable_encoder({
        "id": row.id, "engine": row.engine, "target": row.target, "trigger": row.trigger,
        "status": row.status, "agent": row.agent, "budget": row.budget,
        "evaluations": row.evaluations, "stats": row.stats, "error": row.error,
        "job_id": row.job_id, "started_at": row.started_at, "finished_at": row.finished_at,
    })


def _schedule(row: Schedule) -> dict[str, Any]:
    return jsonable_encoder({
        "id": row.id, "engine": row.engine, "target": row.target, "interval_s": row.interval_s,
        "budget": row.budget, "enabled": row.enabled, "created_at": row.created_at,
        "last_run_at": row.last_run_at, "failures": row.failures,
        "backoff_until": row.backoff_until,
    })


def _audit(row: AuditEntry) -> dict[str, Any]:
    return jsonable_encoder({
        "id": row.id, "actor": row.actor, "action": row.action,
        "subject_kind": row.subject_kind, "subject_id": row.subject_id, "allowed": row.allowed,
        "reason": row.reason, "details": row.details, "created_at": row.created_at,
    })


def _token(info: TokenInfo) -> dict[str, Any]:
    return jsonable_encoder({
        "id": info.id, "name": info.name, "role": info.role.value,
        "created_by": info.created_by, "created_at": info.created_at,
        "revoked_at": info.revoked_at,
    })
