"""Backend selection: auto/docker/process, the tenant's container requirement, and the CLI."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auto_dev._exceptions import SandboxError, SandboxUnavailableError, ValidationError
from auto_dev.sandbox import factory
from auto_dev.sandbox.factory import (
    ENV_MODE,
    MODES,
    SandboxChoice,
    check_backends,
    create_sandbox,
    docker_status,
    resolve_mode,
)
from auto_dev.sandbox.process import ProcessSandbox
from tests.sandbox._docker_support import DOUBLE, IMAGE, require_docker

NO_ENGINE = "unix:///nonexistent/docker.sock"


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the docker SDK at a socket that does not exist."""
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)


@pytest.fixture(autouse=True)
def _clean_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_MODE, raising=False)


class TestResolveMode:
    """The mode comes from the argument, else AUTO_DEV_SANDBOX, else auto."""

    @pytest.mark.parametrize("mode", MODES)
    def test_explicit_modes_in_any_case(self, mode: str) -> None:
        """Each mode is accepted in any letter case, with surrounding spaces."""
        assert resolve_mode(f" {mode.upper()} ") == mode

    def test_environment_then_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without an argument the environment decides, and without it the mode is auto."""
        assert resolve_mode(None) == "auto"
        monkeypatch.setenv(ENV_MODE, "process")
        assert resolve_mode(None) == "process"
        assert resolve_mode("docker") == "docker"

    @given(st.text(max_size=12).filter(lambda s: s.strip().lower() not in MODES))
    def test_unknown_mode_names_the_setting(self, mode: str) -> None:
        """An unknown mode is a ValidationError naming the sandbox setting."""
        with pytest.raises(ValidationError) as info:
            resolve_mode(mode)
        assert info.value.field == "sandbox"

    def test_unknown_environment_mode_names_the_variable(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A bad AUTO_DEV_SANDBOX value is reported against the variable."""
        monkeypatch.setenv(ENV_MODE, "kubernetes")
        with pytest.raises(ValidationError) as info:
            resolve_mode(None)
        assert info.value.field == ENV_MODE


class TestSelectionWithoutEngine:
    """Without a reachable engine, auto falls back; docker and required containers fail."""

    async def test_auto_falls_back_to_process_and_says_why(
        self, no_engine: None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """auto picks the process sandbox, logs the choice, and the reason names the engine."""
        logs: list[dict[str, Any]] = []
        monkeypatch.setattr(factory.log, "info",
                            lambda event, **kw: logs.append({"event": event, **kw}))
        choice = create_sandbox("auto", workers=1)
        try:
            assert isinstance(choice, SandboxChoice) and choice.backend == "process"
            assert isinstance(choice.sandbox, ProcessSandbox) and choice.sandbox.workers == 1
            assert "falling back" in choice.reason and NO_ENGINE in choice.reason
            assert any(e["event"] == "sandbox.selected" and e["backend"] == "process"
                       for e in logs)
            sandbox, reason = choice
            assert sandbox is choice.sandbox and reason == choice.reason
        finally:
            await choice.sandbox.aclose()

    def test_docker_mode_is_an_error(self, no_engine: None) -> None:
        """Asking for docker without an engine raises instead of falling back."""
        with pytest.raises(SandboxUnavailableError, match=NO_ENGINE):
            create_sandbox("docker")

    @pytest.mark.parametrize("mode", ["auto", "docker", None])
    def test_required_containers_never_fall_back(self, no_engine: None,
                                                 mode: str | None) -> None:
        """A tenant requiring containers gets an error when no engine is reachable."""
        with pytest.raises(SandboxUnavailableError, match="requires containers"):
            create_sandbox(mode, require_containers=True)

    def test_process_mode_conflicts_with_required_containers(self) -> None:
        """Forcing the process sandbox for a tenant that requires containers is an error."""
        with pytest.raises(SandboxUnavailableError, match="requires containers"):
            create_sandbox("process", require_containers=True)

    async def test_process_mode_from_the_environment(self,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
        """AUTO_DEV_SANDBOX=process selects the process sandbox without probing Docker."""
        monkeypatch.setenv(ENV_MODE, "process")
        monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)
        choice = create_sandbox()
        try:
            assert choice.backend == "process" and ENV_MODE in choice.reason
        finally:
            await choice.sandbox.aclose()

    def test_status_reports_the_unreachable_engine(self, no_engine: None) -> None:
        """docker_status says not usable and names the host it tried."""
        status = docker_status(IMAGE)
        assert not status.usable and status.details["host"] == NO_ENGINE


@pytest.mark.docker
class TestSelectionWithEngine:
    """With an engine and the image, auto and docker build a DockerSandbox."""

    async def test_auto_uses_docker(self) -> None:
        """auto builds a DockerSandbox with the given image, pool size and settings."""
        require_docker()
        from auto_dev.sandbox.docker import DockerSandbox

        choice = create_sandbox("auto", image=IMAGE, workers=1, recycle_after=7)
        try:
            assert choice.backend == "docker" and isinstance(choice.sandbox, DockerSandbox)
            assert choice.sandbox.config.pool_size == 1
            assert choice.sandbox.config.recycle_after == 7
            assert IMAGE in choice.reason
            assert (await choice.sandbox.run(DOUBLE)).all_passed
        finally:
            await choice.sandbox.aclose()

    async def test_required_containers_are_satisfied(self) -> None:
        """A tenant requiring containers gets Docker and the reason says it was required."""
        require_docker()
        choice = create_sandbox("auto", image=IMAGE, require_containers=True)
        await choice.sandbox.aclose()
        assert choice.backend == "docker" and "required by the tenant" in choice.reason

    async def test_missing_image_falls_back_or_fails(self) -> None:
        """A missing image makes auto fall back (saying build-image) and required mode fail."""
        require_docker()
        missing = "auto-dev-sandbox:definitely-missing"
        choice = create_sandbox("auto", image=missing, workers=1)
        await choice.sandbox.aclose()
        assert choice.backend == "process" and "build-image" in choice.reason
        with pytest.raises(SandboxUnavailableError, match="build-image"):
            create_sandbox("auto", image=missing, require_containers=True)


class TestCheckBackends:
    """check_backends reports every backend and what the current mode selects."""

    def test_rows_without_engine(self, no_engine: None) -> None:
        """Docker is unusable with the reason, process usable, and the selection falls back."""
        rows = {s.backend: s for s in check_backends(IMAGE)}
        assert set(rows) == {"docker", "process", "selected"}
        assert not rows["docker"].usable and rows["process"].usable
        assert rows["selected"].usable and "auto fallback" in rows["selected"].reason

    def test_selection_follows_the_mode(self, no_engine: None,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
        """With AUTO_DEV_SANDBOX=docker and no engine, nothing is selectable."""
        monkeypatch.setenv(ENV_MODE, "docker")
        selected = check_backends(IMAGE)[-1]
        assert not selected.usable and "docker" in selected.reason
        monkeypatch.setenv(ENV_MODE, "bogus")
        assert not check_backends(IMAGE)[-1].usable

    @pytest.mark.docker
    def test_smoke_runs_a_job_on_each_backend(self) -> None:
        """With smoke=True, usable means a trivial job just passed on that backend."""
        require_docker()
        rows = {s.backend: s for s in check_backends(IMAGE, smoke=True)}
        assert rows["docker"].usable and "smoke job passed" in rows["docker"].reason
        assert rows["process"].usable and "smoke_job_s" in rows["process"].details

    async def test_smoke_refuses_a_running_loop(self) -> None:
        """Smoke checks inside an event loop raise instead of blocking it."""
        with pytest.raises(SandboxError, match="outside an event loop"):
            check_backends(IMAGE, smoke=True)


class TestSandboxCli:
    """``auto-dev sandbox check`` and ``build-image`` report through the CLI."""

    def test_check_json_and_exit_code(self, no_engine: None,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
        """check prints every backend and exits 0 when the selected one is usable, 1 if not."""
        from typer.testing import CliRunner

        from auto_dev.cli.sandbox import app

        runner = CliRunner()
        result = runner.invoke(app, ["check", "--no-smoke", "--json"])
        assert result.exit_code == 0, result.output
        rows = {row["backend"]: row for row in json.loads(result.output)}
        assert rows["docker"]["usable"] is False and rows["selected"]["usable"] is True
        monkeypatch.setenv(ENV_MODE, "docker")
        assert runner.invoke(app, ["check", "--no-smoke"]).exit_code == 1

    def test_check_table(self, no_engine: None) -> None:
        """The table names each backend and why it is (not) usable."""
        from typer.testing import CliRunner

        from auto_dev.cli.sandbox import app

        result = CliRunner().invoke(app, ["check", "--no-smoke"], env={"COLUMNS": "200"})
        assert result.exit_code == 0
        assert "docker" in result.output and "process" in result.output
        assert "auto fallback" in result.output

    def test_build_image_rejects_unknown_method(self) -> None:
        """An unknown --method exits 2 and names the accepted ones."""
        from typer.testing import CliRunner

        from auto_dev.cli.sandbox import app

        result = CliRunner().invoke(app, ["build-image", "--method", "magic"])
        assert result.exit_code == 2 and "offline" in result.output

    def test_build_image_without_engine_fails(self, no_engine: None) -> None:
        """Without an engine build-image says so and exits 1."""
        from typer.testing import CliRunner

        from auto_dev.cli.sandbox import app

        result = CliRunner().invoke(app, ["build-image"], env={"COLUMNS": "200"})
        assert result.exit_code == 1 and "cannot build" in result.output


@pytest.fixture
def ray_installed() -> None:
    import importlib.util

    from tests._services import require_service

    require_service("Ray", "AUTO_DEV_REQUIRE_RAY", importlib.util.find_spec("ray") is not None,
                    "Ray is not installed")


class TestRayMode:
    """``ray`` builds the Ray backend (started on first use) from the arguments or settings."""

    def test_layout_comes_from_the_arguments_and_environment(
            self, ray_installed: None, monkeypatch: pytest.MonkeyPatch) -> None:
        """Workers size each actor's pool; the address defaults to AUTO_DEV_RAY_ADDRESS."""
        from auto_dev.sandbox.ray import RaySandbox

        monkeypatch.setenv(factory.ENV_RAY_ADDRESS, "ray://head:10001")
        choice = create_sandbox("ray", workers=3, ray_actors=4, ray_node_sandbox="process")
        assert isinstance(choice.sandbox, RaySandbox) and choice.backend == "ray"
        config = choice.sandbox.config
        assert (config.address, config.actors, config.slots_per_actor, config.node_sandbox) == (
            "ray://head:10001", 4, 3, "process")
        assert "ray://head:10001" in choice.reason
        assert create_sandbox("ray", ray_address="h:1").sandbox.config.address == "h:1"  # type: ignore[attr-defined]

    def test_containers_required_means_docker_on_every_node(self, ray_installed: None) -> None:
        """A tenant that requires containers gets Docker pools on the nodes, never processes."""
        choice = create_sandbox("ray", require_containers=True)
        assert choice.sandbox.config.node_sandbox == "docker"  # type: ignore[attr-defined]
        with pytest.raises(ValidationError) as info:
            create_sandbox("ray", require_containers=True, ray_node_sandbox="process")
        assert info.value.field == "ray.node_sandbox"

    def test_bad_address_names_the_field(self, ray_installed: None) -> None:
        """A malformed address is refused before anything connects."""
        with pytest.raises(ValidationError) as info:
            create_sandbox("ray", ray_address="http://head")
        assert info.value.field == "ray.address"

    def test_missing_ray_says_how_to_install_it(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without Ray installed, ray mode is unavailable and names the extra."""
        import importlib.util

        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a: None if name == "ray" else real(name, *a))
        with pytest.raises(SandboxUnavailableError, match=r"auto-dev\[ray\]"):
            create_sandbox("ray")

    def test_autodev_settings_reach_the_ray_backend(self, ray_installed: None,
                                                    database_url: str) -> None:
        """AUTO_DEV_SANDBOX=ray and the ray_* settings give AutoDev a Ray sandbox laid out as
        configured (nothing connects until the first job)."""
        from auto_dev.config import load_settings
        from auto_dev.sandbox.ray import RaySandbox
        from auto_dev.service import AutoDev

        settings = load_settings(database_url=database_url, sandbox="ray", ray_actors=2,
                                 sandbox_workers=1, ray_address="head:6379",
                                 ray_node_sandbox="docker")
        autodev = AutoDev(settings, load_plugins=False, builtin_engines=False)
        try:
            box = autodev.sandbox
            assert isinstance(box, RaySandbox) and box.slots == 0
            assert (box.config.address, box.config.actors, box.config.slots_per_actor,
                    box.config.node_sandbox) == ("head:6379", 2, 1, "docker")
        finally:
            autodev.database.dispose()


class TestSlots:
    """Every backend says how many jobs it runs at once: its pool size."""

    @given(workers=st.integers(1, 16))
    def test_process_and_docker_slots_are_their_pool_size(self, workers: int) -> None:
        """The process sandbox's workers and the Docker pool's containers (nothing started)."""
        from auto_dev.sandbox.docker import DockerSandbox

        assert ProcessSandbox(workers=workers).slots == workers
        assert DockerSandbox(pool_size=workers).slots == workers

    def test_ray_slots_are_unknown_until_the_actors_start(self) -> None:
        """Before start a Ray sandbox has no actors, so no slots (the search reads them after
        its first job)."""
        from auto_dev.sandbox.ray import RaySandbox

        assert RaySandbox(actors=4, slots_per_actor=2).slots == 0
