"""Memento: groups similar failures, builds regression tests, proposes a skill."""

from __future__ import annotations

from sqlalchemy import select

from auto_dev.db import Database
from auto_dev.engines.memento import Memento, never_passes
from auto_dev.failures import failure_signature
from auto_dev.models import SkillCandidate
from auto_dev.sandbox.process import ProcessSandbox
from auto_dev.service import AutoDev
from tests.engines.conftest import ON

AVERAGE = "def average(values):\n    return sum(values) / len(values)\n"
ZERO = 'File "x.py", line 2, in average\nZeroDivisionError: division by zero'


def _setup(autodev: AutoDev) -> None:
    autodev.configure_tenant(**ON)
    autodev.register_tool("average", AVERAGE, "average",
                          description="arithmetic mean average of basket values",
                          tests=[{"args": [[1, 2, 3]], "expected": 2.0}])
    autodev.set_maturity("bot", "auto_dev.memento_skills", "intern")


async def _fail(autodev: AutoDev, task: str, *, expected: object = 0.0) -> None:
    await autodev.record_episode(agent="bot", task=task, success=False,
                                 inputs={"args": [[]]}, expected=expected, error_trace=ZERO)


class TestSignatures:
    """Failure signatures group by shape, not by the varying values."""

    def test_numbers_and_strings_are_masked(self) -> None:
        """Two KeyErrors on different keys share a signature; a ZeroDivisionError doesn't."""
        a = failure_signature("t", "KeyError: 'total'")
        b = failure_signature("t", "KeyError: 'amount'")
        c = failure_signature("t", "ZeroDivisionError: division by zero")
        assert a == b != c


class TestMemento:
    """Memento's offline retrieve-and-repair path."""

    async def test_learns_a_skill_after_repeated_failures(self, autodev: AutoDev) -> None:
        """Two similar failures without a tool produce one passed retrieve_repair skill."""
        _setup(autodev)
        await _fail(autodev, "average basket value for an empty cart")
        await autodev.drain()
        with autodev.database.session() as session:
            assert session.scalars(select(SkillCandidate)).first() is None  # one is not a pattern
        await _fail(autodev, "average basket value of a new customer")
        await autodev.drain()
        with autodev.database.session() as session:
            skills = session.scalars(select(SkillCandidate)).all()
            assert len(skills) == 1
            skill = skills[0]
            assert skill.strategy == "retrieve_repair"
            assert skill.status == "passed"
            assert len(skill.source_episode_ids) == 2
            assert {"args": [[]], "kwargs": {}, "expected": 0.0} in skill.tests
            assert "ZeroDivisionError" in skill.failure_pattern
        # A third failure of the same kind does not start a second, duplicate candidate.
        await _fail(autodev, "average basket value again")
        await autodev.drain()
        with autodev.database.session() as session:
            assert len(session.scalars(select(SkillCandidate)).all()) == 1

    async def test_no_expected_outputs_means_no_offline_skill(self, autodev: AutoDev) -> None:
        """Offline, failures without expected values can't become tests: the cycle says so."""
        _setup(autodev)
        for task in ("average one", "average two"):
            await autodev.record_episode(agent="bot", task=task, success=False,
                                         inputs={"args": [[]]}, error_trace=ZERO)
        await autodev.drain()
        memento = autodev.engines.get("memento")
        assert isinstance(memento, Memento)
        group = memento.failure_group(f"task:{failure_signature(None, ZERO)}")
        assert group is not None and len(group.episode_ids) == 2 and not group.cases
        result = await memento.run_cycle(f"task:{failure_signature(None, ZERO)}", 20)
        assert result.status == "skipped" and "expected outputs" in result.reason

    async def test_a_repair_that_changed_nothing_is_reported_as_such(self, autodev: AutoDev
                                                                      ) -> None:
        """Expected values no edit of the closest tool can reach: no candidate, and the cycle
        says the strategy changed nothing instead of calling it a repair."""
        _setup(autodev)
        for task in ("average one", "average two"):
            await _fail(autodev, task, expected="a string no mutant returns")
        await autodev.drain()  # the cycle the events queued has run (and changed nothing)
        memento = autodev.engines.get("memento")
        result = await memento.run_cycle(f"task:{failure_signature(None, ZERO)}", 30)
        assert result.status == "skipped", result.reason
        assert "no change to the closest tool 'average'" in result.reason
        assert "as before" in result.reason and "repaired" not in result.reason
        with autodev.database.session() as session:
            assert session.scalars(select(SkillCandidate)).first() is None

    def test_never_passes_rules(self) -> None:
        """Empty, comment-only and unchanged programs can never pass."""
        assert never_passes("", None) == "the code is empty or comment-only"
        assert never_passes("# only a comment\n", None) == "the code is empty or comment-only"
        assert never_passes(AVERAGE + "\n# same\n", AVERAGE) == (
            "the code is identical to its parent's")
        assert never_passes(AVERAGE.replace("sum", "max"), AVERAGE) is None


class TestMementoWithModel:
    """Memento's LLM path: the model writes a new skill, validated in the sandbox."""

    async def test_model_writes_a_new_skill(
        self, database: Database, database_url: str, sandbox: ProcessSandbox
    ) -> None:
        """With a (fake) model, two similar failures become a passed ``llm`` skill candidate."""
        import json

        from auto_dev.config import load_settings
        from auto_dev.testing import FakeLLM

        code = ("def safe_average(values):\n    if not values:\n        return 0.0\n"
                "    return sum(values) / len(values)\n")
        answer = ("NAME: safe_average\nDESCRIPTION: Average that is 0.0 for an empty basket.\n"
                  f"```python\n{code}```\n```json\n"
                  + json.dumps([{"args": [[2, 4]], "expected": 3.0}]) + "\n```")
        llm = FakeLLM([answer])
        autodev = AutoDev(load_settings(database_url=database_url, tenant="t1"),
                          database=database, sandbox=sandbox, llm=llm, load_plugins=False)
        try:
            _setup(autodev)
            await _fail(autodev, "average basket value for an empty cart")
            await _fail(autodev, "average basket value of a new customer")
            await autodev.drain()
            with autodev.database.session() as session:
                [skill] = session.scalars(select(SkillCandidate)).all()
                assert skill.strategy == "llm" and skill.name == "safe_average"
                assert skill.status == "passed" and skill.tool_id is None
                assert skill.exchange, "the whole exchange is stored"
            assert llm.calls, "the model was asked"
        finally:
            await autodev.aclose()
