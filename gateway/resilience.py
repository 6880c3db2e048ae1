"""Staying useful while the orchestrator struggles: breaker, retry budget, backoff, bulkhead.

* ``CircuitBreaker``: after ``threshold`` consecutive failures (no connection, no answer in
  time, 502/503/504) it opens and every call fails at once; after ``cooldown`` seconds it lets
  one probe through, whose outcome closes it again or keeps it open. A 500 is not a failure:
  today's orchestrator answers 500 for an unknown id, and a client asking for many of those
  must not cut everybody off.
* ``RetryBudget``: retries may add only a share of the first attempts, so an outage is not
  multiplied by the retry count.
* ``backoff_delay``: exponential backoff with full jitter, or the upstream's ``Retry-After``.
* ``Bulkhead``: at most ``limit`` calls in flight and ``queue`` waiting; beyond that a call
  is shed at once instead of queueing without bound.

The clocks are injectable so tests can move time by hand.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum

from gateway.errors import ErrorCode, GatewayError


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to make one call: which period of the breaker it started in, and if it probes."""

    generation: int
    probe: bool = False


class CircuitBreaker:
    """Usage::

        permit = breaker.allow()
        if permit is None:
            fail_fast()
        ...  # then exactly one of record_success(permit), record_failure(permit),
        # record_abandoned(permit)

    Only the outcome of a call started in the breaker's current period counts: a call that
    began before the breaker opened neither closes it when it succeeds late nor extends the
    open period when it fails late. Only the probe decides a half-open breaker.
    """

    def __init__(
        self, *, threshold: int, cooldown: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._threshold = threshold
        self._cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self._generation = 0  # goes up each time the breaker opens
        self._last_success: float | None = None

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._probing or self._clock() >= self._opened_at + self._cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self) -> Permit | None:
        """A permit to call the upstream now, or None. In half-open, only the one probe."""
        state = self.state
        if state is BreakerState.CLOSED:
            return Permit(self._generation)
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return Permit(self._generation, probe=True)
        return None

    def seconds_since_success(self) -> float | None:
        """How long ago a call last went well (None: never), for readiness probes."""
        return None if self._last_success is None else self._clock() - self._last_success

    def record_success(self, permit: Permit) -> None:
        self._last_success = self._clock()
        if permit.probe or self._current(permit):
            self._failures = 0
            self._opened_at = None
            self._probing = False

    def record_failure(self, permit: Permit) -> None:
        if permit.probe:
            self._open()
        elif self._current(permit):
            self._failures += 1
            if self._failures >= self._threshold:
                self._open()

    def record_abandoned(self, permit: Permit) -> None:
        """The call was cancelled before it said anything: let another probe try."""
        if permit.probe:
            self._probing = False

    def _current(self, permit: Permit) -> bool:
        return permit.generation == self._generation and self._opened_at is None

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._probing = False
        self._generation += 1


# How many retries the budget holds when the process starts, and at most.
BUDGET_BURST = 10.0


class RetryBudget:
    """A token bucket: each first attempt adds ``ratio`` of a token, each retry costs one."""

    def __init__(self, ratio: float, burst: float = BUDGET_BURST) -> None:
        self._ratio = ratio
        self._burst = burst
        self._tokens = burst
        self.refused = 0

    def record_attempt(self) -> None:
        self._tokens = min(self._burst, self._tokens + self._ratio)

    def try_spend(self) -> bool:
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self.refused += 1
        return False


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if absent."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Full jitter: a random wait up to ``base * 2**attempt`` (attempt 0 is the first retry)."""
    return random.uniform(0, min(cap, base * 2**attempt))  # noqa: S311 - not for secrets


class Overloaded(GatewayError):
    """The gateway sheds this call: too many are already waiting for the upstream."""

    code = ErrorCode.RATE_LIMITED


class Bulkhead:
    """At most ``limit`` calls inside, ``queue`` more waiting; the rest are refused at once."""

    def __init__(self, *, limit: int, queue: int) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._queue = queue
        self.waiting = 0
        self.shed = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._slots.locked() and self.waiting >= self._queue:
            self.shed += 1
            raise Overloaded(
                "The gateway is at its limit of upstream calls and is shedding load; retry shortly."
            )
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self._slots.release()
