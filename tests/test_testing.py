"""The fakes users get in auto_dev.testing: FakeLLM and OpenAICompatibleServer."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

import auto_dev.testing as testing
from auto_dev._exceptions import LLMResponseError, LLMTimeoutError, ValidationError
from auto_dev.llm.types import ChatLLM, LLMResponse
from auto_dev.testing import FakeLLM, OpenAICompatibleServer, ServerReply

USER = [{"role": "user", "content": "hello there"}]


def post(server: OpenAICompatibleServer, body: dict[str, Any]) -> tuple[int, bytes, Any]:
    request = urllib.request.Request(
        server.base_url + "/chat/completions", data=json.dumps(body).encode(),
        headers={"content-type": "application/json"}, method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


class TestModule:
    """The module's public surface is declared."""

    def test_all(self) -> None:
        """__all__ lists every public name and is sorted."""
        assert testing.__all__ == sorted(testing.__all__)
        for name in testing.__all__:
            assert hasattr(testing, name)


class TestFakeLLM:
    """Scripted answers, recorded prompts, the same call signature as LLMClient."""

    async def test_script_in_order_then_default(self) -> None:
        """Answers come in order; a callable sees the messages; the default follows."""
        llm = FakeLLM(["one", lambda messages: f"echo {messages[-1]['content']}"],
                      default="fallback", cost_per_call=0.5)
        assert isinstance(llm, ChatLLM)
        first = await llm.complete(USER, tenant_id="t", engine="e", purpose="p")
        assert first.text == "one" and first.cost_usd == 0.5 and first.call_id
        assert (await llm.complete(USER)).text == "echo hello there"
        assert (await llm.complete(USER)).text == "fallback"
        assert llm.prompts == ["hello there"] * 3
        assert llm.calls[0].tenant_id == "t" and llm.calls[0].purpose == "p"
        assert llm.total_cost_usd == 1.5 and llm.remaining == 0
        llm.close()
        await llm.aclose()  # same lifecycle methods as LLMClient

    async def test_exceptions_and_responses(self) -> None:
        """An exception in the script is raised; a full LLMResponse is returned as is."""
        canned = LLMResponse("x", "m", "d", 1, 1, 0.0, 0.0, False, "id1")
        llm = FakeLLM([LLMTimeoutError("slow"), canned])
        with pytest.raises(LLMTimeoutError):
            await llm.complete(USER)
        assert await llm.complete(USER) is canned

    async def test_exhausted(self) -> None:
        """Without a default, an exhausted script raises LLMResponseError."""
        llm = FakeLLM()
        llm.add("only")
        await llm.complete(USER)
        with pytest.raises(LLMResponseError, match="exhausted"):
            await llm.complete(USER)

    def test_bad_cost(self) -> None:
        """A negative cost is refused, naming the field."""
        with pytest.raises(ValidationError, match="cost_per_call"):
            FakeLLM(cost_per_call=-1)


class TestOneEditLLM:
    """The scripted model answers with the program it was shown plus one edit."""

    PROMPT = [{"role": "user", "content": "Current program:\n```python\ndef f(a, b):\n"
                                          "    return a - b\n```\nAnswer."}]

    async def test_one_edit_of_the_shown_program(self) -> None:
        """Each answer is a fenced program one AST edit away; same seed, same answers."""
        import ast

        from auto_dev.evolution.ast_ops import neighbours
        from auto_dev.evolution.diff import extract_code

        first, second = testing.OneEditLLM(seed=3), testing.OneEditLLM(seed=3)
        one_edit = {new for _, new in neighbours("def f(a, b):\n    return a - b\n")}
        for _ in range(10):
            answer = (await first.complete(self.PROMPT)).text
            assert answer == (await second.complete(self.PROMPT)).text
            code = extract_code(answer, "f")
            assert ast.unparse(ast.parse(code)) + "\n" in one_edit

    async def test_budget_and_no_program(self) -> None:
        """After max_calls it raises BudgetExceededError; without a program it says so."""
        from auto_dev._exceptions import BudgetExceededError

        llm = testing.OneEditLLM(max_calls=1)
        assert "no program" in (await llm.complete(USER)).text
        with pytest.raises(BudgetExceededError):
            await llm.complete(self.PROMPT)
        assert len(llm.calls) == 1
        with pytest.raises(ValidationError):
            testing.OneEditLLM(max_calls=-1)


class TestServer:
    """The HTTP server speaks OpenAI chat completions and follows its script."""

    def test_completion_with_usage(self) -> None:
        """A default answer carries a choice and word-count usage."""
        with OpenAICompatibleServer() as server:
            status, body, _ = post(server, {"model": "m", "messages": USER})
            data = json.loads(body)
            assert status == 200
            assert data["choices"][0]["message"] == {"role": "assistant", "content": "ok"}
            assert data["usage"] == {"prompt_tokens": 2, "completion_tokens": 1,
                                     "total_tokens": 3}
            assert server.requests[0].model == "m"
            assert server.requests[0].messages == USER

    def test_per_model_scripts_and_errors(self) -> None:
        """Model-specific queues win over the shared one; errors carry OpenAI error bodies."""
        with OpenAICompatibleServer() as server:
            server.script(ServerReply.rate_limited(2.5), model="a")
            server.script("for anyone")
            status, body, headers = post(server, {"model": "a", "messages": USER})
            assert status == 429 and headers["retry-after"] == "2.5"
            assert json.loads(body)["error"]["message"] == "Rate limit reached"
            status, body, _ = post(server, {"model": "a", "messages": USER})
            assert json.loads(body)["choices"][0]["message"]["content"] == "for anyone"
            assert len(server.requests_for("a")) == 2

    def test_malformed_and_responder(self) -> None:
        """A raw body is sent verbatim; a responder function computes replies."""
        with OpenAICompatibleServer(default=lambda body: ServerReply(content=body["model"])) as s:
            s.script(ServerReply.malformed())
            _, body, _ = post(s, {"model": "z", "messages": USER})
            with pytest.raises(json.JSONDecodeError):
                json.loads(body)
            _, body, _ = post(s, {"model": "zeta", "messages": USER})
            assert json.loads(body)["choices"][0]["message"]["content"] == "zeta"
            s.reset()
            assert s.requests == []

    def test_stop_is_idempotent_and_port_needs_start(self) -> None:
        """A stopped server has no port; stopping twice is fine."""
        server = OpenAICompatibleServer()
        with pytest.raises(RuntimeError):
            _ = server.port
        server.start()
        assert server.base_url.startswith("http://127.0.0.1:")
        server.stop()
        server.stop()
