"""Fakes for tests, yours and ours.

* :class:`FakeLLM` stands in for :class:`auto_dev.llm.client.LLMClient` wherever one is accepted
  (mutators, the skill writer, engines): it answers from a script and records every prompt.
* :class:`OneEditLLM` is a scripted *model*: it answers a mutation prompt with the program it
  was shown plus one random edit (the stand-in the repair benchmark counts model calls with).
* :class:`OpenAICompatibleServer` is a real HTTP server on 127.0.0.1 speaking the OpenAI chat
  completions protocol, with scriptable replies (answers, 429s, 500s, delays, malformed JSON), an
  optional API key it checks (401 otherwise) and model list it serves (404 otherwise), so that
  litellm's real client can be exercised without a network or a provider.

Nothing here imports litellm.
"""

from __future__ import annotations

import json
import random
import re
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from auto_dev._exceptions import BudgetExceededError, LLMResponseError, ValidationError
from auto_dev.llm.types import ChatMessage, LLMResponse, new_call_id

__all__ = [
    "FakeCall",
    "FakeLLM",
    "OneEditLLM",
    "OpenAICompatibleServer",
    "RecordedRequest",
    "ServerReply",
]


# --- FakeLLM --------------------------------------------------------------------------------

#: What a script entry may be: the answer text, an exception to raise, a full response, or a
#: function of the messages returning any of those.
ScriptEntry = str | BaseException | LLMResponse | Callable[[list[ChatMessage]], Any]


@dataclass(frozen=True, slots=True)
class FakeCall:
    """One call :class:`FakeLLM` received."""

    messages: list[ChatMessage]
    tenant_id: str | None
    run_id: str | None
    engine: str | None
    purpose: str | None
    model: str | None

    @property
    def prompt(self) -> str:
        """The last user message: what was asked."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return str(message.get("content") or "")
        return ""


class FakeLLM:
    """Scripted stand-in for :class:`~auto_dev.llm.client.LLMClient`.

    ``FakeLLM(["answer 1", "answer 2"])`` answers the first call with ``"answer 1"`` and so on;
    an exception in the script is raised instead, a callable is called with the messages. When
    the script runs out, ``default`` answers (a string or callable), or
    :class:`~auto_dev.LLMResponseError` is raised if there is none. Every call is recorded in
    :attr:`calls`; ``cost_per_call`` is reported as each response's cost.
    """

    def __init__(
        self,
        script: Iterable[ScriptEntry] = (),
        *,
        default: str | Callable[[list[ChatMessage]], Any] | None = None,
        model: str = "fake/model",
        cost_per_call: float = 0.0,
    ) -> None:
        if cost_per_call < 0:
            raise ValidationError("cost_per_call", "must be >= 0")
        self._script: deque[ScriptEntry] = deque(script)
        self._default = default
        self.model = model
        self.cost_per_call = cost_per_call
        self.calls: list[FakeCall] = []
        self._lock = threading.Lock()

    def add(self, *entries: ScriptEntry) -> None:
        """Append entries to the script."""
        with self._lock:
            self._script.extend(entries)

    @property
    def prompts(self) -> list[str]:
        """The last user message of every call, in order."""
        return [call.prompt for call in self.calls]

    @property
    def remaining(self) -> int:
        """How many scripted entries are still unused."""
        return len(self._script)

    @property
    def total_cost_usd(self) -> float:
        return self.cost_per_call * len(self.calls)

    def close(self) -> None:
        """Nothing to release (parity with ``LLMClient.close``)."""

    async def aclose(self) -> None:
        """Nothing to release (parity with ``LLMClient.aclose``)."""

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tenant_id: str | None = None,
        run_id: str | None = None,
        engine: str | None = None,
        purpose: str | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        cache: bool | None = None,
    ) -> LLMResponse:
        """Answer from the script, recording the call (same signature as ``LLMClient``)."""
        copied = [dict(m) for m in messages]
        with self._lock:
            self.calls.append(FakeCall(copied, tenant_id, run_id, engine, purpose, model))
            entry: Any = self._script.popleft() if self._script else self._default
        if entry is None:
            raise LLMResponseError("FakeLLM: the script is exhausted and there is no default")
        if callable(entry) and not isinstance(entry, BaseException | LLMResponse):
            entry = entry(copied)
        if isinstance(entry, BaseException):
            raise entry
        if isinstance(entry, LLMResponse):
            return entry
        if not isinstance(entry, str):
            raise ValidationError("script", f"entries must give str, got {type(entry).__name__}")
        prompt_words = sum(len(str(m.get("content") or "").split()) for m in copied)
        return LLMResponse(
            text=entry,
            model=model or self.model,
            deployment=model or self.model,
            prompt_tokens=prompt_words,
            completion_tokens=len(entry.split()),
            cost_usd=self.cost_per_call,
            latency_s=0.0,
            cache_hit=False,
            call_id=new_call_id(),
            attempts=1,
        )


class OneEditLLM(FakeLLM):
    """A model stand-in that applies one random edit to the program it is shown.

    It reads the first ```python block of the last user message (the mutation prompt's current
    program), draws one single-site edit uniformly from
    :func:`auto_dev.evolution.ast_ops.enumerate_edits` with its own rng (seeded with ``seed``)
    and answers with the complete edited program in a fenced block. It ignores the failing
    cases, the temperature and everything else in the prompt, like a model that does not learn
    from them. After ``max_calls`` answered calls it raises
    :class:`~auto_dev.BudgetExceededError`, as a spent budget does (those are not recorded).
    """

    _PROGRAM = re.compile(r"```python\n(.*?)\n```", re.DOTALL)

    def __init__(
        self, *, seed: int = 0, max_calls: int | None = None, cost_per_call: float = 0.0,
        model: str = "fake/one-edit",
    ) -> None:
        if max_calls is not None and max_calls < 0:
            raise ValidationError("max_calls", "must be >= 0")
        super().__init__(default=self._answer, model=model, cost_per_call=cost_per_call)
        self.rng = random.Random(f"one-edit:{seed}")
        self.max_calls = max_calls

    async def complete(self, messages: Sequence[ChatMessage], **kwargs: Any) -> LLMResponse:
        if self.max_calls is not None and len(self.calls) >= self.max_calls:
            raise BudgetExceededError(f"OneEditLLM: {self.max_calls} calls spent")
        return await super().complete(messages, **kwargs)

    def _answer(self, messages: list[ChatMessage]) -> str:
        import ast

        from auto_dev.evolution.ast_ops import enumerate_edits, render

        prompt = next((str(m.get("content") or "") for m in reversed(messages)
                       if m.get("role") == "user"), "")
        found = self._PROGRAM.search(prompt)
        if found is None:
            return "I see no program to edit."
        try:
            tree = ast.parse(found.group(1))
        except (SyntaxError, ValueError):
            return "The program does not parse."
        edits = enumerate_edits(tree)
        if not edits:
            return "I cannot edit this program."
        edit = edits[self.rng.randrange(len(edits))]
        code = render(tree, edit)
        if code is None:
            return "That edit makes no program."
        return f"{edit.description}.\n```python\n{code}```\n"


# --- OpenAI-compatible HTTP server ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerReply:
    """One scripted reply of :class:`OpenAICompatibleServer`.

    ``content`` is the assistant message; token counts default to whitespace-separated words of
    the prompt and the answer. ``status`` other than 200 sends an OpenAI-style error body with
    ``error_message`` (and ``error_code``, default the status). ``body`` (bytes) is sent
    verbatim instead of anything else. ``delay_s`` waits before answering (to provoke client
    timeouts).
    """

    content: str | None = "ok"
    status: int = 200
    delay_s: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    error_message: str = "scripted error"
    finish_reason: str = "stop"
    error_code: str | None = None

    @classmethod
    def rate_limited(cls, retry_after_s: float = 0.0) -> ServerReply:
        return cls(
            status=429,
            error_message="Rate limit reached",
            headers={"retry-after": str(retry_after_s)},
        )

    @classmethod
    def server_error(cls, status: int = 500) -> ServerReply:
        return cls(status=status, error_message="internal server error")

    @classmethod
    def unauthorized(cls) -> ServerReply:
        return cls(status=401, error_message="Incorrect API key provided",
                   error_code="invalid_api_key")

    @classmethod
    def unknown_model(cls, model: str) -> ServerReply:
        """The provider's answer for a model it does not serve (HTTP 404)."""
        return cls(status=404, error_code="model_not_found", error_message=(
            f"The model `{model}` does not exist or you do not have access to it."))

    @classmethod
    def context_window(cls) -> ServerReply:
        return cls(
            status=400,
            error_message=(
                "This model's maximum context length is 8 tokens. However, your messages "
                "resulted in 9000 tokens. Please reduce the length of the messages."
            ),
        )

    @classmethod
    def malformed(cls) -> ServerReply:
        return cls(body=b'{"id": "x", "choices": [ {"message": ')

    @classmethod
    def slow(cls, delay_s: float, content: str = "late") -> ServerReply:
        return cls(content=content, delay_s=delay_s)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request the server received: path, the ``model`` field, messages, whole JSON body."""

    path: str
    model: str
    messages: list[dict[str, Any]]
    body: dict[str, Any]
    status: int


Responder = Callable[[dict[str, Any]], ServerReply]


class OpenAICompatibleServer:
    """A chat-completions server on 127.0.0.1 for tests and benchmarks.

    Use as a context manager (or :meth:`start` / :meth:`stop`). Point litellm at it with model
    ``"openai/<name>"`` and ``api_base=server.base_url``; ``<name>`` arrives as the request's
    ``model`` field. :meth:`script` queues replies for one model name (or for any); when a
    queue is empty the ``default`` reply (or responder function of the request body) answers.
    Like a provider, with ``api_key`` set it answers 401 to a request without that bearer
    key, and with ``models`` set it answers 404 for any other model (before any script).
    Every request is recorded in :attr:`requests`.
    """

    def __init__(
        self,
        default: ServerReply | Responder | None = None,
        *,
        api_key: str | None = None,
        models: Collection[str] | None = None,
    ) -> None:
        self._default: ServerReply | Responder = default or ServerReply()
        self.api_key = api_key
        self.models = frozenset(models) if models is not None else None
        self._queues: dict[str | None, deque[ServerReply]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.requests: list[RecordedRequest] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> OpenAICompatibleServer:
        if self._httpd is not None:
            return self
        handler = _make_handler(self)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
            name="openai-compatible-server",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> OpenAICompatibleServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``: the ``api_base`` for litellm."""
        return f"http://127.0.0.1:{self.port}/v1"

    # scripting

    def script(self, *replies: ServerReply | str, model: str | None = None) -> None:
        """Queue replies (strings are answers) for requests naming ``model`` (None: any)."""
        with self._lock:
            for reply in replies:
                self._queues[model].append(
                    ServerReply(content=reply) if isinstance(reply, str) else reply
                )

    def set_default(self, default: ServerReply | Responder) -> None:
        with self._lock:
            self._default = default

    def reset(self) -> None:
        """Forget queued replies and recorded requests."""
        with self._lock:
            self._queues.clear()
            self.requests.clear()

    def requests_for(self, model: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.model == model]

    def _next_reply(
        self, model: str, body: dict[str, Any], authorization: str | None = None
    ) -> ServerReply:
        if self.api_key is not None and authorization != f"Bearer {self.api_key}":
            return ServerReply.unauthorized()
        if self.models is not None and model not in self.models:
            return ServerReply.unknown_model(model)
        with self._lock:
            for key in (model, None):
                queue = self._queues.get(key)
                if queue:
                    return queue.popleft()
            default = self._default
        return default if isinstance(default, ServerReply) else default(body)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)


def _words(text: Any) -> int:
    return len(str(text or "").split())


def _completion_body(reply: ServerReply, body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages") or []
    prompt_tokens = (
        reply.prompt_tokens
        if reply.prompt_tokens is not None
        else sum(_words(m.get("content")) for m in messages if isinstance(m, dict))
    )
    completion_tokens = (
        reply.completion_tokens if reply.completion_tokens is not None else _words(reply.content)
    )
    return {
        "id": f"chatcmpl-{new_call_id()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body.get("model", "")),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.content},
                "finish_reason": reply.finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _make_handler(server: OpenAICompatibleServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1 keeps connections alive, as a real provider does (and as the benchmark needs).
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm
            # and the client's delayed ACK add ~40 ms to every answer.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:
            """Silence the per-request log lines on stderr."""

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                self._send(400, {"error": {"message": "request body is not JSON"}})
                return
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            model = str(body.get("model", ""))
            reply = server._next_reply(model, body, self.headers.get("authorization"))
            messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
            server._record(RecordedRequest(self.path, model, messages, body, reply.status))
            if reply.delay_s and server._stopping.wait(reply.delay_s):
                return
            if reply.body is not None:
                self._send_raw(reply.status, reply.body, reply.headers)
            elif reply.status != 200:
                error = {
                    "error": {
                        "message": reply.error_message,
                        "type": "invalid_request_error" if reply.status < 500 else "server_error",
                        "code": reply.error_code or str(reply.status),
                    }
                }
                self._send(reply.status, error, reply.headers)
            else:
                self._send(200, _completion_body(reply, body), reply.headers)

        def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            self._send_raw(status, json.dumps(payload).encode(), headers or {})

        def _send_raw(self, status: int, data: bytes, headers: dict[str, str]) -> None:
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up (a timeout test): nothing to answer to.
                self.close_connection = True

    return Handler
