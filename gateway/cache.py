"""The shared cache of upstream answers, scoped by credentials and kept by status.

An entry is what the orchestrator answered for one execution and one set of credentials: the
status (200 or 404) and the exact body bytes. Keeping bytes makes the size bound honest and
lets a Redis backend store the same thing; a hit is parsed again (microseconds), which also
means a cached answer is checked exactly like a fresh one.

``ExecutionCache`` is the interface; ``MemoryCache`` is the bounded in-process LRU.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.metrics import CACHE_EVICTIONS, CACHE_HITS, CACHE_MISSES


@dataclass(frozen=True, slots=True)
class CacheKey:
    """Whose view (a credential fingerprint) of which execution."""

    fingerprint: str
    execution_id: str


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """An upstream answer worth keeping: an execution (200) or its absence (404)."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def size(self) -> int:
        return len(self.body) + sum(len(n) + len(v) for n, v in self.headers)


class ExecutionCache(Protocol):
    """What the gateway needs from a cache backend."""

    async def get(self, key: CacheKey) -> CachedAnswer | None: ...

    async def put(self, key: CacheKey, answer: CachedAnswer, ttl: float) -> None: ...

    async def forget(self, key: CacheKey) -> None:
        """Drop what is kept of ``key``'s execution: for every credential where the backend
        can find them cheaply, for ``key``'s own credential at least."""


@dataclass(slots=True)
class _Entry:
    answer: CachedAnswer
    size: int
    expires_at: float


# What one entry costs beyond its bytes: the key, the entry objects, the dict slot.
ENTRY_OVERHEAD = 256


class MemoryCache:
    """A least-recently-used cache bounded by entries and by bytes, with a TTL per entry.

    Usage::

        cache = MemoryCache(max_entries=10_000, max_bytes=64 * 2**20)
        await cache.put(key, answer, ttl=60)
    """

    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
        backend: str = "memory",
    ) -> None:
        self.max_entries = max_entries
        self._hit, self._missed, self._evicted = (
            CACHE_HITS.labels(backend),
            CACHE_MISSES.labels(backend),
            CACHE_EVICTIONS.labels(backend),
        )
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: CacheKey) -> CachedAnswer | None:
        entry = self._entries.get(key)
        if entry is None:
            self._miss()
            return None
        if entry.expires_at <= self._clock():
            self._remove(key)
            self._miss()
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        self._hit.inc()
        return entry.answer

    def _miss(self) -> None:
        self.misses += 1
        self._missed.inc()

    async def put(self, key: CacheKey, answer: CachedAnswer, ttl: float) -> None:
        size = answer.size + ENTRY_OVERHEAD
        if ttl <= 0 or size > self.max_bytes or self.max_entries == 0:
            return
        if key in self._entries:
            self._remove(key)
        self._entries[key] = _Entry(answer, size, self._clock() + ttl)
        self.bytes += size
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._remove(oldest)
            self.evictions += 1
            self._evicted.inc()

    async def forget(self, key: CacheKey) -> None:
        # A scan, but only a mutation calls this, and the cache is bounded.
        for kept in [k for k in self._entries if k.execution_id == key.execution_id]:
            self._remove(kept)

    def _remove(self, key: CacheKey) -> None:
        entry = self._entries.pop(key)
        self.bytes -= entry.size
