"""``auto-dev serve --workers 2`` as a process on one database: concurrent ingest spread over
both worker processes, every request answered 2xx stored exactly once, and SIGTERM drains the
request in flight and exits 0."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from auto_dev.db import Database
from auto_dev.models import Episode
from auto_dev.queries.tokens import TokenQueries

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 2
POSTS = 120
_PID = re.compile(r'^autodev_process_info\{pid="(\d+)"\} 1\.0$', re.M)
_INGESTED = re.compile(r'^autodev_ingested_total\{kind="episode"\} (\S+)$', re.M)
_STARTED = re.compile(r"Started server process \[(\d+)\]")


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    base: str
    token: str
    database: Database
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve_workers(url: str, tmp_path: Path) -> Iterator[Served]:
    """``auto-dev serve --workers 2`` on ``url`` until the block ends (killed if still up)."""
    database = Database(url)
    database.upgrade()
    token = TokenQueries(database).create("acme", "ingest").token
    port = _free_port()
    env = {**os.environ, "AUTO_DEV_DATABASE_URL": url, "AUTO_DEV_SANDBOX": "process",
           "PYTHONPATH": str(ROOT), "AUTO_DEV_SERVER_SHUTDOWN_TIMEOUT_S": "10"}
    env.pop("AUTO_DEV_CONFIG", None)
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "auto_dev.cli", "serve", "--port", str(port),
             "--workers", str(WORKERS)], cwd=ROOT, env=env, stdout=sink,
            stderr=subprocess.STDOUT)
    served = Served(proc, f"http://127.0.0.1:{port}", token, database, log)
    try:
        deadline = time.monotonic() + 90
        # Ready once both workers have started their app (each answers /readyz on its own).
        while len(_STARTED.findall(served.output())) < WORKERS or \
                served.output().count("Application startup complete") < WORKERS:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"serve --workers {WORKERS} did not start:\n{served.output()}")
            time.sleep(0.2)
        _wait_ready(served.base, deadline)
        yield served
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        database.dispose()


def _wait_ready(base: str, deadline: float) -> None:
    while True:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return
        if time.monotonic() > deadline:
            pytest.fail("the service never became ready")
        time.sleep(0.2)


def _post_until_recorded(served: Served, index: int) -> str:
    """Post one episode, retrying what was not answered 2xx with the same Idempotency-Key (as
    a client should). Returns the episode id of the 2xx answer."""
    key = f"episode-{index}"
    body = {"agent": "worker-test", "task": f"task {index}", "success": index % 3 != 0}
    for _ in range(30):
        try:
            with httpx.Client(base_url=served.base, timeout=30, headers={
                    "Authorization": f"Bearer {served.token}"}) as client:
                response = client.post("/v1/episodes", json=body,
                                       headers={"Idempotency-Key": key})
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        if response.status_code == 201:
            return str(response.json()["episode_id"])
        assert response.status_code == 503, response.text  # busy: retry the same key
        time.sleep(float(response.headers.get("retry-after", "0.5")) / 4)
    raise AssertionError(f"episode {index} was never recorded")


def _per_process_ingested(base: str) -> dict[str, float]:
    """Each worker's own count of ingested episodes, from /metrics scraped over new
    connections until every worker has answered."""
    seen: dict[str, float] = {}
    for _ in range(400):
        text = httpx.get(f"{base}/metrics", timeout=10).text
        [pid] = _PID.findall(text)
        counts = _INGESTED.findall(text)
        seen[pid] = float(counts[0]) if counts else 0.0
        if len(seen) == WORKERS:
            break
    return seen


def _worker_pids(served: Served) -> set[str]:
    return set(_STARTED.findall(served.output()))


def _check_concurrent_ingest(served: Served) -> None:
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(lambda i: _post_until_recorded(served, i), range(POSTS)))
    assert len(set(ids)) == POSTS
    with served.database.session(readonly=True) as session:
        stored = session.scalars(select(Episode.id).where(Episode.tenant_id == "acme")).all()
    assert sorted(stored) == sorted(ids)  # every 2xx stored, and exactly once
    per_process = _per_process_ingested(served.base)
    assert set(per_process) == _worker_pids(served), (per_process, served.output())
    assert sum(per_process.values()) == POSTS
    assert all(count > 0 for count in per_process.values()), per_process


def _check_sigterm_drains(served: Served) -> None:
    """A request whose body is half sent when SIGTERM arrives still gets its 201; then the
    parent and both workers exit, the parent with 0."""
    body = json.dumps({"agent": "worker-test", "task": "in flight",
                       "success": True}).encode()
    host, port = served.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /v1/episodes HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Authorization: Bearer " + served.token.encode() + b"\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10])
        time.sleep(0.5)  # a worker has the request
        stopped_at = time.monotonic()
        served.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        sock.sendall(body[10:])
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 201"), answer
    assert served.proc.wait(timeout=60) == 0, served.output()
    assert time.monotonic() - stopped_at < 30
    for pid in _worker_pids(served):
        assert not Path(f"/proc/{pid}").exists() or \
            "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    assert served.output().count("Application shutdown complete") == WORKERS
    with served.database.session(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Episode).where(
            Episode.task_description == "in flight")) == 1


class TestServeWorkers:
    """Two worker processes serve one database together and stop cleanly."""

    @pytest.mark.postgres
    def test_on_postgresql(self, postgres_url: str, tmp_path: Path) -> None:
        with serve_workers(postgres_url, tmp_path) as served:
            _check_concurrent_ingest(served)
            _check_sigterm_drains(served)

    def test_on_sqlite(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / f'workers-{uuid.uuid4().hex[:6]}.db'}"
        with serve_workers(url, tmp_path) as served:
            _check_concurrent_ingest(served)
            _check_sigterm_drains(served)
