"""Settings: AUTO_DEV_* variables over an optional TOML file over defaults; frozen, validated."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auto_dev import ConfigurationError
from auto_dev.config import DEFAULT_DATABASE_URL, Settings, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("AUTO_DEV_"):
            monkeypatch.delenv(key)


class TestSources:
    """Where values come from, and which wins."""

    def test_defaults_are_embedded(self) -> None:
        """No configuration means a SQLite file, auto sandbox and offline mode."""
        settings = load_settings()
        assert settings.database_url == DEFAULT_DATABASE_URL
        assert settings.sandbox == "auto"
        assert not settings.effective_llm().configured

    def test_env_over_toml_over_defaults(self, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
        """The TOML file sets values; an env var beats it; the [llm] table is read."""
        config = tmp_path / "auto-dev.toml"
        config.write_text(
            'database_url = "sqlite:///from-toml.db"\nsandbox = "process"\n'
            '[llm]\nmodel = "ollama/qwen2.5-coder"\nnum_retries = 4\n'
            'daily_budget_usd = 2.5\n'
            '[llm.prices."ollama/qwen2.5-coder"]\ninput_cost_per_token = 0.0\n')
        monkeypatch.setenv("AUTO_DEV_CONFIG", str(config))
        monkeypatch.setenv("AUTO_DEV_SANDBOX", "docker")
        settings = load_settings()
        assert settings.database_url == "sqlite:///from-toml.db"
        assert settings.sandbox == "docker"
        llm = settings.effective_llm()
        assert llm.model == "ollama/qwen2.5-coder" and llm.num_retries == 4
        assert llm.daily_budget_usd == 2.5

    def test_three_simple_llm_variables(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """AUTO_DEV_LLM_MODEL/_API_BASE/_API_KEY configure a model without a file."""
        monkeypatch.setenv("AUTO_DEV_LLM_MODEL", "openai/gpt-4o-mini")
        monkeypatch.setenv("AUTO_DEV_LLM_API_BASE", "http://127.0.0.1:9/v1")
        monkeypatch.setenv("AUTO_DEV_LLM_API_KEY", "sk-x")
        llm = load_settings().effective_llm()
        assert (llm.model, llm.api_base, llm.api_key) == (
            "openai/gpt-4o-mini", "http://127.0.0.1:9/v1", "sk-x")
        assert llm.configured


class TestValidation:
    """Bad configuration is an error naming the setting."""

    @pytest.mark.parametrize(("var", "value", "field"), [
        ("AUTO_DEV_SANDBOX", "vm", "sandbox"),
        ("AUTO_DEV_DATABASE_URL", "not-a-url", "database_url"),
        ("AUTO_DEV_CASE_TIMEOUT_S", "-1", "case_timeout_s"),
    ])
    def test_bad_env_names_the_field(self, monkeypatch: pytest.MonkeyPatch, var: str,
                                     value: str, field: str) -> None:
        """The error message starts with the offending field."""
        monkeypatch.setenv(var, value)
        with pytest.raises(ConfigurationError, match=f"^{field}"):
            load_settings()

    def test_missing_or_broken_file(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """AUTO_DEV_CONFIG naming a missing or invalid file is a configuration error."""
        monkeypatch.setenv("AUTO_DEV_CONFIG", str(tmp_path / "missing.toml"))
        with pytest.raises(ConfigurationError, match="does not exist"):
            load_settings()
        broken = tmp_path / "broken.toml"
        broken.write_text("database_url = \n")
        monkeypatch.setenv("AUTO_DEV_CONFIG", str(broken))
        with pytest.raises(ConfigurationError, match="not valid TOML"):
            load_settings()

    def test_settings_are_frozen(self) -> None:
        """Changing a setting means building a new object."""
        settings = load_settings()
        with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
            settings.sandbox = "process"  # type: ignore[misc]
        assert settings.model_copy(update={"sandbox": "process"}).sandbox == "process"

    @given(st.floats(allow_nan=False, allow_infinity=False))
    def test_timeout_bounds(self, value: float) -> None:
        """Any positive case timeout is accepted; zero or negative is refused."""
        if value > 0:
            assert Settings(case_timeout_s=value).case_timeout_s == value
        else:
            with pytest.raises(ConfigurationError):
                load_settings(case_timeout_s=value)
