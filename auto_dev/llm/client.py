"""``LLMClient``: every model call auto-dev makes goes through here.

For one call to a model group: try each deployment of the group, then of each fallback group,
in turn. Per deployment: ask its circuit breaker, reserve the worst-case cost against the
tenant's daily budget, call litellm (no retries of its own), settle the ledger row with the real
cost, and retry with backoff on rate limits, timeouts and outages. A budget refusal stops the
call at once; a context-window, auth or request error moves on to the next deployment without
retrying. An optional disk cache answers repeated prompts for free (a ``cache_hit`` row).

litellm's own Router is deliberately not used: its per-deployment health (cooldowns) is not
observable, it registers process-global callbacks per instance, and its fallbacks hide primary
failures, so neither a breaker nor the ledger could see them. The configuration keeps the
Router's form (see :mod:`auto_dev.llm.deployments`). Nothing here imports litellm at module
load; :mod:`auto_dev.llm._litellm` does, at the first call.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from auto_dev._exceptions import (
    BudgetExceededError,
    ConfigurationError,
    LLMAuthError,
    LLMError,
    LLMRateLimitedError,
    LLMResponseError,
    LLMTimeoutError,
    LLMUnavailableError,
    ValidationError,
)
from auto_dev.config import LLMSettings
from auto_dev.llm import ledger
from auto_dev.llm._cache import DiskCache, cache_key
from auto_dev.llm.breaker import BreakerState, CircuitBreaker
from auto_dev.llm.budget import BudgetGuard, Price, Pricing, prompt_token_bound
from auto_dev.llm.deployments import Deployment, DeploymentTable, parse_deployments
from auto_dev.llm.types import ChatMessage, LLMResponse

if TYPE_CHECKING:
    from auto_dev.llm.ledger import SessionSource

log = structlog.get_logger(__name__)

T = TypeVar("T")

_RETRYABLE = (LLMRateLimitedError, LLMTimeoutError, LLMUnavailableError)
_BREAKER_ERRORS = (LLMRateLimitedError, LLMTimeoutError, LLMUnavailableError, LLMAuthError)
_MAX_BACKOFF_S = 60.0


@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    """One deployment as ``auto-dev llm status`` shows it."""

    id: str
    group: str
    model: str
    api_base: str | None
    state: BreakerState
    consecutive_failures: int
    retry_in_s: float


@dataclass(slots=True)
class _CallState:
    """What happened so far in one logical call."""

    errors: list[tuple[str, Exception]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    cost_usd: float = 0.0
    attempts: int = 0


class LLMClient:
    """Chat completions with fallbacks, retries, breakers, a budget and a ledger.

    ``database`` is an :class:`auto_dev.db.Database` (anything with ``session()``); without one,
    ``database_url`` names the database to open on first use. ``tenant_id`` is the default tenant
    charged when a call names none. ``clock``, ``sleep`` and ``rng`` are seams for tests.
    """

    name = "litellm"

    def __init__(
        self,
        settings: LLMSettings,
        database: SessionSource | None = None,
        *,
        database_url: str | None = None,
        tenant_id: str = "default",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if database is None and database_url is None:
            raise ConfigurationError("LLMClient needs a database (or database_url) for its ledger")
        self.settings = settings
        self.table: DeploymentTable = parse_deployments(settings)
        self.default_tenant = tenant_id
        self.pricing = Pricing(settings.prices)
        self._database = database
        self._database_url = database_url
        self._budget: BudgetGuard | None = None
        self._cache = DiskCache(settings.cache_dir) if settings.cache_dir else None
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._executor: ThreadPoolExecutor | None = None
        self._breakers = {
            d.id: CircuitBreaker(
                settings.circuit_failure_threshold, settings.circuit_cooldown_s, clock=clock
            )
            for d in self.table.deployments
        }

    # -- plumbing -----------------------------------------------------------------------------

    async def _ledger(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a ledger write off the event loop, on this client's one ledger thread.

        One thread, not the shared pool: ledger writes are short and serialise in the database
        anyway (SQLite has one writer), while several threads would only fight over the GIL
        with the event loop; measured, that contention costs more than the writes.
        """
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="auto-dev-ledger")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args, **kwargs))

    def close(self) -> None:
        """Stop the ledger thread (it is restarted on the next call). Idempotent."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    @property
    def database(self) -> SessionSource:
        if self._database is None:
            from auto_dev.db import Database

            assert self._database_url is not None
            self._database = Database(self._database_url)
        return self._database

    @property
    def budget(self) -> BudgetGuard:
        if self._budget is None:
            self._budget = BudgetGuard(self.database, self.settings)
        return self._budget

    def breaker(self, deployment_id: str) -> CircuitBreaker:
        try:
            return self._breakers[deployment_id]
        except KeyError:
            raise ValidationError("deployment", f"unknown deployment {deployment_id!r}") from None

    def status(self) -> list[DeploymentStatus]:
        """Every deployment with its circuit breaker state."""
        out = []
        for deployment in self.table.deployments:
            snap = self._breakers[deployment.id].snapshot()
            out.append(
                DeploymentStatus(
                    deployment.id,
                    deployment.group,
                    deployment.model,
                    deployment.api_base,
                    snap.state,
                    snap.consecutive_failures,
                    snap.retry_in_s,
                )
            )
        return out

    def restore_breakers(self) -> None:
        """Rebuild breaker states from the ledger (after a restart, or in another process)."""
        history = ledger.deployment_outcomes(self.database, list(self._breakers))
        for deployment_id, outcomes in history.items():
            self._breakers[deployment_id].replay(outcomes)

    def price_of(self, deployment: Deployment) -> Price:
        return self.pricing.price(
            deployment.model, deployment.id, deployment.group, inline=deployment.inline_price
        )

    # -- the call -----------------------------------------------------------------------------

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
        """One chat completion of model group ``model`` (default: the configured one).

        Raises :class:`~auto_dev.BudgetExceededError` before spending anything the budget does
        not allow, :class:`~auto_dev.LLMResponseError` for an empty answer, and otherwise the
        mapped error of the failures (:class:`~auto_dev.LLMUnavailableError` when they differ
        or every circuit is open).
        """
        msgs = _check_messages(messages)
        tenant = tenant_id or self.default_tenant
        group = model or self.table.default_group
        if group not in self.table.groups:
            known = ", ".join(sorted(self.table.groups))
            raise ValidationError("model", f"unknown model group {group!r} (configured: {known})")
        max_tokens = self.settings.max_tokens if max_tokens is None else max_tokens
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise ValidationError("max_tokens", f"must be a positive integer, got {max_tokens!r}")
        temperature = self.settings.temperature if temperature is None else temperature
        if not 0 <= temperature <= 2:
            raise ValidationError("temperature", f"must be between 0 and 2, got {temperature!r}")
        row = {"run_id": run_id, "engine": engine, "purpose": purpose}

        key = None
        if self._cache is not None and cache is not False:
            key = cache_key(group, msgs, max_tokens=max_tokens, temperature=temperature)
            hit = self._cache.get(key)
            if hit is not None:
                return await self._answer_from_cache(hit, tenant, row)

        state = _CallState()
        for group_name in self.table.chain(group):
            for deployment in self._ordered(group_name):
                response = await self._try_deployment(
                    deployment, msgs, tenant, row, max_tokens, temperature, state
                )
                if response is not None:
                    if key is not None and self._cache is not None:
                        self._cache.set(key, _cache_entry(response))
                    return response
        raise self._final_error(group, state)

    def _ordered(self, group: str) -> list[Deployment]:
        # Spread load over a group's deployments; the breakers filter the unhealthy ones.
        deployments = list(self.table.groups[group])
        if len(deployments) > 1:
            self._rng.shuffle(deployments)
        return deployments

    async def _try_deployment(
        self,
        deployment: Deployment,
        messages: list[ChatMessage],
        tenant: str,
        row: dict[str, Any],
        max_tokens: int,
        temperature: float,
        state: _CallState,
    ) -> LLMResponse | None:
        breaker = self._breakers[deployment.id]
        try:
            params = deployment.call_params()
        except ConfigurationError as exc:
            state.errors.append((deployment.id, exc))
            log.warning("llm.deployment_misconfigured", deployment=deployment.id, error=str(exc))
            return None
        price = self.price_of(deployment)
        prompt_bound = prompt_token_bound(messages)
        estimate = price.cost(prompt_bound, max_tokens)
        retries = self.settings.num_retries
        for attempt in range(retries + 1):
            if not breaker.allow():
                state.skipped.append(deployment.id)
                return None
            try:
                call_id = await self._ledger(
                    self.budget.reserve,
                    tenant_id=tenant,
                    estimate_usd=estimate,
                    model=deployment.model,
                    deployment=deployment.id,
                    prompt_tokens=prompt_bound,
                    **row,
                )
            except BudgetExceededError as exc:
                breaker.release()
                log.warning("llm.budget_exceeded", tenant=tenant, deployment=deployment.id,
                            estimate_usd=estimate, error=str(exc))
                raise
            except BaseException:
                breaker.release()
                raise
            state.attempts += 1
            started = time.perf_counter()
            try:
                from auto_dev.llm import _litellm

                result = await _litellm.acompletion(
                    model=deployment.model,
                    messages=messages,
                    params=params,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    timeout_s=self.settings.timeout_s,
                )
            except asyncio.CancelledError:
                # The provider may bill a call we stopped waiting for: keep the worst case.
                self.budget.settle(
                    call_id,
                    status="error",
                    cost_usd=estimate,
                    latency_s=time.perf_counter() - started,
                    error="CancelledError: the caller cancelled the call",
                )
                breaker.release()
                raise
            except LLMError as err:
                latency = time.perf_counter() - started
                # A timed-out request may still have been processed and billed.
                cost = estimate if isinstance(err, LLMTimeoutError) else 0.0
                await self._ledger(
                    self.budget.settle,
                    call_id,
                    status="error",
                    cost_usd=cost,
                    latency_s=latency,
                    error=ledger.error_text(err),
                )
                state.cost_usd += cost
                state.errors.append((deployment.id, err))
                if isinstance(err, _BREAKER_ERRORS):
                    breaker.record_failure()
                else:
                    breaker.release()
                log.info(
                    "llm.attempt_failed",
                    deployment=deployment.id,
                    attempt=attempt + 1,
                    error=str(err)[:300],
                )
                delay = self._backoff(attempt, err)
                if isinstance(err, _RETRYABLE) and attempt < retries and delay is not None:
                    await self._sleep(delay)
                    continue
                return None
            latency = time.perf_counter() - started
            cost = price.cost(result.prompt_tokens, result.completion_tokens)
            state.cost_usd += cost
            # The deployment answered: whatever the content, it is healthy.
            breaker.record_success()
            if result.text is None or not result.text.strip():
                error = LLMResponseError(
                    f"{deployment.id}: the model returned an empty answer "
                    f"(finish_reason={result.finish_reason!r})"
                )
                await self._ledger(
                    self.budget.settle,
                    call_id,
                    status="error",
                    cost_usd=cost,
                    prompt_tokens=result.prompt_tokens,
                    completion_tokens=result.completion_tokens,
                    latency_s=latency,
                    error=ledger.error_text(error),
                )
                raise error
            await self._ledger(
                self.budget.settle,
                call_id,
                status="ok",
                cost_usd=cost,
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
                latency_s=latency,
            )
            return LLMResponse(
                text=result.text,
                model=deployment.model,
                deployment=deployment.id,
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
                cost_usd=state.cost_usd,
                latency_s=latency,
                cache_hit=False,
                call_id=call_id,
                attempts=state.attempts,
            )
        return None

    def _backoff(self, attempt: int, err: LLMError) -> float | None:
        """Seconds to wait before retrying; ``None`` when the provider asks for longer than
        we are willing to wait (move on to the next deployment instead)."""
        retry_after = getattr(err, "retry_after_s", None)
        if isinstance(retry_after, int | float) and retry_after >= 0:
            return float(retry_after) if retry_after <= _MAX_BACKOFF_S else None
        base = self.settings.retry_backoff_s * (2**attempt)
        # Full jitter in [base/2, base]: concurrent callers do not retry in lockstep.
        return float(min(_MAX_BACKOFF_S, base * (0.5 + 0.5 * self._rng.random())))

    def _final_error(self, group: str, state: _CallState) -> Exception:
        if not state.errors:
            snapshots = {d: self._breakers[d].snapshot() for d in state.skipped}
            wait = min((s.retry_in_s for s in snapshots.values()), default=0.0)
            return LLMUnavailableError(
                f"model group {group!r}: circuit open for every deployment "
                f"({', '.join(state.skipped)}); next trial in {wait:.1f}s"
            )
        detail = "; ".join(f"{dep}: {err}"[:300] for dep, err in state.errors[-6:])
        if state.skipped:
            detail += f"; circuit open: {', '.join(sorted(set(state.skipped)))}"
        kinds = {type(err) for _, err in state.errors}
        last = state.errors[-1][1]
        message = f"model group {group!r}: every deployment failed ({detail})"
        error: Exception
        if len(kinds) == 1 and not state.skipped:
            error = type(last)(message)
        else:
            error = LLMUnavailableError(message)
        error.__cause__ = last
        return error

    async def _answer_from_cache(
        self, hit: dict[str, Any], tenant: str, row: dict[str, Any]
    ) -> LLMResponse:
        try:
            text = str(hit["text"])
            model = str(hit["model"])
            deployment = str(hit["deployment"])
            prompt_tokens = int(hit.get("prompt_tokens", 0))
            completion_tokens = int(hit.get("completion_tokens", 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise LLMResponseError(f"unusable cache entry: {exc}") from exc
        call_id = await self._ledger(
            self.budget.record,
            tenant_id=tenant,
            status="cache_hit",
            model=model,
            deployment=deployment,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cache_hit=True,
            **row,
        )
        return LLMResponse(
            text=text,
            model=model,
            deployment=deployment,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=0.0,
            latency_s=0.0,
            cache_hit=True,
            call_id=call_id,
            attempts=0,
        )


def _cache_entry(response: LLMResponse) -> dict[str, Any]:
    return {
        "text": response.text,
        "model": response.model,
        "deployment": response.deployment,
        "prompt_tokens": response.prompt_tokens,
        "completion_tokens": response.completion_tokens,
    }


def _check_messages(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise ValidationError("messages", "must be a list of {'role', 'content'} objects")
    if not messages:
        raise ValidationError("messages", "must not be empty")
    out = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValidationError(f"messages[{index}]", "must be an object")
        role = message.get("role")
        if role not in {"system", "user", "assistant", "tool"}:
            raise ValidationError(f"messages[{index}].role", f"unknown role {role!r}")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise ValidationError(f"messages[{index}].content", "must be a string or a list")
        out.append(dict(message))
    return out


__all__ = ["DeploymentStatus", "LLMClient"]
