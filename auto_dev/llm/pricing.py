"""Prices per token and the worst-case size of a prompt.

A deployment's price comes from configuration first (``llm.prices`` keyed by deployment id,
model group or litellm model string; or ``input_cost_per_token`` / ``output_cost_per_token`` in
its ``litellm_params``), then from litellm's bundled price map; a model nobody prices (a local
Ollama or vLLM model, typically) costs 0, with a warning. Costs are always usage times price,
so the ledger matches the provider's reported usage exactly.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from auto_dev._exceptions import ConfigurationError
from auto_dev.config import ModelPrice
from auto_dev.llm.types import ChatMessage

log = structlog.get_logger(__name__)

# Tokens a chat template adds around each message (role markers, separators) and around the
# whole prompt; generous on purpose, the estimate must never be below the truth.
_PER_MESSAGE_OVERHEAD = 8
_PER_PROMPT_OVERHEAD = 16


@dataclass(frozen=True, slots=True)
class Price:
    """USD per token, and where the figure came from (``configured``, ``litellm``, ``unknown``)."""

    input_per_token: float
    output_per_token: float
    source: str

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens * self.input_per_token + completion_tokens * self.output_per_token


class Pricing:
    """Resolves a deployment's price: configuration first, then litellm's price map, else 0.

    ``prices`` keys may be a deployment id, a model group name or a litellm model string.
    A model nobody prices (a local Ollama or vLLM model, typically) costs 0, with one warning.
    """

    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        self._prices = dict(prices)
        self._cache: dict[tuple[str, ...], Price] = {}
        self._lock = threading.Lock()

    def price(self, model: str, *aliases: str, inline: Mapping[str, Any] | None = None) -> Price:
        key = (model, *aliases)
        cached = self._cache.get(key)
        if cached is not None and inline is None:
            return cached
        price = self._resolve(model, aliases, inline)
        if inline is None:
            with self._lock:
                self._cache[key] = price
        return price

    def _resolve(
        self, model: str, aliases: Sequence[str], inline: Mapping[str, Any] | None
    ) -> Price:
        for name in (*aliases, model):
            configured = self._prices.get(name)
            if configured is not None:
                return Price(
                    configured.input_cost_per_token, configured.output_cost_per_token, "configured"
                )
        if inline and ("input_cost_per_token" in inline or "output_cost_per_token" in inline):
            return Price(
                _non_negative(inline.get("input_cost_per_token", 0.0), "input_cost_per_token"),
                _non_negative(inline.get("output_cost_per_token", 0.0), "output_cost_per_token"),
                "configured",
            )
        from auto_dev.llm import _litellm

        known = _litellm.known_price(model)
        if known is not None:
            return Price(known[0], known[1], "litellm")
        log.warning(
            "llm.price_unknown",
            model=model,
            detail="counted as 0 USD; set llm.prices to budget it",
        )
        return Price(0.0, 0.0, "unknown")


def _non_negative(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if not math.isfinite(number) or number < 0:
        raise ConfigurationError(f"llm.model_list litellm_params.{name}: must be a number >= 0")
    return number


def prompt_token_bound(messages: Sequence[ChatMessage]) -> int:
    """An upper bound of the prompt's token count, without a tokenizer.

    Byte-level BPE and SentencePiece tokens each cover at least one byte of text, so the UTF-8
    byte count bounds the text's tokens; template overhead is added per message.
    """
    total = _PER_PROMPT_OVERHEAD
    for message in messages:
        content = message.get("content")
        text = content if isinstance(content, str) else json.dumps(content, default=str)
        total += len(text.encode("utf-8")) + _PER_MESSAGE_OVERHEAD
        name = message.get("name")
        if isinstance(name, str):
            total += len(name.encode("utf-8"))
    return total
