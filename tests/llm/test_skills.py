"""SkillWriter: write a skill from a failure group, validate it in a real sandbox, repair it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from auto_dev._exceptions import LLMUnavailableError, ValidationError
from auto_dev.llm.skills import ExistingTool, SkillBrief, SkillWriter, parse_skill_answer
from auto_dev.sandbox.base import Case, Limits
from auto_dev.sandbox.process import ProcessSandbox
from auto_dev.testing import FakeLLM

GROUP = SkillBrief(
    task_descriptions=("Parse the duration '1h30m' into seconds", "How long is '2m5s'?"),
    error_traces=("Traceback (most recent call last):\nValueError: invalid literal for int()",),
    examples=(Case(args=("1h30m",), expected=5400), Case(args=("2m5s",), expected=125)),
    closest_tool=ExistingTool("to_int", "def to_int(s):\n    return int(s)\n", "to_int"),
    pattern="ValueError on duration strings",
)

GOOD_CODE = """\
import re

def parse_duration(text):
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\\d+)([hms])", text))
"""
BUGGY_CODE = GOOD_CODE.replace('"m": 60', '"m": 100')
TESTS = [{"args": ["45s"], "expected": 45}, {"args": ["1h"], "expected": 3600}]


def answer(code: str, tests: list[dict[str, object]] | None = TESTS, name: str = "parse_duration",
           description: str = "Converts 1h30m-style durations to seconds.") -> str:
    parts = [f"**NAME:** {name}", f"DESCRIPTION: {description}", f"```python\n{code}```"]
    if tests is not None:
        parts.append(f"```json\n{json.dumps(tests)}\n```")
    return "\n".join(parts)


@pytest.fixture
async def sandbox() -> AsyncIterator[ProcessSandbox]:
    box = ProcessSandbox(workers=1)
    yield box
    await box.aclose()


LIMITS = Limits(timeout_s=5.0)


class TestWrite:
    """The happy path and the repair loop."""

    async def test_first_answer_passes(self, sandbox: ProcessSandbox) -> None:
        """A correct skill passes on the examples plus its own tests in one round."""
        llm = FakeLLM([answer(GOOD_CODE)], cost_per_call=0.01)
        draft = await SkillWriter(llm, limits=LIMITS).write(GROUP, sandbox, tenant_id="t1")
        assert draft.passed and draft.failure is None and draft.rounds == 1
        assert (draft.name, draft.entrypoint) == ("parse_duration", "parse_duration")
        assert draft.description.startswith("Converts")
        assert draft.code == GOOD_CODE
        assert [c.args for c in draft.tests] == [("1h30m",), ("2m5s",), ("45s",), ("1h",)]
        assert draft.validation is not None and draft.validation.passed == 4
        assert [m["role"] for m in draft.exchange] == ["system", "user", "assistant", "sandbox"]
        json.dumps(draft.exchange)  # storable as-is
        assert draft.cost_usd == 0.01 and len(draft.llm_call_ids) == 1
        prompt = llm.prompts[0]
        for fragment in ("1h30m", "5400", "ValueError", "def to_int", "ValueError on duration"):
            assert fragment in prompt
        assert llm.calls[0].purpose == "skill" and llm.calls[0].engine == "memento"

    async def test_sandbox_errors_are_fed_back(self, sandbox: ProcessSandbox) -> None:
        """A failing first version gets the sandbox's failures back and is repaired."""
        llm = FakeLLM([answer(BUGGY_CODE), answer(GOOD_CODE, tests=None)])
        draft = await SkillWriter(llm, limits=LIMITS).write(GROUP, sandbox)
        assert draft.passed and draft.rounds == 2
        repair_prompt = llm.prompts[1]
        assert "passed" in repair_prompt and "expected: 5400" in repair_prompt
        assert "actual:   6600" in repair_prompt
        assert llm.calls[1].purpose == "skill_repair"
        # The repair answer sent no tests: the previous generated tests still apply.
        assert len(draft.tests) == 4
        roles = [m["role"] for m in draft.exchange]
        assert roles == ["system", "user", "assistant", "sandbox", "user", "assistant", "sandbox"]

    async def test_static_rejection_skips_the_sandbox(self, sandbox: ProcessSandbox) -> None:
        """A comment-only answer is refused without running; the model is told why."""
        llm = FakeLLM([answer("# cannot do this right now\n"), answer(GOOD_CODE)])
        draft = await SkillWriter(llm, limits=LIMITS).write(GROUP, sandbox)
        assert draft.passed and draft.rounds == 2
        assert "could not be used" in llm.prompts[1]
        assert [m["role"] for m in draft.exchange].count("sandbox") == 1

    async def test_gives_up_after_repair_rounds(self, sandbox: ProcessSandbox) -> None:
        """After 1 + repair_rounds answers the best draft comes back, not passed."""
        llm = FakeLLM(default=answer(BUGGY_CODE))
        draft = await SkillWriter(llm, repair_rounds=2, limits=LIMITS).write(GROUP, sandbox)
        assert not draft.passed and len(llm.calls) == 3 and draft.rounds == 3
        assert draft.failure and "no passing skill after 3" in draft.failure
        assert draft.validation is not None and 0 < draft.pass_rate < 1
        assert draft.code == BUGGY_CODE

    async def test_model_failure(self, sandbox: ProcessSandbox) -> None:
        """A model error ends the attempt with the error recorded, never raised."""
        llm = FakeLLM([LLMUnavailableError("provider down")])
        draft = await SkillWriter(llm, limits=LIMITS).write(GROUP, sandbox)
        assert not draft.passed and "provider down" in (draft.failure or "")
        assert draft.exchange[-1]["role"] == "error"

    async def test_nothing_to_validate(self, sandbox: ProcessSandbox) -> None:
        """Without examples or generated tests the skill cannot pass."""
        group = SkillBrief(task_descriptions=("do something",))
        llm = FakeLLM(default=answer(GOOD_CODE, tests=None))
        draft = await SkillWriter(llm, repair_rounds=1, limits=LIMITS).write(group, sandbox)
        assert not draft.passed and "nothing to validate" in llm.prompts[1]


class TestParse:
    """Reading NAME, DESCRIPTION, code and tests from an answer."""

    def test_name_from_code_when_missing(self) -> None:
        """Without a NAME line the first function is the entry point."""
        parsed = parse_skill_answer(f"```python\n{GOOD_CODE}```")
        assert parsed.name == "parse_duration" and parsed.tests is None

    def test_bad_tests_are_reported(self) -> None:
        """Broken JSON or malformed cases are reported, valid cases kept."""
        text = answer(GOOD_CODE, tests=[{"args": ["1s"], "expected": 1}, {"args": 5}])
        parsed = parse_skill_answer(text)
        assert parsed.tests is not None and len(parsed.tests) == 1
        assert "tests[1].args" in parsed.test_problems[0]
        broken = parse_skill_answer(answer(GOOD_CODE, tests=None) + "\n```json\n[{\n```")
        assert broken.tests is None and "does not parse" in broken.test_problems[0]

    def test_no_code(self) -> None:
        """An answer with no code is a ValidationError naming the answer."""
        with pytest.raises(ValidationError, match="answer"):
            parse_skill_answer("NAME: x\nI cannot help with that.")

    def test_group_validation(self) -> None:
        """A failure group needs a task, and examples must be Cases."""
        with pytest.raises(ValidationError, match="task_descriptions"):
            SkillBrief(task_descriptions=("  ",))
        with pytest.raises(ValidationError, match="examples"):
            SkillBrief(task_descriptions=("x",), examples=({"args": []},))  # type: ignore[arg-type]
