"""The review API for workflows: list, show (the active definition and counts), versions (each
with its definition), tasks, rollback, and registering a definition.

Reads and rollbacks need a reviewer token, and so does registering (a reviewer or an admin
puts a workflow of their own in place; it is audited with the token's name). Everything is the
token's tenant's: another tenant's workflow is 404, exactly like one that does not exist. A
bad definition is 422 naming the field (``workflow.steps[2].retry.max_attempts``) and nothing
is written.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from auto_dev._exceptions import NotFoundError
from auto_dev.server import auth
from auto_dev.server.bodies import parse_body, read_json
from auto_dev.server.problems import Problem
from auto_dev.server.review import _LIMIT, page_body
from auto_dev.server.schemas import WorkflowRollbackIn, json_body

if TYPE_CHECKING:
    from auto_dev.server.auth import Principal
    from auto_dev.service import AutoDev

router = APIRouter(prefix="/v1", tags=["workflows"])

_TASK_OFFSET = Query(0, ge=0, description="Rows to skip (oldest first).")

#: The request body of ``POST /v1/workflows``: the workflow document itself.
_DOCUMENT = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["name", "steps"],
    "description": "A workflow document (see `auto-dev workflows validate`).",
    "properties": {"name": {"type": "string"}, "description": {"type": "string"},
                   "input": {"type": "object"}, "steps": {"type": "array"},
                   "output": {"type": "string"}, "limits": {"type": "object"}}}}}}}


def _autodev(request: Request) -> AutoDev:
    return request.app.state.autodev


@router.get("/workflows", summary="List workflows")
async def list_workflows(request: Request, limit: int = _LIMIT,
                         offset: int = Query(0, ge=0, description="Rows to skip (by name)."),
                         principal: Principal = Depends(auth.reviewer)) -> dict[str, Any]:
    """The token's tenant's workflows by name: active version, how many versions and tasks."""
    registry = _autodev(request).workflows

    def read() -> dict[str, Any]:
        rows = registry.summaries(limit=limit, offset=offset, tenant_id=principal.tenant_id)
        return page_body(rows, registry.queries(principal.tenant_id).count(), limit, offset)

    return await asyncio.to_thread(read)


@router.post("/workflows", status_code=201, summary="Register a workflow",
             openapi_extra=_DOCUMENT,
             responses={200: {"description": "Identical to the active version: unchanged"}})
async def post_workflow(request: Request, principal: Principal = Depends(auth.reviewer)
                            ) -> JSONResponse:
    """Register a workflow document: a new workflow gets version 1, a changed definition the
    next version (active at once), an identical one changes nothing (200). Its tool steps must
    name the tenant's tools. Audited with the token's name."""
    settings = _autodev(request).settings
    body = await read_json(request, max_bytes=settings.server_max_body_bytes,
                           max_depth=settings.server_max_json_depth)
    if not isinstance(body.value, dict):
        raise Problem(422, "invalid-input", "the body must be a workflow document (a JSON "
                      "object)", field="workflow")
    registry = _autodev(request).workflows
    done = await asyncio.to_thread(registry.registration, body.value, actor=principal.actor,
                                   tenant_id=principal.tenant_id)
    return JSONResponse({"name": done.name, "version": done.version, "created": done.created},
                        status_code=201 if done.created else 200)


@router.get("/workflows/{name}", summary="Show a workflow")
async def show_workflow(request: Request, name: str,
                        principal: Principal = Depends(auth.reviewer)) -> dict[str, Any]:
    """A workflow's summary, its active version and that version's definition."""
    registry = _autodev(request).workflows

    def read() -> dict[str, Any]:
        info = registry.summary(name, tenant_id=principal.tenant_id)
        active = next((v for v in registry.versions(name, tenant_id=principal.tenant_id)
                       if v.is_active), None)
        definition = (registry.definition(name, tenant_id=principal.tenant_id)
                      if active is not None else None)
        return {**jsonable_encoder(info), "active": jsonable_encoder(active),
                "definition": definition}

    return await asyncio.to_thread(read)


@router.get("/workflows/{name}/versions", summary="A workflow's versions")
async def workflow_versions(request: Request, name: str,
                            principal: Principal = Depends(auth.reviewer)) -> dict[str, Any]:
    """Every version of a workflow, oldest first: which is active and where each came from
    (``user`` registration or a promoted ``variant``, with its candidate id)."""
    rows = await asyncio.to_thread(_autodev(request).workflows.versions, name,
                                   tenant_id=principal.tenant_id)
    return {"items": jsonable_encoder(rows), "total": len(rows)}


@router.get("/workflows/{name}/versions/{version}", summary="One version of a workflow")
async def workflow_version(request: Request, name: str,
                           version: int = Path(ge=1, description="The version number."),
                           principal: Principal = Depends(auth.reviewer)) -> dict[str, Any]:
    """One version of a workflow with its definition."""
    registry = _autodev(request).workflows

    def read() -> dict[str, Any]:
        row = next((v for v in registry.versions(name, tenant_id=principal.tenant_id)
                    if v.version == version), None)
        if row is None:
            raise NotFoundError(f"workflow {name!r} has no version {version}")
        definition = registry.definition(name, version=version, tenant_id=principal.tenant_id)
        return {**jsonable_encoder(row), "definition": definition}

    return await asyncio.to_thread(read)


@router.get("/workflows/{name}/tasks", summary="A workflow's tasks")
async def workflow_tasks(request: Request, name: str, limit: int = _LIMIT,
                         offset: int = _TASK_OFFSET,
                         principal: Principal = Depends(auth.reviewer)) -> dict[str, Any]:
    """The inputs (and expected outputs) variants are evaluated on, oldest first."""
    registry = _autodev(request).workflows

    def read() -> dict[str, Any]:
        info = registry.summary(name, tenant_id=principal.tenant_id)
        rows = registry.tasks(name, limit=limit, offset=offset, tenant_id=principal.tenant_id)
        return page_body(rows, info.tasks, limit, offset)

    return await asyncio.to_thread(read)


@router.post("/workflows/{name}/rollback", summary="Roll a workflow back",
             openapi_extra=json_body(WorkflowRollbackIn, batch=False))
async def rollback_workflow(request: Request, name: str,
                            principal: Principal = Depends(auth.reviewer)) -> Any:
    """Re-activate an earlier version (``version``, default: the newest older one not itself
    rolled back); ``reason`` is required. Audited with the token's name; the variant that made
    the replaced version becomes rolled_back and is never offered again."""
    body = await parse_body(request, WorkflowRollbackIn)
    result = await asyncio.to_thread(_autodev(request).workflows.rollback, name, body.version,
                                     actor=principal.actor, reason=body.reason,
                                     tenant_id=principal.tenant_id)
    request.app.state.metrics.decided("rolled_back")
    return jsonable_encoder(result)
