"""Workflow mutation operators: edits of workflow documents that a search evaluates.

Offline operators need no model (see :data:`OFFLINE_OPERATORS`): switch a tool, re-point an
argument, add, widen or remove a retry, wrap a step in ``catch``, delete, duplicate or move a
step, flip or rewrite a condition, swap switch branches, change a constant. Each returns a few
proposals, edits of the steps that failed first (``context.failures``), chosen with
``context.rng`` so that a seed always gives the same ones. :func:`propose_offline` mixes them.

Model operators (:class:`ReflectivePromptRewrite`, :class:`LLMWorkflowEdit`) ask a chat model
and check its answer (parsed, applied, validated) before proposing it.
"""

from __future__ import annotations

from collections.abc import Sequence

from auto_dev.workflows._document import canonical_json
from auto_dev.workflows._ops_base import (
    FailureEvidence,
    WorkflowMutationContext,
    WorkflowOperator,
    WorkflowProposal,
)
from auto_dev.workflows._ops_model import (
    LLMWorkflowEdit,
    ReflectivePromptRewrite,
    WorkflowModelOperator,
    format_failures,
    pretty_json,
)
from auto_dev.workflows._ops_references import RepointReference
from auto_dev.workflows._ops_structure import (
    AddRetry,
    DeleteStep,
    DuplicateStep,
    MoveStep,
    RemoveRetry,
    SwapBranches,
    WidenRetry,
    WrapInCatch,
)
from auto_dev.workflows._ops_values import (
    ChangeConstant,
    FlipComparison,
    RepointArgument,
    RewriteComparisonField,
    SwitchTool,
)

__all__ = [
    "OFFLINE_OPERATORS",
    "AddRetry",
    "ChangeConstant",
    "DeleteStep",
    "DuplicateStep",
    "FlipComparison",
    "LLMWorkflowEdit",
    "MoveStep",
    "ReflectivePromptRewrite",
    "RemoveRetry",
    "RepointArgument",
    "RepointReference",
    "RewriteComparisonField",
    "SwapBranches",
    "SwitchTool",
    "WidenRetry",
    "WorkflowModelOperator",
    "WorkflowMutationContext",
    "WorkflowOperator",
    "WorkflowProposal",
    "WrapInCatch",
    "format_failures",
    "pretty_json",
    "propose_offline",
]

#: One instance of every offline operator, in a stable order (most often useful repairs first).
OFFLINE_OPERATORS: tuple[WorkflowOperator, ...] = (
    AddRetry(),
    WidenRetry(),
    RepointArgument(),
    RewriteComparisonField(),
    FlipComparison(),
    ChangeConstant(),
    WrapInCatch(),
    SwitchTool(),
    SwapBranches(),
    MoveStep(),
    DuplicateStep(),
    DeleteStep(),
    RemoveRetry(),
    RepointReference(),
)


def propose_offline(
    doc: dict[str, object],
    context: WorkflowMutationContext,
    *,
    limit: int = 12,
    operators: Sequence[WorkflowOperator] = OFFLINE_OPERATORS,
) -> list[WorkflowProposal]:
    """Up to ``limit`` distinct proposals mixed from ``operators``.

    Operators take turns (in an order shuffled with ``context.rng``), first handing out their
    proposals about steps that failed or hold a failure, then the others, so that one
    prolific operator cannot crowd out the rest. No two proposals are the same
    document, and none equals ``doc``.
    """
    if limit <= 0:
        return []
    evidence = FailureEvidence(doc, context)
    order = list(operators)
    context.rng.shuffle(order)
    batches = [op.propose(doc, context) for op in order]
    # Steps that failed and the steps holding them share the first turn: the cause of a
    # failure in a branch is as often the switch choosing it as the branch's own step.
    tiers = [[[p for p in batch if (p.step_id in evidence.focus) == focused] for batch in batches]
             for focused in (True, False)]
    seen = {canonical_json(doc)}
    out: list[WorkflowProposal] = []
    for queues in tiers:
        while any(queues) and len(out) < limit:
            for queue in queues:
                if not queue or len(out) >= limit:
                    continue
                proposal = queue.pop(0)
                text = canonical_json(proposal.definition)
                if text not in seen:
                    seen.add(text)
                    out.append(proposal)
    return out
