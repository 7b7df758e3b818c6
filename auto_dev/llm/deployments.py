"""Deployments and model groups from :class:`~auto_dev.config.LLMSettings` (no litellm needed).

The configuration is in litellm Router form::

    [llm]
    model = "primary"                          # the group calls go to by default
    fallbacks = [{primary = ["backup"]}]
    [[llm.model_list]]
    model_name = "primary"
    litellm_params = {model = "openai/gpt-4o-mini", api_key = "os.environ/OPENAI_API_KEY"}
    [[llm.model_list]]
    model_name = "backup"
    litellm_params = {model = "ollama/qwen2.5-coder", api_base = "http://localhost:11434"}

The simple case (``AUTO_DEV_LLM_MODEL`` and friends) becomes one group named after the model.
A value ``"os.environ/NAME"`` is read from the environment at call time, as litellm's Router does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from auto_dev._exceptions import ConfigurationError, LLMNotConfiguredError
from auto_dev.config import LLMSettings

_ENV_PREFIX = "os.environ/"
# Pricing keys are ours to interpret (see budget.Pricing); passed to litellm they would register
# the model's price process-wide.
_PRICE_KEYS = frozenset({"input_cost_per_token", "output_cost_per_token"})
# Keys the client sets itself on every call.
_RESERVED_KEYS = frozenset({"messages", "stream", "max_retries", "num_retries"})


@dataclass(frozen=True, slots=True)
class Deployment:
    """One concrete endpoint: a litellm model string plus its parameters, in a model group."""

    id: str
    group: str
    model: str
    params: Mapping[str, Any] = field(default_factory=dict)
    inline_price: Mapping[str, Any] | None = None

    @property
    def api_base(self) -> str | None:
        value = self.params.get("api_base")
        return str(value) if value is not None else None

    def call_params(self) -> dict[str, Any]:
        """Parameters for litellm, with ``os.environ/NAME`` references resolved now."""
        out: dict[str, Any] = {}
        for key, value in self.params.items():
            if isinstance(value, str) and value.startswith(_ENV_PREFIX):
                name = value[len(_ENV_PREFIX) :]
                resolved = os.environ.get(name)
                if resolved is None:
                    raise ConfigurationError(
                        f"llm deployment {self.id!r}: {key} refers to environment variable "
                        f"{name!r}, which is not set"
                    )
                value = resolved
            out[key] = value
        return out

    def describe(self) -> dict[str, Any]:
        """A display form without secrets."""
        return {
            "id": self.id,
            "group": self.group,
            "model": self.model,
            "api_base": self.api_base,
            "has_key": "api_key" in self.params,
        }


@dataclass(frozen=True, slots=True)
class DeploymentTable:
    """Every model group with its deployments, the default group and the fallback chains."""

    groups: Mapping[str, tuple[Deployment, ...]]
    default_group: str
    fallbacks: Mapping[str, tuple[str, ...]]

    @property
    def deployments(self) -> list[Deployment]:
        return [d for group in self.groups.values() for d in group]

    def chain(self, group: str) -> list[str]:
        """``group`` followed by its fallbacks, each once."""
        out = [group]
        for name in self.fallbacks.get(group, ()):
            if name not in out:
                out.append(name)
        return out


def parse_deployments(settings: LLMSettings) -> DeploymentTable:
    """Validate the model configuration; errors name the offending setting."""
    if not settings.configured:
        raise LLMNotConfiguredError(
            "no model configured (set AUTO_DEV_LLM_MODEL or llm.model / llm.model_list)"
        )
    groups: dict[str, list[Deployment]] = {}
    seen_ids: set[str] = set()
    raw_entries: list[tuple[int, str, str, dict[str, Any], str | None]] = []
    for index, entry in enumerate(settings.model_list):
        where = f"llm.model_list[{index}]"
        if not isinstance(entry, Mapping):
            raise ConfigurationError(f"{where}: must be a table with model_name and litellm_params")
        name = entry.get("model_name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"{where}.model_name: must be a non-empty string")
        params = entry.get("litellm_params")
        if not isinstance(params, Mapping):
            raise ConfigurationError(f"{where}.litellm_params: must be a table")
        model = params.get("model")
        if not isinstance(model, str) or not model.strip():
            raise ConfigurationError(
                f"{where}.litellm_params.model: must be a litellm model string"
            )
        bad = sorted(set(params) & _RESERVED_KEYS)
        if bad:
            raise ConfigurationError(f"{where}.litellm_params.{bad[0]}: is set by auto-dev itself")
        info = entry.get("model_info") or {}
        if not isinstance(info, Mapping):
            raise ConfigurationError(f"{where}.model_info: must be a table")
        explicit_id = info.get("id")
        if explicit_id is not None and (not isinstance(explicit_id, str) or not explicit_id):
            raise ConfigurationError(f"{where}.model_info.id: must be a non-empty string")
        raw_entries.append((index, name, model, dict(params), explicit_id))
    counts: dict[str, int] = {}
    for _, name, _, _, _ in raw_entries:
        counts[name] = counts.get(name, 0) + 1
    position: dict[str, int] = {}
    for index, name, model, params, explicit_id in raw_entries:
        position[name] = position.get(name, 0) + 1
        deployment_id = explicit_id or (
            name if counts[name] == 1 else f"{name}#{position[name]}"
        )
        if deployment_id in seen_ids:
            raise ConfigurationError(
                f"llm.model_list[{index}]: deployment id {deployment_id!r} is used twice"
            )
        seen_ids.add(deployment_id)
        inline = {k: params.pop(k) for k in list(params) if k in _PRICE_KEYS} or None
        params.pop("model")
        groups.setdefault(name, []).append(
            Deployment(deployment_id, name, model, params, inline)
        )

    if settings.model and settings.model not in groups:
        # The simple case: one deployment named after the model.
        if settings.model in seen_ids:
            raise ConfigurationError(
                f"llm.model: {settings.model!r} is a deployment id, not a model group"
            )
        params = {}
        if settings.api_base:
            params["api_base"] = settings.api_base
        if settings.api_key:
            params["api_key"] = settings.api_key
        groups[settings.model] = [
            Deployment(settings.model, settings.model, settings.model, params)
        ]
    default_group = settings.model or next(iter(groups))

    fallbacks: dict[str, tuple[str, ...]] = {}
    for index, rule in enumerate(settings.fallbacks):
        for primary, backups in rule.items():
            where = f"llm.fallbacks[{index}].{primary}"
            if primary not in groups:
                raise ConfigurationError(f"{where}: unknown model group {primary!r}")
            for backup in backups:
                if backup not in groups:
                    raise ConfigurationError(f"{where}: unknown model group {backup!r}")
            fallbacks[primary] = (*fallbacks.get(primary, ()), *backups)
    return DeploymentTable(
        {name: tuple(deps) for name, deps in groups.items()}, default_group, fallbacks
    )
