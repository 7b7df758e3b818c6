"""The policy: capability gates, maturity and graduation, daily limits, tenant settings."""

from auto_dev.gates._maturity import GraduationResult, Maturity, is_at_least, wilson_lower_bound
from auto_dev.gates.capability import DEFAULT_REQUIREMENTS, GateDecision, Gatekeeper
from auto_dev.gates.settings import GraduationSettings, TenantSettings

__all__ = [
    "DEFAULT_REQUIREMENTS",
    "GateDecision",
    "Gatekeeper",
    "GraduationResult",
    "GraduationSettings",
    "Maturity",
    "TenantSettings",
    "is_at_least",
    "wilson_lower_bound",
]
