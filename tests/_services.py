"""Skip-or-fail helpers for tests that need an outside service (Docker, PostgreSQL).

Locally such tests skip when the service is absent; CI sets AUTO_DEV_REQUIRE_DOCKER=1 and
AUTO_DEV_REQUIRE_POSTGRES=1 so that a missing service fails the run instead of hiding it.
"""

from __future__ import annotations

import os

import pytest


def require_service(name: str, env_var: str, available: bool, why: str) -> None:
    """Skip (or fail, when ``env_var`` is ``1``) unless ``available``."""
    if available:
        return
    if os.environ.get(env_var) == "1":
        pytest.fail(f"{name} is required ({env_var}=1) but unavailable: {why}")
    pytest.skip(f"{name} unavailable: {why}")
