"""Single-flight: concurrent calls for the same key share one call.

The shared call runs as a task of its own, so a waiter that gives up (its request was cancelled
or timed out) never cancels the call for the others. Its outcome, value or exception, reaches
every waiter and is then forgotten: the next call for the key starts afresh.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from gateway.metrics import SINGLE_FLIGHT_JOINS

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """Usage::

    flights: SingleFlight[str, bytes] = SingleFlight()
    body = await flights.run(key, lambda: fetch(key))
    """

    def __init__(self) -> None:
        self._calls: dict[K, asyncio.Task[V]] = {}
        self.joins = 0  # calls that found one already in flight

    def __len__(self) -> int:
        return len(self._calls)

    async def run(self, key: K, call: Callable[[], Awaitable[V]]) -> V:
        task = self._calls.get(key)
        if task is None:
            task = asyncio.ensure_future(call())
            self._calls[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        else:
            self.joins += 1
            SINGLE_FLIGHT_JOINS.inc()
        # shield: cancelling this waiter must not cancel the call the others wait for.
        return await asyncio.shield(task)

    def _forget(self, key: K, done: asyncio.Task[V]) -> None:
        if self._calls.get(key) is done:
            del self._calls[key]
        if not done.cancelled():
            done.exception()  # marks it retrieved: an error nobody awaited is not logged
