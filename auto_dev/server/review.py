"""The review API: candidates (list, show, approve, reject, promote) and tools (list, show,
versions, rollback). Reads need a reviewer token; so do decisions, made in the name of the
token (its name is the actor recorded with them). Everything is the token's tenant's: another
tenant's candidate or tool is 404, exactly like one that does not exist.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.encoders import jsonable_encoder

from auto_dev.server import auth
from auto_dev.server.bodies import parse_body
from auto_dev.server.schemas import DecisionIn, RollbackIn, json_body

if TYPE_CHECKING:
    from auto_dev.candidates.review import CandidateDetail
    from auto_dev.server.auth import Principal
    from auto_dev.service import AutoDev

router = APIRouter(prefix="/v1", tags=["review"])

_LIMIT = Query(50, ge=1, le=500, description="Rows per page (1 to 500).")
_OFFSET = Query(0, ge=0, description="Rows to skip (newest first).")


def _autodev(request: Request) -> AutoDev:
    return request.app.state.autodev


def page_body(items: list[Any], total: int, limit: int, offset: int) -> dict[str, Any]:
    return {"items": jsonable_encoder(items), "total": total, "limit": limit, "offset": offset}


# -- candidates -----------------------------------------------------------------------------------


@router.get("/candidates", summary="List candidates")
async def list_candidates(
    request: Request,
    status: list[str] | None = Query(None, description="Only these statuses (repeatable)."),
    kind: str | None = Query(None, description="tool_mutation, skill_candidate or "
                                               "workflow_variant."),
    target: str | None = Query(None, description="Only candidates for this tool, skill or "
                                                 "workflow."),
    limit: int = _LIMIT, offset: int = _OFFSET,
    principal: Principal = Depends(auth.reviewer),
) -> dict[str, Any]:
    """Candidates of the token's tenant, newest first."""
    review = _autodev(request).review

    def read() -> dict[str, Any]:
        rows = review.list_candidates(principal.tenant_id, kind=kind, statuses=status,
                                      target=target, limit=limit, offset=offset)
        total = review.count_candidates(principal.tenant_id, kind=kind, statuses=status,
                                        target=target)
        return page_body(rows[::-1], total, limit, offset)

    return await asyncio.to_thread(read)


@router.get("/candidates/{candidate_id}", summary="Show a candidate")
async def show_candidate(request: Request, candidate_id: str,
                         principal: Principal = Depends(auth.reviewer)) -> Any:
    """The diff against the active version, objectives against the parent's, per-case results,
    lineage and the decisions so far. ``candidate_id`` may be a unique prefix (4+ chars). A
    workflow variant's ``diff`` is structural, also given as ``structural_diff`` (one change
    per line: steps added, removed, changed, moved)."""
    detail = await asyncio.to_thread(_autodev(request).review.show, principal.tenant_id,
                                     candidate_id)
    body = jsonable_encoder(detail)
    if detail.summary.kind == "workflow_variant":
        body["structural_diff"] = structural_lines(detail)
    return body


def structural_lines(detail: CandidateDetail) -> list[str]:
    """A workflow variant's structural diff, one change per line (the review service computes
    it with :func:`auto_dev.workflows.diff.structural_diff` against what the variant
    replaces)."""
    return detail.diff.splitlines()


@router.post("/candidates/{candidate_id}/approve", summary="Approve a candidate",
             openapi_extra=json_body(DecisionIn, batch=False))
async def approve(request: Request, candidate_id: str,
                  principal: Principal = Depends(auth.reviewer)) -> Any:
    """Approve a passed candidate (it can then be promoted). Body: ``{"reason": "..."}``
    (optional)."""
    body = await parse_body(request, DecisionIn, optional=True)
    row = await asyncio.to_thread(_autodev(request).review.approve, principal.tenant_id,
                                  candidate_id, principal.actor, body.reason)
    return jsonable_encoder(row)


@router.post("/candidates/{candidate_id}/reject", summary="Reject a candidate",
             openapi_extra=json_body(DecisionIn, batch=False))
async def reject(request: Request, candidate_id: str,
                 principal: Principal = Depends(auth.reviewer)) -> Any:
    """Reject a passed or approved candidate; ``reason`` is required. The same change is never
    offered again."""
    body = await parse_body(request, DecisionIn)
    row = await asyncio.to_thread(_autodev(request).review.reject, principal.tenant_id,
                                  candidate_id, principal.actor, body.reason)
    return jsonable_encoder(row)


@router.post("/candidates/{candidate_id}/promote", summary="Promote a candidate",
             openapi_extra=json_body(DecisionIn, batch=False))
async def promote(request: Request, candidate_id: str,
                  principal: Principal = Depends(auth.reviewer)) -> Any:
    """Promote an approved candidate: it becomes its tool's active version. One made against a
    version that is no longer active is re-evaluated in the sandbox first and promoted only if
    still better (otherwise 409 says why)."""
    body = await parse_body(request, DecisionIn, optional=True)
    result = await _autodev(request).promote(candidate_id, actor=principal.actor,
                                             reason=body.reason, tenant_id=principal.tenant_id)
    request.app.state.metrics.decided("promoted")
    return jsonable_encoder(result)


# -- tools ----------------------------------------------------------------------------------------


@router.get("/tools", summary="List tools")
async def list_tools(request: Request, principal: Principal = Depends(auth.reviewer)
                     ) -> dict[str, Any]:
    """Tools with their active version and the candidates awaiting review."""
    rows = await asyncio.to_thread(_autodev(request).review.list_tools, principal.tenant_id)
    return {"items": jsonable_encoder(rows), "total": len(rows)}


@router.get("/tools/{name}", summary="Show a tool")
async def show_tool(request: Request, name: str,
                    principal: Principal = Depends(auth.reviewer)) -> Any:
    """A tool, its versions and its active code."""
    detail = await asyncio.to_thread(_autodev(request).review.show_tool, principal.tenant_id,
                                     name)
    return jsonable_encoder(detail)


@router.get("/tools/{name}/versions", summary="A tool's versions")
async def tool_versions(request: Request, name: str,
                        principal: Principal = Depends(auth.reviewer)) -> dict[str, Any]:
    """Every version of a tool, oldest first: which is active and where each came from."""
    detail = await asyncio.to_thread(_autodev(request).review.show_tool, principal.tenant_id,
                                     name)
    return {"items": jsonable_encoder(detail.versions), "total": len(detail.versions)}


@router.post("/tools/{name}/rollback", summary="Roll a tool back",
             openapi_extra=json_body(RollbackIn, batch=False))
async def rollback(request: Request, name: str,
                   principal: Principal = Depends(auth.reviewer)) -> Any:
    """Re-activate an earlier version (``to_version``, default: the previous good one); the
    candidate it replaces becomes rolled_back."""
    body = await parse_body(request, RollbackIn)
    result = await asyncio.to_thread(_autodev(request).review.rollback, principal.tenant_id,
                                     name, principal.actor, body.reason,
                                     to_version=body.to_version)
    request.app.state.metrics.decided("rolled_back")
    return jsonable_encoder(result)
