"""The cost of the choke point: storing candidates through the gate versus raw ORM inserts.

Each iteration is one transaction on an SQLite file that stores a tool mutation and its
evaluation, as an engine does for every candidate it keeps:

* **baseline**: the two rows inserted with the ORM directly (no gate, no audit, no event);
* **store**: :meth:`CandidateStore.create_tool_mutation` + :meth:`record_evaluation`, i.e. two
  gate decisions (toggles, maturity, today's counts), two audit entries and one outbox event;
* **decisions**: :meth:`Gatekeeper.authorize` alone, one decision (with its audit entry) per
  transaction.

Prints rows per second, the store/baseline ratio and the load average (the machine may be shared).

    python benchmarks/gates_store.py [--n 500]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable

from auto_dev.candidates import CandidateStore
from auto_dev.db import Database
from auto_dev.events import EventBus
from auto_dev.gates import Gatekeeper, TenantSettings
from auto_dev.logging import configure_logging
from auto_dev.models import Evaluation, Tenant, ToolMutation

TENANT, AGENT = "bench", "agent-1"
CASES = [{"index": 0, "status": "ok", "output": 1, "duration_s": 0.001}]


def _setup(path: str) -> tuple[Database, CandidateStore, str, str]:
    database = Database(f"sqlite:///{path}")
    database.upgrade()
    gatekeeper = Gatekeeper()
    store = CandidateStore(database, gatekeeper, bus=EventBus(database))
    with database.session() as s:
        tenant = database.ensure_tenant(s, TENANT)
        tenant.settings = TenantSettings().with_changes(
            enabled=True, alpha_evolver=True, daily_candidates_per_agent=1_000_000,
            daily_candidates_per_tenant=1_000_000).model_dump(mode="json")
        agent = database.ensure_agent(s, TENANT, AGENT)
        gatekeeper.set_maturity(s, tenant_id=TENANT, agent_id=agent.id,
                                capability="auto_dev.alpha_evolver", maturity="supervised",
                                actor="bench")
        tool = store.register_tool(s, tenant_id=TENANT, name="inc", entrypoint="inc",
                                   code="def inc(x):\n    return x + 2\n")
        return database, store, tool.id, agent.id


def _timed(n: int, step: Callable[[int], None]) -> tuple[float, float]:
    """(per wall-clock second, per CPU second of this process): on a shared machine the second
    is the steadier figure."""
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        step(i)
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="transactions per variant")
    args = parser.parse_args()
    configure_logging("warning")
    with tempfile.TemporaryDirectory() as tmp:
        database, store, tool_id, agent_id = _setup(os.path.join(tmp, "bench.db"))

        def baseline(i: int) -> None:
            with database.session() as s:
                row = ToolMutation(tenant_id=TENANT, tool_id=tool_id, agent_id=agent_id,
                                   code=f"def inc(x):\n    return x + {i}\n", entrypoint="inc",
                                   operator="bench", objectives={"pass_rate": 1.0})
                s.add(row)
                s.flush()
                evaluation = Evaluation(tenant_id=TENANT, candidate_kind="tool_mutation",
                                        candidate_id=row.id, backend="process", cases=CASES,
                                        passed=1, total=1)
                s.add(evaluation)
                s.flush()
                row.evaluation_id = evaluation.id

        def gated(i: int) -> None:
            with database.session() as s:
                row = store.create_tool_mutation(
                    s, tenant_id=TENANT, tool_id=tool_id, agent_id=AGENT, operator="bench",
                    code=f"def inc(x):\n    return x - {i}\n", objectives={"pass_rate": 1.0})
                store.record_evaluation(s, tenant_id=TENANT, candidate_id=row.id,
                                        backend="process", cases=CASES, passed=1, total=1)

        def decision(_i: int) -> None:
            with database.session() as s:
                store.gatekeeper.authorize(s, tenant_id=TENANT, agent_id=AGENT,
                                           capability="auto_dev.alpha_evolver",
                                           action="create_candidate")

        _timed(20, baseline)  # warm-up: connection pool, statement caches
        _timed(20, gated)
        raw = _timed(args.n, baseline)
        through = _timed(args.n, gated)
        decisions = _timed(args.n, decision)
        with database.session() as s:
            assert s.get(Tenant, TENANT) is not None
        database.dispose()
    load = os.getloadavg()
    print("                        per wall s   per CPU s")
    print(f"baseline (raw ORM)     {raw[0]:10.0f}  {raw[1]:10.0f}  candidates")
    print(f"through CandidateStore {through[0]:10.0f}  {through[1]:10.0f}  candidates   "
          f"ratio {through[0] / raw[0]:.2f}x wall, {through[1] / raw[1]:.2f}x CPU")
    print(f"gate decisions alone   {decisions[0]:10.0f}  {decisions[1]:10.0f}  decisions")
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
