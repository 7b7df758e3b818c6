"""LLM layer overhead and ledger accuracy, against a local OpenAI-compatible server.

Measures, side by side in one run and against the same server:

* calls/s of bare ``litellm.acompletion`` (the baseline), and of litellm's own ``Router`` with
  no ledger (for reference: what LLMClient replaces);
* calls/s through ``LLMClient`` with a daily budget (reserve + settle: two ledger writes per
  call, the budget checked against the tenant's day row, whatever the ledger's size) and
  without one (ledger only);
* sequentially and with 8 calls in flight;
* that the ledger's total cost equals the server's reported usage times the configured price,
  to the cent, over at least 1,000 calls.

The ledger starts a busy day: ``--ledger-rows`` rows (default 10,000) already written today for
each tenant, under another model name (kept out of the accuracy check), so that a budget check
whose cost grew with the ledger would show.

The server (:class:`auto_dev.testing.OpenAICompatibleServer`) runs in its own process, as a
provider would, so the client-side CPU per call is measured alone. Every variant calls a model
name of its own that litellm does not know: a ``Router`` registers its deployments' models in
litellm's process-wide price map, and a known model costs litellm about 1 ms less per call
(fewer failed look-ups), which would make the baseline faster for a reason that has nothing to
do with the layer measured. Rounds of the variants are
interleaved (in rotating order) and each round is compared with the baseline round next to it,
so bursts of load from other processes hit every variant alike; figures are medians.

Run: ``python benchmarks/llm.py [--calls 1000] [--rounds 50]``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Any

INPUT_PRICE = 2.5e-6  # USD per prompt token (gpt-4o-like)
OUTPUT_PRICE = 1.0e-5  # USD per completion token


class UsageLog:
    """Replies with varying usage and remembers what it reported, per model."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.reported: list[tuple[str, int, int]] = []

    def __call__(self, body: dict[str, Any]) -> Any:
        from auto_dev.testing import ServerReply

        with self.lock:
            self.count += 1
            n = self.count
            prompt, completion = 50 + (n * 37) % 900, 1 + (n * 53) % 400
            self.reported.append((str(body.get("model")), prompt, completion))
        return ServerReply(content="def f(x):\n    return x + 1\n", prompt_tokens=prompt,
                           completion_tokens=completion)


def serve(pipe: Connection) -> None:
    """Server process: send the base URL, serve until told to stop, send the usage log."""
    from auto_dev.testing import OpenAICompatibleServer

    usage = UsageLog()
    with OpenAICompatibleServer(default=usage) as server:
        pipe.send(server.base_url)
        pipe.recv()
    with usage.lock:
        pipe.send(list(usage.reported))


async def timed(
    n: int, concurrency: int, call: Callable[[], Awaitable[Any]]
) -> tuple[float, float]:
    """(calls per second, client CPU ms per call) for ``n`` calls, ``concurrency`` in flight."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with semaphore:
            await call()

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one() for _ in range(n)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return n / wall, cpu / n * 1000


async def measure(base_url: str, database: Any, calls: int, rounds: int) -> None:
    from auto_dev.config import LLMSettings
    from auto_dev.llm import _litellm
    from auto_dev.llm.client import LLMClient

    litellm = _litellm.load()
    messages = [{"role": "user", "content": "Fix the off-by-one in f. " * 8}]
    prices = {"openai/bench": {"input_cost_per_token": INPUT_PRICE,
                               "output_cost_per_token": OUTPUT_PRICE}}
    common: dict[str, Any] = {
        "model": "openai/bench", "api_base": base_url, "api_key": "sk-bench",
        "max_tokens": 512, "temperature": 0.0, "num_retries": 0, "prices": prices,
    }
    budgeted = LLMClient(LLMSettings(**common, daily_budget_usd=1e6), database,
                         tenant_id="budgeted")
    unbudgeted = LLMClient(LLMSettings(**common), database, tenant_id="ledger-only")

    async def bare() -> None:
        # The same request our layer sends, under another model name (kept out of the ledger
        # accuracy check).
        await litellm.acompletion(
            model="openai/bare", messages=messages, api_base=base_url, api_key="sk-bench",
            max_tokens=512, temperature=0.0, max_retries=0,
        )

    # Reference only: litellm's own Router (which LLMClient replaces), without any ledger. Its
    # own model name: the Router registers it in litellm's price map (see the docstring).
    router = litellm.Router(
        model_list=[{"model_name": "r", "litellm_params": {
            "model": "openai/routed", "api_base": base_url, "api_key": "sk-bench"}}],
        num_retries=0,
    )

    async def routed() -> None:
        await router.acompletion(model="r", messages=messages, max_tokens=512, temperature=0.0)

    variants: dict[str, Callable[[], Awaitable[Any]]] = {
        "bare litellm": bare,
        "litellm.Router (reference)": routed,
        "LLMClient + budget + ledger": lambda: budgeted.complete(messages),
        "LLMClient + ledger (no budget)": lambda: unbudgeted.complete(messages),
    }
    for call in variants.values():  # warm-up: HTTP clients, statement caches
        for _ in range(20):
            await call()
    per_round = max(1, calls // rounds)
    names = list(variants)
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for concurrency in (1, 8):
        for index in range(rounds):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                results.setdefault((name, concurrency), []).append(
                    await timed(per_round, concurrency, variants[name])
                )
    print(f"calls per variant and concurrency: {per_round * rounds} "
          f"in {rounds} interleaved rounds of {per_round}")
    for concurrency in (1, 8):
        print(f"\nconcurrency {concurrency}:")
        base_rounds = results[("bare litellm", concurrency)]
        for name in names:
            own = results[(name, concurrency)]
            rate = statistics.median(r[0] for r in own)
            cpu = statistics.median(r[1] for r in own)
            pairs = list(zip(base_rounds, own, strict=True))
            time_overhead = statistics.median(b[0] / o[0] - 1 for b, o in pairs)
            cpu_overhead = statistics.median(o[1] / b[1] - 1 for b, o in pairs)
            print(f"  {name:32s} {rate:7.1f} calls/s  {cpu:5.2f} ms client CPU/call  "
                  f"overhead vs bare: time {time_overhead:+6.1%}, CPU {cpu_overhead:+6.1%}")


def prefill(database: Any, rows: int) -> None:
    """Write ``rows`` settled ledger rows dated now for each benchmark tenant."""
    from datetime import UTC, datetime

    from sqlalchemy import insert

    from auto_dev.llm import ledger
    from auto_dev.models import LLMCall

    now = datetime.now(UTC)
    with database.session() as session:
        for tenant in ("budgeted", "ledger-only"):
            database.ensure_tenant(session, tenant)
            session.execute(insert(LLMCall), [
                ledger.call_row(tenant_id=tenant, model="openai/prefill", status="ok",
                                cost_usd=1e-6, prompt_tokens=100, completion_tokens=10,
                                created_at=now)
                for _ in range(rows)
            ])


def main(calls: int, rounds: int, ledger_rows: int) -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from auto_dev.db import Database
    from auto_dev.llm import ledger

    load_before = os.getloadavg()
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(child,))
    server.start()
    try:
        base_url = parent.recv()
        with tempfile.TemporaryDirectory() as tmp:
            database = Database(f"sqlite:///{tmp}/bench.db")
            database.upgrade()
            prefill(database, ledger_rows)
            print(f"load average before: {load_before[0]:.2f} (2 cores, shared); "
                  f"{ledger_rows} ledger rows per tenant already today")
            asyncio.run(measure(base_url, database, calls, rounds))
            parent.send("stop")
            reported = parent.recv()
            rows = [r for r in ledger.spend(database) if r.model == "openai/bench"]
            database.dispose()
    finally:
        server.join(timeout=10)
        if server.is_alive():
            server.terminate()

    ledger_total = sum(r.cost_usd for r in rows)
    ledger_calls = sum(r.calls for r in rows)
    ours = [(p, c) for model, p, c in reported if model == "bench"]
    expected = sum(p * INPUT_PRICE + c * OUTPUT_PRICE for p, c in ours)
    difference = abs(ledger_total - expected)
    verdict = "OK" if difference < 0.005 and ledger_calls == len(ours) else "MISMATCH"
    print(f"\nledger accuracy over {ledger_calls} calls through LLMClient "
          f"({len(ours)} answered by the server):")
    print(f"  ledger total        ${ledger_total:.6f}")
    print(f"  usage x price       ${expected:.6f}")
    print(f"  difference          ${difference:.9f}  -> to the cent: {verdict}")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls per variant (>= 1000)")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--ledger-rows", type=int, default=10_000,
                        help="ledger rows per tenant written today before measuring")
    args = parser.parse_args()
    main(args.calls, args.rounds, args.ledger_rows)
