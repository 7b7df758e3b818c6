"""What a model said to make a candidate, and what it cost: the ledger rows of its calls and, for a
skill, the whole exchange (system, user, assistant, sandbox feedback), for review.

A tool mutation records the one call that wrote it (``details["llm_call_id"]``, ``model``,
``llm_cost_usd``); a skill candidate keeps every message (``exchange``), the assistant messages
naming their ``llm_call_id``. Offline operators made no call: no exchange.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from auto_dev.candidates._kinds import Candidate
from auto_dev.models import LLMCall, SkillCandidate, ToolMutation

#: Messages longer than this are cut for display (the row keeps them whole).
_MAX_MESSAGE_CHARS = 20_000


@dataclass(frozen=True, slots=True)
class LLMCallRow:
    id: str
    model: str
    status: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    cache_hit: bool


@dataclass(frozen=True, slots=True)
class LLMExchange:
    """The model calls behind a candidate; ``cost_usd`` is the ledger's total when the calls are
    in it, else what the engine recorded."""

    calls: list[LLMCallRow]
    messages: list[dict[str, Any]] = field(default_factory=list)
    cost_usd: float = 0.0
    model: str | None = None


def candidate_exchange(session: Session, candidate: Candidate) -> LLMExchange | None:
    """The exchange behind ``candidate``, or ``None`` when no model was involved."""
    call_ids: list[str] = []
    recorded_cost = 0.0
    model: str | None = None
    messages: list[dict[str, Any]] = []
    if isinstance(candidate, ToolMutation):
        details = candidate.details or {}
        if isinstance(details.get("llm_call_id"), str):
            call_ids.append(details["llm_call_id"])
        recorded_cost = _float_or_zero(details.get("llm_cost_usd"))
        model = details.get("model") if isinstance(details.get("model"), str) else None
    elif isinstance(candidate, SkillCandidate):
        for message in candidate.exchange or []:
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            text = content if isinstance(content, str) else repr(content)
            messages.append({"role": str(message.get("role", "?")),
                             "content": text[:_MAX_MESSAGE_CHARS]})
            if isinstance(message.get("llm_call_id"), str):
                call_ids.append(message["llm_call_id"])
    if not call_ids and not messages and not recorded_cost and model is None:
        return None
    rows = list(session.scalars(select(LLMCall).where(
        LLMCall.tenant_id == candidate.tenant_id, LLMCall.id.in_(call_ids)))) if call_ids else []
    rows.sort(key=lambda r: call_ids.index(r.id))
    calls = [LLMCallRow(r.id, r.model, r.status, r.prompt_tokens, r.completion_tokens,
                        r.cost_usd, r.latency_s, r.cache_hit) for r in rows]
    cost = sum(c.cost_usd for c in calls) if calls else recorded_cost
    return LLMExchange(calls=calls, messages=messages, cost_usd=cost,
                       model=model or (calls[0].model if calls else None))


def _float_or_zero(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
