"""Event hooks with the seed's decorators and with subscribe(EventClass, handler).

Events are stored in the outbox in the same transaction as the episode, then delivered to
every handler concurrently, each with a timeout; a handler that raises is retried later and
does not affect the others.

Run: python examples/event_hooks.py
"""

from __future__ import annotations

import asyncio
import os
import tempfile

from auto_dev import AutoDev, SkillExecuted, TaskFailed, TaskSucceeded, load_settings


async def main() -> None:
    url = os.environ.get("AUTO_DEV_DATABASE_URL") or (
        f"sqlite:///{tempfile.mkdtemp()}/event_hooks.db")
    async with AutoDev(load_settings(database_url=url)) as autodev:
        bus = autodev.events

        @bus.on_task_fail
        async def handle_task_failure(event: TaskFailed) -> None:
            print(f"task failed: {event.task_description!r} ({event.error_trace})")

        @bus.on_task_success
        async def handle_task_success(event: TaskSucceeded) -> None:
            print(f"task succeeded: {event.task_description!r}")

        @bus.on_skill_execution
        def handle_skill_execution(event: SkillExecuted) -> None:  # sync handlers work too
            print(f"skill {event.skill_name} ran in {event.execution_seconds}s")

        async def flaky(event: TaskFailed) -> None:
            raise RuntimeError("this handler fails; the others still get the event")

        autodev.subscribe(TaskFailed, flaky, name="examples.flaky")

        await autodev.record_episode(agent="bot", task="Extract invoice ID", success=False,
                                     error_trace="KeyError: 'invoice_id'")
        await autodev.record_episode(agent="bot", task="Summarise ticket", success=True)
        await autodev.record_skill_execution(agent="bot", skill_name="summarise",
                                             success=True, execution_seconds=0.42)
        await bus.drain()


if __name__ == "__main__":
    asyncio.run(main())
