"""Fixtures for the gates and candidates tests: a migrated database, one tenant, agent, tool."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from auto_dev.candidates import CandidateStore
from auto_dev.candidates.review import ReviewService
from auto_dev.db import Database
from auto_dev.events import EventBus
from auto_dev.gates import Gatekeeper, TenantSettings
from auto_dev.models import Tenant, ToolMutation

TENANT = "acme"
AGENT = "agent-1"
TOOL_CODE = "def inc(x):\n    return x + 2\n"
FIXED_CODE = "def inc(x):\n    return x + 1\n"

ON = {"enabled": True, "alpha_evolver": True, "memento_skills": True, "workflows": True}


class Clock:
    """A controllable UTC clock that ticks one millisecond per reading (strict ordering)."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class World:
    database: Database
    gatekeeper: Gatekeeper
    store: CandidateStore
    review: ReviewService
    bus: EventBus
    clock: Clock
    tool_id: str = ""
    agent_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def configure(self, tenant_id: str = TENANT, **changes: Any) -> None:
        with self.database.session() as s:
            tenant = self.database.ensure_tenant(s, tenant_id)
            tenant.settings = TenantSettings.from_raw(tenant.settings).with_changes(
                **changes).model_dump(mode="json")

    def set_raw_settings(self, raw: Any, tenant_id: str = TENANT) -> None:
        with self.database.session() as s:
            row = s.get(Tenant, tenant_id)
            assert row is not None
            row.settings = raw

    def maturity(self, level: str, capability: str = "auto_dev.alpha_evolver",
                 agent: str = AGENT, tenant_id: str = TENANT) -> None:
        with self.database.session() as s:
            self.database.ensure_agent(s, tenant_id, agent)
            self.gatekeeper.set_maturity(s, tenant_id=tenant_id, agent_id=agent,
                                         capability=capability, maturity=level, actor="admin",
                                         reason="test setup")

    def mutation(self, code: str = FIXED_CODE, *, tenant_id: str = TENANT,
                 tool_id: str | None = None, agent: str | None = AGENT, **kw: Any) -> str:
        with self.database.session() as s:
            row = self.store.create_tool_mutation(
                s, tenant_id=tenant_id, tool_id=tool_id or self.tool_id, code=code,
                operator=kw.pop("operator", "ast.const"), agent_id=agent, **kw)
            return row.id

    def evaluate(self, candidate_id: str, verdict: str = "passed", *, passed: int = 2,
                 total: int = 2, objectives: dict[str, float] | None = None,
                 tenant_id: str = TENANT, **kw: Any) -> None:
        cases = [{"index": i, "status": "ok" if i < passed else "wrong_answer",
                  "output": i, "error": None, "stdout": "", "duration_s": 0.001,
                  "peak_memory_kb": 100} for i in range(total)]
        with self.database.session() as s:
            self.store.record_evaluation(
                s, tenant_id=tenant_id, candidate_id=candidate_id, backend="process",
                cases=cases, passed=passed, total=total,
                objectives=objectives if objectives is not None else {
                    "pass_rate": passed / total if total else 0.0},
                verdict=verdict, **kw)

    def passed_mutation(self, code: str = FIXED_CODE, **kw: Any) -> str:
        cid = self.mutation(code, **kw)
        self.evaluate(cid, tenant_id=kw.get("tenant_id", TENANT))
        return cid

    def status(self, candidate_id: str) -> str:
        with self.database.session(readonly=True) as s:
            row = s.get(ToolMutation, candidate_id)
            assert row is not None
            return row.status


def build_world(database: Database, clock: Clock | None = None) -> World:
    clock = clock or Clock(datetime.now(UTC))
    gatekeeper = Gatekeeper(clock=clock)
    bus = EventBus(database)
    store = CandidateStore(database, gatekeeper, bus=bus)
    world = World(database, gatekeeper, store, ReviewService(database, store), bus, clock)
    with database.session() as s:
        database.ensure_tenant(s, TENANT)
        world.agent_id = database.ensure_agent(s, TENANT, AGENT).id
        tool = store.register_tool(s, tenant_id=TENANT, name="inc", code=TOOL_CODE,
                                   entrypoint="inc", description="adds one")
        world.tool_id = tool.id
    world.configure(**ON)
    world.maturity("supervised")
    return world


@pytest.fixture
def world(database: Database) -> Iterator[World]:
    """Tenant ``acme`` with auto-dev, alpha_evolver, memento and workflows on; ``agent-1``
    supervised for alpha_evolver; tool ``inc`` (buggy: adds two) at v1."""
    yield build_world(database)
