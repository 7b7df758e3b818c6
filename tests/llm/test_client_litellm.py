"""LLMClient driving litellm's real client against a local OpenAI-compatible server."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from auto_dev._exceptions import (
    LLMAuthError,
    LLMContextWindowError,
    LLMError,
    LLMRateLimitedError,
    LLMResponseError,
    LLMTimeoutError,
    LLMUnavailableError,
    ValidationError,
)
from auto_dev.db import Database
from auto_dev.llm.client import LLMClient
from auto_dev.models import LLMCall
from auto_dev.testing import OpenAICompatibleServer, ServerReply
from tests.llm.conftest import USER, MakeClient, llm_settings, two_group_settings


def rows(database: Database) -> list[LLMCall]:
    with database.session(readonly=True) as s:
        out = list(s.scalars(select(LLMCall).order_by(LLMCall.created_at)))
        s.expunge_all()  # keep the loaded values past the read-only session's rollback
        return out


class TestSuccess:
    """A plain call answers, costs what the usage says, and leaves one settled ledger row."""

    async def test_answer_cost_and_ledger(
        self, server: OpenAICompatibleServer, make_client: MakeClient, database: Database
    ) -> None:
        """The answer text, token counts and cost match the server's reply and the prices."""
        server.script(ServerReply(content="fixed it", prompt_tokens=100, completion_tokens=20))
        client = make_client()
        response = await client.complete(USER, engine="alpha_evolver", purpose="mutation")
        assert response.text == "fixed it"
        assert (response.prompt_tokens, response.completion_tokens) == (100, 20)
        assert response.cost_usd == pytest.approx(100 * 1e-6 + 20 * 2e-6)
        assert response.attempts == 1 and not response.cache_hit
        [row] = rows(database)
        assert row.id == response.call_id
        assert row.status == "ok" and row.tenant_id == "t1"
        assert row.model == "openai/primary" and row.deployment == "openai/primary"
        assert row.engine == "alpha_evolver" and row.purpose == "mutation"
        assert row.cost_usd == pytest.approx(response.cost_usd)
        assert row.latency_s > 0
        request = server.requests[0]
        assert request.model == "primary" and request.body["max_tokens"] == 64
        assert request.messages[0]["content"] == USER[0]["content"]

    async def test_bad_arguments_name_the_field(self, make_client: MakeClient) -> None:
        """Empty messages, an unknown role, an unknown group or bad max_tokens are refused."""
        client = make_client()
        cases = [
            ({"messages": []}, "messages"),
            ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
            ({"messages": USER, "model": "nope"}, "model"),
            ({"messages": USER, "max_tokens": 0}, "max_tokens"),
            ({"messages": USER, "temperature": 3.0}, "temperature"),
        ]
        for kwargs, field in cases:
            messages = kwargs.pop("messages")
            with pytest.raises(ValidationError) as info:
                await client.complete(messages, **kwargs)
            assert info.value.field == field


class TestRetries:
    """Rate limits, outages and timeouts are retried on the same deployment."""

    async def test_429_then_success(
        self, server: OpenAICompatibleServer, make_client: MakeClient, database: Database
    ) -> None:
        """A 429 is retried; the ledger shows the error row and the ok row."""
        server.script(ServerReply.rate_limited(retry_after_s=0), "second time lucky")
        response = await make_client().complete(USER)
        assert response.text == "second time lucky" and response.attempts == 2
        assert [r.status for r in rows(database)] == ["error", "ok"]
        assert rows(database)[0].error.startswith("LLMRateLimitedError")
        assert rows(database)[0].cost_usd == 0.0
        assert len(server.requests) == 2

    async def test_persistent_429_raises_rate_limited(
        self, server: OpenAICompatibleServer, make_client: MakeClient, database: Database
    ) -> None:
        """After num_retries + 1 attempts the mapped error surfaces, every attempt recorded."""
        server.set_default(ServerReply.rate_limited())
        with pytest.raises(LLMRateLimitedError):
            await make_client().complete(USER)
        assert len(server.requests) == 3
        assert [r.status for r in rows(database)] == ["error"] * 3

    async def test_long_retry_after_moves_on(
        self, server: OpenAICompatibleServer, make_client: MakeClient
    ) -> None:
        """A Retry-After longer than we would wait goes to the fallback instead of sleeping."""
        server.script(ServerReply.rate_limited(retry_after_s=3600), model="primary-model")
        server.script("backup answered", model="backup-model")
        response = await make_client(two_group_settings(server)).complete(USER)
        assert response.text == "backup answered"
        assert len(server.requests_for("primary-model")) == 1

    async def test_backoff_grows(
        self, server: OpenAICompatibleServer, make_client: MakeClient
    ) -> None:
        """Without Retry-After the delay doubles per retry, with jitter in [base/2, base]."""
        delays: list[float] = []

        async def record(seconds: float) -> None:
            delays.append(seconds)

        server.set_default(ServerReply.server_error())
        client = make_client(llm_settings(server, retry_backoff_s=1.0, num_retries=3),
                             sleep=record)
        with pytest.raises(LLMUnavailableError):
            await client.complete(USER)
        assert len(delays) == 3
        for attempt, delay in enumerate(delays):
            assert 0.5 * 2**attempt <= delay <= 2**attempt

    async def test_timeout(
        self, server: OpenAICompatibleServer, make_client: MakeClient, database: Database
    ) -> None:
        """A server slower than timeout_s gives LLMTimeoutError, charged at the worst case."""
        server.set_default(ServerReply.slow(3.0))
        client = make_client(llm_settings(server, timeout_s=0.3, num_retries=0))
        with pytest.raises(LLMTimeoutError):
            await client.complete(USER)
        [row] = rows(database)
        assert row.status == "error" and row.error.startswith("LLMTimeoutError")
        # The provider may bill a request we stopped waiting for: the estimate stays.
        assert row.cost_usd > 0

    async def test_malformed_json_is_an_outage(
        self, server: OpenAICompatibleServer, make_client: MakeClient, database: Database
    ) -> None:
        """A body that is not JSON maps to LLMUnavailableError and is retried."""
        server.script(ServerReply.malformed(), "recovered")
        response = await make_client().complete(USER)
        assert response.text == "recovered"
        first = rows(database)[0]
        assert first.status == "error" and first.error.startswith("LLMUnavailableError")

    async def test_malformed_json_every_time(
        self, server: OpenAICompatibleServer, make_client: MakeClient
    ) -> None:
        """Persistently malformed answers end in LLMUnavailableError."""
        server.set_default(ServerReply.malformed())
        with pytest.raises(LLMUnavailableError):
            await make_client().complete(USER)


class TestCancellation:
    """A call the caller cancels still leaves a settled ledger row."""

    async def test_cancelled_call_is_settled(
        self, server: OpenAICompatibleServer, make_client: MakeClient, database: Database
    ) -> None:
        """The row ends as an error charged at the worst case (the provider may bill it)."""
        import asyncio

        server.set_default(ServerReply.slow(3.0))
        task = asyncio.create_task(make_client().complete(USER))
        while not server.requests:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        [row] = rows(database)
        assert row.status == "error" and row.error.startswith("CancelledError")
        assert row.cost_usd > 0


class TestNonRetryable:
    """Errors that a retry cannot fix are raised at once, mapped into our tree."""

    @pytest.mark.parametrize(
        ("reply", "error"),
        [
            (ServerReply.context_window(), LLMContextWindowError),
            (ServerReply.unauthorized(), LLMAuthError),
            (ServerReply(status=400, error_message="bad parameter"), LLMError),
        ],
    )
    async def test_mapped_without_retry(
        self,
        server: OpenAICompatibleServer,
        make_client: MakeClient,
        reply: ServerReply,
        error: type[LLMError],
    ) -> None:
        """One request, one mapped error, no litellm exception leaks."""
        server.set_default(reply)
        with pytest.raises(error) as info:
            await make_client().complete(USER)
        assert type(info.value) is error
        assert len(server.requests) == 1
        # The chain ends at litellm's own exception: mapped at the boundary, not lost.
        causes = []
        cause: BaseException | None = info.value
        while cause is not None:
            causes.append(type(cause).__module__)
            cause = cause.__cause__
        assert causes[0] == "auto_dev._exceptions" and causes[-1].startswith("litellm")

    async def test_empty_answer(
        self, server: OpenAICompatibleServer, make_client: MakeClient, database: Database
    ) -> None:
        """An empty answer is LLMResponseError, recorded as an error with its real cost."""
        server.script(ServerReply(content="", prompt_tokens=10, completion_tokens=0))
        with pytest.raises(LLMResponseError, match="empty answer"):
            await make_client().complete(USER)
        [row] = rows(database)
        assert row.status == "error" and row.prompt_tokens == 10
        assert row.cost_usd == pytest.approx(10 * 1e-6)
        assert len(server.requests) == 1

    async def test_null_content(
        self, server: OpenAICompatibleServer, make_client: MakeClient
    ) -> None:
        """A null message content is an empty answer too."""
        server.script(ServerReply(content=None))
        with pytest.raises(LLMResponseError):
            await make_client().complete(USER)


class TestFallbacks:
    """When the primary group fails, the fallback group answers."""

    async def test_500_on_primary_then_fallback(
        self, server: OpenAICompatibleServer, make_client: MakeClient, database: Database
    ) -> None:
        """Three 500s on the primary (retries included), then the backup answers."""
        server.script(ServerReply.server_error(), model="primary-model")
        server.script(ServerReply.server_error(), model="primary-model")
        server.script(ServerReply.server_error(), model="primary-model")
        server.script(ServerReply(content="from backup", prompt_tokens=5, completion_tokens=5),
                      model="backup-model")
        client = make_client(two_group_settings(server))
        response = await client.complete(USER)
        assert response.text == "from backup"
        assert response.deployment == "backup" and response.model == "openai/backup-model"
        assert response.cost_usd == pytest.approx(5 * 3e-6 + 5 * 4e-6)
        ledger = rows(database)
        assert [(r.deployment, r.status) for r in ledger] == [
            ("primary", "error"), ("primary", "error"), ("primary", "error"), ("backup", "ok")
        ]
        assert len(server.requests_for("primary-model")) == 3
        assert server.requests_for("backup-model")[0].body["messages"][0]["content"] == (
            USER[0]["content"]
        )

    async def test_auth_error_skips_retries_and_falls_back(
        self, server: OpenAICompatibleServer, make_client: MakeClient
    ) -> None:
        """A refused key is not retried on the same deployment but the fallback is tried."""
        server.script(ServerReply.unauthorized(), model="primary-model")
        server.script("backup ok", model="backup-model")
        response = await make_client(two_group_settings(server)).complete(USER)
        assert response.text == "backup ok"
        assert len(server.requests_for("primary-model")) == 1

    async def test_every_group_fails_differently(
        self, server: OpenAICompatibleServer, make_client: MakeClient
    ) -> None:
        """Different failures across the chain surface as LLMUnavailableError naming both."""
        server.set_default(ServerReply.server_error())
        server.script(ServerReply.unauthorized(), model="backup-model")
        with pytest.raises(LLMUnavailableError) as info:
            await make_client(two_group_settings(server)).complete(USER)
        assert "primary" in str(info.value) and "backup" in str(info.value)

    async def test_unset_env_reference_moves_on(
        self, server: OpenAICompatibleServer, make_client: MakeClient,
        monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A deployment whose os.environ/ key is unset is skipped for the fallback."""
        monkeypatch.delenv("AUTO_DEV_TEST_MISSING_KEY", raising=False)
        settings = two_group_settings(server)
        model_list = [dict(d) for d in settings.model_list]
        model_list[0] = {
            **model_list[0],
            "litellm_params": {
                **model_list[0]["litellm_params"], "api_key": "os.environ/AUTO_DEV_TEST_MISSING_KEY"
            },
        }
        client = make_client(settings.model_copy(update={"model_list": model_list}))
        server.script("backup ok", model="backup-model")
        assert (await client.complete(USER)).text == "backup ok"
        assert server.requests_for("primary-model") == []


class TestCache:
    """The optional disk cache answers repeated prompts for free, as cache_hit rows."""

    async def test_cache_hit(
        self, server: OpenAICompatibleServer, make_client: MakeClient, database: Database,
        tmp_path: object
    ) -> None:
        """The second identical call does not reach the server and costs nothing."""
        client = make_client(llm_settings(server, cache_dir=str(tmp_path)))
        server.script(ServerReply(content="cached answer", prompt_tokens=7, completion_tokens=3))
        first = await client.complete(USER)
        second = await client.complete(USER)
        assert second.text == first.text == "cached answer"
        assert second.cache_hit and second.cost_usd == 0.0
        assert len(server.requests) == 1
        assert [r.status for r in rows(database)] == ["ok", "cache_hit"]
        assert rows(database)[1].cache_hit and rows(database)[1].cost_usd == 0.0
        third = await client.complete(USER, cache=False)
        assert not third.cache_hit and len(server.requests) == 2

    async def test_different_prompts_miss(
        self, server: OpenAICompatibleServer, make_client: MakeClient, tmp_path: object
    ) -> None:
        """A different prompt or temperature is a different cache entry."""
        client = make_client(llm_settings(server, cache_dir=str(tmp_path)))
        await client.complete(USER)
        await client.complete([{"role": "user", "content": "something else"}])
        await client.complete(USER, temperature=0.1)
        assert len(server.requests) == 3


class TestConcurrency:
    """Concurrent calls each get their own ledger row, on any kind of database."""

    async def test_in_memory_database(self, server: OpenAICompatibleServer) -> None:
        """An in-memory SQLite database (one shared connection) survives concurrent calls."""
        import asyncio

        database = Database("sqlite:///:memory:")
        database.upgrade()
        client = LLMClient(llm_settings(server, daily_budget_usd=10.0), database)
        responses = await asyncio.gather(*(client.complete(USER) for _ in range(20)))
        assert len({r.call_id for r in responses}) == 20
        assert [r.status for r in rows(database)] == ["ok"] * 20
        database.dispose()


class TestContention:
    """With the database briefly locked by another writer, calls wait instead of failing."""

    async def test_locked_database_falls_back_to_the_ledger_thread(
        self, server: OpenAICompatibleServer, make_client: MakeClient, database_url: str,
        database: Database
    ) -> None:
        """The event loop never waits for the lock; the ledger thread does, then writes."""
        import asyncio
        import sqlite3
        import threading
        from pathlib import Path

        client = make_client()
        await client.complete(USER)  # warm: tenant row and connections exist
        blocker = sqlite3.connect(Path(database_url.removeprefix("sqlite:///")),
                                  isolation_level=None, check_same_thread=False)
        blocker.execute("BEGIN IMMEDIATE")
        timer = threading.Timer(0.3, lambda: blocker.execute("ROLLBACK"))
        timer.start()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.02)
                ticks += 1

        tick_task = asyncio.create_task(ticker())
        response = await client.complete(USER)
        tick_task.cancel()
        timer.join()
        blocker.close()
        assert response.text == "ok"
        assert ticks >= 5  # the loop kept running while the ledger thread waited
        assert [r.status for r in rows(database)] == ["ok", "ok"]


class TestConstruction:
    """The client refuses to run without somewhere to keep its ledger."""

    def test_needs_a_database(self, server: OpenAICompatibleServer) -> None:
        """Neither database nor database_url is a configuration error."""
        from auto_dev._exceptions import ConfigurationError

        with pytest.raises(ConfigurationError):
            LLMClient(llm_settings(server))

    async def test_database_url_opens_lazily(
        self, server: OpenAICompatibleServer, database_url: str, database: Database
    ) -> None:
        """With only a URL the client opens the database on its first call."""
        client = LLMClient(llm_settings(server), database_url=database_url, tenant_id="t9")
        await client.complete(USER)
        await client.aclose()
        assert [r.tenant_id for r in rows(database)] == ["t9"]
