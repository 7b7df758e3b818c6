"""SQLAlchemy 2.0 typed models, one module per aggregate. Every row carries ``tenant_id``."""

from auto_dev.models.api import ApiToken, IdempotentResponse
from auto_dev.models.audit import AuditEntry, ReviewDecision
from auto_dev.models.base import Base, new_id, utcnow
from auto_dev.models.candidates import (
    ALLOWED_TRANSITIONS,
    CandidateStatus,
    SkillCandidate,
    ToolMutation,
    WorkflowVariant,
    transition,
)
from auto_dev.models.episodes import Episode, EpisodeSegment
from auto_dev.models.gates import CapabilityState, UsageRecord
from auto_dev.models.ledger import LLMBudgetDay, LLMCall
from auto_dev.models.outbox import EventDelivery, EventRecord
from auto_dev.models.rejections import RejectedChange
from auto_dev.models.runs import CycleJob, Evaluation, EvolutionRun
from auto_dev.models.scheduling import APSCHEDULER_TABLE, Schedule, apscheduler_jobs
from auto_dev.models.tenancy import Agent, Tenant
from auto_dev.models.tools import TestCase, Tool, ToolVersion
from auto_dev.models.workflows import (
    VersionSignal,
    Workflow,
    WorkflowTaskRecord,
    WorkflowVersion,
)

__all__ = [
    "ALLOWED_TRANSITIONS",
    "APSCHEDULER_TABLE",
    "Agent",
    "ApiToken",
    "AuditEntry",
    "Base",
    "CandidateStatus",
    "CapabilityState",
    "CycleJob",
    "Episode",
    "EpisodeSegment",
    "Evaluation",
    "EventDelivery",
    "EventRecord",
    "EvolutionRun",
    "IdempotentResponse",
    "LLMBudgetDay",
    "LLMCall",
    "RejectedChange",
    "ReviewDecision",
    "Schedule",
    "SkillCandidate",
    "Tenant",
    "TestCase",
    "Tool",
    "ToolMutation",
    "ToolVersion",
    "UsageRecord",
    "VersionSignal",
    "Workflow",
    "WorkflowTaskRecord",
    "WorkflowVariant",
    "WorkflowVersion",
    "apscheduler_jobs",
    "new_id",
    "transition",
    "utcnow",
]
