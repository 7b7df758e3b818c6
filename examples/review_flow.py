"""The review flow: a failing tool is repaired, reviewed, promoted and rolled back.

Run: python examples/review_flow.py
"""

from __future__ import annotations

import asyncio
import os
import tempfile

from auto_dev import AutoDev, load_settings

BUGGY = "def clamp(value, low, high):\n    return max(low, max(value, high))\n"
TESTS = [{"args": [5, 0, 10], "expected": 5}, {"args": [-3, 0, 10], "expected": 0}]


async def main() -> None:
    url = os.environ.get("AUTO_DEV_DATABASE_URL") or (
        f"sqlite:///{tempfile.mkdtemp()}/review_flow.db")
    async with AutoDev(load_settings(database_url=url)) as autodev:
        tenant = autodev.tenant_id
        # Everything is off until the tenant opts in; the agent must be trusted enough.
        autodev.configure_tenant(enabled=True, alpha_evolver=True)
        autodev.set_maturity("ops-bot", "auto_dev.alpha_evolver", "supervised",
                             reason="example")
        autodev.register_tool("clamp", BUGGY, "clamp", tests=TESTS)

        # A failure with the expected answer becomes a regression test and an event;
        # AlphaEvolver reacts and queues a candidate for review.
        await autodev.record_episode(agent="ops-bot", task="clamp 42 to 0..10", success=False,
                                     tool_name="clamp", inputs={"args": [42, 0, 10]},
                                     expected=10, error_trace="AssertionError: 42 != 10")
        await autodev.drain()

        [candidate] = autodev.review.list_pending(tenant)
        detail = autodev.review.show(tenant, candidate.id)
        print(f"candidate {candidate.id[:12]} ({candidate.operator}):\n{detail.diff}")
        autodev.review.approve(tenant, candidate.id, actor="alice", reason="min is right")
        promoted = autodev.review.promote(tenant, candidate.id, actor="alice")
        print(f"promoted clamp v{promoted.previous_version} -> v{promoted.version}")
        print("active code:\n" + autodev.active_code("clamp"))

        rolled = autodev.review.rollback(tenant, "clamp", actor="bob",
                                         reason="example: undo the promotion")
        print(f"rolled back clamp v{rolled.from_version} -> v{rolled.to_version}")


if __name__ == "__main__":
    asyncio.run(main())
