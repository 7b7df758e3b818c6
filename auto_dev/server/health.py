"""``/healthz`` (the process answers) and ``/readyz`` (it can do its work) for orchestrators.

Readiness checks, each with a reason when it fails: the database answers, its schema is at the
migration head this auto-dev ships, a sandbox backend could be chosen, the scheduler fires
schedules and (unless ``cycle_worker`` is off) the cycle worker runs. 503 while any fails.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from auto_dev._exceptions import AutoDevError

if TYPE_CHECKING:
    from auto_dev.service import AutoDev

router = APIRouter(tags=["operations"])

_CHECK_TIMEOUT_S = 5.0


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    """The process is up and its event loop answers."""
    return {"status": "alive"}


@router.get("/readyz", summary="Readiness")
async def readyz(request: Request) -> JSONResponse:
    """Database reachable, migrations at head, sandbox usable, scheduler and worker running."""
    autodev: AutoDev | None = getattr(request.app.state, "autodev", None)
    if autodev is None or not getattr(request.app.state, "started", False):
        return JSONResponse({"status": "starting", "checks": {}}, status_code=503)
    checks = {
        "database": await _check(_database, autodev),
        "migrations": await _check(_migrations, autodev),
        "sandbox": await _check(_sandbox, autodev),
        "scheduler": _flag(autodev.scheduler.running, "firing schedules", "not running"),
    }
    if autodev.settings.cycle_worker:
        checks["cycle_worker"] = _flag(autodev.worker.started, "running queued cycles",
                                       "not running")
    ready = all(c["ok"] for c in checks.values())
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        status_code=200 if ready else 503)


async def _check(probe: Any, autodev: AutoDev) -> dict[str, Any]:
    try:
        detail = await asyncio.wait_for(asyncio.to_thread(probe, autodev), _CHECK_TIMEOUT_S)
    except TimeoutError:
        return {"ok": False, "detail": f"no answer within {_CHECK_TIMEOUT_S:g} s"}
    except (AutoDevError, OSError) as exc:
        return {"ok": False, "detail": str(exc)}
    return {"ok": True, "detail": detail}


def _flag(ok: bool, yes: str, no: str) -> dict[str, Any]:
    return {"ok": ok, "detail": yes if ok else no}


def _database(autodev: AutoDev) -> str:
    with autodev.database.session(readonly=True) as session:
        session.execute(text("SELECT 1"))
    return f"{autodev.database.dialect} answers"


def _migrations(autodev: AutoDev) -> str:
    autodev.database.require_current()
    return f"at {autodev.database.head_revision()}"


def _sandbox(autodev: AutoDev) -> str:
    sandbox = autodev.sandbox  # chosen at start-up; retried here if that failed
    return f"{sandbox.name}: {autodev.sandbox_reason}" if autodev.sandbox_reason \
        else sandbox.name
