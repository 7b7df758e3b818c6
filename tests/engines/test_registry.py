"""Custom engines: registration on the facade and through the entry-point group."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any, ClassVar

import pytest

from auto_dev import BaseLearningEngine, EngineError, TaskFailed, TaskSucceeded
from auto_dev.engines.base import ValidationResult
from auto_dev.engines.pipeline import Cycle
from auto_dev.evolution.program import Proposal
from auto_dev.service import AutoDev
from auto_dev.types import CycleRequest, EvolutionRunResult


class RecordingEngine(BaseLearningEngine):
    """A minimal custom engine that records what it receives."""

    name = "recorder"
    capability = "acme.recorder"
    subscriptions: ClassVar[tuple[type, ...]] = (TaskFailed,)

    def __init__(self) -> None:
        self.events: list[Any] = []

    async def handle_event(self, event: Any) -> None:
        self.events.append(event)

    async def analyze_episode(self, episode_id: str, **kwargs: Any) -> dict[str, Any]:
        return {"episode_id": episode_id}

    async def propose_code_change(self, context: dict[str, Any], **kwargs: Any) -> list[Proposal]:
        return []

    async def validate_change(self, proposal: Proposal, **kwargs: Any) -> ValidationResult:
        raise AssertionError("RecordingEngine proposes nothing to validate")

    async def evolve(self, request: CycleRequest, cycle: Cycle) -> EvolutionRunResult:
        return EvolutionRunResult(engine=self.name, target=request.target, status="completed")


class TestRegistry:
    """Engines registered on AutoDev receive the events they subscribe to."""

    async def test_custom_engine_receives_subscribed_events_only(self, autodev: AutoDev) -> None:
        """A TaskFailed reaches the engine; a TaskSucceeded does not."""
        engine = autodev.engines.register(RecordingEngine())
        await autodev.record_episode(agent="a", task="x", success=False, error_trace="E: boom")
        await autodev.record_episode(agent="a", task="y", success=True)
        await autodev.events.drain()
        assert [type(e) for e in engine.events] == [TaskFailed]  # type: ignore[attr-defined]
        assert engine.events[0].task_description == "x"  # type: ignore[attr-defined]
        assert "recorder" in autodev.engines.names()

    async def test_duplicate_and_malformed_engines_are_refused(self, autodev: AutoDev) -> None:
        """Names are unique; non-engines and bad subscriptions are refused with a reason."""
        autodev.engines.register(RecordingEngine())
        with pytest.raises(EngineError, match="already registered"):
            autodev.engines.register(RecordingEngine())
        with pytest.raises(EngineError, match="BaseLearningEngine"):
            autodev.engines.register(object())  # type: ignore[arg-type]

        class Bad(RecordingEngine):
            name = "bad"
            subscriptions = (str,)  # type: ignore[assignment]

        with pytest.raises(EngineError, match="Event classes"):
            autodev.engines.register(Bad())
        autodev.engines.unregister("recorder")
        assert "recorder" not in autodev.engines

    async def test_unbound_engine_says_so(self) -> None:
        """Using an engine's context before registration is a clear error."""
        with pytest.raises(EngineError, match="not registered"):
            _ = RecordingEngine().context

    async def test_entry_point_plugins_are_loaded(self, autodev: AutoDev, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
        """An installed distribution exposing auto_dev.engines is registered automatically."""
        pkg = tmp_path / "acme_plugin.py"
        pkg.write_text(textwrap.dedent('''
            from tests.engines.test_registry import RecordingEngine

            class PluginEngine(RecordingEngine):
                name = "acme_plugin"
        '''))
        dist = tmp_path / "acme_plugin-1.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-plugin\nVersion: 1.0\n")
        (dist / "entry_points.txt").write_text(
            "[auto_dev.engines]\nacme = acme_plugin:PluginEngine\n"
            "broken = acme_plugin:DoesNotExist\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        loaded = autodev.engines.load_entry_points()
        assert loaded == ["acme_plugin"]  # the broken plugin is logged and skipped
        assert autodev.engines.get("acme_plugin").context is autodev.context
        sys.modules.pop("acme_plugin", None)

    async def test_event_hooks_with_decorators_and_subscribe(self, autodev: AutoDev) -> None:
        """The seed's decorators and subscribe(EventClass, handler) all deliver."""
        seen: list[str] = []

        @autodev.events.on_task_fail
        async def failed(event: TaskFailed) -> None:
            seen.append("fail:" + event.task_description)

        @autodev.events.on_task_success
        def succeeded(event: TaskSucceeded) -> None:
            seen.append("ok:" + event.task_description)

        @autodev.events.on_skill_execution
        async def executed(event: Any) -> None:
            seen.append(f"skill:{event.skill_name}:{event.success}")

        autodev.subscribe(TaskFailed, lambda e: seen.append("sub:" + e.agent_id), name="sub")
        await autodev.record_episode(agent="a1", task="t1", success=False, error_trace="E: x")
        await autodev.record_episode(agent="a1", task="t2", success=True)
        await autodev.record_skill_execution(agent="a1", skill_name="s", success=True,
                                             execution_seconds=0.5)
        await autodev.events.drain()
        assert sorted(seen) == ["fail:t1", "ok:t2", "skill:s:True", "sub:a1"]


class TestFaults:
    """An engine whose handler raises is isolated and its delivery kept for retry."""

    async def test_raising_engine_does_not_affect_others(self, autodev: AutoDev) -> None:
        """The failure is recorded on the delivery; the other engine still gets the event."""
        from sqlalchemy import select

        from auto_dev.models import EventDelivery

        class Exploding(RecordingEngine):
            name = "exploding"

            async def handle_event(self, event: Any) -> None:
                raise RuntimeError("engine bug")

        autodev.engines.register(Exploding())
        good = autodev.engines.register(RecordingEngine())
        await autodev.record_episode(agent="a", task="x", success=False, error_trace="E: x")
        await autodev.events.drain()
        assert len(good.events) == 1  # type: ignore[attr-defined]
        with autodev.database.session() as session:
            delivery = session.scalars(select(EventDelivery).where(
                EventDelivery.handler == "engine:exploding")).one()
            assert delivery.status == "failed" and "engine bug" in (delivery.last_error or "")
            assert delivery.next_attempt_at is not None
