"""Running the service for tests: uvicorn on 127.0.0.1 on a free port, in a thread, with a real
AutoDev (scripted sandbox: candidate code never runs) over a migrated database."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from sqlalchemy import func, select

from auto_dev._testing_sandbox import ScriptedSandbox
from auto_dev.config import load_settings
from auto_dev.db import Database
from auto_dev.models import Episode, EventDelivery, IdempotentResponse, TestCase
from auto_dev.queries.tokens import Role, TokenQueries
from auto_dev.server import create_app
from auto_dev.service import AutoDev

ROLES = (Role.INGEST, Role.REVIEWER, Role.ADMIN)
TOOL_CODE = "def inc(x):\n    return x + 2\n"
FIXED_CODE = "def inc(x):\n    return x + 1\n"
ON = {"enabled": True, "alpha_evolver": True, "memento_skills": True}


@dataclass
class Service:
    """A running service: its URL, its facade and a token per (tenant, role)."""

    url: str
    autodev: AutoDev
    tokens: dict[tuple[str, Role], str] = field(default_factory=dict)
    names: dict[tuple[str, Role], str] = field(default_factory=dict)

    @property
    def database(self) -> Database:
        return self.autodev.database

    def client(self, tenant: str | None = None, role: Role = Role.ADMIN,
               **kwargs: Any) -> httpx.Client:
        headers = dict(kwargs.pop("headers", {}))
        if tenant is not None:
            headers["Authorization"] = f"Bearer {self.tokens[(tenant, role)]}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def add_tokens(self, tenant: str) -> None:
        queries = TokenQueries(self.database)
        for role in ROLES:
            new = queries.create(tenant, role, name=f"{tenant}-{role.value}")
            self.tokens[(tenant, role)] = new.token
            self.names[(tenant, role)] = new.info.name

    def counts(self, tenant: str) -> dict[str, int]:
        """What the tenant holds of what ingest writes."""
        with self.database.session(readonly=True) as session:
            def count(model: Any) -> int:
                return int(session.scalar(select(func.count()).select_from(model)
                                          .where(model.tenant_id == tenant)) or 0)

            return {"episodes": count(Episode), "tests": count(TestCase),
                    "deliveries": count(EventDelivery),
                    "idempotent": count(IdempotentResponse)}


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def running(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` in a thread until the block ends; yields its base URL."""
    sock = free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def build_autodev(database_url: str, **overrides: Any) -> AutoDev:
    settings = load_settings(database_url=database_url, tenant="default", sandbox="process",
                             cycle_poll_s=0.2, **overrides)
    return AutoDev(settings, sandbox=ScriptedSandbox(lambda code, case: None),
                   load_plugins=False)


@contextlib.contextmanager
def service(database_url: str, tenants: tuple[str, ...] = ("acme", "beta"), *,
            scheduler: bool = False, **overrides: Any) -> Iterator[Service]:
    """A running service. APScheduler allows one running scheduler per process: only the
    services that test it run one."""
    autodev = build_autodev(database_url, **overrides)
    with running(create_app(autodev=autodev, run_scheduler=scheduler)) as url:
        svc = Service(url, autodev)
        for tenant in tenants:
            svc.add_tokens(tenant)
        yield svc


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def seed_review_world(autodev: AutoDev, tenant: str) -> dict[str, str]:
    """Tool ``inc`` (buggy, v1) with a test, agent-1 supervised, and three candidates: one
    passed, one passed then approved, one failed. Returns their ids."""
    autodev.configure_tenant(tenant, actor="setup", reason="test setup", **ON)
    autodev.register_tool("inc", TOOL_CODE, "inc", tenant_id=tenant,
                          tests=[{"args": [1], "expected": 2}])
    autodev.set_maturity("agent-1", "auto_dev.alpha_evolver", "supervised", actor="setup",
                         reason="test setup", tenant_id=tenant)
    store = autodev.store
    ids: dict[str, str] = {}
    with autodev.database.session() as session:
        tool_id = autodev.review.show_tool(tenant, "inc").tool.id
        for label in ("passed", "approved", "failed"):
            code = FIXED_CODE + f"# {label}\n"
            row = store.create_tool_mutation(session, tenant_id=tenant, tool_id=tool_id,
                                             code=code, operator="ast.const",
                                             agent_id="agent-1")
            ids[label] = row.id
    for label, verdict in (("passed", "passed"), ("approved", "passed"), ("failed", "failed")):
        passed = 1 if verdict == "passed" else 0
        with autodev.database.session() as session:
            store.record_evaluation(
                session, tenant_id=tenant, candidate_id=ids[label], backend="scripted",
                cases=[{"index": 0, "status": "ok" if passed else "wrong_answer",
                        "output": 2, "error": None, "stdout": "", "duration_s": 0.001,
                        "peak_memory_kb": 100}],
                passed=passed, total=1, objectives={"pass_rate": float(passed)},
                verdict=verdict)
    autodev.review.approve(tenant, ids["approved"], "setup", "looks right")
    return ids


def seed_workflow(autodev: AutoDev, tenant: str, name: str = "triage") -> list[dict[str, Any]]:
    """Workflow ``name`` of ``tenant`` calling its tool ``inc`` (registered here when missing):
    v1, then v2 (active) with a retry. Returns both definitions."""
    from auto_dev._exceptions import NotFoundError

    try:
        autodev.review.show_tool(tenant, "inc")
    except NotFoundError:
        autodev.register_tool("inc", TOOL_CODE, "inc", tenant_id=tenant)
    first = workflow_doc(name)
    second = workflow_doc(name, retry={"max_attempts": 3, "backoff_s": 0.0, "on": ["error"]})
    for doc in (first, second):
        autodev.register_workflow(doc, actor="setup", tenant_id=tenant)
    return [first, second]


def workflow_doc(name: str, **step: Any) -> dict[str, Any]:
    """A one-step workflow calling tool ``inc`` on its input ``x`` (``step``: more step
    fields)."""
    return {"name": name, "description": f"{name} for tests", "input": {"required": ["x"]},
            "steps": [{"id": "add", "tool": "inc", "args": {"x": "${input.x}"}, **step}],
            "output": "steps.add"}


@dataclass(frozen=True)
class Endpoint:
    """One route of the API: the least role it needs and a request that passes its checks."""

    method: str
    path: str  # may hold {candidate}, {tool}, {episode}, {agent}, {token}, {workflow}
    role: Role
    body: Any = None  # its strings may hold the same names

    def url(self, **names: str) -> str:
        return self.path.format(**names)

    @property
    def named(self) -> bool:
        """Whether the request names a row (in its path or its body)."""
        return "{" in self.path or self.payload(**_PROBE) != self.body

    def payload(self, **names: str) -> Any:
        return _fill(self.body, names)


#: Fills every placeholder: a body that changes under it names a row.
_PROBE = {name: "?" for name in ("candidate", "tool", "episode", "agent", "token", "workflow")}


def _fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str) and "{" in value:
        return value.format(**names)
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    return value


ENDPOINTS = (
    Endpoint("POST", "/v1/episodes", Role.INGEST,
             {"agent": "agent-1", "task": "t", "success": True}),
    Endpoint("POST", "/v1/skill-executions", Role.INGEST,
             {"agent": "agent-1", "skill_name": "inc", "success": True,
              "execution_seconds": 0.1}),
    Endpoint("POST", "/v1/traces", Role.INGEST, {"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
         "name": "invoke_agent agent-1",
         "attributes": [{"key": "gen_ai.agent.name", "value": {"stringValue": "agent-1"}}]}]}]}]}),
    Endpoint("GET", "/v1/candidates", Role.REVIEWER),
    Endpoint("GET", "/v1/candidates/{candidate}", Role.REVIEWER),
    Endpoint("POST", "/v1/candidates/{candidate}/approve", Role.REVIEWER, {"reason": "ok"}),
    Endpoint("POST", "/v1/candidates/{candidate}/reject", Role.REVIEWER, {"reason": "no"}),
    Endpoint("POST", "/v1/candidates/{candidate}/promote", Role.REVIEWER, {"reason": "go"}),
    Endpoint("GET", "/v1/tools", Role.REVIEWER),
    Endpoint("GET", "/v1/tools/{tool}", Role.REVIEWER),
    Endpoint("GET", "/v1/tools/{tool}/versions", Role.REVIEWER),
    Endpoint("POST", "/v1/tools/{tool}/rollback", Role.REVIEWER, {"reason": "back"}),
    Endpoint("GET", "/v1/episodes", Role.REVIEWER),
    Endpoint("GET", "/v1/episodes/{episode}", Role.REVIEWER),
    Endpoint("GET", "/v1/agents", Role.REVIEWER),
    Endpoint("GET", "/v1/agents/{agent}", Role.REVIEWER),
    Endpoint("PUT", "/v1/agents/{agent}/maturity", Role.ADMIN,
             {"capability": "alpha_evolver", "maturity": "autonomous", "reason": "r"}),
    Endpoint("GET", "/v1/runs", Role.REVIEWER),
    Endpoint("GET", "/v1/schedules", Role.REVIEWER),
    Endpoint("GET", "/v1/audit", Role.REVIEWER),
    Endpoint("GET", "/v1/tokens", Role.ADMIN),
    Endpoint("POST", "/v1/tokens", Role.ADMIN, {"role": "ingest"}),
    Endpoint("DELETE", "/v1/tokens/{token}", Role.ADMIN),
    Endpoint("GET", "/v1/workflows", Role.REVIEWER),
    Endpoint("POST", "/v1/workflows", Role.REVIEWER,
             {"name": "matrix_flow", "steps": [{"id": "s", "set": {"a": 1}}]}),
    Endpoint("GET", "/v1/workflows/{workflow}", Role.REVIEWER),
    Endpoint("GET", "/v1/workflows/{workflow}/versions", Role.REVIEWER),
    Endpoint("GET", "/v1/workflows/{workflow}/versions/1", Role.REVIEWER),
    Endpoint("GET", "/v1/workflows/{workflow}/tasks", Role.REVIEWER),
    Endpoint("GET", "/v1/workflows/{workflow}/signals", Role.REVIEWER),
    Endpoint("POST", "/v1/workflows/{workflow}/rollback", Role.REVIEWER,
             {"version": 1, "reason": "back"}),
    Endpoint("GET", "/v1/tools/{tool}/signals", Role.REVIEWER),
    Endpoint("POST", "/v1/signals", Role.INGEST,
             {"kind": "feedback", "value": 1.0, "workflow": "{workflow}"}),
)


def send(client: httpx.Client, endpoint: Endpoint, **names: str) -> httpx.Response:
    kwargs: dict[str, Any] = ({} if endpoint.body is None
                              else {"json": endpoint.payload(**names)})
    return client.request(endpoint.method, endpoint.url(**names), **kwargs)


def snapshot(autodev: AutoDev, tenant: str) -> dict[str, Any]:
    """Everything of ``tenant`` an API call could change."""
    from auto_dev.models import (
        ApiToken,
        AuditEntry,
        CapabilityState,
        EventRecord,
        ReviewDecision,
        ToolMutation,
        ToolVersion,
        VersionSignal,
        Workflow,
        WorkflowTaskRecord,
        WorkflowVariant,
        WorkflowVersion,
    )

    with autodev.database.session(readonly=True) as session:
        def rows(*columns: Any) -> list[tuple[Any, ...]]:
            model = columns[0].class_
            return sorted(tuple(r) for r in session.execute(
                select(*columns).where(model.tenant_id == tenant)).all())

        return {
            "candidates": rows(ToolMutation.id, ToolMutation.status),
            "versions": rows(ToolVersion.id, ToolVersion.is_active),
            "maturity": rows(CapabilityState.agent_id, CapabilityState.capability,
                             CapabilityState.maturity),
            "tokens": rows(ApiToken.id, ApiToken.revoked_at),
            "episodes": rows(Episode.id),
            "events": rows(EventRecord.id),
            "decisions": rows(ReviewDecision.id),
            "audit": rows(AuditEntry.id),
            "workflows": rows(Workflow.id, Workflow.description),
            "workflow_versions": rows(WorkflowVersion.id, WorkflowVersion.is_active),
            "variants": rows(WorkflowVariant.id, WorkflowVariant.status),
            "workflow_tasks": rows(WorkflowTaskRecord.id),
            "signals": rows(VersionSignal.id),
        }
