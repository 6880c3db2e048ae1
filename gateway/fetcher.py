"""The process-wide way to an execution: the shared cache, then single-flight, then upstream.

Every request's loader fetches through the one ``ExecutionFetcher`` of its process, so
requests share what the orchestrator said, but only with requests carrying the same
credentials: the cache key and the single-flight key both start with the credentials'
fingerprint. What is kept depends on what was answered:

* a final execution (completed, failed, cancelled never change): ``cache_final_ttl``;
* any other execution: ``cache_active_ttl``, a micro-TTL (0 keeps nothing);
* 404: ``cache_not_found_ttl``;
* every failure: nothing, so the next request asks again.
"""

from __future__ import annotations

import functools
import secrets

from gateway.cache import CachedAnswer, CacheKey, ExecutionCache
from gateway.credentials import Credentials, credential_fingerprint
from gateway.errors import UpstreamAnswered
from gateway.executions import FetchedExecution, decode_execution
from gateway.request_stats import RequestStats
from gateway.settings import Settings
from gateway.singleflight import SingleFlight
from gateway.upstream import UpstreamClient


class ExecutionFetcher:
    """Usage::

        fetcher = ExecutionFetcher(upstream, settings, cache=MemoryCache(...))
        fetched = await fetcher.fetch(execution_id, credentials)

    With ``cache=None`` every fetch goes to the upstream (no cache, no single-flight): the
    behaviour of a gateway that shares nothing between requests.
    """

    def __init__(
        self,
        upstream: UpstreamClient,
        settings: Settings,
        *,
        cache: ExecutionCache | None,
        secret: bytes | None = None,
    ) -> None:
        self._upstream = upstream
        self._cache = cache
        # Without a secret, a fresh one per process: fingerprints mean nothing outside it.
        key_secret = secret if secret is not None else secrets.token_bytes(32)
        # A batch fetches many ids with one caller's credentials: hash them once, not per id.
        self.fingerprint = functools.lru_cache(maxsize=4096)(
            lambda credentials: credential_fingerprint(credentials, key_secret)
        )
        self._final_ttl = settings.cache_final_ttl
        self._active_ttl = settings.cache_active_ttl
        self._not_found_ttl = settings.cache_not_found_ttl
        self.flights: SingleFlight[CacheKey, FetchedExecution] = SingleFlight()

    async def fetch(
        self, execution_id: str, credentials: Credentials, stats: RequestStats | None = None
    ) -> FetchedExecution:
        """``stats``, when given, counts this request's cache hits and upstream calls."""
        stats = stats if stats is not None else RequestStats()
        if self._cache is None:
            stats.upstream_calls += 1
            return await self._upstream.fetch_execution(execution_id, credentials)
        key = CacheKey(self.fingerprint(credentials), execution_id)
        cached = await self._cache.get(key)
        if cached is not None:
            stats.cache_hits += 1
            return _replay(execution_id, cached)
        # Only the request that starts the shared call counts it; those joining it do not.
        return await self.flights.run(
            key, lambda: self._fetch_and_keep(key, execution_id, credentials, stats)
        )

    async def forget(self, execution_id: str, credentials: Credentials) -> None:
        """Drop the cached copies of an execution that just changed (a cancel)."""
        if self._cache is not None:
            await self._cache.forget(CacheKey(self.fingerprint(credentials), execution_id))

    async def _fetch_and_keep(
        self, key: CacheKey, execution_id: str, credentials: Credentials, stats: RequestStats
    ) -> FetchedExecution:
        assert self._cache is not None
        stats.upstream_calls += 1
        try:
            fetched = await self._upstream.fetch_execution(execution_id, credentials)
        except UpstreamAnswered as answer:
            if answer.status == 404:
                kept = CachedAnswer(404, answer.body, answer.headers)
                await self._cache.put(key, kept, self._not_found_ttl)
            raise
        ttl = self._final_ttl if fetched.record.is_terminal else self._active_ttl
        await self._cache.put(key, CachedAnswer(200, fetched.body), ttl)
        return fetched


def _replay(execution_id: str, cached: CachedAnswer) -> FetchedExecution:
    """The cached answer as the upstream gave it: an execution, or its 404 raised again."""
    if cached.status == 404:
        raise UpstreamAnswered(execution_id, 404, cached.body, cached.headers)
    return decode_execution(execution_id, cached.body)
