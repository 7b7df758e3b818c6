"""Workflow operators that ask a chat model: a reflective prompt rewrite and JSON edits.

:class:`ReflectivePromptRewrite` is GEPA's reflective step: it shows the model the failing runs
and the current prompt of one ``llm`` step and asks for a better prompt; only that prompt
changes. :class:`LLMWorkflowEdit` shows the whole workflow as pretty canonical JSON and asks for
SEARCH/REPLACE blocks over that text (applied by :mod:`auto_dev.evolution.diff`, the parser the
tool mutators use) or a whole new document. Every answer is parsed, applied and validated
before it is proposed; an answer that fails any of that is counted in ``rejected_answers`` and
kept in ``rejections`` (never raised), a call that fails in ``llm_errors``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, ClassVar

import structlog

from auto_dev._exceptions import ConfigurationError, LLMError, ValidationError
from auto_dev.evolution.diff import DiffError, apply_blocks, parse_blocks
from auto_dev.llm.mutator import Rejection
from auto_dev.llm.prompts import clip, show
from auto_dev.llm.types import ChatLLM, ChatMessage, LLMResponse
from auto_dev.workflows._document import canonical_json, step_kind, walk_steps
from auto_dev.workflows._ops_base import (
    Doc,
    FailureEvidence,
    WorkflowMutationContext,
    WorkflowProposal,
    ids_unique,
    step_at,
    step_id_of,
)
from auto_dev.workflows.schema import validate_workflow

log = structlog.get_logger(__name__)

#: ``validator(doc, tools=...)`` returns the checked document or raises ``ValidationError``.
WorkflowValidator = Callable[..., Doc]

MAX_FAILURES_SHOWN = 3
MAX_TRACE_LINES = 30
_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)

PROMPT_REWRITE_SYSTEM = """\
You improve the prompt of one model call inside a workflow (a JSON document whose steps call
tools and models). You get the workflow, the step whose prompt to improve, and runs of the
workflow that failed, with what each step received, returned and raised. Work out from the
failures what the prompt fails to say (a missing instruction, an unclear output format, an
ignored field) and write a better prompt. Keep every ${...} reference the prompt needs: they are
JMESPath expressions over the run state {input, steps, vars, item}, replaced by their values.

Answer with a short diagnosis, then the complete new prompt alone in one fenced block:
```prompt
<the new prompt>
```"""

WORKFLOW_EDIT_SYSTEM = """\
You repair workflows: JSON documents interpreted by a safe engine. A workflow has "name",
"input" {"required": [...]}, "steps" and "output" (a JMESPath expression over the final state).
Each step has a unique "id" and one kind: "tool" (with "args"), "llm" ({"prompt", "output":
"text"|"json"}), "switch" ([{"when": expr, "steps": [...]}, ..., {"otherwise": [...]}]), "map"
({"over": expr, "as": name, "steps": [...]}), "set" ({key: value}) or "fail" (a message);
optional "when" (skip unless true), "retry" {"max_attempts", "backoff_s", "on": ["error",
"timeout"]}, "timeout_s" and "catch" (steps run when the step fails). Expressions are JMESPath
over the state {input, steps: {id: output}, vars, item} (string literals are 'raw'); a value
"${expr}" is replaced by the expression's value. Use only the tools listed.

Answer with a short explanation, then ONE of:
1. SEARCH/REPLACE blocks over the JSON text exactly as shown (SEARCH copies existing lines):
<<<<<<< SEARCH
    old lines
=======
    new lines
>>>>>>> REPLACE
2. The complete new workflow in one ```json fenced block."""


def pretty_json(doc: Any) -> str:
    """The canonical pretty text of a document (sorted keys, two-space indent): what the model
    edits, so that SEARCH blocks are stable whatever the document's key order."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def format_failures(failures: Sequence[Mapping[str, Any]], *, only: str | None = None) -> str:
    """Failed runs as the model should read them: the error, then each step's trace entry
    (input, output, error), indented by nesting; ``only`` keeps the entries of one step."""
    parts: list[str] = []
    for number, run in enumerate(list(failures)[:MAX_FAILURES_SHOWN], start=1):
        lines = [f"Run {number}: error at step {run.get('error_step')}: "
                 f"{clip(str(run.get('error') or 'wrong output'), 400)}"]
        if "input" in run:
            lines.append(f"  workflow input: {show(run['input'])}")
        if "output" in run:
            lines.append(f"  workflow output: {show(run.get('output'))}")
        if "expected" in run:
            lines.append(f"  expected output: {show(run['expected'])}")
        entries = _trace_lines(run.get("trace"), depth=1, only=only)
        lines += entries[:MAX_TRACE_LINES]
        if len(entries) > MAX_TRACE_LINES:
            lines.append(f"  ({len(entries) - MAX_TRACE_LINES} more trace lines)")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) if parts else "(no failed run recorded)"


def _trace_lines(trace: Any, *, depth: int, only: str | None) -> list[str]:
    lines: list[str] = []
    for entry in trace if isinstance(trace, list | tuple) else ():
        if not isinstance(entry, Mapping):
            continue
        if only is None or entry.get("id") == only:
            pad = "  " * depth
            text = f"{pad}- {entry.get('id')} ({entry.get('kind')})"
            if entry.get("skipped"):
                text += " skipped"
            else:
                text += f": input {show(entry.get('input'))} -> output {show(entry.get('output'))}"
            if entry.get("error"):
                text += f"; error: {clip(str(entry['error']), 300)}"
            lines.append(text)
        lines += _trace_lines(entry.get("children"), depth=depth + 1, only=only)
    return lines


class WorkflowModelOperator(ABC):
    """A workflow operator that asks a chat model; ``await propose(doc, context)``.

    ``llm`` is an :class:`~auto_dev.llm.client.LLMClient`, a :class:`~auto_dev.testing.FakeLLM`
    or anything with the same ``complete``; ``calls`` model calls run per ``propose``.
    ``validator(doc, tools=...)`` checks each answer (default: :func:`validate_workflow`, given
    ``context.tools`` when there are any).
    """

    name: ClassVar[str]
    #: Every proposal costs a model call (the search accounts for it).
    calls_model: ClassVar[bool] = True

    def __init__(self, llm: ChatLLM, *, calls: int = 1, validator: WorkflowValidator | None = None,
                 model: str | None = None, temperature: float | None = None,
                 max_tokens: int | None = None, tenant_id: str | None = None,
                 keep_rejections: int = 200) -> None:
        if calls < 1:
            raise ValidationError("calls", "must be >= 1")
        self.llm = llm
        self.calls = calls
        self.validator = validator or validate_workflow
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.tenant_id = tenant_id
        self.rejected_answers = 0
        self.llm_errors = 0
        self.cost_usd = 0.0
        self.rejections: deque[Rejection] = deque(maxlen=keep_rejections)

    async def propose(self, doc: Doc, context: WorkflowMutationContext
                      ) -> list[WorkflowProposal]:
        """Proposals from the model's answers; nothing (and no call) when the operator does
        not apply to ``doc``."""
        prepared = self.prepare(doc, context)
        if prepared is None:
            return []
        messages, target = prepared
        answers = await asyncio.gather(*(self._ask(messages) for _ in range(self.calls)))
        out: list[WorkflowProposal] = []
        seen = {canonical_json(doc)}
        for response in answers:
            if response is None:
                continue
            try:
                definition, note = self.apply(doc, response.text, target)
                definition = self.validator(
                    definition, tools=list(context.tools) if context.tools else None)
                if not ids_unique(definition):
                    raise ValidationError("workflow.steps", "step ids are not unique")
            except (ValidationError, ValueError, TypeError, KeyError, IndexError) as exc:
                self._reject(doc, response, exc)
                continue
            text = canonical_json(definition)
            if text in seen:
                self._reject(doc, response, ValidationError(
                    "answer", "changes nothing" if text == canonical_json(doc)
                    else "repeats another answer"))
                continue
            seen.add(text)
            out.append(WorkflowProposal(self.name, definition, note, target,
                                        meta=response.meta()))
        return out

    @abstractmethod
    def prepare(self, doc: Doc, context: WorkflowMutationContext
                ) -> tuple[list[ChatMessage], str | None] | None:
        """The chat to send and the id of the step it is about; ``None`` = does not apply."""

    @abstractmethod
    def apply(self, doc: Doc, answer: str, target: str | None) -> tuple[Doc, str]:
        """The document an answer describes and a note; raises ``ValidationError`` (or a
        ``ValueError``) when the answer cannot be used."""

    async def _ask(self, messages: list[ChatMessage]) -> LLMResponse | None:
        try:
            response = await self.llm.complete(
                messages, tenant_id=self.tenant_id, engine="workflow_evolver",
                purpose="workflow_mutation", model=self.model, temperature=self.temperature,
                max_tokens=self.max_tokens)
        except (LLMError, ConfigurationError) as exc:
            # An unusable model (budget spent, provider down) yields nothing this time.
            self.llm_errors += 1
            self.rejections.append(Rejection("llm_error", f"{type(exc).__name__}: {exc}", None))
            log.info("workflow_operator.llm_error", operator=self.name, error=str(exc)[:300])
            return None
        self.cost_usd += response.cost_usd
        return response

    def _reject(self, doc: Doc, response: LLMResponse, exc: Exception) -> None:
        self.rejected_answers += 1
        reason = "does_not_apply" if isinstance(exc, DiffError) else "invalid"
        self.rejections.append(Rejection(
            reason, str(exc), str(doc.get("name")), answer=clip(response.text, 4000),
            llm_call_id=response.call_id, llm_cost_usd=response.cost_usd))
        log.info("workflow_operator.answer_rejected", operator=self.name, reason=reason,
                 detail=str(exc)[:300], call_id=response.call_id)


def _fenced(answer: str, tags: Collection[str]) -> list[str]:
    return [m.group(2) for m in _FENCE.finditer(answer) if m.group(1).lower() in tags]


class ReflectivePromptRewrite(WorkflowModelOperator):
    """GEPA's reflective mutation: rewrite the prompt of one ``llm`` step from failed runs."""

    name = "reflective_prompt_rewrite"

    def prepare(self, doc: Doc, context: WorkflowMutationContext
                ) -> tuple[list[ChatMessage], str | None] | None:
        llm_steps = [loc for loc in walk_steps(doc) if step_kind(loc.step) == "llm"
                     and isinstance(loc.step["llm"], dict) and step_id_of(loc.step)]
        if not llm_steps:
            return None
        evidence = FailureEvidence(doc, context)
        best = min(evidence.tier(step_id_of(loc.step)) for loc in llm_steps)
        pool = [loc for loc in llm_steps if evidence.tier(step_id_of(loc.step)) == best]
        target = pool[context.rng.randrange(len(pool))]
        step_id = step_id_of(target.step)
        body = target.step["llm"]
        parts = [f"Workflow:\n```json\n{clip(pretty_json(doc), 12_000)}```",
                 f"Step to improve: {step_id} (output {body.get('output', 'text')})"]
        if body.get("system"):
            parts.append(f"Its system message:\n```\n{body['system']}\n```")
        parts.append(f"Its current prompt:\n```prompt\n{body.get('prompt', '')}\n```")
        parts.append("Failed runs:\n" + format_failures(context.failures))
        parts.append("Answer with the diagnosis and the new prompt in a ```prompt block.")
        return ([{"role": "system", "content": PROMPT_REWRITE_SYSTEM},
                 {"role": "user", "content": "\n\n".join(parts)}], step_id)

    def apply(self, doc: Doc, answer: str, target: str | None) -> tuple[Doc, str]:
        blocks = _fenced(answer, {"prompt", "", "text", "txt"})
        if not blocks or not blocks[-1].strip():
            raise ValidationError("answer", "has no ```prompt block with the new prompt")
        prompt = blocks[-1].strip("\n")
        clone = copy.deepcopy(doc)
        location = next((loc for loc in walk_steps(clone) if loc.step.get("id") == target),
                        None)
        if location is None:
            raise ValidationError("answer", f"step {target!r} is gone")
        step = step_at(clone, location.path)
        if step["llm"].get("prompt") == prompt:
            raise ValidationError("answer", "repeats the current prompt")
        step["llm"]["prompt"] = prompt
        return clone, f"rewrite the prompt of step {target} from the failed runs"


class LLMWorkflowEdit(WorkflowModelOperator):
    """Edits of the whole workflow by a model: SEARCH/REPLACE blocks over its pretty JSON, or a
    complete new document."""

    name = "llm_workflow_edit"

    def prepare(self, doc: Doc, context: WorkflowMutationContext
                ) -> tuple[list[ChatMessage], str | None] | None:
        evidence = FailureEvidence(doc, context)
        parts = [f"Workflow:\n```json\n{clip(pretty_json(doc), 16_000)}```"]
        if context.tools:
            parts.append("Tools you may call: " + ", ".join(sorted(set(context.tools))))
        if evidence.failing:
            parts.append("Steps that failed: " + ", ".join(evidence.failing))
        parts.append("Failed runs:\n" + format_failures(context.failures))
        if context.state_paths:
            parts.append("State paths seen in runs: " + ", ".join(list(context.state_paths)[:40]))
        parts.append("Fix the workflow so these runs succeed. Answer with SEARCH/REPLACE blocks "
                     "over the JSON above or the complete workflow in a ```json block.")
        return ([{"role": "system", "content": WORKFLOW_EDIT_SYSTEM},
                 {"role": "user", "content": "\n\n".join(parts)}], None)

    def apply(self, doc: Doc, answer: str, target: str | None) -> tuple[Doc, str]:
        blocks = parse_blocks(answer)  # raises DiffError (a ValidationError) when malformed
        if blocks:
            text, kind = apply_blocks(pretty_json(doc), blocks), "SEARCH/REPLACE"
        else:
            fenced = _fenced(answer, {"json", ""})
            if not fenced:
                raise ValidationError("answer", "has neither SEARCH/REPLACE blocks nor a "
                                      "```json block")
            text, kind = max(fenced, key=len), "whole document"
        try:
            edited = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError("answer", f"the edited workflow is not JSON: {exc}") from exc
        if not isinstance(edited, dict):
            raise ValidationError("answer", "the edited workflow is not a JSON object")
        return edited, f"model edit of the workflow ({kind})"
