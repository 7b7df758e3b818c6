"""The review page's workflows: the list, and a workflow's page (its versions with the active
one marked, the active definition, how many tasks, the active version's signals, and a form to
roll back to another version). The same registry as the JSON API; the session's tenant only:
another tenant's workflow is 404, like a missing one.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from auto_dev._exceptions import AutoDevError, ValidationError
from auto_dev.server.templating import render_page
from auto_dev.server.web_session import checked_form, current_session, page_error

if TYPE_CHECKING:
    from auto_dev.service import AutoDev

log = structlog.get_logger(__name__)

router = APIRouter(include_in_schema=False)

#: At most this many workflows on the list page (by name).
LIST_LIMIT = 500


def _autodev(request: Request) -> AutoDev:
    return request.app.state.autodev


def _to_login(request: Request) -> Response:
    from auto_dev.server.pages import login_redirect

    return login_redirect(request)


async def _run(function: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await asyncio.to_thread(function, *args, **kwargs)
    except AutoDevError as exc:
        raise page_error(exc) from exc


def workflow_url(name: str) -> str:
    return "/workflows/" + quote(name, safe="")


@router.get("/workflows")
async def workflows_page(request: Request) -> Response:
    session = await current_session(request)
    if session is None:
        return _to_login(request)
    registry, tenant = _autodev(request).workflows, session.principal.tenant_id

    def read() -> tuple[list[Any], int]:
        return (registry.summaries(limit=LIST_LIMIT, tenant_id=tenant),
                registry.queries(tenant).count())

    rows, total = await _run(read)
    return render_page(request, "workflows.html", session, workflows=rows, total=total,
                       limit=LIST_LIMIT)


@router.get("/workflows/{name}")
async def workflow_page(request: Request, name: str, done: str = "") -> Response:
    session = await current_session(request)
    if session is None:
        return _to_login(request)
    registry, tenant = _autodev(request).workflows, session.principal.tenant_id

    def read() -> dict[str, Any]:
        info = registry.summary(name, tenant_id=tenant)
        versions = registry.versions(name, tenant_id=tenant)
        active = next((v for v in versions if v.is_active), None)
        definition = registry.definition(name, tenant_id=tenant) if active else None
        signals = (registry.signal_summary(workflow=name, tenant_id=tenant)
                   if active else None)
        return {"w": info, "versions": versions, "active": active, "definition": definition,
                "signals": signals}

    context = await _run(read)
    return render_page(request, "workflow.html", session, **context,
                       done="rolled back" if done == "rolled_back" else "",
                       url=workflow_url(name))


@router.post("/workflows/{name}/rollback")
async def rollback_workflow_from_page(request: Request, name: str) -> Response:
    """Re-activate ``version`` (default: the previous good one), with a required reason."""
    session, form = await checked_form(request, await current_session(request))
    principal = session.principal
    raw = form.get("version", "").strip()
    version: int | None = None
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise page_error(ValidationError("version", "must be a version number"))
        version = int(raw)
    reason = form.get("reason", "").strip()
    if len(reason) > 10_000:
        raise page_error(ValidationError("reason", "must be at most 10000 characters"))
    result = await _run(_autodev(request).workflows.rollback, name, version,
                        actor=principal.actor, reason=reason, tenant_id=principal.tenant_id)
    request.app.state.metrics.decided("rolled_back")
    log.info("web_workflow_rollback", workflow=name, to_version=result.to_version,
             actor=principal.actor, tenant_id=principal.tenant_id)
    return RedirectResponse(workflow_url(name) + "?done=rolled_back", status_code=303)
