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


class TestUnknownNames:
    """Unknown AUTO_DEV_* variables and TOML keys are not ignored silently."""

    def test_misspelt_variable_and_key_are_named_with_a_suggestion(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Each unknown name is warned about once, with the closest known name."""
        from structlog.testing import capture_logs

        from auto_dev import config

        monkeypatch.setattr(config, "_warned", set())
        file = tmp_path / "auto-dev.toml"
        file.write_text('tenant = "acme"\nsandbox_imgae = "x"\n')
        monkeypatch.setenv("AUTO_DEV_CONFIG", str(file))
        monkeypatch.setenv("AUTO_DEV_TENNANT", "beta")
        with capture_logs() as logs:
            settings = load_settings()
            load_settings()  # a second load (the CLI loads several times) does not repeat them
        assert settings.tenant == "acme"  # the misspelt variable changed nothing
        warned = {(e["name"], e["did_you_mean"]) for e in logs
                  if e["event"] == "unknown_setting_ignored"}
        assert warned == {("AUTO_DEV_TENNANT", "AUTO_DEV_TENANT"),
                          ("sandbox_imgae (in the TOML file)", "sandbox_image")}
        assert len([e for e in logs if e["event"] == "unknown_setting_ignored"]) == 2
        assert all(e["log_level"] == "warning" for e in logs)

    def test_known_names_are_not_reported(self) -> None:
        """Every field, the [llm] double-underscore form, lower case and the other documented
        variables are known; names outside AUTO_DEV_* are none of auto-dev's business."""
        from auto_dev._config_reference import OTHER_VARIABLES
        from auto_dev.config import unknown_names

        environ = {f"AUTO_DEV_{name.upper()}": "1" for name in Settings.model_fields}
        environ.update({name: "1" for name in OTHER_VARIABLES})
        environ.update({"AUTO_DEV_LLM__NUM_RETRIES": "3", "auto_dev_tenant": "x",
                        "AUTO_DEV_TEST_CANARY": "1", "PATH": "/bin", "AUTODEV_X": "1"})
        assert unknown_names(environ, {"tenant": "t", "llm": {}}) == []

    def test_far_off_name_has_no_suggestion(self) -> None:
        """A name like no known one is reported without a misleading guess."""
        from auto_dev.config import unknown_names

        assert unknown_names({"AUTO_DEV_QQQQQQQQQQQQQQQQQQ": "1"}, {}) == [
            ("AUTO_DEV_QQQQQQQQQQQQQQQQQQ", None)]
