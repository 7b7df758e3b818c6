"""The AutoDev facade: episodes, tools and tenant settings."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from auto_dev import ValidationError
from auto_dev.models import Episode, EventRecord, TestCase
from auto_dev.service import AutoDev


class TestRecordEpisode:
    """Episodes are stored with their event in one transaction."""

    async def test_failure_with_expected_becomes_a_regression_test(self, autodev: AutoDev) -> None:
        """The episode, its segments, its event and a test case are all written."""
        autodev.register_tool("inc", "def inc(x):\n    return x + 2\n", "inc")
        episode_id = await autodev.record_episode(
            agent="a", task="increment", success=False, tool_name="inc",
            inputs={"args": [1]}, expected=2, error_trace="AssertionError",
            segments=[{"tool_name": "inc", "inputs": {"args": [1]}, "output": 3}])
        await autodev.events.drain()
        with autodev.database.session() as session:
            episode = session.get(Episode, episode_id)
            assert episode is not None and len(episode.segments) == 1
            tests = session.scalars(select(TestCase).where(TestCase.source == "episode")).all()
            assert [(t.args, t.expected) for t in tests] == [([1], 2)]
            event = session.scalars(select(EventRecord)).one()
            assert event.type == "TaskFailed" and event.payload["episode_id"] == episode_id

    @pytest.mark.parametrize(("kwargs", "field"), [
        ({"agent": ""}, "agent"),
        ({"success": "no"}, "success"),
        ({"inputs": {"args": "not a list"}}, "inputs.args"),
        ({"inputs": {"kwargs": []}}, "inputs.kwargs"),
    ])
    async def test_bad_input_names_the_field_and_writes_nothing(
        self, autodev: AutoDev, kwargs: dict[str, object], field: str
    ) -> None:
        """Malformed episodes are refused before anything is stored."""
        base: dict[str, object] = {"agent": "a", "task": "t", "success": False}
        with pytest.raises(ValidationError) as info:
            await autodev.record_episode(**{**base, **kwargs})  # type: ignore[arg-type]
        assert info.value.field == field
        with autodev.database.session() as session:
            assert session.scalars(select(Episode)).first() is None
            assert session.scalars(select(EventRecord)).first() is None


class TestTenantSettings:
    """Tenant toggles default to off and are validated when changed."""

    async def test_defaults_off_and_validation(self, autodev: AutoDev) -> None:
        """Every toggle starts off; an unknown setting names the key."""
        settings = autodev.tenant_settings()
        assert not settings.enabled and not settings.alpha_evolver
        assert not settings.auto_promotion and not settings.background_evolution
        changed = autodev.configure_tenant(enabled=True, alpha_evolver=True)
        assert changed.enabled and autodev.tenant_settings().alpha_evolver
        with pytest.raises(ValidationError, match="no_such_toggle"):
            autodev.configure_tenant(no_such_toggle=True)
        assert autodev.tenant_settings().enabled  # the failed change wrote nothing
