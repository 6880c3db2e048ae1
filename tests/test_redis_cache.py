"""The Redis tier of the cache, against a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio

from gateway.cache import CachedAnswer, CacheKey, MemoryCache
from gateway.redis_cache import RedisCache, TieredCache, decode_answer, encode_answer
from tests.redis_server import redis_server
from tests.servers import closed_port_url

ANSWER = CachedAnswer(
    200, b'{"id": "x", "big": 18446744073709551621}\n\xff', (("content-type", "application/json"),)
)
KEY = CacheKey("fingerprint-a", "6f9619ff-8b86-d011-b42d-00c04fc964ff")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as (url, _):
        yield url


@pytest.fixture
async def shared(redis_url: str) -> AsyncIterator[RedisCache]:
    client = redis.asyncio.Redis.from_url(redis_url, socket_timeout=1)
    await client.flushdb()
    cache = RedisCache(client)
    yield cache
    await cache.aclose()


def test_an_answer_survives_encoding_byte_for_byte() -> None:
    assert decode_answer(encode_answer(ANSWER)) == ANSWER


@pytest.mark.anyio
async def test_an_answer_comes_back_with_the_time_it_has_left(shared: RedisCache) -> None:
    await shared.put(KEY, ANSWER, ttl=100)

    found = await shared.get_with_ttl(KEY)

    assert found is not None
    assert found[0] == ANSWER
    assert 99 < found[1] <= 100
    assert (shared.hits, shared.misses) == (1, 0)


@pytest.mark.anyio
async def test_another_credential_fingerprint_never_sees_the_answer(shared: RedisCache) -> None:
    await shared.put(KEY, ANSWER, ttl=100)

    assert await shared.get(CacheKey("fingerprint-b", KEY.execution_id)) is None
    assert await shared.get(KEY) == ANSWER


@pytest.mark.anyio
async def test_a_zero_ttl_stores_nothing(shared: RedisCache) -> None:
    await shared.put(KEY, ANSWER, ttl=0)

    assert await shared.get(KEY) is None


@pytest.mark.anyio
async def test_a_redis_hit_is_kept_in_memory_for_the_time_it_has_left(shared: RedisCache) -> None:
    await shared.put(KEY, ANSWER, ttl=100)
    memory = MemoryCache(max_entries=10, max_bytes=10_000)
    tiered = TieredCache(memory, shared)

    first = await tiered.get(KEY)
    second = await tiered.get(KEY)

    assert first == second == ANSWER
    assert shared.hits == 1  # the second came from memory
    assert memory.hits == 1


@pytest.mark.anyio
async def test_an_unreachable_redis_fails_soft_and_its_breaker_stops_asking() -> None:
    client = redis.asyncio.Redis.from_url(
        closed_port_url().replace("http", "redis"), socket_connect_timeout=0.2
    )
    cache = RedisCache(client, breaker_threshold=3)
    try:
        for _ in range(5):
            await cache.put(KEY, ANSWER, ttl=100)
            assert await cache.get(KEY) is None
    finally:
        await cache.aclose()

    assert cache.errors == 3  # then the breaker kept the gateway from trying
    assert cache.degraded


@pytest.mark.anyio
async def test_redis_killed_mid_run_leaves_the_cache_answering_from_memory() -> None:
    with redis_server() as (url, process):
        client = redis.asyncio.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        shared = RedisCache(client, breaker_threshold=2)
        tiered = TieredCache(MemoryCache(max_entries=10, max_bytes=10_000), shared)
        await tiered.put(KEY, ANSWER, ttl=100)
        process.kill()
        process.wait(timeout=10)

        kept = await tiered.get(KEY)  # from memory
        other = CacheKey("fingerprint-a", "00000000-0000-0000-0000-000000000000")
        misses = [await tiered.get(other) for _ in range(3)]
        await shared.aclose()

    assert kept == ANSWER
    assert misses == [None, None, None]
    assert shared.degraded


@pytest.mark.anyio
@pytest.mark.parametrize(
    "stored", [b"garbage", b"200\nnot json\nbody", b"200\n5\nbody", b"\xff\xfe"]
)
async def test_an_unreadable_entry_is_a_miss_not_a_failed_request(
    shared: RedisCache, redis_url: str, stored: bytes
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    await client.set(f"polos-gateway:{KEY.fingerprint}:{KEY.execution_id}", stored, px=100_000)
    await client.aclose()

    assert await shared.get(KEY) is None
    assert shared.misses == 1
    assert not shared.degraded
