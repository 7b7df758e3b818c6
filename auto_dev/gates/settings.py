"""A tenant's auto-dev settings: toggles (all off by default), daily limits, graduation thresholds.

They live in ``Tenant.settings`` (a JSON object) as flat keys, exactly the field names of
:class:`TenantSettings`, with ``graduation`` as a nested object::

    {"enabled": true, "alpha_evolver": true, "daily_candidates_per_agent": 20,
     "graduation": {"min_verified_successes": 5}}

Anything missing takes its default, and every toggle defaults to **off**: a fresh tenant can do
nothing until someone turns auto-dev on. An unknown key or a value of the wrong type is an error
naming the key (:meth:`TenantSettings.from_raw`); the gate turns that error into a denial.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from auto_dev._exceptions import ValidationError
from auto_dev.gates._maturity import Maturity
from auto_dev.models.base import UnreadableJSON

#: The built-in capabilities and the toggle (a :class:`TenantSettings` field) each needs.
CAPABILITY_TOGGLES: dict[str, str] = {
    "auto_dev.memento_skills": "memento_skills",
    "auto_dev.alpha_evolver": "alpha_evolver",
    "auto_dev.workflows": "workflows",
    "auto_dev.background_evolution": "background_evolution",
    "auto_dev.auto_promotion": "auto_promotion",
}


class GraduationSettings(BaseModel):
    """When an agent's maturity for a capability moves up or down a level.

    Evidence is the usage recorded since the last maturity change (at most ``window`` records):
    a success counts only when it was verified (by the sandbox or a human); a failure counts
    whether verified or not. Promotion needs ``min_verified_successes`` and a Wilson lower bound
    of the success rate (at ``confidence``) of at least ``promote_lower_bound``; demotion happens
    when at least ``min_samples_for_demotion`` records give a lower bound under
    ``demote_lower_bound``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_verified_successes: int = Field(default=10, ge=1, le=1_000_000)
    promote_lower_bound: float = Field(default=0.8, gt=0.0, le=1.0)
    demote_lower_bound: float = Field(default=0.3, ge=0.0, lt=1.0)
    min_samples_for_demotion: int = Field(default=10, ge=1, le=1_000_000)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    window: int = Field(default=200, ge=1, le=100_000)

    @model_validator(mode="after")
    def _ordered(self) -> GraduationSettings:
        if self.demote_lower_bound >= self.promote_lower_bound:
            raise ValueError("demote_lower_bound must be below promote_lower_bound")
        return self


class TenantSettings(BaseModel):
    """A tenant's auto-dev settings. Frozen; build a new one with ``model_copy(update=...)``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Toggles: every one defaults to off (the seed defaulted some to on; never again).
    enabled: StrictBool = False
    memento_skills: StrictBool = False
    alpha_evolver: StrictBool = False
    workflows: StrictBool = False
    background_evolution: StrictBool = False
    auto_promotion: StrictBool = False
    #: Toggles for capabilities beyond the built-ins (custom engines), e.g. {"acme.lint": true}.
    capabilities: dict[str, StrictBool] = Field(default_factory=dict)
    # Daily limits (UTC days). 0 means none at all.
    daily_candidates_per_agent: int = Field(default=50, ge=0, le=1_000_000)
    daily_candidates_per_tenant: int = Field(default=500, ge=0, le=10_000_000)
    daily_promotions_per_tenant: int = Field(default=10, ge=0, le=1_000_000)
    #: Refuse to evaluate candidates anywhere but in containers (no process-sandbox fallback).
    require_containers: StrictBool = False
    #: Maturity assumed for tenant-level requests (no agent); student = nothing maturity-gated.
    tenant_maturity: Maturity = Maturity.STUDENT
    #: Per-tenant LLM budget in USD per UTC day (None: the global setting applies).
    daily_budget_usd: float | None = Field(default=None, ge=0)
    graduation: GraduationSettings = Field(default_factory=lambda: GraduationSettings())

    @field_validator("tenant_maturity", mode="before")
    @classmethod
    def _maturity(cls, value: Any) -> Maturity:
        try:
            return Maturity.parse(value, field="tenant_maturity")
        except ValidationError as exc:
            raise ValueError(exc.problem) from None

    @model_validator(mode="after")
    def _check(self) -> TenantSettings:
        for name in self.capabilities:
            if not name or not isinstance(name, str):
                raise ValueError("capabilities keys must be non-empty capability names")
        if self.daily_budget_usd is not None and not math.isfinite(self.daily_budget_usd):
            raise ValueError("daily_budget_usd must be finite")
        return self

    def with_changes(self, **changes: Any) -> TenantSettings:
        """A validated copy with ``changes`` applied (unknown keys are errors naming the key)."""
        merged = self.model_dump(mode="json")
        for key, value in changes.items():
            if key == "graduation" and isinstance(value, Mapping):
                value = {**merged["graduation"], **value}
            merged[key] = value
        return type(self).from_raw(merged)

    @classmethod
    def from_raw(cls, raw: Any, *, tenant_id: str | None = None) -> TenantSettings:
        """Validate ``Tenant.settings``; raise :class:`ValidationError` naming the bad key.

        With ``tenant_id`` (settings read from a tenant's row) the message names the tenant
        too, so a corrupt row (text that is not JSON, a value of the wrong type) can be found.
        """
        whose = f" (stored settings of tenant {tenant_id!r})" if tenant_id is not None else ""
        if raw is None:
            return cls()
        if isinstance(raw, UnreadableJSON):
            raise ValidationError("settings", f"is not valid JSON ({raw.error}){whose}")
        if not isinstance(raw, Mapping):
            raise ValidationError("settings",
                                  f"must be an object, got {type(raw).__name__}{whose}")
        try:
            return cls.model_validate(dict(raw))
        except PydanticValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            where = f"settings.{loc}" if loc else "settings"
            problem = "unknown setting" if first["type"] == "extra_forbidden" else first["msg"]
            problem = problem.removeprefix("Value error, ")
            raise ValidationError(where, problem + whose) from exc

    def toggle_for(self, capability: str) -> bool:
        """Whether the tenant turned ``capability`` on (unknown capabilities: off)."""
        field = CAPABILITY_TOGGLES.get(capability)
        if field is not None:
            return bool(getattr(self, field))
        return bool(self.capabilities.get(capability, False))

    def restrict(self, other: TenantSettings) -> TenantSettings:
        """The stricter of ``self`` and ``other``: a toggle is on only when on in both, each
        limit is the lower one. Used when a caller passes its own (seed-style) workspace
        settings: they can narrow what the stored settings allow, never widen it."""
        toggles = {
            name: bool(getattr(self, name)) and bool(getattr(other, name))
            for name in ("enabled", *CAPABILITY_TOGGLES.values())
        }
        return self.model_copy(
            update={
                **toggles,
                "capabilities": {
                    k: v and bool(other.capabilities.get(k, False))
                    for k, v in self.capabilities.items()
                },
                "daily_candidates_per_agent": min(
                    self.daily_candidates_per_agent, other.daily_candidates_per_agent
                ),
                "daily_candidates_per_tenant": min(
                    self.daily_candidates_per_tenant, other.daily_candidates_per_tenant
                ),
                "daily_promotions_per_tenant": min(
                    self.daily_promotions_per_tenant, other.daily_promotions_per_tenant
                ),
                "require_containers": self.require_containers or other.require_containers,
                "tenant_maturity": min(self.tenant_maturity, other.tenant_maturity),
            }
        )
