"""Settings: ``AUTO_DEV_*`` environment variables over an optional TOML file over defaults.

The TOML file is named by ``AUTO_DEV_CONFIG``. Its top-level keys are the field names below
(``database_url = "..."``), with an ``[llm]`` table for the model configuration. Environment
variables win over the file; keyword arguments to :class:`Settings` win over both.

Settings are frozen: build a new object (``settings.model_copy(update=...)``) to change one.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from auto_dev._event_types import MAX_JSON_DEPTH
from auto_dev._exceptions import ConfigurationError
from auto_dev._exceptions import ValidationError as AutoDevValidationError

DEFAULT_DATABASE_URL = "sqlite:///./auto_dev.db"
#: Ten years: the longest schedule interval any setting may allow.
MAX_SCHEDULE_INTERVAL_S = 10 * 365 * 86_400.0


class ModelPrice(BaseModel):
    """Price of a model litellm does not know, in USD per token."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_cost_per_token: float = Field(0.0, ge=0)
    output_cost_per_token: float = Field(0.0, ge=0)


class LLMSettings(BaseModel):
    """The model configuration (the ``[llm]`` table of the TOML file).

    ``model_list`` is in litellm Router form: ``[{"model_name": ..., "litellm_params": {...}}]``.
    ``fallbacks`` is Router form too: ``[{"primary": ["backup"]}]``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str | None = None
    api_base: str | None = None
    api_key: str | None = None
    model_list: list[dict[str, Any]] = Field(default_factory=list)
    fallbacks: list[dict[str, list[str]]] = Field(default_factory=list)
    num_retries: int = Field(2, ge=0, le=10)
    #: First retry delay in seconds, doubled per retry (a provider's Retry-After wins).
    retry_backoff_s: float = Field(0.5, ge=0, le=60)
    timeout_s: float = Field(60.0, gt=0)
    max_tokens: int = Field(2048, gt=0)
    temperature: float = Field(0.7, ge=0, le=2)
    cache_dir: str | None = None
    daily_budget_usd: float | None = Field(None, ge=0)
    tenant_budgets_usd: dict[str, float] = Field(default_factory=dict)
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    circuit_failure_threshold: int = Field(5, ge=1)
    circuit_cooldown_s: float = Field(30.0, gt=0)
    llm_mutation_fraction: float = Field(0.5, ge=0, le=1)
    repair_rounds: int = Field(3, ge=0, le=20)

    @property
    def configured(self) -> bool:
        return bool(self.model or self.model_list)


class Settings(BaseSettings):
    """All auto-dev settings. See the module docstring for where values come from."""

    model_config = SettingsConfigDict(
        env_prefix="AUTO_DEV_",
        env_nested_delimiter="__",
        frozen=True,
        extra="ignore",
    )

    database_url: str = DEFAULT_DATABASE_URL
    tenant: str = "default"
    sandbox: Literal["auto", "docker", "process", "ray"] = "auto"
    sandbox_image: str = "auto-dev-sandbox:latest"
    sandbox_workers: int | None = Field(None, ge=1, le=256)
    log_format: Literal["console", "json"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "warning"
    event_handler_timeout_s: float = Field(30.0, gt=0)
    event_max_attempts: int = Field(5, ge=1)
    evolution_budget: int = Field(200, ge=1)
    evolution_islands: int = Field(3, ge=1, le=64)
    case_timeout_s: float = Field(2.0, gt=0)
    case_memory_mb: int = Field(256, ge=16)
    scheduler_interval_s: float = Field(3600.0, gt=0)
    # The cycle pipeline: durable jobs run by a worker in every AutoDev that is started.
    cycle_worker: bool = True
    cycle_concurrency: int = Field(1, ge=1, le=64)
    cycle_lease_s: float = Field(60.0, ge=0.1, le=3600)
    cycle_deadline_s: float = Field(1800.0, gt=0, le=86_400)
    cycle_max_attempts: int = Field(3, ge=1, le=100)
    cycle_poll_s: float = Field(1.0, gt=0, le=60)
    # Retention: `auto-dev candidates prune` deletes closed candidates older than this.
    candidate_retention_days: int = Field(30, ge=0, le=36_500)
    # The HTTP service (`auto-dev serve`).
    server_host: str = "127.0.0.1"
    server_port: int = Field(8080, ge=0, le=65_535)
    server_max_body_bytes: int = Field(1_048_576, ge=1024, le=1_073_741_824)
    server_max_json_depth: int = Field(32, ge=4, le=1000)
    server_max_batch: int = Field(1000, ge=1, le=100_000)
    server_idempotency_ttl_s: float = Field(86_400.0, gt=0)
    server_shutdown_timeout_s: float = Field(30.0, gt=0, le=3600)
    server_session_secret: str | None = Field(None, min_length=32)
    server_session_ttl_s: float = Field(28_800.0, ge=60, le=30 * 86_400)
    # Ray (AUTO_DEV_SANDBOX=ray): candidates evaluated by actors on a cluster's nodes.
    ray_address: str | None = None
    ray_actors: int | None = Field(None, ge=1, le=4096)
    ray_node_sandbox: Literal["auto", "docker", "process"] = "auto"
    # The three simple LLM variables (AUTO_DEV_LLM_MODEL, ..._API_BASE, ..._API_KEY).
    llm_model: str | None = None
    llm_api_base: str | None = None
    llm_api_key: str | None = None
    llm: LLMSettings = Field(default_factory=LLMSettings)

    # Bounds of a schedule's interval: an unbounded one (inf, 1e12 s) overflows the scheduler's
    # clock arithmetic on every start. The ceiling keeps next-run times far inside datetime.
    scheduler_min_interval_s: float = Field(1.0, ge=1, le=MAX_SCHEDULE_INTERVAL_S)
    scheduler_max_interval_s: float = Field(366 * 86_400.0, ge=1, le=MAX_SCHEDULE_INTERVAL_S)
    # What one reported episode or skill execution may carry (see auto_dev.payloads).
    max_task_chars: int = Field(65_536, ge=1, le=64 * 1024 * 1024)
    max_trace_chars: int = Field(1_048_576, ge=1, le=64 * 1024 * 1024)
    max_payload_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    #: Events refuse deeper values, so this can only be lowered.
    max_json_depth: int = Field(MAX_JSON_DEPTH, ge=1, le=MAX_JSON_DEPTH)
    #: Python refuses to convert integers longer than 4300 digits to text (and so to JSON).
    max_json_int_digits: int = Field(1000, ge=1, le=4300)

    @model_validator(mode="after")
    def _check_schedule_bounds(self) -> Settings:
        low, high = self.scheduler_min_interval_s, self.scheduler_max_interval_s
        if low > high:
            raise PydanticCustomError(
                "schedule_bounds", "scheduler_min_interval_s ({low}) must not exceed "
                "scheduler_max_interval_s ({high})", {"low": f"{low:g}", "high": f"{high:g}"})
        if not low <= self.scheduler_interval_s <= high:
            raise PydanticCustomError(
                "schedule_bounds", "scheduler_interval_s must be between {low} and {high}",
                {"low": f"{low:g}", "high": f"{high:g}"})
        return self

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError("must be an SQLAlchemy URL such as sqlite:///./auto_dev.db")
        return value

    @field_validator("ray_address")
    @classmethod
    def _check_ray_address(cls, value: str | None) -> str | None:
        from auto_dev.sandbox._ray_layout import check_ray_address

        try:
            return check_ray_address(value)
        except AutoDevValidationError as exc:
            raise ValueError(exc.problem) from exc

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))

    def effective_llm(self) -> LLMSettings:
        """The LLM settings with the three simple env vars folded in."""
        update: dict[str, Any] = {}
        if self.llm_model:
            update["model"] = self.llm_model
        if self.llm_api_base:
            update["api_base"] = self.llm_api_base
        if self.llm_api_key:
            update["api_key"] = self.llm_api_key
        return self.llm.model_copy(update=update) if update else self.llm


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the TOML file named by ``AUTO_DEV_CONFIG`` (if any)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = _read_toml()

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


def _read_toml() -> dict[str, Any]:
    """The TOML file named by ``AUTO_DEV_CONFIG`` as a dict (empty when the variable is unset)."""
    path = os.environ.get("AUTO_DEV_CONFIG")
    if not path:
        return {}
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigurationError(f"AUTO_DEV_CONFIG: file {path!r} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"AUTO_DEV_CONFIG: {path!r} is not valid TOML: {exc}") from exc


def load_settings(**overrides: Any) -> Settings:
    """Build :class:`Settings`, turning validation failures into :class:`ConfigurationError`.

    Unknown ``AUTO_DEV_*`` variables and unknown top-level TOML keys are logged as a warning
    (once per name and process), with the closest known name.
    """
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigurationError(f"{where}: {first['msg']}") from exc
    _warn_unknown_names(settings)
    return settings


# -- unknown names -------------------------------------------------------------------------------

#: Names already warned about in this process: a CLI command loads the settings several times.
_warned: set[str] = set()


def unknown_names(environ: Mapping[str, str], toml_data: Mapping[str, Any]
                  ) -> list[tuple[str, str | None]]:
    """``(name, closest known name or None)`` for every ``AUTO_DEV_*`` variable in ``environ``
    and every top-level key of ``toml_data`` that auto-dev does not read."""
    from auto_dev._config_reference import OTHER_VARIABLES, is_reserved_variable

    fields = list(Settings.model_fields)
    known_env = [f"AUTO_DEV_{name.upper()}" for name in fields] + list(OTHER_VARIABLES)
    nested = tuple(f"AUTO_DEV_{name.upper()}__" for name, info in Settings.model_fields.items()
                   if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel))
    found: list[tuple[str, str | None]] = []
    for raw in environ:
        name = raw.upper()  # pydantic-settings matches variable names case-insensitively
        if (not name.startswith("AUTO_DEV_") or name in known_env or name.startswith(nested)
                or is_reserved_variable(name)):
            continue
        found.append((raw, _closest(name, known_env)))
    for key in toml_data:
        if key not in Settings.model_fields:
            found.append((f"{key} (in the TOML file)", _closest(key, fields)))
    return found


def _closest(name: str, known: list[str]) -> str | None:
    import difflib

    matches = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return matches[0] if matches else None


def _warn_unknown_names(settings: Settings) -> None:
    import structlog

    if not structlog.is_configured():
        # The warning must not go to stdout (structlog's default), where --json output lives.
        from auto_dev.logging import configure_logging

        configure_logging(settings.log_level, settings.log_format)
    log = structlog.get_logger(__name__)
    for name, closest in unknown_names(os.environ, _read_toml()):
        if name in _warned:
            continue
        _warned.add(name)
        log.warning("unknown_setting_ignored", name=name,
                    did_you_mean=closest or "-", reference="README.md, Configuration reference")
