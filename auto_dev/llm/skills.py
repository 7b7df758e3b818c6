"""``SkillWriter``: Memento's LLM path, writing a new skill from a group of similar failures.

From a :class:`SkillBrief` (what the agent was asked, the errors, example inputs with expected
outputs, the closest existing tool's code), the model writes a skill (name, description, code)
and extra test cases. The code is checked statically (:mod:`auto_dev.llm._checks`), then run in
the given sandbox against the examples plus the generated tests; failures go back to the model
for up to ``repair_rounds`` more answers. The result is a :class:`SkillDraft` with the code, the
tests, the final validation and the whole exchange. Storing it as a candidate is the engine's job
(through the capability-gated candidate store).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from auto_dev._exceptions import LLMError, ValidationError
from auto_dev.evolution.diff import DiffError, extract_code
from auto_dev.llm import _checks, prompts
from auto_dev.llm.types import ChatLLM, ChatMessage
from auto_dev.sandbox.base import Case, Limits, SandboxJob, SandboxResult

if TYPE_CHECKING:
    from auto_dev.abc import Sandbox

log = structlog.get_logger(__name__)

_NAME = re.compile(r"^[\s*#_`>-]*name[\s*_`]*:[\s*`]*([A-Za-z_]\w*)", re.IGNORECASE | re.MULTILINE)
_DESCRIPTION = re.compile(
    r"^[\s*#_`>-]*description[\s*_`]*:[\s*`]*(.+?)\s*$", re.IGNORECASE | re.MULTILINE
)
_JSON_FENCE = re.compile(r"```[ \t]*json[^\n]*\n(.*?)(?:```|\Z)", re.IGNORECASE | re.DOTALL)
_FIRST_DEF = re.compile(r"^(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class ExistingTool:
    """The tool closest to the failing tasks, shown to the model as a starting point."""

    name: str
    code: str
    entrypoint: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class SkillBrief:
    """Similar failed episodes, summarised for the model."""

    task_descriptions: tuple[str, ...]
    error_traces: tuple[str, ...] = ()
    examples: tuple[Case, ...] = ()
    closest_tool: ExistingTool | None = None
    pattern: str = ""
    episode_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.task_descriptions or not any(t.strip() for t in self.task_descriptions):
            raise ValidationError("task_descriptions", "must name at least one failed task")
        for index, case in enumerate(self.examples):
            if not isinstance(case, Case):
                raise ValidationError(f"examples[{index}]", "must be a sandbox Case")


@dataclass(slots=True)
class SkillDraft:
    """What the skill writer produced. ``passed`` means every test passed in the sandbox.

    ``tests`` are the cases the code was validated against (the group's examples first, then
    the generated ones); ``exchange`` is every message in order (system, user, assistant
    answers with their call ids and costs, sandbox results), JSON-serialisable.
    """

    name: str = ""
    description: str = ""
    code: str = ""
    entrypoint: str = ""
    tests: list[Case] = field(default_factory=list)
    generated_tests: list[Case] = field(default_factory=list)
    validation: SandboxResult | None = None
    passed: bool = False
    rounds: int = 0
    exchange: list[dict[str, Any]] = field(default_factory=list)
    llm_call_ids: list[str] = field(default_factory=list)
    cost_usd: float = 0.0
    failure: str | None = None

    @property
    def pass_rate(self) -> float:
        return self.validation.pass_rate if self.validation is not None else 0.0

    def validation_dict(self) -> dict[str, Any]:
        base = self.validation.to_dict() if self.validation is not None else {}
        return {**base, "passed_all": self.passed, "rounds": self.rounds, "failure": self.failure}


@dataclass(frozen=True, slots=True)
class _Answer:
    name: str
    description: str
    code: str
    tests: list[Case] | None  # None: the answer had no test block
    test_problems: list[str]


def parse_skill_answer(text: str) -> _Answer:
    """Read NAME, DESCRIPTION, code and JSON tests; raise :class:`ValidationError` if unusable."""
    name_match = _NAME.search(text)
    name = name_match.group(1) if name_match else ""
    description_match = _DESCRIPTION.search(text)
    description = description_match.group(1).strip(" *`") if description_match else ""
    try:
        code = extract_code(text, name or None)
    except DiffError as exc:
        raise ValidationError("answer", exc.problem) from exc
    if not name:
        first = _FIRST_DEF.search(code)
        if first is None:
            raise ValidationError("answer.NAME", "no NAME line and no function in the code")
        name = first.group(1)
    tests: list[Case] | None = None
    problems: list[str] = []
    for block in _JSON_FENCE.findall(text):
        try:
            data = json.loads(block)
        except json.JSONDecodeError as exc:
            problems.append(f"the JSON test block does not parse: {exc}")
            continue
        if not isinstance(data, list):
            problems.append("the JSON test block must be a list of cases")
            continue
        tests = tests or []
        for index, item in enumerate(data):
            try:
                tests.append(Case.from_dict(item, where=f"tests[{index}]"))
            except ValidationError as exc:
                problems.append(str(exc))
    return _Answer(name, description, code, tests, problems)


class SkillWriter:
    """Writes, validates and repairs a skill (see the module docstring)."""

    def __init__(
        self,
        llm: ChatLLM,
        *,
        repair_rounds: int = 3,
        limits: Limits | None = None,
        n_tests: int = 5,
        max_generated_tests: int = 20,
        engine: str = "memento",
        model: str | None = None,
    ) -> None:
        if repair_rounds < 0:
            raise ValidationError("repair_rounds", "must be >= 0")
        if max_generated_tests < 0:
            raise ValidationError("max_generated_tests", "must be >= 0")
        self.llm = llm
        self.repair_rounds = repair_rounds
        self.limits = limits or Limits()
        self.n_tests = n_tests
        self.max_generated_tests = max_generated_tests
        self.engine = engine
        self.model = model

    async def write(
        self,
        group: SkillBrief,
        sandbox: Sandbox,
        *,
        tenant_id: str | None = None,
        run_id: str | None = None,
    ) -> SkillDraft:
        """Ask, validate, repair; return the passing draft or the best one with ``failure``."""
        messages: list[ChatMessage] = prompts.skill_messages(group, n_tests=self.n_tests)
        draft = SkillDraft(exchange=[dict(m) for m in messages])
        best: SkillDraft | None = None
        generated: list[Case] = []
        for round_number in range(1 + self.repair_rounds):
            try:
                response = await self.llm.complete(
                    messages,
                    tenant_id=tenant_id,
                    run_id=run_id,
                    engine=self.engine,
                    purpose="skill" if round_number == 0 else "skill_repair",
                    model=self.model,
                )
            except LLMError as exc:
                draft.failure = f"model call failed: {type(exc).__name__}: {exc}"
                draft.exchange.append({"role": "error", "content": draft.failure})
                break
            draft.rounds = round_number + 1
            draft.llm_call_ids.append(response.call_id)
            draft.cost_usd += response.cost_usd
            draft.exchange.append(
                {
                    "role": "assistant",
                    "content": response.text,
                    "llm_call_id": response.call_id,
                    "llm_cost_usd": response.cost_usd,
                    "model": response.model,
                }
            )
            feedback = await self._evaluate(response.text, group, sandbox, draft, generated)
            if draft.passed:
                log.info("llm.skill_written", name=draft.name, rounds=draft.rounds)
                return draft
            if draft.validation is not None and (
                best is None or draft.pass_rate > best.pass_rate
            ):
                best = _copy(draft)
            generated = draft.generated_tests
            draft.failure = feedback
            messages = [
                *messages,
                {"role": "assistant", "content": response.text},
                {"role": "user", "content": feedback},
            ]
            draft.exchange.append({"role": "user", "content": feedback})
        result = draft
        if best is not None and best.pass_rate > draft.pass_rate:
            # Keep the best attempt's code and tests, but the whole exchange and every cost.
            best.exchange, best.llm_call_ids = draft.exchange, draft.llm_call_ids
            best.cost_usd, best.rounds = draft.cost_usd, draft.rounds
            result = best
        rounds_note = f"no passing skill after {draft.rounds} answer(s)"
        result.failure = f"{rounds_note}: {prompts.clip(draft.failure or '', 600)}"
        log.info("llm.skill_failed", name=result.name, rounds=draft.rounds)
        return result

    async def _evaluate(
        self,
        text: str,
        group: SkillBrief,
        sandbox: Sandbox,
        draft: SkillDraft,
        previous_tests: list[Case],
    ) -> str:
        """Check one answer and run it; update ``draft``; return feedback for a repair."""
        draft.validation = None
        try:
            answer = parse_skill_answer(text)
        except ValidationError as exc:
            return prompts.problem_feedback(str(exc))
        generated = answer.tests if answer.tests is not None else previous_tests
        generated = generated[: self.max_generated_tests]
        draft.name, draft.description, draft.code = answer.name, answer.description, answer.code
        draft.entrypoint = answer.name
        draft.generated_tests = generated
        reason, detail = _checks.check_code(answer.code, answer.name)
        if reason:
            return prompts.problem_feedback(f"{reason}: {detail}")
        cases = _dedupe([*group.examples, *generated])
        draft.tests = cases
        if not cases:
            problems = "; ".join(answer.test_problems) or "no test cases were given"
            return prompts.problem_feedback(f"nothing to validate the skill with ({problems})")
        result = await sandbox.run(
            SandboxJob(code=answer.code, entrypoint=answer.name, cases=tuple(cases),
                       limits=self.limits)
        )
        draft.validation = result
        draft.exchange.append({"role": "sandbox", "content": result.to_dict()})
        draft.passed = result.all_passed
        if draft.passed:
            draft.failure = None
            return ""
        feedback = prompts.sandbox_feedback(answer.name, cases, result)
        if answer.test_problems:
            feedback += "\nProblems with your test cases: " + "; ".join(answer.test_problems[:5])
        return feedback


def _dedupe(cases: list[Case]) -> list[Case]:
    seen: set[str] = set()
    out = []
    for case in cases:
        key = json.dumps(case.to_wire(), sort_keys=True, default=repr)
        if key not in seen:
            seen.add(key)
            out.append(case)
    return out


def _copy(draft: SkillDraft) -> SkillDraft:
    return SkillDraft(
        name=draft.name,
        description=draft.description,
        code=draft.code,
        entrypoint=draft.entrypoint,
        tests=list(draft.tests),
        generated_tests=list(draft.generated_tests),
        validation=draft.validation,
        passed=draft.passed,
        rounds=draft.rounds,
        exchange=list(draft.exchange),
        llm_call_ids=list(draft.llm_call_ids),
        cost_usd=draft.cost_usd,
        failure=draft.failure,
    )
