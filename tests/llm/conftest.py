"""Fixtures for the LLM layer: a live OpenAI-compatible server and clients pointed at it.

The server is :class:`auto_dev.testing.OpenAICompatibleServer` (reusable by any test); it is
function-scoped because litellm caches HTTP clients per ``api_base`` and each test runs in its
own event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from auto_dev.config import LLMSettings
from auto_dev.db import Database
from auto_dev.llm.client import LLMClient
from auto_dev.testing import OpenAICompatibleServer

MakeClient = Callable[..., LLMClient]


@pytest.fixture
def server() -> Iterator[OpenAICompatibleServer]:
    with OpenAICompatibleServer() as srv:
        yield srv


def llm_settings(server: OpenAICompatibleServer, **overrides: Any) -> LLMSettings:
    """Settings for model ``openai/primary`` on ``server``: fast retries, short timeouts."""
    base: dict[str, Any] = {
        "model": "openai/primary",
        "api_base": server.base_url,
        "api_key": "sk-test",
        "num_retries": 2,
        "retry_backoff_s": 0.0,
        "timeout_s": 5.0,
        "max_tokens": 64,
        "prices": {"openai/primary": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}},
    }
    base.update(overrides)
    return LLMSettings(**base)


def two_group_settings(server: OpenAICompatibleServer, **overrides: Any) -> LLMSettings:
    """A ``primary`` group falling back to ``backup``, both on ``server``."""
    return llm_settings(
        server,
        model="primary",
        model_list=[
            {
                "model_name": "primary",
                "litellm_params": {
                    "model": "openai/primary-model",
                    "api_base": server.base_url,
                    "api_key": "sk-a",
                },
            },
            {
                "model_name": "backup",
                "litellm_params": {
                    "model": "openai/backup-model",
                    "api_base": server.base_url,
                    "api_key": "sk-b",
                },
            },
        ],
        fallbacks=[{"primary": ["backup"]}],
        prices={
            "primary": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
            "backup": {"input_cost_per_token": 3e-6, "output_cost_per_token": 4e-6},
        },
        **overrides,
    )


@pytest.fixture
def make_client(server: OpenAICompatibleServer, database: Database) -> Iterator[MakeClient]:
    """Build clients on ``server`` and ``database``; they are closed after the test."""
    made: list[LLMClient] = []

    def make(settings: LLMSettings | None = None, **kwargs: Any) -> LLMClient:
        client = LLMClient(settings or llm_settings(server), database, tenant_id="t1", **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


USER = [{"role": "user", "content": "fix my function please"}]
