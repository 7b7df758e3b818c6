"""Every example in examples/ runs as a user would run it and does what it says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

EXPECTED = {
    "custom_engine.py": ["census: {'KeyError': 2, 'TimeoutError': 1}",
                         "cycle while the tenant is off: denied",
                         "cycle: completed - most common failures: KeyError=2"],
    "event_hooks.py": ["task failed: 'Extract invoice ID'", "task succeeded: 'Summarise ticket'",
                       "skill summarise ran in 0.42s"],
    "review_flow.py": ["promoted clamp v1 -> v2", "return max(low, min(value, high))",
                       "rolled back clamp v2 -> v1"],
    "scheduled_cycles.py": ["schedules: ['nightly']", "offered by the schedule: apply_discount"],
}


class TestExamples:
    """Each example exits 0 and prints its story."""

    def test_every_example_is_covered(self) -> None:
        """A new example needs an expectation here."""
        assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)

    @pytest.mark.parametrize("name", sorted(EXPECTED))
    def test_example_runs(self, name: str, tmp_path: Path) -> None:
        """The example runs against a fresh SQLite file with the process sandbox."""
        env = {**os.environ, "AUTO_DEV_DATABASE_URL": f"sqlite:///{tmp_path}/ex.db",
               "AUTO_DEV_SANDBOX": "process", "AUTO_DEV_LOG_LEVEL": "error"}
        env.pop("AUTO_DEV_CONFIG", None)
        done = subprocess.run([sys.executable, str(EXAMPLES / name)], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr[-3000:]
        for line in EXPECTED[name]:
            assert line in done.stdout, (line, done.stdout[-2000:])
