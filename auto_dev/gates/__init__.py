"""Capability gates, the candidate choke point, human review, promotion and rollback."""

from auto_dev.gates._lineage import LineageStep
from auto_dev.gates._maturity import GraduationResult, Maturity, is_at_least, wilson_lower_bound
from auto_dev.gates._promotion import PromotionResult, RollbackResult
from auto_dev.gates.candidates import AUTO_ACTOR, CandidateKind, CandidateStore
from auto_dev.gates.capability import DEFAULT_REQUIREMENTS, GateDecision, Gatekeeper
from auto_dev.gates.settings import GraduationSettings, TenantSettings

__all__ = [
    "AUTO_ACTOR",
    "DEFAULT_REQUIREMENTS",
    "CandidateKind",
    "CandidateStore",
    "GateDecision",
    "Gatekeeper",
    "GraduationResult",
    "GraduationSettings",
    "LineageStep",
    "Maturity",
    "PromotionResult",
    "RollbackResult",
    "TenantSettings",
    "is_at_least",
    "wilson_lower_bound",
]
