"""The in-process cache: bounded by entries and bytes, least recently used out first, TTLs."""

from __future__ import annotations

import pytest

from gateway.cache import ENTRY_OVERHEAD, CachedAnswer, CacheKey, MemoryCache


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def key(name: str, who: str = "alice") -> CacheKey:
    return CacheKey(fingerprint=who, execution_id=name)


def answer(size: int = 10) -> CachedAnswer:
    return CachedAnswer(200, b"x" * size)


@pytest.mark.anyio
async def test_an_entry_is_served_until_its_ttl_runs_out() -> None:
    clock = Clock()
    cache = MemoryCache(max_entries=10, max_bytes=10_000, clock=clock)
    await cache.put(key("a"), answer(), ttl=5)

    clock.now += 4.999
    before = await cache.get(key("a"))
    clock.now += 0.001
    after = await cache.get(key("a"))

    assert before == answer()
    assert after is None
    assert len(cache) == 0
    assert (cache.hits, cache.misses) == (1, 1)


@pytest.mark.anyio
async def test_a_zero_ttl_keeps_nothing() -> None:
    cache = MemoryCache(max_entries=10, max_bytes=10_000)

    await cache.put(key("a"), answer(), ttl=0)

    assert await cache.get(key("a")) is None


@pytest.mark.anyio
async def test_the_same_execution_for_other_credentials_is_another_entry() -> None:
    cache = MemoryCache(max_entries=10, max_bytes=10_000)
    await cache.put(key("a", who="alice"), answer(1), ttl=60)

    assert await cache.get(key("a", who="bob")) is None
    assert await cache.get(key("a", who="alice")) == answer(1)


@pytest.mark.anyio
async def test_the_least_recently_used_entry_goes_first_when_entries_run_out() -> None:
    cache = MemoryCache(max_entries=2, max_bytes=10_000)
    await cache.put(key("a"), answer(), ttl=60)
    await cache.put(key("b"), answer(), ttl=60)
    await cache.get(key("a"))  # a is now more recent than b

    await cache.put(key("c"), answer(), ttl=60)

    assert await cache.get(key("b")) is None
    assert await cache.get(key("a")) is not None
    assert await cache.get(key("c")) is not None
    assert cache.evictions == 1


@pytest.mark.anyio
async def test_bytes_are_bounded_and_counted_back_on_eviction() -> None:
    per_entry = 100 + ENTRY_OVERHEAD
    cache = MemoryCache(max_entries=100, max_bytes=3 * per_entry)
    for name in "abcde":
        await cache.put(key(name), answer(100), ttl=60)

    assert len(cache) == 3
    assert cache.bytes == 3 * per_entry
    assert [await cache.get(key(name)) is not None for name in "abcde"] == [
        False,
        False,
        True,
        True,
        True,
    ]


@pytest.mark.anyio
async def test_an_answer_larger_than_the_whole_cache_is_not_kept_and_evicts_nothing() -> None:
    cache = MemoryCache(max_entries=10, max_bytes=1000)
    await cache.put(key("small"), answer(10), ttl=60)

    await cache.put(key("huge"), answer(5000), ttl=60)

    assert await cache.get(key("huge")) is None
    assert await cache.get(key("small")) is not None


@pytest.mark.anyio
async def test_replacing_an_entry_does_not_count_its_bytes_twice() -> None:
    cache = MemoryCache(max_entries=10, max_bytes=10_000)

    await cache.put(key("a"), answer(100), ttl=60)
    await cache.put(key("a"), answer(200), ttl=60)

    assert cache.bytes == 200 + ENTRY_OVERHEAD
    assert await cache.get(key("a")) == answer(200)
