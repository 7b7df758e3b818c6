"""Feedback signals: ``POST /v1/signals`` (what agent platforms report about a tool or workflow
version: business value, a user's feedback, or a kind of their own) and the per-version
summaries reviewers read (``GET /v1/workflows/{name}/signals``, ``GET /v1/tools/{name}/signals``).

Posting works like ``/v1/episodes``: one object or a batch (all or nothing), ``Idempotency-Key``
for safe retries, 422 naming the field for bad input. A tool, workflow or version the token's
tenant does not have is 404 naming the field (another tenant's is the same: not found), and
nothing is written. Each recorded signal is announced (``SignalRecorded``) to the promotion
watch, which judges freshly promoted versions on them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from auto_dev._exceptions import NotFoundError
from auto_dev.server import auth
from auto_dev.server.ingest import ingest_items
from auto_dev.server.schemas import SignalIn, json_body

if TYPE_CHECKING:
    from auto_dev.server.auth import Principal
    from auto_dev.service import AutoDev

router = APIRouter(prefix="/v1", tags=["signals"])

_VERSION = Query(None, ge=1, description="A version number (default: the active version).")


class SignalTargetNotFoundError(NotFoundError):
    """The tool, workflow or version a signal names is not the tenant's; ``field`` says
    which."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


@router.post(
    "/signals", status_code=201, summary="Report signals on a tool or workflow version",
    openapi_extra=json_body(SignalIn, batch=True),
    responses={201: {"description": "Recorded: `{\"signal_id\": ...}`, or "
                                    "`{\"signal_ids\": [...]}` for a batch"}},
)
async def post_signals(request: Request,
                       principal: Principal = Depends(auth.ingest)) -> JSONResponse:
    """Record one signal (a JSON object) or a batch (a JSON list, all or nothing) against the
    active version, or ``version``, of ``tool`` or ``workflow``. ``kind`` is
    `business_value`, `feedback` or a name of your own; ``value`` a finite number."""
    autodev: AutoDev = request.app.state.autodev

    async def record(item: SignalIn) -> str:
        try:
            return await autodev.record_signal(**item.facade_kwargs(),
                                               tenant_id=principal.tenant_id)
        except NotFoundError as exc:
            field = "version" if str(exc).startswith("version:") else item.target_field
            raise SignalTargetNotFoundError(field, str(exc)) from None

    def call(item: SignalIn) -> Coroutine[Any, Any, Any]:
        return record(item)

    def respond(ids: list[Any], batch: bool) -> dict[str, Any]:
        return {"signal_ids": ids} if batch else {"signal_id": ids[0]}

    return await ingest_items(request, principal, SignalIn, call, respond, kind="signal")


@router.get("/workflows/{name}/signals", summary="A workflow version's signals")
async def workflow_signals(request: Request, name: str, version: int | None = _VERSION,
                           principal: Principal = Depends(auth.reviewer)) -> dict[str, Any]:
    """Per kind of signal recorded against the active version (or ``version``) of workflow
    ``name``: count, mean, min, max and when the last one came."""
    autodev: AutoDev = request.app.state.autodev
    summary = await asyncio.to_thread(autodev.signal_summary, workflow=name, version=version,
                                      tenant_id=principal.tenant_id)
    return summary.to_dict()


@router.get("/tools/{name}/signals", summary="A tool version's signals")
async def tool_signals(request: Request, name: str, version: int | None = _VERSION,
                       principal: Principal = Depends(auth.reviewer)) -> dict[str, Any]:
    """Per kind of signal recorded against the active version (or ``version``) of tool
    ``name``: count, mean, min, max and when the last one came."""
    autodev: AutoDev = request.app.state.autodev
    summary = await asyncio.to_thread(autodev.signal_summary, tool=name, version=version,
                                      tenant_id=principal.tenant_id)
    return summary.to_dict()
