"""The AutoDev facade: episodes, tools and tenant settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from auto_dev import ValidationError
from auto_dev.config import load_settings
from auto_dev.db import Database
from auto_dev.models import Episode, EventRecord, TestCase
from auto_dev.sandbox.process import ProcessSandbox
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


class TestCandidatesCannotReadTheDatabase:
    """The SQLite file is private to its owner, so sandboxed candidates can't read it."""

    async def test_candidate_gets_permission_denied(self, sandbox: ProcessSandbox) -> None:
        """Even in a world-readable directory, a candidate cannot open the database file."""
        import os
        import stat
        import tempfile

        from auto_dev.db import Database
        from auto_dev.sandbox.base import Case, SandboxJob

        if os.geteuid() != 0:
            pytest.skip("candidates share the uid of a non-root user (documented best effort)")
        folder = tempfile.mkdtemp(dir="/srv")  # not hidden, not a private tmp
        os.chmod(folder, 0o755)
        path = os.path.join(folder, "private.db")
        database = Database(f"sqlite:///{path}")
        database.upgrade()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        code = ("def peek(path):\n    with open(path, 'rb') as f:\n"
                "        return len(f.read())\n")
        result = await sandbox.run(SandboxJob(code=code, entrypoint="peek",
                                              cases=(Case(args=(path,), has_expected=False),)))
        assert result.cases[0].status.value == "error"
        assert "PermissionError" in (result.cases[0].error or "")
        database.dispose()

    async def test_facade_hides_the_database_directory(self) -> None:
        """The process sandbox the facade builds covers the database's directory."""
        import os
        import shutil
        import tempfile

        from auto_dev.config import load_settings
        from auto_dev.sandbox.base import Case, SandboxJob

        if os.geteuid() != 0:
            pytest.skip("path hiding needs root (mount namespaces)")
        folder = Path(tempfile.mkdtemp(dir="/srv"))  # outside cwd, home and the private tmp
        os.chmod(folder, 0o755)
        url = f"sqlite:///{folder}/facade.db"
        autodev = AutoDev(load_settings(database_url=url, sandbox="process"),
                          load_plugins=False)
        try:
            code = "import os\n\ndef ls(d):\n    return sorted(os.listdir(d))\n"
            result = await autodev.sandbox.run(SandboxJob(
                code=code, entrypoint="ls", cases=(Case(args=(str(folder),), expected=[]),)))
            assert result.all_passed, result.cases  # an empty cover, not the database
        finally:
            await autodev.aclose()
            shutil.rmtree(folder, ignore_errors=True)



class TestEngineSandboxSlots:
    """Engines see the facade's sandbox with its slots, so one cycle fills its pool."""

    async def test_engines_see_the_pool_size_of_the_sandbox(self, database: Database,
                                                            database_url: str) -> None:
        """The sandbox engines are handed (chosen lazily) reports the real pool's slots."""
        box = ProcessSandbox(workers=3)
        settings = load_settings(database_url=database_url, tenant="t1")
        instance = AutoDev(settings, database=database, sandbox=box, load_plugins=False)
        try:
            engine = instance.engines.get("alpha_evolver")
            assert engine.context.sandbox.slots == 3
        finally:
            await instance.aclose()
            await box.aclose()
