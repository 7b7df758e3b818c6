"""Model groups, deployments and fallbacks parsed from settings."""

from __future__ import annotations

from typing import Any

import pytest

from auto_dev._exceptions import ConfigurationError, LLMNotConfiguredError
from auto_dev.config import LLMSettings, Settings
from auto_dev.llm.deployments import parse_deployments


def entry(name: str, model: str, **params: Any) -> dict[str, Any]:
    return {"model_name": name, "litellm_params": {"model": model, **params}}


class TestSimpleCase:
    """The three env vars make one group named after the model."""

    def test_model_api_base_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """AUTO_DEV_LLM_MODEL/_API_BASE/_API_KEY become one deployment with those params."""
        monkeypatch.setenv("AUTO_DEV_LLM_MODEL", "ollama/qwen2.5-coder")
        monkeypatch.setenv("AUTO_DEV_LLM_API_BASE", "http://localhost:11434")
        monkeypatch.setenv("AUTO_DEV_LLM_API_KEY", "secret")
        monkeypatch.delenv("AUTO_DEV_CONFIG", raising=False)
        table = parse_deployments(Settings().effective_llm())
        [deployment] = table.deployments
        assert table.default_group == deployment.group == deployment.id == "ollama/qwen2.5-coder"
        assert deployment.call_params() == {"api_base": "http://localhost:11434",
                                            "api_key": "secret"}
        assert deployment.describe()["has_key"] and "secret" not in str(deployment.describe())

    def test_not_configured(self) -> None:
        """No model at all is offline mode."""
        with pytest.raises(LLMNotConfiguredError):
            parse_deployments(LLMSettings())


class TestModelList:
    """Router-form model lists: groups, ids, fallbacks and validation."""

    def test_groups_ids_and_default(self) -> None:
        """Several deployments of a group get numbered ids; the first group is the default."""
        table = parse_deployments(LLMSettings(model_list=[
            entry("fast", "openai/a"), entry("fast", "openai/b"),
            {**entry("smart", "anthropic/c"), "model_info": {"id": "claude"}},
        ]))
        assert table.default_group == "fast"
        assert [d.id for d in table.groups["fast"]] == ["fast#1", "fast#2"]
        assert [d.id for d in table.groups["smart"]] == ["claude"]

    def test_model_names_a_group(self) -> None:
        """llm.model may name a group of the list instead of a litellm model."""
        table = parse_deployments(LLMSettings(model="smart", model_list=[
            entry("fast", "openai/a"), entry("smart", "openai/b")]))
        assert table.default_group == "smart" and len(table.deployments) == 2

    def test_fallback_chain(self) -> None:
        """chain() is the group then its fallbacks, each once."""
        table = parse_deployments(LLMSettings(
            model_list=[entry("a", "openai/a"), entry("b", "openai/b"), entry("c", "openai/c")],
            fallbacks=[{"a": ["b", "c"]}, {"a": ["b"]}],
        ))
        assert table.chain("a") == ["a", "b", "c"] and table.chain("b") == ["b"]

    def test_prices_are_not_passed_to_litellm(self) -> None:
        """Inline prices are kept apart from the call parameters."""
        [dep] = parse_deployments(LLMSettings(model_list=[
            entry("a", "openai/a", input_cost_per_token=1e-6, api_base="http://x")])).deployments
        assert dep.call_params() == {"api_base": "http://x"}
        assert dep.inline_price == {"input_cost_per_token": 1e-6}

    def test_env_references(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """os.environ/NAME is read at call time; unset names a configuration error."""
        [dep] = parse_deployments(LLMSettings(model_list=[
            entry("a", "openai/a", api_key="os.environ/AUTO_DEV_TEST_KEY")])).deployments
        monkeypatch.setenv("AUTO_DEV_TEST_KEY", "k1")
        assert dep.call_params()["api_key"] == "k1"
        monkeypatch.delenv("AUTO_DEV_TEST_KEY")
        with pytest.raises(ConfigurationError, match="AUTO_DEV_TEST_KEY"):
            dep.call_params()

    @pytest.mark.parametrize(
        ("settings", "where"),
        [
            ({"model_list": [{"litellm_params": {"model": "x"}}]}, "llm.model_list[0].model_name"),
            ({"model_list": [{"model_name": "a"}]}, "llm.model_list[0].litellm_params"),
            ({"model_list": [{"model_name": "a", "litellm_params": {}}]},
             "llm.model_list[0].litellm_params.model"),
            ({"model_list": [entry("a", "openai/a", stream=True)]},
             "llm.model_list[0].litellm_params.stream"),
            ({"model_list": [entry("a", "x"), {**entry("b", "y"), "model_info": {"id": "a"}}]},
             "llm.model_list[1]"),
            ({"model_list": [entry("a", "x")], "fallbacks": [{"a": ["zzz"]}]},
             "llm.fallbacks[0].a"),
            ({"model_list": [entry("a", "x")], "fallbacks": [{"q": ["a"]}]},
             "llm.fallbacks[0].q"),
        ],
    )
    def test_errors_name_the_setting(self, settings: dict[str, Any], where: str) -> None:
        """Every malformed entry raises ConfigurationError naming its path."""
        with pytest.raises(ConfigurationError) as info:
            parse_deployments(LLMSettings(**settings))
        assert str(info.value).startswith(where)
