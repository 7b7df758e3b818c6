"""The AutoDev facade refuses bad reports with the field named, and writes nothing for them."""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from auto_dev import AutoDevError, ValidationError
from auto_dev.config import load_settings
from auto_dev.db import Database
from auto_dev.models import Agent, Episode, EpisodeSegment, EventDelivery, EventRecord, TestCase
from auto_dev.service import AutoDev

BASE: dict[str, Any] = {"agent": "bot", "task": "t", "success": False}
SKILL: dict[str, Any] = {"agent": "bot", "skill_name": "s", "success": True,
                         "execution_seconds": 0.5}
WRITTEN = (Agent, Episode, EpisodeSegment, EventRecord, EventDelivery, TestCase)


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def row_counts(database: Database) -> dict[str, int]:
    with database.session(readonly=True) as session:
        return {model.__name__: session.scalar(select(func.count()).select_from(model)) or 0
                for model in WRITTEN}


async def refused(autodev: AutoDev, method: str, kwargs: dict[str, Any]) -> ValidationError:
    """Call the facade method, expect a ValidationError, and check that nothing was written."""
    before = row_counts(autodev.database)
    with pytest.raises(ValidationError) as info:
        await getattr(autodev, method)(**kwargs)
    assert row_counts(autodev.database) == before
    return info.value


class TestRecordEpisodeBadInput:
    """Each input that used to crash (TypeError, UnicodeEncodeError, AttributeError, a JSON
    encoder error, RecursionError) or was accepted without limit is refused by field."""

    @pytest.mark.parametrize(("changes", "field", "words"), [
        ({"inputs": [1], "expected": 1}, "inputs", "must be an object"),
        ({"task": "fix \ud800 this"}, "task", "lone surrogate"),
        ({"segments": [1, 2]}, "segments[0]", "must be an object"),
        ({"output": b"\x89PNG"}, "output", "bytes are not JSON"),
        ({"output": {"a", "b"}}, "output", "a set is not JSON"),
        ({"output": object()}, "output", "must be JSON"),
        ({"inputs": {"args": [b"x"]}, "expected": 1}, "inputs.args[0]", "bytes"),
        ({"metadata": {"tags": {"x"}}}, "metadata.tags", "a set"),
        ({"expected": object()}, "expected", "must be JSON"),
        ({"output": nested(5000)}, "output" + "[0]" * 64, "deeper than 64 levels"),
        ({"metadata": {"deep": nested(5000)}}, "metadata.deep" + "[0]" * 63, "deeper"),
        ({"task": "x" * 10_000_000}, "task", "at most 65,536"),
        ({"error_trace": "y" * 20_000_000}, "error_trace", "at most 1,048,576"),
        ({"output": "z" * 5_000_000}, "output", "max_payload_bytes"),
        ({"task": "nul \x00 byte"}, "task", "NUL"),
    ], ids=["inputs-list", "task-surrogate", "segments-ints", "output-bytes", "output-set",
            "output-object", "inputs-bytes", "metadata-set", "expected-object", "output-deep",
            "metadata-deep", "task-10MB", "trace-20MB", "output-5MB", "task-nul"])
    async def test_refused_by_field_and_nothing_written(
        self, autodev: AutoDev, changes: dict[str, Any], field: str, words: str
    ) -> None:
        """The error names the field (path) and the problem; no episode, agent, event or test
        row exists afterwards."""
        autodev.register_tool("inc", "def inc(x):\n    return x + 1\n", "inc")
        error = await refused(autodev, "record_episode",
                              {**BASE, "tool_name": "inc", **changes})
        assert error.field == field
        assert words in error.problem

    async def test_accepted_values_are_stored_as_plain_json(self, autodev: AutoDev) -> None:
        """Tuples and enum-like subclasses are stored as the JSON they stand for."""
        episode_id = await autodev.record_episode(
            **BASE, inputs={"args": (1, 2)}, output=(True, None),
            segments=({"kind": "llm", "output": "ok"},))
        with autodev.database.session() as session:
            episode = session.get(Episode, episode_id)
            assert episode is not None
            assert episode.details["inputs"] == {"args": [1, 2]}
            assert episode.details["output"] == [True, None]
            assert [(s.kind, s.output) for s in episode.segments] == [("llm", "ok")]


class TestRecordSkillExecutionBadInput:
    """Skill executions are checked the same way before anything is stored."""

    @pytest.mark.parametrize(("changes", "field"), [
        ({"skill_name": "s" * 201}, "skill_name"),
        ({"skill_name": 3}, "skill_name"),
        ({"execution_seconds": math.nan}, "execution_seconds"),
        ({"execution_seconds": -1.0}, "execution_seconds"),
        ({"execution_seconds": math.inf}, "execution_seconds"),
        ({"execution_seconds": 1e300}, "execution_seconds"),
        ({"metadata": {"n": 10**5000}}, "metadata.n"),
        ({"metadata": {"blob": "m" * 5_000_000}}, "metadata.blob"),
        ({"metadata": {"s": "\udfff"}}, "metadata.s"),
        ({"agent": "bot\x00"}, "agent"),
    ])
    async def test_refused_by_field_and_nothing_written(
        self, autodev: AutoDev, changes: dict[str, Any], field: str
    ) -> None:
        """The error names the field; no agent or event row is written."""
        error = await refused(autodev, "record_skill_execution", {**SKILL, **changes})
        assert error.field == field


# -- a property over arbitrary payloads --------------------------------------------------------

#: Text as agents send it, and text including lone surrogates and NUL (categories Cs, Cc).
_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=6)
_ANY_TEXT = st.text(st.characters(categories=["L", "N", "P", "Zs", "Cc", "Cs"]), max_size=6)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
    | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)
# Built lazily: hypothesis shows strategies and examples with repr(), which fails for integers
# of more than 4,300 digits and for lists nested 5,000 deep.
_ODD = st.sampled_from([
    b"bytes", bytearray(b"ba"), {1, 2}, frozenset({"f"}), object(), 1j, math.nan, math.inf,
    -math.inf, -(10**1200), "\ud800", "a\x00", "x" * 70_000, ..., range(3), {1: "int key"},
    {("t",): 1}, True, 3, "",
]) | st.sampled_from([70, 5000]).map(nested) | st.just(5000).map(lambda digits: 10**digits)
#: A value with something bad somewhere inside it (or at the top).
_BAD = st.recursive(
    _ODD | _ANY_TEXT | st.floats() | st.binary(max_size=3),
    lambda inner: st.lists(inner | _JSON, min_size=1, max_size=3)
    | st.dictionaries(_ANY_TEXT, inner, min_size=1, max_size=2)
    | st.frozensets(st.integers(), max_size=2),
    max_leaves=4,
)
_CALL = st.fixed_dictionaries({"args": st.lists(_JSON, max_size=2)},
                              optional={"kwargs": st.dictionaries(_TEXT, _JSON, max_size=2)})
_SEGMENT = st.fixed_dictionaries({}, optional={
    "kind": st.sampled_from(["tool_call", "llm"]), "tool_name": st.sampled_from([None, "inc"]),
    "inputs": st.dictionaries(_TEXT, _JSON, max_size=2), "output": _JSON,
    "error": st.none() | _TEXT, "duration_s": st.none() | st.floats(0, 1e6)})
_VALID_EPISODE = st.fixed_dictionaries(
    {"agent": st.sampled_from(["bot", "agent-2"]), "task": _TEXT, "success": st.booleans()},
    optional={
        "tool_name": st.sampled_from([None, "inc", "unknown-tool"]),
        "inputs": st.none() | _CALL,
        "expected": _JSON,
        "output": _JSON,
        "error_trace": st.none() | _TEXT,
        "segments": st.lists(_SEGMENT, max_size=2),
        "metadata": st.none() | st.dictionaries(_TEXT, _JSON, max_size=2),
    },
)
_VALID_SKILL = st.fixed_dictionaries(
    {"agent": st.sampled_from(["bot", "agent-2"]), "skill_name": st.sampled_from(["inc", "s"]),
     "success": st.booleans(), "execution_seconds": st.floats(0, 1e6) | st.integers(0, 10**6)},
    optional={"metadata": st.none() | st.dictionaries(_TEXT, _JSON, max_size=2)},
)


def _spoiled(valid: st.SearchStrategy[dict[str, Any]],
             fields: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Valid keyword arguments with one field (or a value inside it) replaced by a bad one."""
    def spoil(kwargs: dict[str, Any], name: str, bad: Any, where: int) -> dict[str, Any]:
        if name == "inputs" and where:
            bad = {"args": [bad]} if where == 1 else {"kwargs": {"k": bad}}
        elif name == "segments" and where:
            bad = [{"output": bad}] if where == 1 else [bad]
        elif name == "metadata" and where:
            bad = {"k": bad}
        return {**kwargs, name: bad}

    return st.builds(spoil, valid, st.sampled_from(fields), _BAD, st.integers(0, 2))


_EPISODES = _VALID_EPISODE | _spoiled(_VALID_EPISODE, [
    "agent", "task", "success", "tool_name", "inputs", "expected", "output", "error_trace",
    "segments", "metadata", "tenant_id"])
_SKILLS = _VALID_SKILL | _spoiled(_VALID_SKILL, [
    "agent", "skill_name", "success", "execution_seconds", "metadata", "tenant_id"])


@pytest.fixture
def running_autodev(database: Database, database_url: str) -> Iterator[tuple[AutoDev, Any]]:
    """A started AutoDev without engines, and the runner of its event loop (a hypothesis
    property runs each example synchronously)."""
    runner = asyncio.Runner()
    autodev = AutoDev(load_settings(database_url=database_url, tenant="t1"), database=database,
                      builtin_engines=False, load_plugins=False)
    runner.run(autodev.start())
    autodev.register_tool("inc", "def inc(x):\n    return x + 1\n", "inc")
    try:
        yield autodev, runner
    finally:
        runner.run(autodev.aclose())
        runner.close()


class TestArbitraryPayloads:
    """Whatever Python values a caller passes, the facade raises only auto-dev errors, and a
    refused report leaves no row behind."""

    @staticmethod
    def _check(autodev: AutoDev, runner: Any, method: str, kwargs: dict[str, Any]) -> None:
        before = row_counts(autodev.database)
        try:
            runner.run(getattr(autodev, method)(**kwargs))
        except AutoDevError:
            assert row_counts(autodev.database) == before
        else:
            after = row_counts(autodev.database)
            if method == "record_episode":
                assert after["Episode"] == before["Episode"] + 1
            assert after["EventRecord"] == before["EventRecord"] + 1

    def test_record_episode(self, running_autodev: tuple[AutoDev, Any]) -> None:
        """record_episode over generated payloads (bytes, sets, NaN, deep nesting, surrogates,
        NUL, huge integers and texts mixed with valid values)."""
        autodev, runner = running_autodev

        @settings(max_examples=120, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(kwargs=_EPISODES)
        def check(kwargs: dict[str, Any]) -> None:
            self._check(autodev, runner, "record_episode", kwargs)

        check()

    def test_record_skill_execution(self, running_autodev: tuple[AutoDev, Any]) -> None:
        """record_skill_execution over generated payloads."""
        autodev, runner = running_autodev

        @settings(max_examples=80, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(kwargs=_SKILLS)
        def check(kwargs: dict[str, Any]) -> None:
            self._check(autodev, runner, "record_skill_execution", kwargs)

        check()


# -- PostgreSQL --------------------------------------------------------------------------------


@pytest.mark.postgres
class TestPostgres:
    """On PostgreSQL, values its JSON and text columns cannot hold are refused up front."""

    @pytest.mark.parametrize(("changes", "field"), [
        ({"output": b"bytes"}, "output"),
        ({"output": {"a", "b"}}, "output"),
        ({"metadata": {"k": {1}}}, "metadata.k"),
        ({"task": "nul\x00"}, "task"),
        ({"output": {"s": "nul\x00"}}, "output.s"),
    ])
    async def test_refused_with_the_field_named(
        self, postgres_database: Database, postgres_url: str, changes: dict[str, Any],
        field: str
    ) -> None:
        """Bytes, sets and NUL characters never reach the database; nothing is written."""
        autodev = AutoDev(load_settings(database_url=postgres_url, tenant="t1"),
                          database=postgres_database, builtin_engines=False,
                          load_plugins=False)
        await autodev.start()
        try:
            error = await refused(autodev, "record_episode", {**BASE, **changes})
            assert error.field == field
            await autodev.record_episode(**BASE, output=["fine"])  # the database still works
            assert row_counts(autodev.database)["Episode"] == 1
        finally:
            await autodev.aclose()


# -- stored tenant settings ----------------------------------------------------------------------


class TestCorruptTenantSettings:
    """A tenant row whose settings are corrupt is reported by tenant and field, never as a bare
    JSONDecodeError, and every reader fails closed."""

    @staticmethod
    def _corrupt(path: str, text: str) -> None:
        with sqlite3.connect(path) as connection:
            connection.execute("UPDATE tenants SET settings = ? WHERE id = 't1'", (text,))

    @staticmethod
    def _with_corrupt_row(database: Database, database_url: str, stored: str) -> AutoDev:
        settings = load_settings(database_url=database_url, tenant="t1")
        with database.session() as session:
            database.ensure_tenant(session, "t1")
        database.dispose()
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as connection:
            connection.execute("UPDATE tenants SET settings = ? WHERE id = 't1'", (stored,))
        # Constructing the facade loads the tenant row: it must not fail on the settings.
        return AutoDev(settings, database=Database(database_url), builtin_engines=False,
                       load_plugins=False)

    @pytest.mark.parametrize(("stored", "field", "words"), [
        ('{"enabled": tru', "settings", "is not valid JSON"),
        ('{"enabled": "yes"}', "settings.enabled", "valid boolean"),
        ("[1, 2]", "settings", "must be an object"),
    ])
    async def test_named_by_tenant_and_field(
        self, database: Database, database_url: str, stored: str, field: str, words: str
    ) -> None:
        """The facade still starts; reading or changing the settings names tenant and field;
        the gate denies."""
        autodev = self._with_corrupt_row(database, database_url, stored)
        try:
            for read in (autodev.tenant_settings,
                         lambda: autodev.configure_tenant(enabled=True)):
                with pytest.raises(ValidationError) as info:
                    read()
                assert info.value.field == field
                assert words in info.value.problem and "tenant 't1'" in info.value.problem
            with autodev.database.session() as session:
                decision = autodev.gates.authorize(
                    session, tenant_id="t1", agent_id=None,
                    capability="auto_dev.alpha_evolver", action="create_candidate")
            assert not decision.allowed and "invalid tenant settings" in decision.reason
        finally:
            await autodev.aclose()

    async def test_llm_budget_refuses_unreadable_settings(
        self, database: Database, database_url: str
    ) -> None:
        """Settings that cannot be read might hold a budget: no model spending, tenant named
        (through the ORM and through the raw SQLite fast path alike)."""
        from auto_dev import BudgetExceededError
        from auto_dev.llm._sqlite_fast import parse_settings
        from auto_dev.llm.budget import BudgetGuard

        autodev = self._with_corrupt_row(database, database_url, '{"daily_budget_usd": 1')
        try:
            guard = BudgetGuard(autodev.database, autodev.settings.effective_llm())
            assert guard.limit_for_stored("t1") == 0.0
            with pytest.raises(BudgetExceededError, match=r"tenant 't1'.*unreadable"):
                guard.limit_for("t1", parse_settings('{"daily_budget_usd": 1'))
        finally:
            await autodev.aclose()
