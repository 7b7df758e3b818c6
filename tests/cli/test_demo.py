"""``auto-dev demo`` tells the whole story on embedded defaults."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from auto_dev.cli._demo_story import ROLLBACK_REASON

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One demo run on an 80-column terminal (the story's output and its database)."""
    tmp_path = tmp_path_factory.mktemp("demo")
    database = tmp_path / "demo.db"
    env = {**os.environ, "AUTO_DEV_DATABASE_URL": f"sqlite:///{database}",
           "AUTO_DEV_SANDBOX": "process", "COLUMNS": "80", "PYTHONPATH": str(ROOT)}
    for name in ("AUTO_DEV_CONFIG", "AUTO_DEV_LLM_MODEL", "AUTO_DEV_LOG_LEVEL"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-m", "auto_dev.cli", "demo"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, database


def _section(out: str, title: str) -> list[str]:
    """The lines of the table titled ``title`` (up to the next blank line after its body)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if title in line)
    body: list[str] = []
    for line in lines[start + 1:]:
        if not line.strip():
            if body:
                break
            continue
        body.append(line)
    return body


class TestDemo:
    """The demo runs end to end from a fresh database and says what it does."""

    def test_demo_runs_the_whole_loop(self, demo_run: tuple[str, Path]) -> None:
        """Events, gate decisions, candidates, a promotion with its diff and a rollback."""
        out, _ = demo_run
        assert "capability gate" in out
        assert "deny" in out and "allow" in out  # the trainee is refused, the others are not
        assert "retrieve_repair" in out  # Memento said which strategy it used
        assert "-    return max(low, max(value, high))" in out  # a diff was shown
        assert "promoted clamp: v1 -> v2" in out
        assert "rolled back clamp: v2 -> v1" in out
        assert "offline: AST repair operators" in out

    def test_agents_graduate_from_real_usage(self, demo_run: tuple[str, Path]) -> None:
        """The uses of the promoted fixes move their agents up one level, by the rule: the
        capability states were changed by the gatekeeper, not by an admin."""
        out, database = demo_run
        assert "maturity earned from real usage" in out
        with sqlite3.connect(database) as db:
            states = dict(db.execute(
                "SELECT a.key || ' ' || s.capability, s.maturity FROM capability_states s "
                "JOIN agents a ON a.id = s.agent_id").fetchall())
            moves = db.execute(
                "SELECT actor FROM audit_entries WHERE action = 'capability.graduation'"
            ).fetchall()
        assert states["support-bot auto_dev.alpha_evolver"] == "autonomous"
        assert states["checkout-bot auto_dev.memento_skills"] == "supervised"
        assert [actor for (actor,) in moves] == ["auto-dev:graduation"] * 2

    def test_rollback_says_why(self, demo_run: tuple[str, Path]) -> None:
        """The correct fix is rolled back as a demonstration, and both the output and the
        recorded decision say so."""
        out, database = demo_run
        flat = " ".join(out.split())
        assert "rollback (a demonstration): clamp" in flat
        assert "fix passed review and is correct" in flat
        assert f"recorded reason: {ROLLBACK_REASON!r}" in flat
        with sqlite3.connect(database) as db:
            reasons = [r for (r,) in db.execute(
                "SELECT reason FROM review_decisions WHERE decision = 'rolled_back'")]
        assert reasons == [ROLLBACK_REASON]

    def test_reports_the_backend_in_use(self, demo_run: tuple[str, Path]) -> None:
        """The sandbox line names the backend the facade chose, with its reason."""
        out, _ = demo_run
        line = next(x for x in out.splitlines() if x.startswith("sandbox:"))
        assert line.startswith("sandbox:  process (AUTO_DEV_SANDBOX=process")

    def test_gate_table_has_targets_and_no_repeats(self, demo_run: tuple[str, Path]) -> None:
        """Every cycle decision names its target; no decision is listed twice."""
        out, _ = demo_run
        rows = _section(out, "capability gate")
        assert "target / capability" in rows[0]
        decisions = [" ".join(line.split()[:3]) for line in rows
                     if line.strip().startswith(("support-bot", "trainee-bot", "checkout-bot"))]
        assert "trainee-bot clamp deny" in decisions
        assert "support-bot clamp allow" in decisions
        assert "support-bot apply_discount allow" in decisions
        assert len(decisions) == len(set(decisions))

    def test_names_are_whole_at_80_columns(self, demo_run: tuple[str, Path]) -> None:
        """No id, capability or tool name is cut short with an ellipsis on 80 columns."""
        out, database = demo_run
        assert "…" not in out
        assert "auto_dev.alpha_evolver" in out and "auto_dev.memento_skills" in out
        with sqlite3.connect(database) as db:
            offered = [i for (i,) in db.execute(
                "SELECT id FROM tool_mutations WHERE status IN ('promoted', 'rolled_back')")]
        assert offered and all(i[:12] in out for i in offered)
    def test_the_workflow_chapter_repairs_reviews_and_promotes(
            self, demo_run: tuple[str, Path]) -> None:
        """The support workflow's failing runs end in a promoted variant whose structural
        diff adds the retry and fixes the branch, and a run of the new version succeeds."""
        out, database = demo_run
        flat = " ".join(out.split())
        assert "workflows: refund_support repairs itself" in flat
        assert "~ changed step order: retry added" in flat
        assert ("~ changed step route: switch[0].when \"steps.order.payment_status == "
                "'shipped'\" -> \"steps.order.status == 'shipped'\"") in flat
        assert "promoted workflow refund_support: v1 -> v2 (active)" in flat
        assert "a run of refund_support v2 for order A1: ok" in flat
        with sqlite3.connect(database) as db:
            versions = db.execute(
                "SELECT v.version, v.is_active, v.source FROM workflow_versions v JOIN "
                "workflows w ON w.id = v.workflow_id WHERE w.name = 'refund_support' "
                "ORDER BY v.version").fetchall()
            runs = db.execute("SELECT status, stats FROM evolution_runs WHERE engine = "
                              "'workflow_evolver' AND status = 'completed'").fetchall()
            last = db.execute("SELECT success FROM episodes WHERE workflow_id IS NOT NULL "
                              "ORDER BY created_at DESC LIMIT 1").fetchone()
        assert versions == [(1, 0, "user"), (2, 1, "variant")]
        [(_, stats)] = runs
        assert '"strategy": "offline: workflow operators"' in stats
        assert last == (1,)


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
