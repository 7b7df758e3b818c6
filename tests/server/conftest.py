"""Fixtures of the service tests: a running service over a migrated SQLite file, with tokens of
every role in tenants ``acme`` and ``beta``."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server._support import Service, service


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, _sqlite_template: Path) -> Iterator[Service]:
    """One service for the whole module (tests must not depend on each other's rows)."""
    path = tmp_path_factory.mktemp("service") / "auto_dev.db"
    shutil.copyfile(_sqlite_template, path)
    with service(f"sqlite:///{path}") as running:
        yield running


@pytest.fixture
def fresh(database_url: str) -> Iterator[Service]:
    """A service of its own, over a new database."""
    with service(database_url) as running:
        yield running
