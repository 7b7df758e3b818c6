"""The review page's other lists: tools (versions, rollback), episodes, and agents (maturity,
which only an admin may change). The same services as the JSON API; the session's tenant only.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from auto_dev._exceptions import AutoDevError, ValidationError
from auto_dev.queries.episodes import EpisodeBrowser
from auto_dev.queries.tokens import Role
from auto_dev.server.templating import render_page
from auto_dev.server.web_session import PageError, checked_form, current_session, page_error

if TYPE_CHECKING:
    from auto_dev.service import AutoDev

log = structlog.get_logger(__name__)

router = APIRouter(include_in_schema=False)

_EPISODES_PER_PAGE = 50
MATURITIES = ("student", "intern", "supervised", "autonomous")


def _autodev(request: Request) -> AutoDev:
    return request.app.state.autodev


def _to_login(request: Request) -> Response:
    from auto_dev.server.pages import login_redirect

    return login_redirect(request)


async def _read(function: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await asyncio.to_thread(function, *args, **kwargs)
    except AutoDevError as exc:
        raise page_error(exc) from exc


# -- tools ----------------------------------------------------------------------------------------


@router.get("/tools")
async def tools_page(request: Request) -> Response:
    session = await current_session(request)
    if session is None:
        return _to_login(request)
    rows = await _read(_autodev(request).review.list_tools, session.principal.tenant_id)
    return render_page(request, "tools.html", session, tools=rows)


@router.get("/tools/{name}")
async def tool_page(request: Request, name: str, done: str = "") -> Response:
    session = await current_session(request)
    if session is None:
        return _to_login(request)
    detail = await _read(_autodev(request).review.show_tool, session.principal.tenant_id, name)
    return render_page(request, "tool.html", session, t=detail,
                       done="rolled back" if done == "rolled_back" else "",
                       url="/tools/" + quote(name, safe=""))


@router.post("/tools/{name}/rollback")
async def rollback_from_page(request: Request, name: str) -> Response:
    session, form = await checked_form(request, await current_session(request))
    principal = session.principal
    raw = form.get("to_version", "").strip()
    to_version: int | None = None
    if raw:
        if not raw.isdigit():
            raise page_error(ValidationError("to_version", "must be a version number"))
        to_version = int(raw)
    result = await _read(_autodev(request).review.rollback, principal.tenant_id, name,
                         principal.actor, form.get("reason", "").strip(), to_version=to_version)
    request.app.state.metrics.decided("rolled_back")
    log.info("web_rollback", tool=name, to_version=result.to_version, actor=principal.actor,
             tenant_id=principal.tenant_id)
    return RedirectResponse(f"/tools/{quote(name, safe='')}?done=rolled_back", status_code=303)


# -- episodes -------------------------------------------------------------------------------------


@router.get("/episodes")
async def episodes_page(request: Request, offset: int = 0) -> Response:
    session = await current_session(request)
    if session is None:
        return _to_login(request)
    browser = EpisodeBrowser(_autodev(request).database, session.principal.tenant_id)
    page = await _read(browser.page, limit=_EPISODES_PER_PAGE, offset=max(offset, 0))
    return render_page(request, "episodes.html", session, page=page, per_page=_EPISODES_PER_PAGE)


@router.get("/episodes/{episode_id}")
async def episode_page(request: Request, episode_id: str) -> Response:
    session = await current_session(request)
    if session is None:
        return _to_login(request)
    browser = EpisodeBrowser(_autodev(request).database, session.principal.tenant_id)
    return render_page(request, "episode.html", session, e=await _read(browser.get, episode_id))


# -- agents ---------------------------------------------------------------------------------------


@router.get("/agents")
async def agents_page(request: Request, done: str = "") -> Response:
    from auto_dev.gates.agent_report import list_agents

    session = await current_session(request)
    if session is None:
        return _to_login(request)
    database, tenant = _autodev(request).database, session.principal.tenant_id

    def read() -> list[Any]:
        with database.session(readonly=True) as s:
            return list_agents(s, tenant)

    return render_page(request, "agents.html", session, agents=await _read(read),
                       maturities=MATURITIES, done=done == "maturity")


@router.post("/agents/{agent}/maturity")
async def set_maturity_from_page(request: Request, agent: str) -> Response:
    """Admin only: a reviewer's session gets 403 and nothing changes."""
    session, form = await checked_form(request, await current_session(request))
    principal = session.principal
    if not principal.role.allows(Role.ADMIN):
        log.warning("web_forbidden", action="set_maturity", actor=principal.actor,
                    tenant_id=principal.tenant_id)
        raise PageError(403, "changing maturity needs an admin token")
    reason = form.get("reason", "").strip()
    if not reason:
        raise page_error(ValidationError("reason", "say why the maturity changes"))
    autodev = _autodev(request)

    def write() -> None:
        from auto_dev.gates._maturity import Maturity
        from auto_dev.gates.agent_report import resolve_capability

        level = Maturity.parse(form.get("maturity", ""), field="maturity")
        with autodev.database.session() as s:
            name = resolve_capability(s, autodev.gates, principal.tenant_id,
                                      form.get("capability", ""))
            autodev.gates.set_maturity(s, tenant_id=principal.tenant_id, agent_id=agent,
                                       capability=name, maturity=level, actor=principal.actor,
                                       reason=reason)

    await _read(write)
    return RedirectResponse("/agents?done=maturity", status_code=303)
