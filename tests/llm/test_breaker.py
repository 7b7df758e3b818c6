"""Circuit breakers: the state machine alone, replayed from history, and inside LLMClient."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auto_dev._exceptions import LLMUnavailableError, ValidationError
from auto_dev.db import Database
from auto_dev.llm.breaker import BreakerState, CircuitBreaker
from auto_dev.testing import OpenAICompatibleServer, ServerReply
from tests.llm.conftest import USER, MakeClient, llm_settings, two_group_settings


class Clock:
    """A settable clock."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class TestStateMachine:
    """closed -> open after N consecutive failures -> half-open after the cooldown."""

    def test_opens_after_threshold_consecutive_failures(self) -> None:
        """Failures below the threshold keep it closed; a success resets the count."""
        clock = Clock()
        breaker = CircuitBreaker(3, 10.0, clock=clock)
        breaker.record_failure()
        breaker.record_failure()
        breaker.record_success()
        breaker.record_failure()
        breaker.record_failure()
        assert breaker.state is BreakerState.CLOSED and breaker.allow()
        breaker.record_failure()
        assert breaker.state is BreakerState.OPEN and not breaker.allow()
        assert breaker.snapshot().retry_in_s == pytest.approx(10.0)

    def test_half_open_allows_one_trial(self) -> None:
        """After the cooldown exactly one caller may try; success closes the breaker."""
        clock = Clock()
        breaker = CircuitBreaker(1, 5.0, clock=clock)
        breaker.record_failure()
        clock.now += 5.0
        assert breaker.state is BreakerState.HALF_OPEN
        assert breaker.allow() and not breaker.allow()
        breaker.record_success()
        assert breaker.state is BreakerState.CLOSED and breaker.allow() and breaker.allow()

    def test_failed_trial_reopens(self) -> None:
        """A failed half-open trial opens the breaker for another full cooldown."""
        clock = Clock()
        breaker = CircuitBreaker(2, 5.0, clock=clock)
        breaker.record_failure()
        breaker.record_failure()
        clock.now += 6.0
        assert breaker.allow()
        breaker.record_failure()
        assert breaker.state is BreakerState.OPEN
        clock.now += 4.9
        assert breaker.state is BreakerState.OPEN
        clock.now += 0.2
        assert breaker.state is BreakerState.HALF_OPEN

    def test_release_returns_the_trial(self) -> None:
        """A trial that never reached the deployment can be given back."""
        clock = Clock()
        breaker = CircuitBreaker(1, 1.0, clock=clock)
        breaker.record_failure()
        clock.now += 1.0
        assert breaker.allow() and not breaker.allow()
        breaker.release()
        assert breaker.allow()

    def test_bad_parameters(self) -> None:
        """Threshold and cooldown are validated, naming the setting."""
        with pytest.raises(ValidationError, match="circuit_failure_threshold"):
            CircuitBreaker(0, 1.0)
        with pytest.raises(ValidationError, match="circuit_cooldown_s"):
            CircuitBreaker(1, 0.0)

    @given(st.lists(st.booleans(), max_size=60), st.integers(1, 6))
    def test_replay_matches_live(self, outcomes: list[bool], threshold: int) -> None:
        """Replaying timestamped outcomes gives the state the live breaker reached."""
        clock = Clock(0.0)
        live = CircuitBreaker(threshold, 3.0, clock=clock)
        history = []
        for ok in outcomes:
            clock.now += 1.0
            if live.allow():  # only calls the breaker let through happen (and are recorded)
                history.append((clock.now, ok))
                live.record_success() if ok else live.record_failure()
        replayed = CircuitBreaker(threshold, 3.0, clock=clock)
        replayed.replay(history)
        assert replayed.snapshot().state == live.snapshot().state
        assert replayed.snapshot().consecutive_failures == live.snapshot().consecutive_failures


class TestInClient:
    """The client's breakers open on consecutive failures and half-open after the cooldown."""

    async def test_opens_then_half_opens(
        self, server: OpenAICompatibleServer, make_client: MakeClient, database: Database
    ) -> None:
        """Three failing calls open the circuit; calls then fail fast without a request;
        after the cooldown one trial goes through and its success closes the circuit."""
        clock = Clock()
        settings = llm_settings(server, num_retries=0, circuit_failure_threshold=3,
                                circuit_cooldown_s=30.0)
        client = make_client(settings, clock=clock)
        server.set_default(ServerReply.server_error(503))
        for _ in range(3):
            with pytest.raises(LLMUnavailableError):
                await client.complete(USER)
        assert client.status()[0].state is BreakerState.OPEN
        requests = len(server.requests)
        with pytest.raises(LLMUnavailableError, match="circuit open"):
            await client.complete(USER)
        assert len(server.requests) == requests  # failed fast, nothing sent
        clock.now += 30.0
        assert client.status()[0].state is BreakerState.HALF_OPEN
        server.set_default(ServerReply(content="healthy again"))
        assert (await client.complete(USER)).text == "healthy again"
        assert client.status()[0].state is BreakerState.CLOSED

    async def test_open_primary_goes_straight_to_fallback(
        self, server: OpenAICompatibleServer, make_client: MakeClient
    ) -> None:
        """With the primary's circuit open, calls go to the fallback without touching it."""
        clock = Clock()
        settings = two_group_settings(server, num_retries=0, circuit_failure_threshold=2)
        client = make_client(settings, clock=clock)
        server.script(ServerReply.server_error(), ServerReply.server_error(),
                      model="primary-model")
        server.set_default(ServerReply(content="backup"))
        await client.complete(USER)
        await client.complete(USER)
        assert client.breaker("primary").state is BreakerState.OPEN
        before = len(server.requests_for("primary-model"))
        assert (await client.complete(USER)).deployment == "backup"
        assert len(server.requests_for("primary-model")) == before

    async def test_caller_errors_do_not_trip(
        self, server: OpenAICompatibleServer, make_client: MakeClient
    ) -> None:
        """Context-window errors are the caller's problem and leave the circuit closed."""
        from auto_dev._exceptions import LLMContextWindowError

        client = make_client(llm_settings(server, circuit_failure_threshold=1))
        server.set_default(ServerReply.context_window())
        with pytest.raises(LLMContextWindowError):
            await client.complete(USER)
        assert client.status()[0].state is BreakerState.CLOSED

    async def test_restore_from_ledger(
        self, server: OpenAICompatibleServer, make_client: MakeClient
    ) -> None:
        """A new client rebuilds the open circuit from the ledger rows of the old one."""
        settings = llm_settings(server, num_retries=0, circuit_failure_threshold=2)
        server.set_default(ServerReply.server_error())
        first = make_client(settings)
        for _ in range(2):
            with pytest.raises(LLMUnavailableError):
                await first.complete(USER)
        second = make_client(settings)
        assert second.status()[0].state is BreakerState.CLOSED
        second.restore_breakers()
        assert second.status()[0].state is BreakerState.OPEN
