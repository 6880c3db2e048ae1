"""Live executions: one upstream poller per (credentials, execution), however many watch it.

The orchestrator has no push API, so ``executionUpdated`` polls ``GET /api/v1/executions/{id}``.
Subscribers that share a credential fingerprint and an execution share one poller, whose life
is::

    poll ──> changed? ──> deliver to every watcher ──> final status? ──> stop
      ^                                                     │ no
      └──── wait: poll_interval after a change, doubling ───┘
            up to poll_max_interval while nothing changes

* The first poll's failure, whatever it is, is delivered at once and ends the poller: a
  subscriber never waits in silence for an execution it cannot read.
* Later, 404 (the execution disappeared) and 401/403 (access lost) end it at once; other
  failures (timeouts, 5xx, an open breaker) are retried on the same backoff and end it after
  ``subscription_max_failures`` in a row.
* A watcher holds only the newest event it has not taken yet: a slow subscriber skips
  intermediate states but always gets the last one, which is the final status or the error.
* When the last watcher leaves, the poller is cancelled; ``nudge`` makes pollers of an
  execution poll now (after a cancel, say).

Polls go to the upstream directly, not through the shared cache, whose copy of a running
execution may be a micro-TTL old; they are ordinary upstream calls (breaker, bulkhead, retries).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass

from gateway.credentials import Credentials
from gateway.errors import ErrorCode, GatewayError, UpstreamAnswered
from gateway.executions import FetchedExecution
from gateway.metrics import SUBSCRIPTION_POLLERS, SUBSCRIPTION_WATCHERS
from gateway.settings import Settings
from gateway.upstream import UpstreamClient

logger = logging.getLogger(__name__)

# Answers after which polling again cannot help: the execution is gone, or so is access to it.
_ENDING_STATUSES = frozenset({401, 403, 404})


class TooManySubscriptions(GatewayError):
    code = ErrorCode.RATE_LIMITED


class WatchBroken(GatewayError):
    """Polling failed in a way nobody expected (a bug, logged with its stack)."""

    code = ErrorCode.INTERNAL

    def __init__(self, execution_id: str) -> None:
        super().__init__(f"Watching execution {execution_id} failed; it was logged.")


class WatchEnded(GatewayError):
    """The error that ended a watch, as one subscriber raises it: same message and code."""

    def __init__(self, cause: GatewayError) -> None:
        super().__init__(cause.message)
        self.code = cause.code
        self._upstream_status = cause.upstream_status

    @property
    def upstream_status(self) -> int | None:
        return self._upstream_status


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """What a watcher receives: the execution as polled, or the error that ends the watch."""

    execution: FetchedExecution | None = None
    error: GatewayError | None = None

    @property
    def is_last(self) -> bool:
        return self.error is not None or (
            self.execution is not None and self.execution.record.is_terminal
        )


class _Watcher:
    """One subscriber's mailbox: the newest event not yet taken."""

    def __init__(self) -> None:
        self._pending: WatchEvent | None = None
        self._ready = asyncio.Event()

    def offer(self, event: WatchEvent) -> None:
        self._pending = event
        self._ready.set()

    async def take(self) -> WatchEvent:
        await self._ready.wait()
        self._ready.clear()
        event, self._pending = self._pending, None
        assert event is not None
        return event


class _Poller:
    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        self.watchers: set[_Watcher] = set()
        self.latest: WatchEvent | None = None
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def publish(self, event: WatchEvent) -> None:
        self.latest = event
        for watcher in self.watchers:
            watcher.offer(event)


async def wait_for_wake(wake: asyncio.Event, seconds: float) -> None:
    """Until ``wake`` is set or ``seconds`` pass, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await wake.wait()


class ExecutionWatch:
    """The process's pollers, keyed by credential fingerprint and execution id.

    Usage::

        watch = ExecutionWatch(upstream, settings, fingerprint=fetcher.fingerprint)
        async for event in watch.watch(execution_id, credentials):
            ...  # event.execution, or event.error (then it ends)
    """

    def __init__(
        self,
        upstream: UpstreamClient,
        settings: Settings,
        *,
        fingerprint: Callable[[Credentials], str],
        wait: Callable[[asyncio.Event, float], Awaitable[None]] = wait_for_wake,
    ) -> None:
        self._upstream = upstream
        self._fingerprint = fingerprint
        self._wait = wait  # between polls; tests record the intervals instead of waiting
        self._interval = settings.subscription_poll_interval
        self._max_interval = settings.subscription_poll_max_interval
        self._max_failures = settings.subscription_max_failures
        self._capacity = settings.max_subscriptions
        self._capacity_per_caller = settings.max_subscriptions_per_credential
        self._pollers: dict[tuple[str, str], _Poller] = {}
        self._by_caller: Counter[str] = Counter()
        self.watching = 0  # watchers across all pollers

    @property
    def pollers(self) -> int:
        return len(self._pollers)

    async def watch(
        self, execution_id: str, credentials: Credentials
    ) -> AsyncGenerator[WatchEvent, None]:
        """Events for ``execution_id`` (canonical) as ``credentials`` see it, ending after
        the last one (a final status or an error). Raises ``TooManySubscriptions``."""
        if self.watching >= self._capacity:
            raise TooManySubscriptions(
                f"The gateway already serves {self._capacity} subscriptions; try again later."
            )
        caller = self._fingerprint(credentials)
        if self._by_caller[caller] >= self._capacity_per_caller:
            raise TooManySubscriptions(
                f"These credentials already hold {self._capacity_per_caller} subscriptions, "
                "the most one caller may (POLOS_GATEWAY_MAX_SUBSCRIPTIONS_PER_CREDENTIAL)."
            )
        key = (caller, execution_id)
        poller = self._pollers.get(key)
        if poller is None:
            poller = self._pollers[key] = _Poller(execution_id)
            poller.task = asyncio.create_task(self._poll(key, poller, credentials))
            SUBSCRIPTION_POLLERS.inc()
        watcher = _Watcher()
        poller.watchers.add(watcher)
        self.watching += 1
        self._by_caller[caller] += 1
        SUBSCRIPTION_WATCHERS.inc()
        if poller.latest is not None:
            watcher.offer(poller.latest)  # the execution at once, without waiting for a poll
        try:
            while True:
                event = await watcher.take()
                yield event
                if event.is_last:
                    return
        finally:
            poller.watchers.discard(watcher)
            self.watching -= 1
            self._by_caller[caller] -= 1
            if not self._by_caller[caller]:
                del self._by_caller[caller]
            SUBSCRIPTION_WATCHERS.dec()
            if not poller.watchers:
                self._stop(key, poller)

    def nudge(self, execution_id: str) -> None:
        """Make every poller of ``execution_id`` poll now instead of after its wait."""
        for poller in self._pollers.values():
            if poller.execution_id == execution_id:
                poller.wake.set()

    async def aclose(self) -> None:
        for key, poller in list(self._pollers.items()):
            self._stop(key, poller)
            if poller.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await poller.task

    def _stop(self, key: tuple[str, str], poller: _Poller) -> None:
        if self._pollers.get(key) is poller:
            del self._pollers[key]
            SUBSCRIPTION_POLLERS.dec()
        if poller.task is not None and not poller.task.done():
            poller.task.cancel()

    async def _poll(self, key: tuple[str, str], poller: _Poller, credentials: Credentials) -> None:
        interval, failures = self._interval, 0
        try:
            while True:
                # Cleared before the poll, not after: a nudge during the poll asks for another.
                poller.wake.clear()
                event = await self._poll_once(poller.execution_id, credentials)
                if event.execution is not None:
                    failures = 0
                    last = None if poller.latest is None else poller.latest.execution
                    changed = last is None or event.execution.record != last.record
                    interval = self._interval if changed else min(interval * 2, self._max_interval)
                    if changed:
                        poller.publish(event)
                else:
                    assert event.error is not None
                    failures += 1
                    if poller.latest is None or self._ends_watch(event.error, failures):
                        poller.publish(event)
                    interval = min(interval * 2, self._max_interval)
                if poller.latest is not None and poller.latest.is_last:
                    break
                await self._wait(poller.wake, interval)
        except Exception:
            # A bug outside the poll itself: its subscribers get an end, not a wait forever.
            logger.exception("watching execution %s failed unexpectedly", poller.execution_id)
            poller.publish(WatchEvent(error=WatchBroken(poller.execution_id)))
        finally:
            # Ended by itself (final, error): a new subscriber starts a fresh poller.
            if self._pollers.get(key) is poller:
                del self._pollers[key]
                SUBSCRIPTION_POLLERS.dec()

    async def _poll_once(self, execution_id: str, credentials: Credentials) -> WatchEvent:
        try:
            return WatchEvent(await self._upstream.fetch_execution(execution_id, credentials))
        except GatewayError as failure:
            return WatchEvent(error=failure)
        except Exception:
            # A bug: its subscribers get an end, not a wait that never ends.
            logger.exception("polling execution %s failed unexpectedly", execution_id)
            return WatchEvent(error=WatchBroken(execution_id))

    def _ends_watch(self, error: GatewayError, failures: int) -> bool:
        if isinstance(error, UpstreamAnswered) and error.status in _ENDING_STATUSES:
            return True
        return isinstance(error, WatchBroken) or failures >= self._max_failures
