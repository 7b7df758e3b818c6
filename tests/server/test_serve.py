"""``auto-dev serve`` as a process: it serves, and SIGTERM lets the request in flight finish,
then exits 0 promptly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from auto_dev.db import Database
from auto_dev.models import Episode
from auto_dev.queries.tokens import TokenQueries

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, str, Database]]:
    url = f"sqlite:///{tmp_path / 'service.db'}"
    database = Database(url)
    database.upgrade()
    token = TokenQueries(database).create("acme", "ingest").token
    port = _free_port()
    env = {**os.environ, "AUTO_DEV_DATABASE_URL": url, "AUTO_DEV_SANDBOX": "process",
           "PYTHONPATH": str(ROOT), "AUTO_DEV_SERVER_SHUTDOWN_TIMEOUT_S": "10"}
    env.pop("AUTO_DEV_CONFIG", None)
    proc = subprocess.Popen([sys.executable, "-m", "auto_dev.cli", "serve", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            output = proc.communicate()[0].decode(errors="replace")
            pytest.fail(f"auto-dev serve did not become ready:\n{output}")
        time.sleep(0.1)
    try:
        yield proc, base, token, database
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        database.dispose()


class TestServeProcess:
    """The real command, stopped the way an orchestrator stops it."""

    def test_sigterm_drains_the_request_in_flight_and_exits_0(
            self, served: tuple[subprocess.Popen[bytes], str, str, Database]) -> None:
        proc, base, token, database = served
        body = json.dumps({"agent": "a", "task": "in flight", "success": True}).encode()
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=20) as sock:
            sock.sendall(b"POST /v1/episodes HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/json\r\n"
                         b"Authorization: Bearer " + token.encode() + b"\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
                         + body[:10])
            time.sleep(0.3)  # the request has started
            stopped_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            sock.sendall(body[10:])
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 201"), answer
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - stopped_at < 20
        with database.session(readonly=True) as session:
            assert session.scalar(select(func.count()).select_from(Episode)) == 1
        output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        assert "Application shutdown complete" in output

    def test_sigterm_when_idle_exits_0_at_once(
            self, served: tuple[subprocess.Popen[bytes], str, str, Database]) -> None:
        proc, base, token, _ = served
        with httpx.Client(timeout=30, base_url=base,
                          headers={"Authorization": f"Bearer {token}"}) as client:
            assert client.post("/v1/episodes", json={"agent": "a", "task": "t",
                                                     "success": True}).status_code == 201
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - started < 10
