"""Fixtures for engine, service and scheduler tests: a real AutoDev over a migrated SQLite file
with the real process sandbox (candidate code never runs in the test process)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from auto_dev.config import load_settings
from auto_dev.db import Database
from auto_dev.sandbox.process import ProcessSandbox
from auto_dev.service import AutoDev

BUGGY_DISCOUNT = (
    "def apply_discount(price, percent):\n"
    "    return round(price * (1 + percent / 100), 2)\n"
)
DISCOUNT_TESTS: list[dict[str, Any]] = [
    {"args": [100.0, 10], "expected": 90.0},
    {"args": [50.0, 0], "expected": 50.0},
    {"args": [200.0, 50], "expected": 100.0},
    {"args": [80.0, 25], "expected": 60.0},
]
ON = {"enabled": True, "alpha_evolver": True, "memento_skills": True}


@pytest.fixture
async def sandbox() -> AsyncIterator[ProcessSandbox]:
    box = ProcessSandbox(workers=2)
    try:
        yield box
    finally:
        await box.aclose()


@pytest.fixture
async def autodev(database: Database, database_url: str,
                  sandbox: ProcessSandbox) -> AsyncIterator[AutoDev]:
    settings = load_settings(database_url=database_url, tenant="t1")
    instance = AutoDev(settings, database=database, sandbox=sandbox, load_plugins=False)
    await instance.start()
    try:
        yield instance
    finally:
        await instance.aclose()
