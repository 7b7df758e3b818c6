"""The FastAPI application: one :class:`~auto_dev.service.AutoDev` serving every tenant.

The lifespan starts the facade (event delivery, the cycle worker, recovery of what a dead
process left), chooses the sandbox, starts the scheduler, and on shutdown closes it all
(running cycles finish or go back to the queue, in-flight deliveries finish). Routers live in
one module per concern and are included here; OTLP trace ingest and the review web page plug in
the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from auto_dev._exceptions import AutoDevError
from auto_dev.queries.idempotency import IdempotencyRecords
from auto_dev.queries.tokens import TokenQueries
from auto_dev.server import (
    browse,
    health,
    ingest,
    metrics,
    otlp,
    pages,
    problems,
    review,
    signals,
    workflows_api,
)
from auto_dev.server.bodies import BodyLimit
from auto_dev.server.schemas import COMPONENTS

if TYPE_CHECKING:
    from auto_dev.config import Settings
    from auto_dev.service import AutoDev

log = structlog.get_logger(__name__)

#: How often expired idempotent responses are deleted.
_CLEANUP_EVERY_S = 3600.0

API_DESCRIPTION = """\
auto-dev as a service: agent platforms report episodes and skill executions (`/v1/episodes`,
`/v1/skill-executions`, or OpenTelemetry traces over OTLP/HTTP at `/v1/traces`) and signals
on tool and workflow versions (`/v1/signals`), reviewers decide on the candidates auto-dev
evolves (`/v1/candidates`) and manage workflows (`/v1/workflows`), operators watch
`/healthz`, `/readyz` and `/metrics`.

Authenticate with `Authorization: Bearer <token>` (`auto-dev tokens create`). The tenant is the
token's. Roles: `ingest` < `reviewer` < `admin`. Errors are RFC 7807 problem JSON naming the
field at fault. Send `Idempotency-Key` with a POST to make its retries safe.
"""


def create_app(settings: Settings | None = None, *, autodev: AutoDev | None = None,
               run_scheduler: bool = True) -> FastAPI:
    """The service's app. Without ``autodev`` one is built from ``settings`` (default: the
    environment) when the app starts; either way the app starts it and closes it."""
    from auto_dev.config import load_settings

    current = autodev.settings if autodev is not None else (settings or load_settings())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from auto_dev.service import AutoDev

        instance = autodev if autodev is not None else await asyncio.to_thread(AutoDev, current)
        app.state.autodev = instance
        app.state.tokens = TokenQueries(instance.database)
        app.state.metrics = metrics.ServiceMetrics(instance)
        cleanup: asyncio.Task[None] | None = None
        try:
            await instance.start()
            await _choose_sandbox(instance)
            if run_scheduler:
                await instance.scheduler.start()
            cleanup = asyncio.get_running_loop().create_task(_forget_old_responses(instance))
            app.state.started = True
            log.info("service_started", database=instance.database.display_url)
            yield
        finally:
            app.state.started = False
            if cleanup is not None:
                cleanup.cancel()
                await asyncio.gather(cleanup, return_exceptions=True)
            await instance.aclose()
            log.info("service_stopped")

    app = FastAPI(title="auto-dev", version=_version(), description=API_DESCRIPTION,
                  lifespan=lifespan)
    app.state.started = False
    problems.install(app)
    app.add_middleware(BodyLimit, max_bytes=current.server_max_body_bytes)
    app.add_middleware(metrics.RequestMetrics)
    for router in (health.router, metrics.router, ingest.router, otlp.router, review.router,
                   browse.router, browse.admin_router, workflows_api.router, signals.router):
        app.include_router(router)
    pages.install_pages(app)  # the review web page at /
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def create_app_from_environment() -> FastAPI:
    """The app with the settings of the environment (what uvicorn's ``--factory`` and several
    workers call)."""
    return create_app()


async def _choose_sandbox(autodev: AutoDev) -> None:
    """Pick the sandbox now rather than at the first cycle; a failure is logged and reported
    by /readyz (which tries again), not fatal: ingest and review work without a sandbox."""
    try:
        await asyncio.to_thread(lambda: autodev.sandbox)
    except AutoDevError as exc:
        log.error("sandbox_unavailable", error=str(exc))


async def _forget_old_responses(autodev: AutoDev) -> None:
    ttl = timedelta(seconds=autodev.settings.server_idempotency_ttl_s)

    def forget() -> int:
        with autodev.database.session() as session:
            return IdempotencyRecords.forget_older_than(session, ttl)

    while True:
        try:
            removed = await asyncio.to_thread(forget)
            if removed:
                log.info("idempotent_responses_forgotten", count=removed)
        except AutoDevError as exc:
            log.warning("idempotent_cleanup_failed", error=str(exc))
        await asyncio.sleep(_CLEANUP_EVERY_S)


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version,
                             description=app.description, routes=app.routes)
        schema.setdefault("components", {}).setdefault("schemas", {}).update(COMPONENTS)
        schema["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"}}
        schema["security"] = [{"bearer": []}]
        app.openapi_schema = schema
    return app.openapi_schema


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("auto-dev")
    except PackageNotFoundError:
        return "0+source"
