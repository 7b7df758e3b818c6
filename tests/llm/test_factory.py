"""Building the LLM layer from settings; offline mode when no model is configured."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog
from structlog.testing import capture_logs

from auto_dev.config import LLMSettings, Settings
from auto_dev.db import Database
from auto_dev.llm import factory
from auto_dev.llm.client import LLMClient
from auto_dev.llm.mutator import LLMMutator
from auto_dev.llm.skills import SkillWriter
from auto_dev.testing import FakeLLM


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AUTO_DEV_LLM_MODEL", "AUTO_DEV_LLM_API_BASE", "AUTO_DEV_LLM_API_KEY",
                 "AUTO_DEV_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def info_logs() -> Iterator[None]:
    """Let info lines through (the suite runs at warning level) for the duration of a test."""
    old = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    yield
    structlog.configure(**old)


class TestOffline:
    """No model configured: None everywhere, and a log line saying so."""

    @pytest.mark.usefixtures("info_logs")
    def test_offline_is_none_and_logged(self) -> None:
        """build_client, build_llm_mutators and build_skill_writer all say offline."""
        settings = Settings()
        with capture_logs() as logs:
            assert factory.build_client(settings) is None
            assert factory.build_llm_mutators(settings, None) == []
            assert factory.build_skill_writer(settings, None) is None
        assert [e["event"] for e in logs] == ["llm.offline_mode"] * 3


class TestConfigured:
    """A configured model gives a client, an LLM mutator and a skill writer."""

    def test_env_vars_configure_everything(
        self, monkeypatch: pytest.MonkeyPatch, database: Database
    ) -> None:
        """AUTO_DEV_LLM_* alone is enough; the client charges the settings' tenant."""
        monkeypatch.setenv("AUTO_DEV_LLM_MODEL", "ollama/qwen2.5-coder")
        monkeypatch.setenv("AUTO_DEV_LLM_API_BASE", "http://127.0.0.1:9")
        settings = Settings(tenant="acme", llm={"repair_rounds": 5})
        client = factory.build_client(settings, database)
        assert isinstance(client, LLMClient) and client.default_tenant == "acme"
        assert client.table.default_group == "ollama/qwen2.5-coder"
        [mutator] = factory.build_llm_mutators(settings, client)
        assert isinstance(mutator, LLMMutator) and mutator.name == "llm"
        writer = factory.build_skill_writer(settings, client)
        assert isinstance(writer, SkillWriter) and writer.repair_rounds == 5
        assert writer.limits.timeout_s == settings.case_timeout_s

    def test_database_url_fallback(self, database_url: str) -> None:
        """Without a database the client keeps the URL and opens it lazily."""
        client = factory.build_client(Settings(llm_model="openai/x", database_url=database_url))
        assert client is not None and client._database is None

    def test_llm_settings_and_fraction_zero(self, database: Database) -> None:
        """Plain LLMSettings work; a mutation fraction of 0 means no LLM mutators."""
        settings = LLMSettings(model="openai/x", llm_mutation_fraction=0.0)
        assert factory.build_client(settings, database) is not None
        assert factory.build_llm_mutators(settings, FakeLLM()) == []
        assert isinstance(factory.build_skill_writer(settings, FakeLLM()), SkillWriter)
