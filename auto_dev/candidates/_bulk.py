"""Bulk recording of evaluated-and-rejected mutations, under one run's gate decision.

An evolution run evaluates hundreds of proposals; most break a case or fix nothing. Each is
kept as a ``failed`` :class:`~auto_dev.models.ToolMutation` so that lineage covers every
mutation, but gating and auditing each one would cost more than evaluating it. They are born
``failed`` (never offered, never promotable), so the run's single ``run_cycle`` decision covers
them: this function refuses to write unless that decision allowed this capability for this
tenant, and it writes nothing that could reach a human or production.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert

from auto_dev._exceptions import GateDeniedError, NotFoundError, ValidationError
from auto_dev.models import CandidateStatus, Tool, ToolMutation, new_id, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from auto_dev.gates.capability import GateDecision

#: The decisions that cover a whole evolution run.
CYCLE_ACTIONS = frozenset({"run_cycle", "background_cycle"})

_ALLOWED_KEYS = frozenset({
    "id",  # the caller may pick ids (new_id()) so children can name a parent not yet flushed
    "code", "entrypoint", "operator", "parent_version_id", "parent_mutation_id",
    "second_parent_id", "ast_hash", "island", "generation", "objectives", "details", "diff",
})


def record_rejected_mutations(
    session: Session,
    *,
    decision: GateDecision,
    tenant_id: str,
    tool_id: str,
    run_id: str,
    capability: str,
    rows: Sequence[Mapping[str, Any]],
) -> list[str]:
    """Insert ``rows`` as ``failed`` mutations of ``tool_id`` in run ``run_id``; return ids.

    Raises :class:`GateDeniedError` unless ``decision`` allowed ``capability`` for
    ``tenant_id`` (fail closed: a missing or mismatched decision denies).
    """
    if decision is None or not decision.allowed:
        why = f": {decision.reason}" if decision is not None else ""
        raise GateDeniedError(f"bulk mutation record needs an allowing run decision{why}")
    if decision.tenant_id != tenant_id or decision.capability != capability:
        raise GateDeniedError(
            f"run decision was for {decision.capability!r} in {decision.tenant_id!r}, "
            f"not {capability!r} in {tenant_id!r}"
        )
    if decision.action not in CYCLE_ACTIONS:
        raise GateDeniedError(f"a {decision.action!r} decision does not cover a run's mutations")
    tool = session.get(Tool, tool_id) if isinstance(tool_id, str) else None
    if tool is None or tool.tenant_id != tenant_id:
        raise NotFoundError(f"tool_id: tool {tool_id!r} does not exist in tenant {tenant_id!r}")
    now = utcnow()
    payload: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        unknown = set(row) - _ALLOWED_KEYS
        if unknown:
            raise ValidationError(f"rows[{i}].{sorted(unknown)[0]}", "unknown field")
        if not isinstance(row.get("code"), str) or not isinstance(row.get("operator"), str):
            raise ValidationError(f"rows[{i}]", "code and operator must be strings")
        payload.append({
            "id": row.get("id") or new_id(), "tenant_id": tenant_id, "tool_id": tool_id,
            "run_id": run_id,
            "agent_id": decision.agent_id if decision.agent_key else None,
            "code": row["code"], "entrypoint": row.get("entrypoint") or "",
            "operator": row["operator"], "diff": row.get("diff") or "",
            "parent_version_id": row.get("parent_version_id"),
            "parent_mutation_id": row.get("parent_mutation_id"),
            "second_parent_id": row.get("second_parent_id"),
            "ast_hash": row.get("ast_hash"), "island": int(row.get("island") or 0),
            "generation": int(row.get("generation") or 0),
            "status": CandidateStatus.FAILED.value,
            "objectives": dict(row.get("objectives") or {}),
            "details": {**dict(row.get("details") or {}), "capability": capability,
                        "recorded_under": "run_cycle"},
            "created_at": now, "updated_at": now,
        })
    if payload:
        session.execute(insert(ToolMutation), payload)
    return [p["id"] for p in payload]
