"""The Ray backend's settings, actor layout, placement and crash results (no cluster needed)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auto_dev._exceptions import ValidationError
from auto_dev.sandbox._ray_layout import (
    ActorPlan,
    ActorSlot,
    NodeSpec,
    RaySandboxConfig,
    check_ray_address,
    choose_actor,
    crashed_result,
    plan_actors,
    short_error,
)
from auto_dev.sandbox.base import Case, CaseStatus, SandboxJob

HOSTS = st.sampled_from(["head", "10.0.0.7", "ray-head.internal", "[::1]"])


class TestRayAddress:
    """Cluster addresses are checked before any connection is tried."""

    @given(HOSTS, st.integers(min_value=1, max_value=65535), st.booleans())
    def test_host_and_port_are_accepted(self, host: str, port: int, client: bool) -> None:
        """host:port and ray://host:port come back as written."""
        address = f"{'ray://' if client else ''}{host}:{port}"
        assert check_ray_address(address) == address

    @given(HOSTS, st.integers(min_value=65536, max_value=10**5 - 1) | st.just(0))
    def test_port_out_of_range_names_the_field(self, host: str, port: int) -> None:
        """A port outside 1..65535 is a ValidationError naming the field."""
        with pytest.raises(ValidationError) as info:
            check_ray_address(f"{host}:{port}", field_name="AUTO_DEV_RAY_ADDRESS")
        assert info.value.field == "AUTO_DEV_RAY_ADDRESS"

    @pytest.mark.parametrize("address", ["head", "http://head:6379", "head:port", "ray://",
                                         "head:6379/x", "a b:1"])
    def test_malformed_addresses_are_refused(self, address: str) -> None:
        """Anything but auto, local, host:port or ray://host:port is refused."""
        with pytest.raises(ValidationError) as info:
            RaySandboxConfig(address=address)
        assert info.value.field == "ray.address" and "host:port" in info.value.problem

    @pytest.mark.parametrize(("given_", "expected"), [(None, None), ("", None), ("  ", None),
                                                      ("auto", "auto"), (" local ", "local")])
    def test_unset_auto_and_local(self, given_: str | None, expected: str | None) -> None:
        """Blank means unset; auto and local are Ray's own words."""
        assert check_ray_address(given_) == expected


class TestRaySandboxConfig:
    """Every field of the layout is validated and the bad one is named."""

    @pytest.mark.parametrize(("name", "value"), [
        ("actors", 0), ("actors", 5000), ("actors", True), ("slots_per_actor", 0),
        ("slots_per_actor", 1.5), ("node_sandbox", "ray"), ("max_tries", 0),
        ("actor_cpus", -1), ("start_timeout_s", 0)])
    def test_bad_field_is_named(self, name: str, value: object) -> None:
        """An out-of-range or mistyped field is a ValidationError naming ray.<field>."""
        with pytest.raises(ValidationError) as info:
            RaySandboxConfig(**{name: value})  # type: ignore[arg-type]
        assert info.value.field == f"ray.{name}"

    def test_containers_required_refuses_the_process_pool(self) -> None:
        """A tenant that requires containers cannot get actors running processes."""
        with pytest.raises(ValidationError) as info:
            RaySandboxConfig(node_sandbox="process", require_containers=True)
        assert info.value.field == "ray.node_sandbox" and "containers" in info.value.problem


NODES = [NodeSpec("n1", "10.0.0.1", "a", 8.0), NodeSpec("n2", "10.0.0.2", "b", 2.0)]


class TestPlanActors:
    """The default layout is one actor per node sized to it; an explicit count is spread."""

    def test_one_actor_per_node_with_its_cpus(self) -> None:
        """Without a count every node gets an actor pinned to it, with a slot per CPU."""
        plans = plan_actors(RaySandboxConfig(), NODES)
        assert plans == [ActorPlan(slots=8, node_id="n1"), ActorPlan(slots=2, node_id="n2")]

    def test_explicit_slots_win(self) -> None:
        """slots_per_actor sizes every actor whatever its node."""
        plans = plan_actors(RaySandboxConfig(slots_per_actor=3), NODES)
        assert [p.slots for p in plans] == [3, 3]

    @given(st.integers(min_value=1, max_value=64))
    def test_explicit_count_shares_the_cpus(self, actors: int) -> None:
        """N actors float (SPREAD) and share the cluster's CPUs, at least one slot each."""
        plans = plan_actors(RaySandboxConfig(actors=actors), NODES)
        assert len(plans) == actors and all(p.node_id is None for p in plans)
        assert all(p.slots == max(1, 10 // actors) for p in plans)

    def test_no_alive_node_is_an_error(self) -> None:
        """A cluster without alive nodes cannot host actors."""
        with pytest.raises(ValidationError):
            plan_actors(RaySandboxConfig(), [])


def _slots(*sizes: int) -> list[ActorSlot]:
    return [ActorSlot(index=i, plan=ActorPlan(slots=s, node_id=None))
            for i, s in enumerate(sizes)]


class TestChooseActor:
    """Placement spreads jobs, avoids actors a job died on, and never overfills."""

    @given(st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=6))
    def test_fills_every_slot_and_never_more(self, sizes: list[int]) -> None:
        """Placing jobs one by one uses every slot exactly once, then refuses."""
        actors = _slots(*sizes)
        for _ in range(sum(sizes)):
            chosen = choose_actor(actors, set())
            assert chosen is not None
            chosen.busy += 1
        assert choose_actor(actors, set()) is None
        assert [a.busy for a in actors] == sizes

    def test_spreads_before_filling(self) -> None:
        """With four two-slot actors, four jobs land on four different actors."""
        actors = _slots(2, 2, 2, 2)
        chosen = []
        for _ in range(4):
            actor = choose_actor(actors, set())
            assert actor is not None
            actor.busy += 1
            chosen.append(actor.index)
        assert sorted(chosen) == [0, 1, 2, 3]

    def test_avoids_actors_the_job_died_on_while_others_are_free(self) -> None:
        """A retried job goes to an actor it has not died on; if none is free, to any."""
        actors = _slots(1, 1, 1)
        chosen = choose_actor(actors, {0, 1})
        assert chosen is not None and chosen.index == 2
        actors[2].busy = 1
        fallback = choose_actor(actors, {0, 1})
        assert fallback is not None and fallback.index in (0, 1)


class TestCrashedResult:
    """A job every actor died under ends crashed, case by case."""

    def test_every_case_crashed_with_the_reason(self) -> None:
        """Each case is crashed and says why; the total is the job's."""
        job = SandboxJob(code="", entrypoint="f", cases=(Case(), Case(), Case()))
        result = crashed_result(job, "actor died 3 times", 1.5, "ray")
        assert [c.status for c in result.cases] == [CaseStatus.CRASHED] * 3
        assert [c.index for c in result.cases] == [0, 1, 2]
        assert all(c.error == "actor died 3 times" for c in result.cases)
        assert result.total == 3 and result.pass_rate == 0 and result.backend == "ray"

    def test_stop_on_first_failure_reports_only_the_first(self) -> None:
        """As the harness would, a stop-on-first-failure job stops at its first crash."""
        job = SandboxJob(code="", entrypoint="f", cases=(Case(), Case()),
                         stop_on_first_failure=True)
        result = crashed_result(job, "x", 0.1, "ray")
        assert len(result.cases) == 1 and result.total == 2


class TestShortError:
    """Errors from Ray shrink to one line that keeps the remote exception."""

    def test_remote_traceback_keeps_summary_and_exception(self) -> None:
        """A creation-task failure keeps what happened and the node's own exception line."""
        message = ("The actor died because of an error raised in its creation task, "
                   "\x1b[36mray::EvaluationActor.__init__()\x1b[39m (pid=1, ip=10.0.0.1)\n"
                   "  File \"/x/factory.py\", line 3, in create_sandbox\n"
                   "    raise SandboxUnavailableError(...)\n"
                   "auto_dev._exceptions.SandboxUnavailableError: the image 'img:0' is missing")
        assert short_error(RuntimeError(message)) == (
            "The actor died because of an error raised in its creation task: "
            "auto_dev._exceptions.SandboxUnavailableError: the image 'img:0' is missing")

    @given(st.text(min_size=1, max_size=2000))
    def test_always_one_bounded_line(self, text: str) -> None:
        """Whatever the error says, the result is one line of at most 303 characters."""
        line = short_error(ValueError(text))
        assert "\n" not in line and 0 < len(line) <= 303


class TestRayIsOptional:
    """auto-dev imports, configures and builds the Ray backend without importing Ray."""

    def test_nothing_imports_ray_until_a_sandbox_starts(self) -> None:
        """The package, the factory, the Ray backend module and the CLI leave Ray unimported."""
        import subprocess
        import sys
        from pathlib import Path

        code = ("import sys, auto_dev, auto_dev.cli, auto_dev.sandbox.factory\n"
                "from auto_dev.sandbox.ray import RaySandbox\n"
                "from auto_dev.sandbox.ray_cluster import check_cluster\n"
                "RaySandbox(actors=2)\n"
                "print('ray' in sys.modules)\n")
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                             text=True, timeout=60, check=True)
        assert out.stdout.strip() == "False", out.stderr
