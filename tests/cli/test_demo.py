"""``auto-dev demo`` tells the whole story on embedded defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


class TestDemo:
    """The demo runs end to end from a fresh database."""

    def test_demo_runs_the_whole_loop(self, tmp_path: Path) -> None:
        """Events, gate decisions, candidates, a promotion with its diff and a rollback."""
        env = {**os.environ, "AUTO_DEV_DATABASE_URL": f"sqlite:///{tmp_path}/demo.db",
               "AUTO_DEV_SANDBOX": "process", "COLUMNS": "160"}
        env.pop("AUTO_DEV_CONFIG", None)
        env.pop("AUTO_DEV_LLM_MODEL", None)
        done = subprocess.run([sys.executable, "-m", "auto_dev.cli", "demo"], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
        out = done.stdout
        assert done.returncode == 0, done.stderr[-3000:]
        assert "capability gate decisions" in out
        assert "deny" in out and "allow" in out  # the trainee is refused, the others are not
        assert "retrieve_repair" in out  # Memento said which strategy it used
        assert "-    return max(low, max(value, high))" in out  # a diff was shown
        assert "promoted clamp: v1 -> v2" in out
        assert "rolled back clamp: v2 -> v1" in out
        assert "offline: AST repair operators" in out
