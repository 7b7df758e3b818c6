"""LLM layer overhead and ledger accuracy, against a local OpenAI-compatible server.

Measures, side by side in one run and against the same server:

* calls/s of bare ``litellm.acompletion`` (the baseline);
* calls/s through ``LLMClient`` with a daily budget (reserve + settle: two ledger transactions
  per call, the budget sum included) and without one (ledger only);
* sequentially and with several calls in flight;
* that the ledger's total cost equals the server's reported usage times the configured price,
  to the cent, over at least 1,000 calls.

Rounds of each variant are interleaved so that load from other processes hits all of them alike;
the figure per variant is the median round. Run: ``python benchmarks/llm.py [--calls 1000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

INPUT_PRICE = 2.5e-6  # USD per prompt token (gpt-4o-like)
OUTPUT_PRICE = 1.0e-5  # USD per completion token


class UsageLog:
    """Replies with varying usage and remembers what it reported."""

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


async def timed(
    n: int, concurrency: int, call: Callable[[], Awaitable[Any]]
) -> tuple[float, float]:
    """(calls per second, CPU ms per call) for ``n`` calls with ``concurrency`` in flight."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with semaphore:
            await call()

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one() for _ in range(n)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return n / wall, cpu / n * 1000


async def main(calls: int, rounds: int) -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from auto_dev.config import LLMSettings
    from auto_dev.db import Database
    from auto_dev.llm import _litellm, ledger
    from auto_dev.llm.client import LLMClient
    from auto_dev.testing import OpenAICompatibleServer

    load_before = os.getloadavg()
    litellm = _litellm.load()
    usage = UsageLog()
    messages = [{"role": "user", "content": "Fix the off-by-one in f. " * 8}]
    with tempfile.TemporaryDirectory() as tmp, OpenAICompatibleServer(default=usage) as server:
        database = Database(f"sqlite:///{tmp}/bench.db")
        database.upgrade()
        prices = {"openai/bench": {"input_cost_per_token": INPUT_PRICE,
                                   "output_cost_per_token": OUTPUT_PRICE}}
        common = {"model": "openai/bench", "api_base": server.base_url, "api_key": "sk-bench",
                  "max_tokens": 512, "temperature": 0.0, "num_retries": 0, "prices": prices}
        budgeted = LLMClient(LLMSettings(**common, daily_budget_usd=1e6), database,
                             tenant_id="budgeted")
        unbudgeted = LLMClient(LLMSettings(**common), database, tenant_id="ledger-only")

        async def bare() -> None:
            await litellm.acompletion(
                model="openai/bare", messages=messages, api_base=server.base_url,
                api_key="sk-bench", max_tokens=512, temperature=0.0, max_retries=0,
            )

        variants: dict[str, Callable[[], Awaitable[Any]]] = {
            "bare litellm": bare,
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
                # Rotate the order so no variant always runs right after another one.
                shift = index % len(names)
                for name in names[shift:] + names[:shift]:
                    results.setdefault((name, concurrency), []).append(
                        await timed(per_round, concurrency, variants[name])
                    )

        print(f"calls per variant and concurrency: {per_round * rounds} "
              f"in {rounds} interleaved rounds of {per_round}")
        print(f"load average before: {load_before[0]:.2f} (2 cores, shared)")
        for concurrency in (1, 8):
            print(f"\nconcurrency {concurrency}:")
            base_rounds = results[("bare litellm", concurrency)]
            for name in names:
                own = results[(name, concurrency)]
                rate = statistics.median(r[0] for r in own)
                cpu = statistics.median(r[1] for r in own)
                # Paired: each round against the baseline round measured next to it, so a
                # burst of load from other processes cancels out.
                paired = statistics.median(b[0] / o[0] - 1 for b, o in zip(base_rounds, own,
                                                                            strict=True))
                cpu_paired = statistics.median(o[1] / b[1] - 1 for b, o in zip(base_rounds, own,
                                                                                strict=True))
                print(f"  {name:32s} {rate:7.1f} calls/s  {cpu:5.2f} ms CPU/call  "
                      f"overhead vs bare: time {paired:+6.1%}, CPU {cpu_paired:+6.1%}")

        # Ledger accuracy: the server's reported usage for our clients' requests (model
        # "bench"; the bare baseline uses "bare") times the configured prices.
        ours = ledger.spend(database)
        ledger_total = sum(r.cost_usd for r in ours)
        ledger_calls = sum(r.calls for r in ours)
        reported = [(p, c) for model, p, c in usage.reported if model == "bench"]
        expected = sum(p * INPUT_PRICE + c * OUTPUT_PRICE for p, c in reported)
        difference = abs(ledger_total - expected)
        same_count = ledger_calls == len(reported)
        verdict = "OK" if difference < 0.005 and same_count else "MISMATCH"
        print(f"\nledger accuracy over {ledger_calls} calls through LLMClient "
              f"({len(reported)} answered by the server):")
        print(f"  ledger total        ${ledger_total:.6f}")
        print(f"  usage x price       ${expected:.6f}")
        print(f"  difference          ${difference:.9f}  -> to the cent: {verdict}")
        print(f"\nload average after: {os.getloadavg()[0]:.2f}")
        database.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls per variant (>= 1000)")
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds))
