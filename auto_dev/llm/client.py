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
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from auto_dev._exceptions import (
    BudgetExceededError,
    ConfigurationError,
    LLMError,
    LLMResponseError,
    LLMTimeoutError,
    ValidationError,
)
from auto_dev.config import LLMSettings
from auto_dev.llm import ledger
from auto_dev.llm._attempts import (
    BREAKER_ERRORS,
    RETRYABLE,
    CallState,
    attempt_failure,
    backoff,
    check_messages,
    final_error,
    skipped_failure,
)
from auto_dev.llm._cache import DiskCache, cache_entry, cache_key
from auto_dev.llm.breaker import BreakerState, CircuitBreaker
from auto_dev.llm.budget import BudgetGuard
from auto_dev.llm.deployments import Deployment, DeploymentTable, parse_deployments
from auto_dev.llm.health import (
    CONFIGURATION_KINDS,
    HealthMark,
    LLMFailure,
    LLMHealth,
    LLMHealthReport,
    failures_of,
)
from auto_dev.llm.pricing import Price, Pricing, prompt_token_bound
from auto_dev.llm.types import ChatMessage, LLMResponse

if TYPE_CHECKING:
    from auto_dev.llm._litellm import Completion
    from auto_dev.llm.ledger import SessionSource

log = structlog.get_logger(__name__)

T = TypeVar("T")


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
        #: Calls answered and failed over this client's life, failures by kind.
        self.health = LLMHealth()

    # -- plumbing -----------------------------------------------------------------------------

    async def _ledger(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a ledger write off the event loop, on this client's one ledger thread.

        One thread, not the shared pool: ledger writes are short and serialise in the database
        anyway (SQLite has one writer), while several threads would only fight over the GIL
        with the event loop; measured, that contention costs more than the writes.
        """
        if self._inline_ledger:
            # An in-memory database is one connection shared with every other user in this
            # process, who use it from the event loop's thread: so do we.
            return fn(*args, **kwargs)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="auto-dev-ledger")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args, **kwargs))

    @property
    def _inline_ledger(self) -> bool:
        return bool(getattr(self._database, "is_memory", False))

    async def _reserve(self, **kwargs: Any) -> str:
        # Uncontended (the usual case), the reservation is written right here: a hand-off to
        # the ledger thread costs more than the write itself.
        call_id = self.budget.reserve_nowait(**kwargs)
        if call_id is None:
            call_id = await self._ledger(self.budget.reserve, **kwargs)
        return call_id

    async def _settle(self, call_id: str, **kwargs: Any) -> None:
        if not self.budget.settle_nowait(call_id, **kwargs):
            await self._ledger(self.budget.settle, call_id, **kwargs)

    def close(self) -> None:
        """Stop the ledger thread and close its connection (restarted on the next call).

        Idempotent; call from outside the event loop (or use :meth:`aclose`).
        """
        if self._budget is not None:
            self._budget.release_connection()  # the calling thread's (the event loop's, often)
        executor, self._executor = self._executor, None
        if executor is not None:
            if self._budget is not None:
                executor.submit(self._budget.release_connection).result()
            executor.shutdown(wait=True)

    async def aclose(self) -> None:
        if self._budget is not None:
            self._budget.release_connection()
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
            database = self.database
            self._budget = BudgetGuard(
                database, self.settings, hold_connection=not getattr(database, "is_memory", False)
            )
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

    def health_report(self, since: HealthMark | None = None) -> LLMHealthReport:
        """Calls answered and failed (since ``since``, a :meth:`LLMHealth.mark` of
        :attr:`health`), the failed attempts by kind, model and deployment, and every
        deployment's circuit breaker."""
        return self.health.report(since=since, breakers=self.status())

    def errors_summary(self) -> list[dict[str, object]]:
        """The failed attempts of this client's life as JSON: ``kind`` (``authentication``,
        ``unknown_model``, ``unreachable``...), ``model``, ``deployment``, ``message``,
        ``count``; what needs a person first."""
        return [summary.to_dict() for summary in self.health.report().errors]

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
        msgs = check_messages(messages)
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
                cached = await self._answer_from_cache(hit, tenant, row)
                self.health.record_answer()
                return cached

        state = CallState()
        try:
            for group_name in self.table.chain(group):
                for deployment in self._ordered(group_name):
                    response = await self._try_deployment(
                        deployment, msgs, tenant, row, max_tokens, temperature, state
                    )
                    if response is not None:
                        if key is not None and self._cache is not None:
                            self._cache.set(key, cache_entry(response))
                        self.health.record_answer()
                        return response
        except (BudgetExceededError, LLMResponseError) as exc:
            # The budget refused an attempt, or a deployment answered nothing: the call ends
            # here, with whatever failed before it.
            failures = state.failures if exc.failures else [*state.failures,
                                                             *failures_of(exc, model=group)]
            self._record_failures(failures)
            raise
        self._record_failures(state.failures)
        raise self._final_error(group, state)

    def _record_failures(self, failures: Sequence[LLMFailure]) -> None:
        for failure in self.health.record_failures(failures):
            if failure.kind in CONFIGURATION_KINDS:
                # Once per kind and deployment: no retry fixes these, a person must.
                log.warning("llm.deployment_unusable", kind=str(failure.kind),
                            deployment=failure.deployment, model=failure.model,
                            error=failure.message)

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
        state: CallState,
    ) -> LLMResponse | None:
        """Up to 1 + num_retries attempts on one deployment; None to move on to the next."""
        breaker = self._breakers[deployment.id]
        try:
            params = deployment.call_params()
        except ConfigurationError as exc:
            state.errors.append((deployment.id, exc))
            state.failures.append(attempt_failure(deployment, exc))
            log.warning("llm.deployment_misconfigured", deployment=deployment.id, error=str(exc))
            return None
        price = self.price_of(deployment)
        prompt_bound = prompt_token_bound(messages)
        estimate = price.cost(prompt_bound, max_tokens)
        retries = self.settings.num_retries
        for attempt in range(retries + 1):
            if not breaker.allow():
                state.skipped.append(deployment.id)
                state.failures.append(skipped_failure(deployment, breaker))
                return None
            try:
                call_id = await self._reserve(
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
            outcome = await self._call(
                deployment, messages, params, max_tokens, temperature, call_id, estimate, breaker
            )
            latency = time.perf_counter() - started
            if isinstance(outcome, LLMError):
                # A timed-out request may still have been processed and billed.
                cost = estimate if isinstance(outcome, LLMTimeoutError) else 0.0
                await self._settle(
                    call_id, status="error", cost_usd=cost,
                    latency_s=latency, error=ledger.error_text(outcome),
                )
                state.cost_usd += cost
                state.errors.append((deployment.id, outcome))
                state.failures.append(attempt_failure(deployment, outcome))
                if isinstance(outcome, BREAKER_ERRORS):
                    breaker.record_failure()
                else:
                    breaker.release()
                log.info("llm.attempt_failed", deployment=deployment.id, attempt=attempt + 1,
                         error=str(outcome)[:300])
                delay = self._backoff(attempt, outcome)
                if isinstance(outcome, RETRYABLE) and attempt < retries and delay is not None:
                    await self._sleep(delay)
                    continue
                return None
            cost = price.cost(outcome.prompt_tokens, outcome.completion_tokens)
            state.cost_usd += cost
            # The deployment answered: whatever the content, it is healthy.
            breaker.record_success()
            empty = outcome.text is None or not outcome.text.strip()
            error = (
                LLMResponseError(
                    f"{deployment.id}: the model returned an empty answer "
                    f"(finish_reason={outcome.finish_reason!r})"
                )
                if empty
                else None
            )
            await self._settle(
                call_id,
                status="error" if error else "ok",
                cost_usd=cost,
                prompt_tokens=outcome.prompt_tokens,
                completion_tokens=outcome.completion_tokens,
                latency_s=latency,
                error=ledger.error_text(error) if error else None,
            )
            if error is not None:
                state.failures.append(attempt_failure(deployment, error))
                error.failures = tuple(state.failures)
                raise error
            return LLMResponse(
                text=outcome.text or "",
                model=deployment.model,
                deployment=deployment.id,
                prompt_tokens=outcome.prompt_tokens,
                completion_tokens=outcome.completion_tokens,
                cost_usd=state.cost_usd,
                latency_s=latency,
                cache_hit=False,
                call_id=call_id,
                attempts=state.attempts,
            )
        return None

    async def _call(
        self,
        deployment: Deployment,
        messages: list[ChatMessage],
        params: dict[str, Any],
        max_tokens: int,
        temperature: float,
        call_id: str,
        estimate: float,
        breaker: CircuitBreaker,
    ) -> Completion | LLMError:
        """The model call of one reserved attempt: its answer or its (mapped) error.

        Anything else (cancellation, a bug) settles the reservation at the worst case, since
        the provider may still bill the request, and propagates.
        """
        from auto_dev.llm import _litellm

        started = time.perf_counter()
        try:
            return await _litellm.acompletion(
                model=deployment.model,
                messages=messages,
                params=params,
                max_tokens=max_tokens,
                temperature=temperature,
                timeout_s=self.settings.timeout_s,
            )
        except LLMError as err:
            return err
        except BaseException as exc:
            reason = (
                "CancelledError: the caller cancelled the call"
                if isinstance(exc, asyncio.CancelledError)
                else ledger.error_text(exc)
            )
            # Shielded, so that the row is settled even if the caller cancels again.
            settling = asyncio.ensure_future(
                self._settle(
                    call_id, status="error", cost_usd=estimate,
                    latency_s=time.perf_counter() - started, error=reason,
                )
            )
            with suppress(asyncio.CancelledError):
                await asyncio.shield(settling)
            breaker.release()
            raise

    def _backoff(self, attempt: int, err: LLMError) -> float | None:
        return backoff(attempt, err, self.settings.retry_backoff_s, self._rng)

    def _final_error(self, group: str, state: CallState) -> Exception:
        return final_error(group, state, self._breakers)

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


__all__ = ["DeploymentStatus", "LLMClient"]
