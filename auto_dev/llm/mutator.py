"""``LLMMutator``: AlphaEvolver's model-driven mutation operator.

One model call per proposal: the prompt shows the parent, its failing cases (inputs, expected,
actual, traceback), inspirations from the population and the edits that fixed cases elsewhere in
the search (:mod:`auto_dev.llm.prompts`). When the search reports that recent answers for this
parent were wasted (``context.exploration``), the call samples hotter and shows more failing
cases. The answer
is SEARCH/REPLACE blocks (applied whitespace-tolerantly by :mod:`auto_dev.evolution.diff`) or a
full program in a fenced block. An answer that does not parse, does not apply, changes nothing,
is comment-only or hollows out the entry point is rejected here, before any sandbox run, and
recorded as a :class:`Rejection` (returned by :meth:`LLMMutator.mutate_with_report`, kept in
:attr:`LLMMutator.rejections` and logged). A call that fails is counted by kind in
:attr:`LLMMutator.health`, which is how a run says its model was unusable (a refused key, an
unknown model, an unreachable endpoint) instead of only logging it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

import structlog

from auto_dev._exceptions import ConfigurationError, LLMError, ValidationError
from auto_dev.abc import Mutator
from auto_dev.evolution.diff import (
    DiffError,
    apply_blocks,
    extract_code,
    parse_blocks,
    unified_diff,
)
from auto_dev.evolution.program import MutationContext, Program, Proposal
from auto_dev.llm import _checks, prompts
from auto_dev.llm.health import HealthMark, LLMHealth, LLMHealthReport
from auto_dev.llm.types import ChatLLM, LLMResponse

log = structlog.get_logger(__name__)

UNPARSEABLE = "unparseable"
DOES_NOT_APPLY = "does_not_apply"
LLM_ERROR = "llm_error"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A model answer refused before any sandbox run, and why.

    ``reason`` is one of ``unparseable``, ``does_not_apply``, ``empty``, ``syntax_error``,
    ``comment_only``, ``missing_entrypoint``, ``stub``, ``no_op``, ``duplicate`` or
    ``llm_error`` (the call itself failed).
    """

    reason: str
    detail: str
    parent_id: str | None
    answer: str = ""
    llm_call_id: str | None = None
    llm_cost_usd: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "detail": self.detail,
            "parent_id": self.parent_id,
            "answer": self.answer,
            "llm_call_id": self.llm_call_id,
            "llm_cost_usd": self.llm_cost_usd,
        }


@dataclass(slots=True)
class MutationReport:
    """Everything one :meth:`LLMMutator.mutate_with_report` call produced."""

    proposals: list[Proposal] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def cost_usd(self) -> float:
        return sum(float(p.meta.get("llm_cost_usd", 0.0)) for p in self.proposals) + sum(
            r.llm_cost_usd for r in self.rejections
        )


def apply_answer(parent_code: str, entrypoint: str, answer: str) -> tuple[str, str]:
    """The new program an answer describes and its kind (``diff`` or ``rewrite``).

    Raises :class:`DiffError`: its ``field`` is ``blocks[i].search`` when block ``i`` matches
    nothing (or several places), ``blocks[i]`` when a block is malformed, ``answer`` when there
    is neither a block nor code.
    """
    blocks = parse_blocks(answer)  # raises DiffError for a malformed block
    if blocks:
        return apply_blocks(parent_code, blocks), "diff"
    try:
        return extract_code(answer, entrypoint), "rewrite"
    except DiffError:
        # No block defines the entry point: take the code anyway, so the static checks can say
        # precisely what is wrong with it (comment-only, entry point renamed...).
        return extract_code(answer), "rewrite"


class LLMMutator(Mutator):
    """Proposals from a chat model (``llm``: an :class:`~auto_dev.llm.client.LLMClient`,
    :class:`~auto_dev.testing.FakeLLM` or anything with the same ``complete``).

    ``calls_per_mutate`` model calls run concurrently per :meth:`mutate` (never more than
    ``context.max_proposals``). ``engine`` and ``purpose`` label the ledger rows.
    """

    name: ClassVar[str] = "llm"
    #: Every proposal costs a model call: the search tracks their waste per parent.
    calls_model: ClassVar[bool] = True
    #: Temperature assumed when none is configured, raised by ``EXPLORE_STEP`` per
    #: exploration level up to ``MAX_TEMPERATURE``.
    BASE_TEMPERATURE: ClassVar[float] = 0.7
    EXPLORE_STEP: ClassVar[float] = 0.3
    MAX_TEMPERATURE: ClassVar[float] = 1.3

    def __init__(
        self,
        llm: ChatLLM,
        *,
        calls_per_mutate: int = 1,
        engine: str = "alpha_evolver",
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        keep_rejections: int = 500,
    ) -> None:
        if calls_per_mutate < 1:
            raise ValidationError("calls_per_mutate", "must be >= 1")
        self.llm = llm
        self.calls_per_mutate = calls_per_mutate
        self.engine = engine
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        #: The latest rejections (bounded), newest last.
        self.rejections: deque[Rejection] = deque(maxlen=keep_rejections)
        #: This mutator's calls answered and failed, failures by kind.
        self.health = LLMHealth()

    def health_mark(self) -> HealthMark:
        """A mark to pass to :meth:`health_report` for the share of one run."""
        return self.health.mark()

    def health_report(self, since: HealthMark | None = None) -> LLMHealthReport:
        """Calls answered and failed since ``since``, failures by kind, model and deployment,
        with the circuit breakers of the client when it has them."""
        status = getattr(self.llm, "status", None)
        return self.health.report(since=since, breakers=status() if callable(status) else ())

    async def mutate(self, parent: Program, context: MutationContext) -> list[Proposal]:
        return (await self.mutate_with_report(parent, context)).proposals

    async def mutate_with_report(
        self, parent: Program, context: MutationContext
    ) -> MutationReport:
        """Like :meth:`mutate`, also returning the rejected answers."""
        report = MutationReport()
        calls = min(self.calls_per_mutate, max(0, context.max_proposals))
        if calls == 0:
            return report
        level = max(0, context.exploration)
        messages = prompts.mutation_messages(
            parent, context.failing_cases, context.inspirations, context.description,
            helpful_edits=context.helpful_edits, max_cases=prompts.MAX_CASES * (1 + level),
        )
        temperature = self.temperature
        if level:
            base = self.BASE_TEMPERATURE if temperature is None else temperature
            temperature = max(base, min(self.MAX_TEMPERATURE, base + self.EXPLORE_STEP * level))
        outcomes = await asyncio.gather(
            *(self._one(parent, context, messages, temperature) for _ in range(calls))
        )
        seen: set[str] = set()
        for outcome in outcomes:
            if isinstance(outcome, Rejection):
                report.rejections.append(outcome)
            elif outcome.code in seen:
                report.rejections.append(
                    Rejection(
                        "duplicate",
                        "another answer of this batch proposed the same program",
                        parent.id,
                        llm_call_id=outcome.meta.get("llm_call_id"),
                        llm_cost_usd=float(outcome.meta.get("llm_cost_usd", 0.0)),
                    )
                )
            else:
                seen.add(outcome.code)
                report.proposals.append(outcome)
        for rejection in report.rejections:
            self.rejections.append(rejection)
            log.info(
                "llm.mutation_rejected",
                reason=rejection.reason,
                detail=rejection.detail[:300],
                parent=parent.id,
                call_id=rejection.llm_call_id,
            )
        return report

    async def _one(
        self, parent: Program, context: MutationContext, messages: list[dict[str, Any]],
        temperature: float | None,
    ) -> Proposal | Rejection:
        try:
            response = await self.llm.complete(
                messages,
                tenant_id=context.tenant_id,
                run_id=context.run_id,
                engine=self.engine,
                purpose="mutation",
                model=self.model,
                temperature=temperature,
                max_tokens=self.max_tokens,
            )
        except (LLMError, ConfigurationError) as exc:
            # Contract: a mutator does not raise for a parent it cannot improve; an unusable
            # model (budget spent, provider down, key refused) just yields nothing this time,
            # and its health says why.
            self.health.record_failure(exc, model=self.model or "default")
            return Rejection(LLM_ERROR, f"{type(exc).__name__}: {exc}", parent.id)
        self.health.record_answer()
        return self.proposal_from_answer(parent, response)

    def proposal_from_answer(self, parent: Program, response: LLMResponse) -> Proposal | Rejection:
        """Turn one model answer into a proposal, or say why it is rejected."""

        def reject(reason: str, detail: str) -> Rejection:
            return Rejection(
                reason,
                detail,
                parent.id,
                answer=prompts.clip(response.text, 4000),
                llm_call_id=response.call_id,
                llm_cost_usd=response.cost_usd,
            )

        try:
            code, kind = apply_answer(parent.code, parent.entrypoint, response.text)
        except DiffError as exc:
            applies = exc.field.startswith("blocks[") and exc.field.endswith(".search")
            return reject(DOES_NOT_APPLY if applies else UNPARSEABLE, str(exc))
        reason, detail = _checks.check_code(code, parent.entrypoint, parent_code=parent.code)
        if reason:
            return reject(reason, detail)
        return Proposal(
            code=code,
            entrypoint=parent.entrypoint,
            operator=f"llm.{kind}",
            parent_ids=(parent.id,) if parent.id else (),
            description=_explanation(response.text) or f"LLM {kind} by {response.deployment}",
            meta={
                **response.meta(),
                "llm_kind": kind,
                "diff": unified_diff(parent.code, code),
            },
        )


def _explanation(answer: str) -> str:
    """The prose before the first block or fence: the model's own summary of its change."""
    head = []
    for line in answer.splitlines():
        stripped = line.strip()
        if stripped.startswith(("```", "<<<<<<<")):
            break
        if stripped:
            head.append(stripped)
    return prompts.clip(" ".join(head), 300)
