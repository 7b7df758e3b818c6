"""Candidate kinds and the facts every part of the gates package shares about them."""

from __future__ import annotations

import enum
from typing import Any

from auto_dev._exceptions import ValidationError
from auto_dev.models import SkillCandidate, ToolMutation, WorkflowVariant

ALPHA_EVOLVER = "auto_dev.alpha_evolver"
MEMENTO_SKILLS = "auto_dev.memento_skills"
WORKFLOWS = "auto_dev.workflows"
AUTO_PROMOTION = "auto_dev.auto_promotion"
#: The actor recorded for decisions auto-dev takes itself.
AUTO_ACTOR = "auto-dev"

Candidate = ToolMutation | SkillCandidate | WorkflowVariant


class CandidateKind(enum.StrEnum):
    TOOL_MUTATION = "tool_mutation"
    SKILL_CANDIDATE = "skill_candidate"
    WORKFLOW_VARIANT = "workflow_variant"


#: Typed ``Any`` on purpose: a union of model classes makes every ORM call return ``Base``.
MODELS: dict[CandidateKind, Any] = {
    CandidateKind.TOOL_MUTATION: ToolMutation,
    CandidateKind.SKILL_CANDIDATE: SkillCandidate,
    CandidateKind.WORKFLOW_VARIANT: WorkflowVariant,
}

def kind_of(candidate: Candidate) -> CandidateKind:
    for kind, model in MODELS.items():
        if isinstance(candidate, model):
            return kind
    raise ValidationError("candidate", f"is not a candidate: {type(candidate).__name__}")


def capability_of(candidate: Candidate) -> str:
    """The capability a candidate was created under (recorded at creation)."""
    if isinstance(candidate, ToolMutation):
        return str((candidate.details or {}).get("capability") or ALPHA_EVOLVER)
    if isinstance(candidate, SkillCandidate):
        return str((candidate.validation or {}).get("capability") or MEMENTO_SKILLS)
    return WORKFLOWS
