"""Single-flight: concurrent calls for one key share one call, and only while it runs."""

from __future__ import annotations

import asyncio

import pytest

from gateway.singleflight import SingleFlight


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class GatedCall:
    """A call that counts how often it starts and finishes only when the test opens the gate."""

    def __init__(self, result: str = "value", error: Exception | None = None) -> None:
        self.started = 0
        self.gate = asyncio.Event()
        self.result = result
        self.error = error

    async def __call__(self) -> str:
        self.started += 1
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        return self.result


async def settle() -> None:
    """Let every ready task run until it blocks (a few event-loop turns)."""
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.mark.anyio
async def test_concurrent_calls_for_one_key_share_a_single_call() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    call = GatedCall()

    waiters = [asyncio.create_task(flights.run("k", call)) for _ in range(50)]
    await settle()
    call.gate.set()
    results = await asyncio.gather(*waiters)

    assert results == ["value"] * 50
    assert call.started == 1
    assert flights.joins == 49
    assert len(flights) == 0


@pytest.mark.anyio
async def test_different_keys_do_not_share() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    call = GatedCall()

    waiters = [asyncio.create_task(flights.run(k, call)) for k in ("a", "b")]
    await settle()
    call.gate.set()
    await asyncio.gather(*waiters)

    assert call.started == 2


@pytest.mark.anyio
async def test_a_failure_reaches_every_waiter_and_is_not_remembered() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    failing = GatedCall(error=RuntimeError("upstream down"))

    waiters = [asyncio.create_task(flights.run("k", failing)) for _ in range(3)]
    await settle()
    failing.gate.set()
    outcomes = await asyncio.gather(*waiters, return_exceptions=True)
    retry = GatedCall(result="fresh")
    retry.gate.set()
    again = await flights.run("k", retry)

    assert all(isinstance(o, RuntimeError) for o in outcomes)
    assert again == "fresh"
    assert retry.started == 1


@pytest.mark.anyio
async def test_a_cancelled_waiter_does_not_cancel_the_call_for_the_others() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    call = GatedCall()
    first = asyncio.create_task(flights.run("k", call))
    second = asyncio.create_task(flights.run("k", call))
    await settle()

    first.cancel()
    await settle()
    call.gate.set()

    assert await second == "value"
    assert first.cancelled()
    assert call.started == 1


@pytest.mark.anyio
async def test_the_call_completes_even_when_every_waiter_gave_up() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    finished: list[str] = []

    async def call() -> str:
        await gate.wait()
        finished.append("done")
        return "value"

    gate = asyncio.Event()
    waiter = asyncio.create_task(flights.run("k", call))
    await settle()
    waiter.cancel()
    await settle()
    gate.set()
    await settle()

    assert finished == ["done"]
    assert len(flights) == 0
