"""The review web page: login, the queue of candidates, a candidate, and the decisions on it.

Server-rendered (Jinja2, no script). Every read and decision goes through the same
:class:`~auto_dev.candidates.review.ReviewService` as the CLI and the JSON API, and promotion
through ``AutoDev.promote`` (which re-evaluates a stale candidate in the sandbox). The tenant and
the actor are the session token's. Another tenant's candidate is 404, like a missing one.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from auto_dev._exceptions import AutoDevError, ValidationError
from auto_dev.candidates.review import PENDING_REVIEW, CandidateDetail, CandidateSummary
from auto_dev.candidates.risk import RiskReport, assess_code, assess_workflow
from auto_dev.models import CandidateStatus
from auto_dev.queries.tokens import Role
from auto_dev.server import pages_browse, pages_workflows
from auto_dev.server.pages_workflows import workflow_url
from auto_dev.server.review import structural_lines
from auto_dev.server.sidediff import changed_lines, side_by_side
from auto_dev.server.templating import render_page
from auto_dev.server.web_session import (
    COOKIE,
    LOGIN_COOKIE,
    PageError,
    WebSession,
    checked_form,
    clear_cookie,
    current_session,
    keys_of,
    page_error,
    read_form,
    set_cookie,
)

if TYPE_CHECKING:
    from auto_dev.service import AutoDev

log = structlog.get_logger(__name__)

router = APIRouter(include_in_schema=False)

#: The queue shows at most this many candidates (the newest), ordered by risk then age.
QUEUE_LIMIT = 200
KINDS = ("tool_mutation", "skill_candidate", "workflow_variant")
STATUS_CHOICES = ("review", "all", *(s.value for s in CandidateStatus))
_DECISIONS = ("approve", "reject", "promote")


def _autodev(request: Request) -> AutoDev:
    return request.app.state.autodev


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)


def safe_next(value: str | None) -> str:
    """Only a local path (never ``//host`` or a scheme): no open redirect after login."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


# -- login ----------------------------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request) -> Response:
    if await current_session(request) is not None:
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    return _login_form(request, next_path=request.query_params.get("next"))


def _login_form(request: Request, *, next_path: str | None = None, error: str = "",
                status: int = 200) -> Response:
    cookie, login_csrf = keys_of(request).login_nonce()
    response = render_page(request, "login.html", None, status_code=status, error=error,
                           login_csrf=login_csrf, next=safe_next(next_path))
    set_cookie(request, response, LOGIN_COOKIE, cookie, max_age=1800)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await read_form(request)
    keys = keys_of(request)
    if not keys.login_csrf_ok(request.cookies.get(LOGIN_COOKIE), form.get("csrf")):
        raise PageError(403, "the login form expired or was not sent from this site: reload "
                             "the login page")
    token = form.get("token", "").strip()
    info = await asyncio.to_thread(request.app.state.tokens.authenticate, token) \
        if token else None
    if info is None:
        log.warning("web_login_refused", reason="unknown or revoked token")
        return _login_form(request, next_path=form.get("next"), status=401,
                           error="That token is unknown or revoked.")
    if not info.role.allows(Role.REVIEWER):
        log.warning("web_login_refused", reason="role", role=info.role.value,
                    tenant_id=info.tenant_id)
        return _login_form(request, next_path=form.get("next"), status=403,
                           error=f"A {info.role.value} token cannot review: log in with a "
                                 "reviewer or admin token.")
    cookie, _ = keys.issue(info.id)
    log.info("web_login", tenant_id=info.tenant_id, actor=info.name, role=info.role.value)
    response = RedirectResponse(safe_next(form.get("next")), status_code=303)
    set_cookie(request, response, COOKIE, cookie, max_age=int(keys.ttl_s))
    clear_cookie(request, response, LOGIN_COOKIE)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    session, _ = await checked_form(request, await current_session(request))
    keys_of(request).end(session.session_id)
    log.info("web_logout", tenant_id=session.principal.tenant_id, actor=session.principal.actor)
    response = RedirectResponse("/login", status_code=303)
    clear_cookie(request, response, COOKIE)
    return response


# -- the queue ------------------------------------------------------------------------------------


def _tool_names(autodev: AutoDev, tenant_id: str) -> set[str]:
    names: set[str] = set()
    for tool in autodev.review.list_tools(tenant_id):
        names.update({tool.name, tool.entrypoint})
    return names


def assess(summary: CandidateSummary, code: str, base_code: str, tool_names: set[str]
           ) -> RiskReport:
    """The risk flags of a candidate against what it would replace."""
    if summary.kind == "workflow_variant":
        return assess_workflow(_json(code), _json(base_code))
    return assess_code(code, base_code or None, tool_names=tool_names - {summary.target})


def _json(text: str) -> Any:
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        return None


@router.get("/")
async def queue(request: Request, kind: str = "", status: str = "review") -> Response:
    session = await current_session(request)
    if session is None:
        return login_redirect(request)
    if kind and kind not in KINDS:
        raise PageError(422, f"kind: must be one of {', '.join(KINDS)}")
    if status not in STATUS_CHOICES:
        raise PageError(422, f"status: must be one of {', '.join(STATUS_CHOICES)}")
    statuses = (list(PENDING_REVIEW) if status == "review" else None if status == "all"
                else [status])
    autodev, tenant = _autodev(request), session.principal.tenant_id

    def read() -> tuple[list[tuple[CandidateSummary, RiskReport]], int]:
        review = autodev.review
        rows = review.list_candidates(tenant, kind=kind or None, statuses=statuses,
                                      limit=QUEUE_LIMIT)
        total = review.count_candidates(tenant, kind=kind or None, statuses=statuses)
        tools = _tool_names(autodev, tenant)
        texts = review.texts(tenant, [row.id for row in rows])
        out = [(row, assess(row, *texts[row.id], tools)) for row in rows]
        # Riskiest first; among equals, the one waiting longest first.
        out.sort(key=lambda item: (-item[1].score, item[0].created_at))
        return out, total

    try:
        items, total = await asyncio.to_thread(read)
    except AutoDevError as exc:
        raise page_error(exc) from exc
    return render_page(request, "queue.html", session, items=items, total=total, kind=kind,
                       status=status, kinds=KINDS, statuses=STATUS_CHOICES, limit=QUEUE_LIMIT)


# -- one candidate --------------------------------------------------------------------------------


@router.get("/candidates/{candidate_id}")
async def candidate_page(request: Request, candidate_id: str, done: str = "") -> Response:
    session = await current_session(request)
    if session is None:
        return login_redirect(request)
    autodev, tenant = _autodev(request), session.principal.tenant_id

    def read() -> tuple[CandidateDetail, RiskReport, str]:
        detail = autodev.review.show(tenant, candidate_id)
        target, kind = detail.summary.target, detail.summary.kind
        if kind != "workflow_variant":
            url = "/tools/" + quote(target, safe="")
        else:  # the workflow's page, once the workflow exists (a variant may precede it)
            known = autodev.workflows.queries(tenant).workflow_id(target) is not None
            url = workflow_url(target) if known else ""
        return detail, assess(detail.summary, detail.code, detail.base_code,
                              _tool_names(autodev, tenant)), url

    try:
        detail, risk, target_url = await asyncio.to_thread(read)
    except AutoDevError as exc:
        raise page_error(exc) from exc
    rows = side_by_side(detail.base_code, detail.code)
    names = [o.name for o in detail.objectives]
    names += sorted(set(detail.active_objectives) - set(names))
    by_name = {o.name: o for o in detail.objectives}
    objectives = [{"name": n, "candidate": by_name[n].candidate if n in by_name else None,
                   "parent": by_name[n].parent if n in by_name else None,
                   "active": detail.active_objectives.get(n),
                   "direction": by_name[n].direction if n in by_name else None,
                   "better": by_name[n].better if n in by_name else None} for n in names]
    definition = _json(detail.code) if detail.summary.kind == "workflow_variant" else None
    return render_page(request, "candidate.html", session, d=detail, s=detail.summary, risk=risk,
                       rows=rows, changed=changed_lines(rows), objectives=objectives,
                       definition=definition,
                       structural=structural_lines(detail) if definition is not None
                       else None,
                       done=done if done in {"approved", "rejected", "promoted"} else "",
                       tool_url=target_url)


@router.post("/candidates/{candidate_id}/{decision}")
async def decide(request: Request, candidate_id: str, decision: str) -> Response:
    session, form = await checked_form(request, await current_session(request))
    if decision not in _DECISIONS:
        raise PageError(404, f"no such decision: {decision}")
    autodev, principal = _autodev(request), session.principal
    reason = form.get("reason", "").strip()
    if len(reason) > 10_000:
        raise page_error(ValidationError("reason", "must be at most 10000 characters"))
    try:
        if decision == "promote":
            result = await autodev.promote(candidate_id, actor=principal.actor, reason=reason,
                                           tenant_id=principal.tenant_id)
            request.app.state.metrics.decided("promoted")
            done_id = result.candidate_id
        else:
            action = autodev.review.approve if decision == "approve" else autodev.review.reject
            row = await asyncio.to_thread(action, principal.tenant_id, candidate_id,
                                          principal.actor, reason)
            done_id = row.id
    except AutoDevError as exc:
        raise page_error(exc) from exc
    past = {"approve": "approved", "reject": "rejected", "promote": "promoted"}[decision]
    log.info("web_decision", decision=past, candidate_id=done_id, actor=principal.actor,
             tenant_id=principal.tenant_id)
    return RedirectResponse(f"/candidates/{quote(str(done_id), safe='')}?done={past}",
                            status_code=303)


# -- wiring ---------------------------------------------------------------------------------------


def install_pages(app: FastAPI) -> None:
    """Add the pages, their static files and their error page to ``app``."""
    app.include_router(router)
    app.include_router(pages_browse.router)
    app.include_router(pages_workflows.router)
    static = Path(__file__).with_name("static")
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.exception_handler(PageError)
    async def _page_error(request: Request, exc: PageError) -> Response:
        session: WebSession | None = None
        try:
            session = await current_session(request)
        except AutoDevError:
            session = None
        return render_page(request, "error.html", session, status_code=exc.status,
                           message=exc.message)
