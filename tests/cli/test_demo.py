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


class TestDemoTwice:
    """Review decisions stick across runs: the demo twice in one tenant."""

    def test_second_run_does_not_repromote_the_rolled_back_fix(self, tmp_path: Path) -> None:
        """The rolled-back clamp fix comes back from the second run's cycle and is closed,
        naming the rollback; clamp stays at v1 with no new version."""
        from sqlalchemy import select

        from auto_dev.db import Database
        from auto_dev.models import ReviewDecision, Tool, ToolVersion

        root = Path(__file__).resolve().parents[2]
        env = {**os.environ, "AUTO_DEV_DATABASE_URL": f"sqlite:///{tmp_path}/demo.db",
               "AUTO_DEV_SANDBOX": "process", "COLUMNS": "160",
               "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
        env.pop("AUTO_DEV_CONFIG", None)
        env.pop("AUTO_DEV_LLM_MODEL", None)
        for run in (1, 2):
            done = subprocess.run([sys.executable, "-m", "auto_dev.cli", "demo", "--tenant",
                                   "twice"], env=env, cwd=tmp_path, capture_output=True,
                                  text=True, timeout=120)
            assert done.returncode == 0, (run, done.stderr[-3000:])
        db = Database(f"sqlite:///{tmp_path}/demo.db")
        try:
            with db.session() as s:
                versions = s.scalars(select(ToolVersion).join(Tool).where(
                    Tool.tenant_id == "twice", Tool.name == "clamp")
                    .order_by(ToolVersion.version)).all()
                assert [(v.version, v.is_active) for v in versions] == [(1, True), (2, False)]
                closed = s.scalars(select(ReviewDecision.reason).where(
                    ReviewDecision.tenant_id == "twice", ReviewDecision.decision == "failed")
                ).all()
                assert any(r.startswith("rolled back before by demo-reviewer") for r in closed)
        finally:
            db.dispose()
