"""Candidates: the store (the one choke point for candidate and version writes), promotion
(re-evaluating stale candidates), rollback, remembered rejections, manual changes, retention,
lineage, review and the post-promotion watch."""

from auto_dev.candidates._kinds import AUTO_ACTOR, CandidateKind
from auto_dev.candidates.lineage import LineageStep
from auto_dev.candidates.promotion import PromotionResult, RollbackResult
from auto_dev.candidates.reevaluation import PromotionService
from auto_dev.candidates.store import CandidateStore

__all__ = [
    "AUTO_ACTOR",
    "CandidateKind",
    "CandidateStore",
    "LineageStep",
    "PromotionResult",
    "PromotionService",
    "RollbackResult",
]
