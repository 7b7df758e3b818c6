"""Tests for the model-driven workflow operators: answers are parsed, applied and validated,
and a bad answer is counted, never raised."""

from __future__ import annotations

import random
from typing import Any

import pytest

from auto_dev._exceptions import LLMUnavailableError, ValidationError
from auto_dev.evolution.diff import DiffBlock, render_blocks
from auto_dev.testing import FakeLLM
from auto_dev.workflows import validate_workflow
from auto_dev.workflows.diff import structural_diff
from auto_dev.workflows.operators import (
    LLMWorkflowEdit,
    ReflectivePromptRewrite,
    WorkflowMutationContext,
    pretty_json,
)
from tests.workflows._documents import CANCEL_FAILED, TOOLS, refund

REPLY_FAILED: dict[str, Any] = {
    "ok": False, "output": None, "error": "reply is not JSON", "error_step": "reply",
    "trace": [{"id": "order", "kind": "tool", "input": {"order_id": 7}, "error": None,
               "output": {"id": 7, "status": "open"}, "skipped": False, "children": []},
              {"id": "reply", "kind": "llm", "input": {"prompt": "Order: {...}"},
               "output": "Sure! Here it is", "error": "reply is not JSON", "skipped": False,
               "children": []}],
}


def _context(failures: Any = (), seed: int = 0) -> WorkflowMutationContext:
    return WorkflowMutationContext(tools=TOOLS, failures=failures, rng=random.Random(seed))


def _replace(search: str, replace: str) -> str:
    return "I fix it.\n" + render_blocks([DiffBlock(search, replace)])


class TestReflectivePromptRewrite:
    """One llm step's prompt is rewritten from the failed runs; nothing else changes."""

    async def test_rewrites_the_failing_steps_prompt(self) -> None:
        """The failing llm step is chosen, the model sees its trace, only its prompt changes."""
        llm = FakeLLM(["The prompt never asks for JSON.\n```prompt\nAnswer in JSON only. "
                       "Order: ${steps.order}\n```"], cost_per_call=0.01)
        op = ReflectivePromptRewrite(llm)
        doc = refund()
        [proposal] = await op.propose(doc, _context([REPLY_FAILED]))
        assert doc == refund()
        assert proposal.step_id == "reply" and proposal.operator == op.name
        [changed] = structural_diff(doc, proposal.definition).changed
        assert changed.step_id == "reply"
        assert [(c.field, c.new) for c in changed.changes] == [
            ("llm.prompt", "Answer in JSON only. Order: ${steps.order}")]
        call = llm.calls[0]
        assert call.purpose == "workflow_mutation"
        assert "reply is not JSON" in call.prompt and "Order: ${steps.order}" in call.prompt
        assert proposal.cost_usd == pytest.approx(0.01)
        assert op.rejected_answers == 0

    async def test_no_llm_step_no_call(self) -> None:
        """A workflow without llm steps gets no proposal and costs no call."""
        llm = FakeLLM(default="```prompt\nx\n```")
        doc = {"name": "w", "steps": [{"id": "t", "tool": "get_order", "args": {}}]}
        assert await ReflectivePromptRewrite(llm).propose(doc, _context()) == []
        assert llm.calls == []

    @pytest.mark.parametrize("answer", [
        "I would make it clearer.",  # no block
        "```prompt\nOrder: ${steps.order}\n```",  # the same prompt
        "```prompt\nOrder: ${steps.order\n```",  # an unterminated reference
    ])
    async def test_unusable_answers_are_counted(self, answer: str) -> None:
        """An answer without a new, valid prompt is rejected and counted, not raised."""
        def validator(doc: dict[str, Any], *, tools: Any = None) -> dict[str, Any]:
            for step in doc["steps"]:
                prompt = step.get("llm", {}).get("prompt", "")
                if prompt.count("${") != prompt.count("}"):
                    raise ValidationError("workflow.steps[3].llm.prompt", "bad ${...}")
            return validate_workflow(doc, tools=tools)

        op = ReflectivePromptRewrite(FakeLLM([answer]), validator=validator)
        assert await op.propose(refund(), _context([REPLY_FAILED])) == []
        assert op.rejected_answers == 1
        assert op.rejections[-1].answer == answer

    async def test_model_failure_is_counted(self) -> None:
        """A call that fails yields nothing and is counted apart from bad answers."""
        op = ReflectivePromptRewrite(FakeLLM([LLMUnavailableError("down")]))
        assert await op.propose(refund(), _context()) == []
        assert (op.llm_errors, op.rejected_answers) == (1, 0)


class TestLLMWorkflowEdit:
    """SEARCH/REPLACE blocks or whole documents are applied, parsed and validated."""

    async def test_search_replace_over_pretty_json(self) -> None:
        """A block over the canonical text fixes the switch's field."""
        answer = _replace('"when": "steps.order.status == \'shipped\'"',
                          '"when": "steps.order.state == \'shipped\'"')
        llm = FakeLLM([answer])
        [proposal] = await LLMWorkflowEdit(llm).propose(refund(), _context([CANCEL_FAILED]))
        [changed] = structural_diff(refund(), proposal.definition).changed
        assert changed.step_id == "route"
        assert pretty_json(refund()) in llm.calls[0].prompt
        assert "cannot cancel a shipped order" in llm.calls[0].prompt
        assert "SEARCH/REPLACE" in proposal.note

    async def test_whole_document(self) -> None:
        """A complete workflow in a json block is proposed as it is."""
        new = refund()
        new["steps"][1]["switch"][1]["otherwise"][0]["retry"] = {"max_attempts": 2}
        llm = FakeLLM([f"Add a retry.\n```json\n{pretty_json(new)}```"])
        [proposal] = await LLMWorkflowEdit(llm).propose(refund(), _context())
        assert proposal.definition == new

    @pytest.mark.parametrize("answer", [
        "No idea.",
        _replace('"name": "nothing like this"', '"name": "x"'),  # SEARCH matches nothing
        _replace('"output": "steps.reply"', '"output": "steps.reply",,'),  # not JSON
        _replace('"id": "cancel"', '"id": "order"'),  # duplicate id
        _replace('"tool": "cancel_order"', '"tool": "rm_rf"'),  # unknown tool
        _replace('"output": "steps.reply"', '"output": "steps.reply"'),  # changes nothing
        "```json\n[1, 2]\n```",  # not an object
    ])
    async def test_bad_answers_are_counted(self, answer: str) -> None:
        """Each kind of unusable answer is rejected before any run, and counted."""
        op = LLMWorkflowEdit(FakeLLM([answer]), validator=validate_workflow)
        assert await op.propose(refund(), _context()) == []
        assert op.rejected_answers == 1
        assert len(op.rejections) == 1

    async def test_duplicate_answers_in_one_batch(self) -> None:
        """Two calls answering the same edit give one proposal and one rejection."""
        answer = _replace('"max_attempts": 3,', '"max_attempts": 5,')
        op = LLMWorkflowEdit(FakeLLM([answer, answer]), calls=2)
        proposals = await op.propose(refund(), _context())
        assert len(proposals) == 1 and op.rejected_answers == 1

    async def test_custom_validator_is_used(self) -> None:
        """The validator given decides; its error is counted."""
        def refuse(doc: dict[str, Any], *, tools: Any = None) -> dict[str, Any]:
            raise ValidationError("workflow.limits", "required here")

        answer = _replace('"max_attempts": 3,', '"max_attempts": 5,')
        op = LLMWorkflowEdit(FakeLLM([answer]), validator=refuse)
        assert await op.propose(refund(), _context()) == []
        assert "workflow.limits" in op.rejections[-1].detail

    def test_calls_must_be_positive(self) -> None:
        """A model operator with no calls is a configuration error naming the field."""
        with pytest.raises(ValidationError, match="calls"):
            LLMWorkflowEdit(FakeLLM(), calls=0)
