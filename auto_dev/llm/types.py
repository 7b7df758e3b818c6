"""Value types of the LLM layer, and the protocol every chat model (real or fake) implements."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

#: An OpenAI-style chat message: ``{"role": "user", "content": "..."}``.
ChatMessage = dict[str, Any]


# Not uuid4: it reads os.urandom, a system call that releases the GIL, and on a busy event loop
# every release can hand the interpreter to another thread (litellm keeps some). The random part
# comes from a generator seeded with 256 bits of os.urandom (reseeded in a forked child, which
# would otherwise repeat its parent's ids).
_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))


def new_call_id() -> str:
    """A fresh id in the same form as every row id (32 hex characters).

    The milliseconds since the epoch come first (12 hex digits), then 80 random bits: new
    ledger rows land at the end of the primary-key index, where its pages are already in
    cache, instead of at a random place in it.
    """
    return f"{time.time_ns() // 1_000_000:012x}{_ids.getrandbits(80):020x}"


@dataclass(frozen=True, slots=True)
class LLMResponse:
    """A model's answer with what it cost.

    ``call_id`` is the ledger row of the attempt that answered; ``cost_usd`` sums every attempt
    of this call (retries, fallbacks), which is what fitness counts as LLM cost. ``deployment``
    names the deployment that answered, ``model`` its litellm model string.
    """

    text: str
    model: str
    deployment: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    cache_hit: bool
    call_id: str
    attempts: int = 1

    def meta(self) -> dict[str, Any]:
        """The fields a proposal or candidate records about the call that made it."""
        return {
            "llm_call_id": self.call_id,
            "llm_cost_usd": self.cost_usd,
            "llm_model": self.model,
            "llm_deployment": self.deployment,
            "llm_prompt_tokens": self.prompt_tokens,
            "llm_completion_tokens": self.completion_tokens,
            "llm_cache_hit": self.cache_hit,
        }


@runtime_checkable
class ChatLLM(Protocol):
    """What mutators and the skill writer need from a model: one chat completion.

    Implemented by :class:`~auto_dev.llm.client.LLMClient` and :class:`~auto_dev.testing.FakeLLM`.
    Raises only :class:`~auto_dev.LLMError` subclasses.
    """

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
    ) -> LLMResponse: ...
