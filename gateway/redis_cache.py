"""The shared cache across replicas: Redis under each process's in-process cache.

Same semantics as ``MemoryCache``: keys are ``(credential fingerprint, execution id)``, every
entry carries the TTL its status earned, failures are never stored. Fingerprints must mean the
same in every replica, so the key secret is a setting when Redis is in use.

Redis is a help, never a dependency: every command has a short timeout, and after repeated
failures a breaker of its own stops asking Redis for a while. While Redis is slow or down the
gateway answers from memory and the upstream, and ``degraded`` says so for ``/readyz``.

Needs the optional extra: ``pip install 'polos-gateway[redis]'``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.cache import CachedAnswer, CacheKey, MemoryCache
from gateway.metrics import CACHE_HITS, CACHE_MISSES
from gateway.resilience import BreakerState, CircuitBreaker, Permit

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)


def connect_redis(url: str, timeout: float) -> Redis:
    """A client for ``url`` whose every command gives up after ``timeout`` seconds (it
    connects lazily, on the first command)."""
    try:
        from redis.asyncio import Redis
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise RuntimeError(
            "POLOS_GATEWAY_REDIS_URL is set but redis is not installed: "
            "pip install 'polos-gateway[redis]'"
        ) from exc
    return Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def encode_answer(answer: CachedAnswer) -> bytes:
    """``status``, then the headers as JSON, then the body, one line each but the last."""
    head = json.dumps(answer.headers, separators=(",", ":"))
    return f"{answer.status}\n{head}\n".encode() + answer.body


def decode_answer(raw: bytes) -> CachedAnswer:
    status, head, body = raw.split(b"\n", 2)
    headers = tuple((str(name), str(value)) for name, value in json.loads(head))
    return CachedAnswer(int(status), body, headers)


class RedisCache:
    """``ExecutionCache`` over Redis, failing soft.

    Usage::

        cache = RedisCache(redis.asyncio.Redis.from_url(url, socket_timeout=0.1))
    """

    def __init__(
        self,
        redis: Redis,
        *,
        namespace: str = "polos-gateway",
        breaker_threshold: int = 3,
        breaker_cooldown: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._namespace = namespace
        self.breaker = CircuitBreaker(
            threshold=breaker_threshold, cooldown=breaker_cooldown, clock=clock
        )
        self.hits = 0
        self.misses = 0
        self.errors = 0

    @property
    def degraded(self) -> bool:
        """True while the breaker keeps the gateway from using Redis."""
        return self.breaker.state is not BreakerState.CLOSED

    def _key(self, key: CacheKey) -> str:
        return f"{self._namespace}:{key.fingerprint}:{key.execution_id}"

    async def get(self, key: CacheKey) -> CachedAnswer | None:
        found = await self.get_with_ttl(key)
        return None if found is None else found[0]

    async def get_with_ttl(self, key: CacheKey) -> tuple[CachedAnswer, float] | None:
        """The answer and the seconds it has left, so a cache above can keep it as long."""
        permit = self.breaker.allow()
        if permit is None:
            return None
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(self._key(key))
                pipe.pttl(self._key(key))
                raw, ttl_ms = await pipe.execute()
        except Exception as exc:
            self._failed("get", exc, permit)
            return None
        self.breaker.record_success(permit)
        try:
            answer = None if raw is None or not ttl_ms or ttl_ms <= 0 else decode_answer(raw)
        except (ValueError, TypeError):
            # Another version's format or a foreign key: a miss, never a failed request.
            logger.warning("unreadable redis cache entry; treated as a miss")
            answer = None
        if answer is None:
            self.misses += 1
            CACHE_MISSES.labels("redis").inc()
            return None
        self.hits += 1
        CACHE_HITS.labels("redis").inc()
        return answer, ttl_ms / 1000

    async def put(self, key: CacheKey, answer: CachedAnswer, ttl: float) -> None:
        # Redis refuses an expiry under one millisecond; such an answer is not worth keeping.
        permit = self.breaker.allow() if ttl >= 0.001 else None
        if permit is None:
            return
        try:
            await self._redis.set(self._key(key), encode_answer(answer), px=int(ttl * 1000))
        except Exception as exc:
            self._failed("put", exc, permit)
            return
        self.breaker.record_success(permit)

    async def forget(self, key: CacheKey) -> None:
        """Drops ``key`` itself: other credentials' copies are not found without a scan."""
        permit = self.breaker.allow()
        if permit is None:
            return
        try:
            await self._redis.delete(self._key(key))
        except Exception as exc:
            self._failed("delete", exc, permit)
            return
        self.breaker.record_success(permit)

    def _failed(self, operation: str, exc: Exception, permit: Permit) -> None:
        self.errors += 1
        self.breaker.record_failure(permit)
        logger.warning("redis %s failed (%s); serving without it", operation, type(exc).__name__)

    async def aclose(self) -> None:
        await self._redis.aclose()


class TieredCache:
    """The in-process cache first, Redis behind it; a Redis hit is kept in memory too."""

    def __init__(self, memory: MemoryCache, shared: RedisCache) -> None:
        self.memory = memory
        self.shared = shared

    async def get(self, key: CacheKey) -> CachedAnswer | None:
        answer = await self.memory.get(key)
        if answer is not None:
            return answer
        found = await self.shared.get_with_ttl(key)
        if found is None:
            return None
        answer, ttl = found
        await self.memory.put(key, answer, ttl)
        return answer

    async def put(self, key: CacheKey, answer: CachedAnswer, ttl: float) -> None:
        await self.memory.put(key, answer, ttl)
        # Awaited, not sent off in the background: once a replica has answered, the others
        # can serve the same answer. A miss already paid an upstream call; Redis's own
        # timeout bounds what this adds.
        await self.shared.put(key, answer, ttl)

    async def forget(self, key: CacheKey) -> None:
        await self.memory.forget(key)
        await self.shared.forget(key)
