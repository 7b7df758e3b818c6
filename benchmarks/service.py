"""The HTTP service's ingest speed against the in-process facade, and what survives a kill -9.

For each database (a fresh SQLite file; PostgreSQL too when reachable at
``AUTO_DEV_TEST_POSTGRES_URL``, in a fresh database dropped afterwards), in one run:

1. baseline: the same episodes recorded through ``AutoDev.record_episode`` in-process, one at a
   time and 16 at a time (asyncio tasks);
2. ``auto-dev serve`` as a real subprocess, and keep-alive HTTP clients (httpx, one per thread)
   posting the same episodes to ``/v1/episodes`` with an ``Idempotency-Key`` each: 1 client,
   then 16 concurrent clients. Episodes/s, and p50/p99 latency as the clients saw it.

Both rates count from the first episode to the last one recorded *and its events delivered*
to every subscriber (the usage recorder, the promotion watch, the engines): the service does
that work while it answers, so the facade's figure includes it too.

Then the crash check: 16 clients post episodes while the server is killed with SIGKILL mid-load;
the server is restarted on the same database, the clients retry what got no answer (same key),
and the script checks that every request that got a 2xx is in the database exactly once, that
no episode was recorded twice, and that every event of those episodes is delivered.

Everything runs on one 2-core machine: clients, server and database share it, so the HTTP
figures include the clients' own CPU time.

Run: python benchmarks/service.py [--episodes N] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from auto_dev import AutoDev, load_settings
from auto_dev.db import Database
from auto_dev.models import Episode, EventDelivery, EventRecord
from auto_dev.queries.tokens import TokenQueries

ROOT = Path(__file__).resolve().parents[1]
TENANT = "bench"
CONCURRENCY = 16
DEFAULT_POSTGRES_URL = "postgresql+psycopg:///autodev_test?host=/var/run/postgresql"


def episode(n: int) -> dict[str, Any]:
    return {"agent": f"agent-{n % 8}", "task": f"slugify title {n}", "success": n % 3 != 0,
            "tool_name": f"tool_{n % 10}", "inputs": {"args": [f"Title {n}"]},
            "output": f"title-{n}", "error_trace": None if n % 3 else "ValueError: bad title",
            "metadata": {"request": n}}


@dataclass
class Figures:
    label: str
    episodes: int
    seconds: float
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.episodes / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


# -- the in-process baseline ----------------------------------------------------------------------


async def facade(url: str, count: int, concurrency: int) -> Figures:
    settings = load_settings(database_url=url, tenant=TENANT, log_level="error",
                             sandbox="process")
    autodev = AutoDev(settings, load_plugins=False)
    await autodev.start()
    latencies: list[float] = []
    next_item = iter(range(count))

    async def worker() -> None:
        for n in next_item:
            started = time.perf_counter()
            await autodev.record_episode(**episode(n))
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0)  # let the other tasks and the deliveries run

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        await autodev.drain(timeout_s=120)  # their events delivered, as the service must too
        elapsed = time.perf_counter() - started
    finally:
        await autodev.aclose()
    return Figures(f"facade, {concurrency} at a time", count, elapsed, latencies)


# -- the service -------------------------------------------------------------------------------


class Server:
    """``auto-dev serve`` in a subprocess on a free port."""

    def __init__(self, url: str) -> None:
        self.url = url
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "AUTO_DEV_DATABASE_URL": self.url, "AUTO_DEV_SANDBOX": "process",
               "AUTO_DEV_LOG_LEVEL": "error", "PYTHONPATH": str(ROOT)}
        env.pop("AUTO_DEV_CONFIG", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "auto_dev.cli", "serve", "--port", str(self.port)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("auto-dev serve did not become ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def undelivered(url: str) -> int:
    database = Database(url)
    try:
        with database.session(readonly=True) as session:
            return int(session.scalar(select(func.count()).select_from(EventDelivery).where(
                EventDelivery.status != "delivered")) or 0)
    finally:
        database.dispose()


def over_http(base: str, url: str, token: str, count: int, clients: int, offset: int
              ) -> Figures:
    latencies: list[float] = []
    lock = threading.Lock()
    numbers = iter(range(offset, offset + count))

    def client() -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"},
                          timeout=60) as http:
            while True:
                with lock:
                    n = next(numbers, None)
                if n is None:
                    return
                started = time.perf_counter()
                response = http.post("/v1/episodes", json=episode(n),
                                     headers={"Idempotency-Key": uuid.uuid4().hex})
                elapsed = time.perf_counter() - started
                if response.status_code != 201:
                    raise RuntimeError(f"{response.status_code}: {response.text}")
                with lock:
                    latencies.append(elapsed)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    while undelivered(url):  # the episodes' events delivered too, as for the facade
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    return Figures(f"HTTP, {clients} keep-alive client(s)", count, elapsed, latencies)


# -- kill -9 mid-load ------------------------------------------------------------------------------


@dataclass
class CrashReport:
    acknowledged: int  # requests that got a 2xx (before the kill, or on retry after)
    unanswered_before_kill: int
    in_database: int
    missing: int
    duplicates: int
    undelivered: int
    restart_s: float


def crash_check(url: str, token: str, load_s: float = 3.0) -> CrashReport:
    server = Server(url)
    server.start()
    stop = threading.Event()
    lock = threading.Lock()
    acknowledged: dict[str, str] = {}  # key -> episode id
    unanswered: dict[str, dict[str, Any]] = {}  # key -> body, no answer (killed mid-request)
    counter = iter(range(10**9))

    def client() -> None:
        with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {token}"},
                          timeout=10) as http:
            while not stop.is_set():
                with lock:
                    n = 1_000_000 + next(counter)
                key, body = uuid.uuid4().hex, episode(n)
                try:
                    response = http.post("/v1/episodes", json=body,
                                         headers={"Idempotency-Key": key})
                except httpx.TransportError:
                    with lock:
                        unanswered[key] = body
                    return
                if response.status_code == 201:
                    with lock:
                        acknowledged[key] = response.json()["episode_id"]

    threads = [threading.Thread(target=client) for _ in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    time.sleep(load_s)
    server.kill()  # SIGKILL: no shutdown, no drain
    stop.set()
    for thread in threads:
        thread.join()
    lost_answers = len(unanswered)
    restarted = time.perf_counter()
    server.start()
    restart_s = time.perf_counter() - restarted
    try:
        with httpx.Client(base_url=server.base,
                          headers={"Authorization": f"Bearer {token}"}) as http:
            for key, body in unanswered.items():  # a platform's retry: same key, same body
                response = http.post("/v1/episodes", json=body, headers={"Idempotency-Key": key})
                if response.status_code == 201:
                    acknowledged[key] = response.json()["episode_id"]
        database = Database(url)
        ids = set(acknowledged.values())
        deadline = time.monotonic() + 60
        while True:
            with database.session(readonly=True) as session:
                found = set(session.scalars(select(Episode.id).where(Episode.id.in_(ids))))
                total = session.scalar(select(func.count()).select_from(Episode).where(
                    Episode.tenant_id == TENANT, Episode.task_description.like(
                        "slugify title 1______%"))) or 0
                pending = session.scalar(
                    select(func.count()).select_from(EventDelivery)
                    .join(EventRecord, EventRecord.id == EventDelivery.event_id)
                    .where(EventRecord.tenant_id == TENANT,
                           EventDelivery.status != "delivered")) or 0
            if pending == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        database.dispose()
    finally:
        server.stop()
    return CrashReport(acknowledged=len(acknowledged), unanswered_before_kill=lost_answers,
                       in_database=len(found), missing=len(ids - found),
                       duplicates=int(total) - len(found), undelivered=int(pending),
                       restart_s=restart_s)


# -- one database ----------------------------------------------------------------------------------


def run_backend(name: str, make_url_for: Any, count: int, console: Console
                ) -> tuple[list[Figures], CrashReport]:
    figures = []
    for concurrency in (1, CONCURRENCY):
        url = make_url_for(f"facade{concurrency}")
        figures.append(asyncio.run(facade(url, count, concurrency)))
        console.print(f"[dim]{name}: {figures[-1].label}: {figures[-1].rate:.0f}/s[/]")
    url = make_url_for("http")
    database = Database(url)
    database.upgrade()
    token = TokenQueries(database).create(TENANT, "ingest", name="bench").token
    database.dispose()
    server = Server(url)
    server.start()
    try:
        for clients in (1, CONCURRENCY):
            figures.append(over_http(server.base, url, token, count, clients,
                                     offset=clients * count))
            console.print(f"[dim]{name}: {figures[-1].label}: {figures[-1].rate:.0f}/s[/]")
    finally:
        server.stop()
    crash = crash_check(url, token)
    return figures, crash


def sqlite_urls() -> Any:
    folder = tempfile.mkdtemp(prefix="autodev-bench-")
    return lambda label: f"sqlite:///{folder}/{label}.db"


def postgres_urls(created: list[str]) -> Any:
    base = make_url(os.environ.get("AUTO_DEV_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    admin = create_engine(base, isolation_level="AUTOCOMMIT",
                          connect_args={"connect_timeout": 3})
    with admin.connect() as conn:
        conn.execute(text("SELECT 1"))

    def make(label: str) -> str:
        name = f"autodev_bench_{label}_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return base.set(database=name).render_as_string(hide_password=False)

    make.admin = admin  # type: ignore[attr-defined]
    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    console = Console()
    backends: list[tuple[str, Any]] = [("SQLite", sqlite_urls())]
    created: list[str] = []
    pg: Any = None
    if not args.no_postgres:
        try:
            pg = postgres_urls(created)
            backends.append(("PostgreSQL", pg))
        except Exception as exc:  # not reachable here: SQLite only, and say so
            console.print(f"[yellow]PostgreSQL skipped: {exc}[/]")
    table = Table(title=f"ingest over HTTP vs in-process, {args.episodes} episodes per row "
                        f"(load {os.getloadavg()[0]:.1f})")
    for column in ("database", "path", "episodes/s", "vs facade", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column in ("database", "path") else "right")
    crash_table = Table(title="kill -9 mid-load (16 clients), restart, retries with the same "
                              "Idempotency-Key")
    for column in ("database", "2xx answers", "no answer at kill", "in database", "missing",
                   "recorded twice", "undelivered events", "restart s"):
        crash_table.add_column(column, justify="left" if column == "database" else "right")
    try:
        for name, urls in backends:
            figures, crash = run_backend(name, urls, args.episodes, console)
            baseline = {1: figures[0].rate, CONCURRENCY: figures[1].rate}
            for index, fig in enumerate(figures):
                base = baseline[1 if index in (0, 2) else CONCURRENCY]
                p50, p99 = fig.percentile(0.5), fig.percentile(0.99)
                table.add_row(name, fig.label, f"{fig.rate:.0f}",
                              f"{fig.rate / base:.2f}x" if index >= 2 else "1.00x",
                              f"{p50:.2f}" if p50 is not None else "-",
                              f"{p99:.2f}" if p99 is not None else "-")
            crash_table.add_row(name, str(crash.acknowledged), str(crash.unanswered_before_kill),
                                str(crash.in_database), str(crash.missing),
                                str(crash.duplicates), str(crash.undelivered),
                                f"{crash.restart_s:.1f}")
    finally:
        if pg is not None:
            with pg.admin.connect() as conn:
                for name in created:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            pg.admin.dispose()
    console.print(table)
    console.print(crash_table)


if __name__ == "__main__":
    main()
