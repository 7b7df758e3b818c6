"""A circuit breaker per deployment.

``closed``: calls flow; each failure that says the deployment is unhealthy (timeout, 5xx, rate
limit, refused key) adds one to a consecutive-failure count, any success resets it. At
``threshold`` consecutive failures the breaker **opens**: no calls for ``cooldown_s``. After the
cooldown it is **half-open**: exactly one trial call may go through; its success closes the
breaker, its failure opens it again for another cooldown.

The state lives in the process that makes the calls. :meth:`CircuitBreaker.replay` rebuilds it
from ledger history, which is how ``auto-dev llm status`` shows it from another process.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from auto_dev._exceptions import ValidationError


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """A breaker's state at one moment, for status displays."""

    state: BreakerState
    consecutive_failures: int
    opened_at: float | None
    retry_in_s: float


class CircuitBreaker:
    """Thread-safe breaker. ``clock`` returns seconds (wall clock, so ledger times can replay)."""

    def __init__(
        self,
        threshold: int = 5,
        cooldown_s: float = 30.0,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if threshold < 1:
            raise ValidationError("circuit_failure_threshold", "must be >= 1")
        if cooldown_s <= 0:
            raise ValidationError("circuit_cooldown_s", "must be > 0")
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    def _state_locked(self, now: float) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if now - self._opened_at >= self.cooldown_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state_locked(self._clock())

    def snapshot(self) -> BreakerSnapshot:
        with self._lock:
            now = self._clock()
            state = self._state_locked(now)
            retry_in = (
                max(0.0, self._opened_at + self.cooldown_s - now)
                if state is BreakerState.OPEN and self._opened_at is not None
                else 0.0
            )
            return BreakerSnapshot(state, self._failures, self._opened_at, retry_in)

    def allow(self) -> bool:
        """May a call go through now? In half-open state only one caller gets ``True``."""
        with self._lock:
            state = self._state_locked(self._clock())
            if state is BreakerState.CLOSED:
                return True
            if state is BreakerState.HALF_OPEN and not self._trial_in_flight:
                self._trial_in_flight = True
                return True
            return False

    def release(self) -> None:
        """Give back a half-open trial that never reached the deployment (e.g. budget refused)."""
        with self._lock:
            self._trial_in_flight = False

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            now = self._clock()
            state = self._state_locked(now)
            self._failures += 1
            self._trial_in_flight = False
            # A failed half-open trial re-opens at once; a closed breaker opens at the threshold.
            # Failures of calls that started before the breaker opened do not extend the cooldown.
            if state is BreakerState.HALF_OPEN or (
                state is BreakerState.CLOSED and self._failures >= self.threshold
            ):
                self._opened_at = now

    def replay(self, outcomes: Iterable[tuple[float, bool]]) -> None:
        """Apply past outcomes ``(timestamp, ok)`` in time order, as if they happened then."""
        for at, ok in sorted(outcomes, key=lambda item: item[0]):
            with self._lock:
                state = self._state_locked(at)
                if ok:
                    self._failures = 0
                    self._opened_at = None
                    continue
                self._failures += 1
                if state is BreakerState.HALF_OPEN or (
                    state is BreakerState.CLOSED and self._failures >= self.threshold
                ):
                    self._opened_at = at
