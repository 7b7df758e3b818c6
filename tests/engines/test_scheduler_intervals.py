"""Schedule intervals are finite and bounded; a bad stored row cannot stop the scheduler."""

from __future__ import annotations

import math

import pytest

from auto_dev import ConfigurationError, ValidationError
from auto_dev.config import load_settings
from auto_dev.db import Database
from auto_dev.models import Schedule
from auto_dev.sandbox.process import ProcessSandbox
from auto_dev.scheduler import check_interval
from auto_dev.service import AutoDev


class TestIntervalBounds:
    """EvolutionScheduler.add refuses intervals outside the configured bounds."""

    @pytest.mark.parametrize("interval", [math.inf, 1e12, math.nan, -1, 0.5, True, "60"])
    async def test_add_refuses_naming_interval_s(self, autodev: AutoDev,
                                                 interval: object) -> None:
        """Infinite, huge, NaN, too small or not a number: refused, nothing stored."""
        with pytest.raises(ValidationError) as info:
            autodev.scheduler.add("alpha_evolver", interval_s=interval,  # type: ignore[arg-type]
                                  schedule_id="bad")
        assert info.value.field == "interval_s"
        assert autodev.scheduler.schedules() == []

    def test_bounds_are_the_settings(self) -> None:
        """The rule reads scheduler_min_interval_s and scheduler_max_interval_s."""
        settings = load_settings(scheduler_min_interval_s=60, scheduler_max_interval_s=3600)
        assert check_interval(60, settings) == 60.0
        assert check_interval(3600.0, settings) == 3600.0
        with pytest.raises(ValidationError, match="between 60 and 3,600"):
            check_interval(59, settings)
        with pytest.raises(ValidationError):
            check_interval(3601, settings)

    @pytest.mark.parametrize("overrides", [
        {"scheduler_min_interval_s": 100, "scheduler_max_interval_s": 10},
        {"scheduler_max_interval_s": 1e12},
        {"scheduler_interval_s": 1e8},
    ])
    def test_settings_must_be_consistent(self, overrides: dict[str, float]) -> None:
        """Bounds out of order, a ceiling past ten years, or a default interval outside the
        bounds are configuration errors."""
        with pytest.raises(ConfigurationError, match="scheduler_"):
            load_settings(**overrides)


class TestStartSkipsBadRows:
    """Rows stored by an older version (or by hand) with unusable intervals are skipped."""

    @pytest.mark.parametrize("stored", [math.inf, 1e12, 0.1])
    async def test_start_skips_and_logs(
        self, database: Database, database_url: str, sandbox: ProcessSandbox,
        capsys: pytest.CaptureFixture[str], stored: float
    ) -> None:
        """The good schedule gets its job, the bad one is logged and gets none, every start."""
        settings = load_settings(database_url=database_url, tenant="t1")
        autodev = AutoDev(settings, database=database, sandbox=sandbox, load_plugins=False)
        autodev.scheduler.add("alpha_evolver", interval_s=3600, schedule_id="good")
        with database.session() as session:
            session.add(Schedule(id="bad", tenant_id="t1", engine="memento", target=None,
                                 interval_s=stored, budget=10))
        try:
            for _ in range(2):  # a restart behaves the same
                await autodev.scheduler.start()
                [job] = autodev.scheduler.job_ids()
                assert job.endswith("good")
                await autodev.scheduler.shutdown()
            logged = capsys.readouterr().err
            assert logged.count("schedule_skipped") == 2 and "schedule_id=bad" in logged
        finally:
            await autodev.aclose()
