"""RaySandbox on a local Ray instance: the sandbox contract, backpressure and placement, actors
killed under jobs, and an evolution cycle evaluated through Ray."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from auto_dev.abc import Mutator
from auto_dev.config import load_settings
from auto_dev.db import Database
from auto_dev.evolution.program import MutationContext, Program, Proposal
from auto_dev.evolution.search import EvolutionSearch
from auto_dev.models import Evaluation, ToolMutation
from auto_dev.sandbox.base import Case, CaseStatus, Limits, SandboxJob
from auto_dev.sandbox.ray import RaySandbox, RaySandboxStats
from auto_dev.service import AutoDev
from tests.engines.conftest import BUGGY_DISCOUNT, DISCOUNT_TESTS, ON
from tests.sandbox.contract import SandboxContract

pytestmark = pytest.mark.ray

SLEEPER = "import time\ndef f(n, seconds):\n    time.sleep(seconds)\n    return n\n"


def sleeper(n: int, seconds: float, cases: int = 1) -> SandboxJob:
    """A job answering ``n`` after ``seconds`` per case."""
    return SandboxJob(code=SLEEPER, entrypoint="f", limits=Limits(timeout_s=10.0),
                      cases=tuple(Case(args=(n, seconds), expected=n) for _ in range(cases)))


def delta(after: RaySandboxStats, before: RaySandboxStats) -> dict[str, int]:
    names = ("jobs", "attempts", "retried", "crashed", "actors_replaced")
    return {name: getattr(after, name) - getattr(before, name) for name in names}


@pytest.fixture(scope="module")
def ray_box(ray_session: Any) -> Iterator[RaySandbox]:
    """Two actors with one process-sandbox worker each, shared by this module's tests."""
    box = RaySandbox(actors=2, slots_per_actor=1, node_sandbox="process", max_tries=3)
    box.start_blocking()
    try:
        yield box
    finally:
        box.close()


async def kill_busy_actors(ray: Any, box: RaySandbox, most: int | None = None) -> int:
    """``ray.kill`` the actors running a job now, at most ``most`` of them (waits up to 5 s
    for one to be busy)."""
    for _ in range(250):
        busy = box.busy_actor_handles()[:most]
        if busy:
            for handle in busy:
                ray.kill(handle)
            return len(busy)
        await asyncio.sleep(0.02)
    raise AssertionError("no actor became busy")


class TestRaySandboxContract(SandboxContract):
    """RaySandbox honours the contract every sandbox backend passes."""

    @pytest.fixture
    def sandbox(self, ray_box: RaySandbox) -> RaySandbox:
        return ray_box

    async def network_should_be_blocked(self, sandbox: RaySandbox) -> bool:  # type: ignore[override]
        return all(a["isolation"].get("network_isolated") for a in await sandbox.describe())

    async def contains_signals(self, sandbox: RaySandbox) -> bool:  # type: ignore[override]
        return all(a["isolation"].get("privileged") or a["isolation"].get("pid_namespace")
                   for a in await sandbox.describe())

    async def kill_worker_during_job(self, sandbox: RaySandbox) -> None:  # type: ignore[override]
        import ray

        await kill_busy_actors(ray, sandbox)


class TestPlacementAndBackpressure:
    """Jobs spread over the actors and never exceed the slots; callers wait their turn."""

    async def test_in_flight_never_exceeds_the_slots_and_jobs_spread(
            self, ray_box: RaySandbox) -> None:
        """Twelve jobs on two one-slot actors: at most two run at once, the rest wait in
        run(), every answer is the caller's own, and both actors did work."""
        before = {a["actor"]: a["jobs"] for a in await ray_box.describe()}
        seen: list[tuple[int, int]] = []
        tasks = [asyncio.ensure_future(ray_box.run(sleeper(n, 0.1))) for n in range(12)]
        while not all(t.done() for t in tasks):
            stats = ray_box.stats()
            seen.append((stats.in_flight, stats.waiting))
            await asyncio.sleep(0.01)
        results = [t.result() for t in tasks]
        assert [r.cases[0].output for r in results] == list(range(12))
        assert max(in_flight for in_flight, _ in seen) == ray_box.slots == 2
        assert max(waiting for _, waiting in seen) >= 4  # the callers were held back
        after = {a["actor"]: a["jobs"] for a in await ray_box.describe()}
        assert all(after[i] - before.get(i, 0) >= 3 for i in after), (before, after)


class SlowConstantMutator(Mutator):
    """Proposes programs that sleep ``seconds`` per case and add a new constant each time."""

    name = "slow_constant"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.n = 0

    async def mutate(self, parent: Program, context: MutationContext) -> list[Proposal]:
        proposals = []
        for _ in range(context.max_proposals):
            self.n += 1
            code = (f"import time\ndef f(n):\n    time.sleep({self.seconds})\n"
                    f"    return n + {self.n}\n")
            proposals.append(Proposal(code=code, entrypoint="f", operator="slow.constant"))
        return proposals


class TestSearchFillsTheCluster:
    """One search keeps as many candidates in flight as the Ray actors have slots."""

    async def test_one_search_runs_more_than_two_jobs_at_once_on_four_actors(
            self, ray_session: Any) -> None:
        """Four one-slot actors, started by the search's first job: the search reads their
        four slots and has four candidates on the actors at once."""
        box = RaySandbox(actors=4, slots_per_actor=1, node_sandbox="process")
        try:
            search = EvolutionSearch(
                Program(code="import time\ndef f(n):\n    time.sleep(0.3)\n    return n\n",
                        entrypoint="f"),
                [Case(args=(n,), expected=-n - 1) for n in (1, 2)], box,
                [SlowConstantMutator(0.3)], budget=8, limits=Limits(timeout_s=10.0),
            )
            result = await search.run()
            stats = box.stats()
        finally:
            await box.aclose()
        assert result.evaluations == 8
        assert box.slots == 4
        assert stats.most_in_flight > 2 and stats.most_in_flight <= 4
        assert stats.jobs == 9  # the seed and the eight candidates, one job each


class TestCancellation:
    """A caller that stops waiting frees its slot and is not counted."""

    async def test_cancelled_run_frees_its_slot(self, ray_box: RaySandbox) -> None:
        """Cancelling two 20 s jobs ends them on the actors: both slots serve new jobs at
        once, and neither cancelled job counts as evaluated."""
        before = ray_box.stats()
        slow = [asyncio.ensure_future(ray_box.run(sleeper(n, 20.0))) for n in range(2)]
        for _ in range(200):
            if ray_box.stats().in_flight == 2:
                break
            await asyncio.sleep(0.02)
        for task in slow:
            task.cancel()
        await asyncio.gather(*slow, return_exceptions=True)
        started = time.monotonic()
        results = await asyncio.wait_for(
            asyncio.gather(*(ray_box.run(sleeper(n, 0.01)) for n in range(2))), 15)
        assert [r.cases[0].output for r in results] == [0, 1]
        assert time.monotonic() - started < 10  # not after the 20 s jobs
        for _ in range(500):  # the cancellations reach the actors in their own time
            if ray_box.stats().in_flight == 0:
                break
            await asyncio.sleep(0.02)
        after = ray_box.stats()
        assert after.jobs - before.jobs == 2 and after.in_flight == 0


class TestActorDeath:
    """An actor that dies loses nothing; a job that kills every actor ends crashed."""

    async def test_killed_actor_job_runs_again_and_counts_once(
            self, ray_box: RaySandbox, ray_session: Any) -> None:
        """Six jobs, one actor killed mid-job: each caller gets its own answer once; exactly
        one attempt was repeated, on the other actor; the dead actor was replaced."""
        before = ray_box.stats()
        tasks = [asyncio.ensure_future(ray_box.run(sleeper(n, 0.5))) for n in range(6)]
        await asyncio.sleep(0.2)
        assert await kill_busy_actors(ray_session, ray_box, most=1) == 1
        results = await asyncio.wait_for(asyncio.gather(*tasks), 60)
        assert [r.cases[0].output for r in results] == list(range(6))
        assert all(r.all_passed and r.backend == "ray" for r in results)
        moved = delta(ray_box.stats(), before)
        assert moved == {"jobs": 6, "attempts": 7, "retried": 1, "crashed": 0,
                         "actors_replaced": 1}

    async def test_job_killing_every_actor_ends_crashed_and_the_cluster_stays(
            self, ray_box: RaySandbox, ray_session: Any) -> None:
        """Whenever the job runs, its actor is killed: after max_tries (3) attempts its cases
        are crashed with the reason, and the replaced actors then run other jobs."""
        before = ray_box.stats()
        poisoned = asyncio.ensure_future(ray_box.run(sleeper(7, 2.0, cases=2)))
        kills = 0
        while not poisoned.done():
            with contextlib.suppress(AssertionError):
                if not poisoned.done():
                    kills += await kill_busy_actors(ray_session, ray_box)
            await asyncio.sleep(0.05)
        result = poisoned.result()
        assert [c.status for c in result.cases] == [CaseStatus.CRASHED] * 2
        assert result.total == 2 and "each of its 3 tries" in (result.cases[0].error or "")
        moved = delta(ray_box.stats(), before)
        assert moved["attempts"] == 3 and moved["crashed"] == 1 and moved["jobs"] == 1
        assert kills >= 3
        results = await asyncio.gather(*(ray_box.run(sleeper(n, 0.01)) for n in range(8)))
        assert [r.cases[0].output for r in results] == list(range(8))
        actors = await ray_box.describe()
        assert len(actors) == 2 and all("error" not in a for a in actors), actors


class TestLifecycle:
    """Starting reports the cluster; closing ends the actors and their workers."""

    async def test_close_ends_actors_and_their_pools(self, ray_session: Any) -> None:
        """After aclose the actor processes are gone, and a job is refused with SandboxError."""
        from auto_dev._exceptions import SandboxError

        box = RaySandbox(actors=1, slots_per_actor=1, node_sandbox="process")
        [actor] = await box.describe()
        assert actor["backend"] == "process" and actor["slots"] == 1 and box.slots == 1
        assert actor["node_id"] in {n["NodeID"] for n in ray_session.nodes()}
        await box.aclose()
        deadline = time.monotonic() + 10
        while _alive(actor["pid"]) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not _alive(actor["pid"])
        with pytest.raises(SandboxError):
            await box.run(sleeper(1, 0.0))


    async def test_nodes_that_cannot_host_the_pool_fail_at_start(self, ray_session: Any
                                                                 ) -> None:
        """Docker required on the nodes with an image that does not exist: start raises
        SandboxUnavailableError with the node's own reason, and a job is refused the same way."""
        from auto_dev._exceptions import SandboxUnavailableError

        box = RaySandbox(actors=1, node_sandbox="docker", image="auto-dev-no-such-image:0")
        with pytest.raises(SandboxUnavailableError) as info:
            await box.start()
        assert "did not start" in str(info.value)
        assert "SandboxUnavailableError" in str(info.value)  # the node's own reason, not Ray's
        assert "docker" in str(info.value).lower()
        with pytest.raises(SandboxUnavailableError):
            await box.run(sleeper(1, 0.0))
        await box.aclose()

    @pytest.mark.docker
    async def test_docker_pools_on_the_nodes_are_removed_on_close(self, ray_session: Any
                                                                  ) -> None:
        """An actor running the Docker sandbox evaluates in its containers, and closing the
        Ray sandbox removes every container that actor started."""
        from auto_dev.sandbox._docker_spec import LABEL_OWNER_PID
        from tests.sandbox._docker_support import all_sandbox_containers, require_docker

        require_docker()
        box = RaySandbox(actors=1, slots_per_actor=1, node_sandbox="docker")
        try:
            [actor] = await box.describe()
            assert actor["backend"] == "docker" and actor["isolation"]["network"] == "none"
            result = await box.run(sleeper(5, 0.0, cases=2))
            assert result.all_passed and result.backend == "ray"
            owned = [c for c in all_sandbox_containers()
                     if c["Labels"].get(LABEL_OWNER_PID) == str(actor["pid"])]
            assert owned
        finally:
            await box.aclose()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(
                c["Labels"].get(LABEL_OWNER_PID) == str(actor["pid"])
                for c in all_sandbox_containers()):
            await asyncio.sleep(0.2)
        assert not [c for c in all_sandbox_containers()
                    if c["Labels"].get(LABEL_OWNER_PID) == str(actor["pid"])]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
async def ray_autodev(database: Database, database_url: str,
                      ray_box: RaySandbox) -> AsyncIterator[AutoDev]:
    settings = load_settings(database_url=database_url, tenant="t1", sandbox="ray")
    instance = AutoDev(settings, database=database, sandbox=ray_box, load_plugins=False)
    await instance.start()
    try:
        yield instance
    finally:
        await instance.aclose()


class TestEvolutionCycleThroughRay:
    """A whole AlphaEvolver cycle evaluates its candidates on the Ray actors."""

    async def test_repairs_a_tool_with_every_evaluation_on_ray(
            self, ray_autodev: AutoDev, ray_box: RaySandbox) -> None:
        """The buggy discount is repaired; every evaluation is recorded once, from Ray."""
        autodev = ray_autodev
        autodev.configure_tenant(**ON)
        autodev.register_tool("apply_discount", BUGGY_DISCOUNT, "apply_discount",
                              tests=DISCOUNT_TESTS)
        autodev.set_maturity("bot", "auto_dev.alpha_evolver", "supervised")
        before = ray_box.stats()
        result = await autodev.run_cycle("alpha_evolver", "apply_discount", budget=300,
                                         agent="bot")
        assert result.status == "completed", result.reason
        assert result.pass_rate_before < 1.0 and result.pass_rate_after == 1.0
        assert len(result.offered_ids) == 1
        with autodev.database.session() as session:
            candidates = session.scalars(select(ToolMutation).where(
                ToolMutation.run_id == result.run_id)).all()
            offered = session.get(ToolMutation, result.offered_ids[0])
            assert offered is not None and offered.evaluation_id is not None
            evaluation = session.get(Evaluation, offered.evaluation_id)
        assert len(candidates) == result.evaluations
        assert evaluation is not None and evaluation.backend == "ray"
        assert evaluation.passed == evaluation.total == len(DISCOUNT_TESTS)
        # The seed and every candidate went through Ray (a cascade may split one in two).
        assert ray_box.stats().jobs - before.jobs >= result.evaluations + 1
