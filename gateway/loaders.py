"""Batching: one ``ExecutionLoader`` per incoming request, never shared between requests.

Every ``load`` made in one tick of the event loop becomes one batch; repeated ids are fetched
once; the batch fans out concurrently (the upstream client caps how many calls are in flight);
and each id gets its own value or its own exception, so one failure never fails its siblings.
What one request shares with others (the cache, single-flight) is the fetcher's business.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiodataloader import DataLoader

from gateway.credentials import Credentials
from gateway.errors import QueryTooComplex, UpstreamTimeout
from gateway.executions import FetchedExecution
from gateway.fetcher import ExecutionFetcher
from gateway.metrics import LOADER_BATCH_SIZE
from gateway.request_stats import RequestStats


class ExecutionLoader(DataLoader[str, FetchedExecution]):
    """Loads executions by canonical id with one caller's credentials.

    ``max_fetches`` bounds the distinct executions one request may fetch, however its query
    is shaped (aliases, lists, deep walks), so one request cannot monopolise the upstream;
    ``deadline`` (event-loop time) is when the request gives up on what it still waits for.

    Usage::

        loader = ExecutionLoader(fetcher, credentials, max_fetches=1000)
        fetched = await loader.load(execution_id)
    """

    def __init__(
        self,
        fetcher: ExecutionFetcher,
        credentials: Credentials,
        *,
        max_fetches: int,
        deadline: float | None = None,
        batching: bool = True,
        stats: RequestStats | None = None,
    ) -> None:
        # batching=False is the naive gateway kept for comparison: one call per field.
        super().__init__(batch=batching, cache=batching)
        self._fetcher = fetcher
        self._credentials = credentials
        self._max_fetches = max_fetches
        self._deadline = deadline
        self.stats = stats if stats is not None else RequestStats()
        # One entry per upstream round: what the tests count and the metrics report.
        self.batch_sizes: list[int] = []
        # Did this request read only final executions? Then its answer never changes.
        self.only_final = True

    @property
    def fetches(self) -> int:
        return sum(self.batch_sizes)

    async def load_alone(self, key: str) -> FetchedExecution:
        """``load`` for a request that reads one execution and nothing else (the REST route):
        the same batch of one, without the queue that gathers a tick's loads into it."""
        [outcome] = await self.batch_load_fn([key])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def batch_load_fn(  # type: ignore[override]
        self, keys: Sequence[str]
    ) -> list[FetchedExecution | BaseException]:
        allowed = max(0, min(len(keys), self._max_fetches - self.fetches))
        if allowed:
            self.batch_sizes.append(allowed)
            LOADER_BATCH_SIZE.observe(allowed)
        fetched = await self._fetch_by_deadline(keys[:allowed])
        if self.only_final:
            self.only_final = all(
                isinstance(item, FetchedExecution) and item.record.is_terminal for item in fetched
            )
        if allowed == len(keys):
            return fetched
        refused = QueryTooComplex(
            f"This request already fetched {self._max_fetches} executions, the most one "
            "request may; ask for fewer ids or a shorter ancestors limit."
        )
        return fetched + [refused] * (len(keys) - allowed)

    async def _fetch_by_deadline(
        self, keys: Sequence[str]
    ) -> list[FetchedExecution | BaseException]:
        """Fetch each key, each to its own value or exception, giving up on those still
        unresolved when the request's deadline passes (a shared call goes on for others).

        One timer for the whole batch, not one per key: a timer costs more than a cache hit.
        """
        if len(keys) == 1:
            try:
                async with asyncio.timeout_at(self._deadline):
                    return [await self._fetcher.fetch(keys[0], self._credentials, self.stats)]
            except TimeoutError:
                return [_too_late(keys[0])]
            except Exception as failure:
                return [failure]
        fetches = [
            asyncio.ensure_future(self._fetcher.fetch(key, self._credentials, self.stats))
            for key in keys
        ]
        if not fetches:
            return []
        loop = asyncio.get_running_loop()
        timeout = None if self._deadline is None else max(0.0, self._deadline - loop.time())
        try:
            await asyncio.wait(fetches, timeout=timeout)
        finally:
            # The deadline passed, or this request was cancelled: stop waiting for the rest.
            for fetch in fetches:
                if not fetch.done():
                    fetch.cancel()
                    fetch.add_done_callback(_retrieve)
        return [_outcome(key, fetch) for key, fetch in zip(keys, fetches, strict=True)]


def _too_late(key: str) -> UpstreamTimeout:
    return UpstreamTimeout(
        f"The request's deadline passed before execution {key} could be fetched."
    )


def _outcome(key: str, fetch: asyncio.Future[FetchedExecution]) -> FetchedExecution | BaseException:
    if not fetch.done() or fetch.cancelled():
        return _too_late(key)
    return fetch.exception() or fetch.result()


def _retrieve(fetch: asyncio.Future[FetchedExecution]) -> None:
    """Marks an abandoned fetch's error as seen: nobody is left to await it."""
    if not fetch.cancelled():
        fetch.exception()
