"""LLM health: a refused key, an unknown model or an unreachable endpoint are counted by kind
in the client and the mutator, not only logged."""

from __future__ import annotations

import random
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auto_dev._exceptions import (
    BudgetExceededError,
    LLMAuthError,
    LLMCircuitOpenError,
    LLMModelNotFoundError,
    LLMUnavailableError,
    LLMUnreachableError,
)
from auto_dev.db import Database
from auto_dev.evolution.program import MutationContext, Program
from auto_dev.llm.breaker import BreakerState
from auto_dev.llm.health import (
    LLMErrorKind,
    LLMFailure,
    LLMHealth,
    LLMHealthReport,
    error_kind,
)
from auto_dev.llm.mutator import LLMMutator
from auto_dev.testing import FakeLLM, OpenAICompatibleServer, ServerReply
from tests.llm.conftest import USER, MakeClient, llm_settings

PARENT = Program(code="def add_one(x):\n    return x + 2\n", entrypoint="add_one", id="v1")


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def context() -> MutationContext:
    return MutationContext(rng=random.Random(0), failing_cases=[], tenant_id="t1", run_id=None)


class TestErrorKinds:
    """Provider answers map to errors whose kind says what a person must fix."""

    async def test_wrong_key_is_authentication(self, make_client: MakeClient) -> None:
        """A server that checks the key answers 401: LLMAuthError, kind authentication, the
        deployment and model named, the provider's message kept without litellm's prefixes."""
        with OpenAICompatibleServer(api_key="sk-right") as server:
            client = make_client(llm_settings(server, api_key="sk-wrong", num_retries=0))
            with pytest.raises(LLMAuthError) as info:
                await client.complete(USER)
        [failure] = info.value.failures
        assert failure.kind is LLMErrorKind.AUTHENTICATION
        assert failure.model == "openai/primary" and failure.deployment
        assert failure.message == "AuthenticationError: Incorrect API key provided"

    async def test_unknown_model_is_not_retried_and_trips_the_breaker(
        self, make_client: MakeClient
    ) -> None:
        """404 for a model the server does not serve: one request per call (no retry), kind
        unknown_model, and it counts against the deployment's circuit breaker."""
        with OpenAICompatibleServer(models={"other"}) as server:
            client = make_client(llm_settings(server, num_retries=2, circuit_failure_threshold=2))
            for _ in range(2):
                with pytest.raises(LLMModelNotFoundError, match="`primary` does not exist"):
                    await client.complete(USER)
            assert len(server.requests) == 2
        assert client.status()[0].state is BreakerState.OPEN
        with pytest.raises(LLMCircuitOpenError) as info:
            await client.complete(USER)
        assert [f.kind for f in info.value.failures] == [LLMErrorKind.CIRCUIT_OPEN]

    async def test_closed_port_is_unreachable(self, make_client: MakeClient) -> None:
        """Nothing listening at the API base: LLMUnreachableError (still an outage, so retried),
        its failures naming the address that could not be reached."""
        base = f"http://127.0.0.1:{closed_port()}/v1"
        with OpenAICompatibleServer() as server:
            settings = llm_settings(server, api_base=base, num_retries=1)
        client = make_client(settings)
        with pytest.raises(LLMUnreachableError) as info:
            await client.complete(USER)
        assert isinstance(info.value, LLMUnavailableError)
        assert [f.kind for f in info.value.failures] == [LLMErrorKind.UNREACHABLE] * 2
        assert f"cannot reach {base}" in info.value.failures[0].message
        assert "Connect" in info.value.failures[0].message

    async def test_server_error_stays_an_outage(
        self, server: OpenAICompatibleServer, make_client: MakeClient
    ) -> None:
        """A 503 from a reachable server is unavailable, not unreachable."""
        server.set_default(ServerReply.server_error(503))
        with pytest.raises(LLMUnavailableError) as info:
            await make_client(llm_settings(server, num_retries=0)).complete(USER)
        assert not isinstance(info.value, LLMUnreachableError)
        assert error_kind(info.value) is LLMErrorKind.UNAVAILABLE


class TestClientHealth:
    """``LLMClient.health_report()`` and ``errors_summary()`` say what went wrong."""

    async def test_refused_key_summary_and_breaker(self, make_client: MakeClient) -> None:
        """Four calls with a refused key: three reach the server and open the circuit, the
        fourth is skipped; the summary lists authentication first with its count."""
        with OpenAICompatibleServer(api_key="sk-right") as server:
            client = make_client(llm_settings(server, api_key="sk-wrong",
                                              circuit_failure_threshold=3))
            for _ in range(4):
                with pytest.raises(LLMAuthError if len(server.requests) < 3
                                   else LLMCircuitOpenError):
                    await client.complete(USER)
            assert len(server.requests) == 3
        report = client.health_report()
        assert (report.calls_answered, report.calls_failed, report.usable) == (0, 4, False)
        summary = client.errors_summary()
        assert [(s["kind"], s["count"]) for s in summary] == [("authentication", 3),
                                                               ("circuit_open", 1)]
        assert summary[0]["model"] == "openai/primary"
        assert "Incorrect API key" in str(summary[0]["message"])
        [breaker] = report.to_dict()["breakers"]
        assert breaker["state"] == "open" and breaker["consecutive_failures"] == 3

    async def test_working_model_reports_no_errors(
        self, server: OpenAICompatibleServer, make_client: MakeClient
    ) -> None:
        """Answered calls are counted; nothing is listed as an error."""
        client = make_client()
        for _ in range(2):
            await client.complete(USER)
        report = client.health_report()
        assert (report.calls_answered, report.calls_failed, report.usable) == (2, 0, True)
        assert client.errors_summary() == [] and report.errors == ()

    async def test_budget_refusal_is_counted(
        self, server: OpenAICompatibleServer, make_client: MakeClient, database: Database
    ) -> None:
        """A call the daily budget refuses is a failed call of kind budget."""
        client = make_client(llm_settings(server, daily_budget_usd=1e-9))
        with pytest.raises(BudgetExceededError):
            await client.complete(USER)
        [summary] = client.errors_summary()
        assert summary["kind"] == "budget" and summary["count"] == 1

    async def test_breaker_restored_from_ledger_counts_new_kinds(
        self, make_client: MakeClient
    ) -> None:
        """Unknown-model and unreachable failures are ledgered as breaker failures: another
        process (a fresh client) rebuilds the open circuit from the ledger."""
        with OpenAICompatibleServer(models={"other"}) as server:
            settings = llm_settings(server, num_retries=0, circuit_failure_threshold=2)
            for _ in range(2):
                with pytest.raises(LLMModelNotFoundError):
                    await make_client(settings).complete(USER)
            # Another deployment (its own ledger rows), where nothing listens.
            unreachable = llm_settings(server, model="openai/elsewhere", num_retries=1,
                                       api_base=f"http://127.0.0.1:{closed_port()}/v1",
                                       circuit_failure_threshold=2)
        restored = make_client(settings)
        restored.restore_breakers()
        assert restored.status()[0].state is BreakerState.OPEN
        fresh = make_client(unreachable)
        fresh.restore_breakers()
        assert fresh.status()[0].state is BreakerState.CLOSED
        with pytest.raises(LLMUnreachableError):
            await make_client(unreachable).complete(USER)
        again = make_client(unreachable)
        again.restore_breakers()
        assert again.status()[0].state is BreakerState.OPEN

    async def test_configuration_errors_are_logged_once(
        self, make_client: MakeClient, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A refused key is a WARNING the first time, not once per call."""
        with OpenAICompatibleServer(api_key="sk-right") as server:
            client = make_client(llm_settings(server, api_key="sk-wrong", num_retries=0))
            for _ in range(3):
                with pytest.raises(LLMAuthError):
                    await client.complete(USER)
        assert capsys.readouterr().err.count("llm.deployment_unusable") == 1


class TestMutatorHealth:
    """``LLMMutator.health_report()``: the mutator's own calls, per run through a mark."""

    async def test_failures_and_answers_since_a_mark(self) -> None:
        """Errors raised by any chat model are counted by kind; a mark isolates one run."""
        llm = FakeLLM([LLMAuthError("key refused"), "no blocks here"])
        mutator = LLMMutator(llm, model="fast")
        await mutator.mutate(PARENT, context())
        mark = mutator.health_mark()
        await mutator.mutate(PARENT, context())
        whole, since = mutator.health_report(), mutator.health_report(mark)
        assert (whole.calls_answered, whole.calls_failed) == (1, 1)
        assert [(e.kind, e.model, e.count) for e in whole.errors] == [
            (LLMErrorKind.AUTHENTICATION, "fast", 1)]
        assert (since.calls_answered, since.calls_failed, since.errors) == (1, 0, ())

    async def test_through_a_refusing_server(self, make_client: MakeClient) -> None:
        """Against a server refusing the key, the mutator yields nothing and its report carries
        the client's attempts and breaker states."""
        with OpenAICompatibleServer(api_key="sk-right") as server:
            mutator = LLMMutator(make_client(llm_settings(server, api_key="sk-wrong")))
            report = await mutator.mutate_with_report(PARENT, context())
        assert report.proposals == [] and report.rejections[0].reason == "llm_error"
        health = mutator.health_report()
        assert not health.usable
        [error] = health.errors
        assert (error.kind, error.model, error.count) == (
            LLMErrorKind.AUTHENTICATION, "openai/primary", 1)
        assert [b.state for b in health.breakers] == [BreakerState.CLOSED]


FAILURE_KINDS = st.sampled_from(list(LLMErrorKind))
EVENTS = st.lists(
    st.one_of(
        st.none(),  # an answered call
        st.lists(st.tuples(FAILURE_KINDS, st.sampled_from(["m1", "m2"])), min_size=1,
                 max_size=3),
    ),
    max_size=30,
)


def _replay(health: LLMHealth, events: list[list[tuple[LLMErrorKind, str]] | None]) -> None:
    for event in events:
        if event is None:
            health.record_answer()
        else:
            health.record_failures([LLMFailure(kind, model, None, f"{kind} {i}")
                                    for i, (kind, model) in enumerate(event)])


def _counts(report: LLMHealthReport) -> dict[tuple[str, str], int]:
    return {(str(e.kind), e.model): e.count for e in report.errors}


class TestHealthCounters:
    """Counts are exact, split at any mark, and configuration problems come first."""

    @given(EVENTS, EVENTS)
    def test_mark_splits_the_counts(
        self, before: list[list[tuple[LLMErrorKind, str]] | None],
        after: list[list[tuple[LLMErrorKind, str]] | None],
    ) -> None:
        """What happened before a mark plus what happened since equals the whole."""
        health, alone = LLMHealth(), LLMHealth()
        _replay(health, before)
        mark = health.mark()
        _replay(health, after)
        _replay(alone, after)
        since, whole, isolated = health.report(since=mark), health.report(), alone.report()
        assert _counts(since) == _counts(isolated)
        assert (since.calls_answered, since.calls_failed) == (
            isolated.calls_answered, isolated.calls_failed)
        merged = health.report().merged(LLMHealthReport())
        assert _counts(merged) == _counts(whole)
        assert whole.calls_failed == sum(e is not None for e in (*before, *after))
        assert whole.usable == (whole.calls_answered > 0 or whole.calls_failed == 0)
        kinds = [e.kind for e in whole.errors]
        first_transient = next((i for i, k in enumerate(kinds) if not _config(k)), len(kinds))
        assert all(not _config(k) for k in kinds[first_transient:])

    def test_describe_names_kind_model_and_message(self) -> None:
        """The one-line description a CLI warning shows."""
        health = LLMHealth()
        health.record_failures([LLMFailure(LLMErrorKind.UNREACHABLE, "openai/x", "d",
                                           "cannot reach http://h/v1: refused")] * 2)
        report = health.report()
        assert report.describe() == (
            "unreachable x2 on openai/x (cannot reach http://h/v1: refused)")
        assert report.cause() == "unreachable on openai/x"


def _config(kind: LLMErrorKind) -> bool:
    from auto_dev.llm.health import CONFIGURATION_KINDS

    return kind in CONFIGURATION_KINDS
