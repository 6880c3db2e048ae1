"""The loader's deadline: one timer per batch, each key its own outcome, nothing left waiting.

A fake fetcher answers some ids at once, fails some and holds the rest until cancelled, so the
tests see what each key gets when the request's deadline passes and what happens to the fetches
still running when the deadline passes or the request itself is cancelled.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from gateway.credentials import Credentials
from gateway.errors import UpstreamAnswered, UpstreamTimeout
from gateway.fetcher import ExecutionFetcher
from gateway.loaders import ExecutionLoader

QUICK = "11111111-1111-4111-8111-111111111111"
MISSING = "22222222-2222-4222-8222-222222222222"
HUNG = "33333333-3333-4333-8333-333333333333"
HUNG_TOO = "44444444-4444-4444-8444-444444444444"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeFetcher:
    """QUICK answers, MISSING is a 404, anything else hangs until cancelled."""

    def __init__(self) -> None:
        self.cancelled: list[str] = []

    async def fetch(self, execution_id: str, credentials: Credentials, stats: Any) -> str:
        if execution_id == QUICK:
            return f"fetched {execution_id}"
        if execution_id == MISSING:
            raise UpstreamAnswered(execution_id, 404, b"", ())
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.append(execution_id)
            raise
        raise AssertionError("unreachable")


def loader_of(fetcher: FakeFetcher, *, deadline_in: float | None) -> ExecutionLoader:
    deadline = None if deadline_in is None else asyncio.get_running_loop().time() + deadline_in
    return ExecutionLoader(
        cast("ExecutionFetcher", fetcher), Credentials(), max_fetches=100, deadline=deadline
    )


@pytest.mark.anyio
async def test_at_the_deadline_each_key_keeps_its_own_outcome_and_the_rest_time_out() -> None:
    fetcher = FakeFetcher()
    loader = loader_of(fetcher, deadline_in=0.05)

    outcomes = await loader.batch_load_fn([QUICK, MISSING, HUNG, HUNG_TOO])

    assert cast("object", outcomes[0]) == f"fetched {QUICK}"
    assert isinstance(outcomes[1], UpstreamAnswered)
    assert outcomes[1].status == 404
    for key, outcome in zip((HUNG, HUNG_TOO), outcomes[2:], strict=True):
        assert isinstance(outcome, UpstreamTimeout)
        assert key in str(outcome)
    await asyncio.sleep(0)  # let the cancelled fetches run their cancellation
    assert sorted(fetcher.cancelled) == [HUNG, HUNG_TOO]


@pytest.mark.anyio
async def test_a_single_key_times_out_the_same_way() -> None:
    fetcher = FakeFetcher()
    loader = loader_of(fetcher, deadline_in=0.05)

    (outcome,) = await loader.batch_load_fn([HUNG])

    assert isinstance(outcome, UpstreamTimeout)
    assert fetcher.cancelled == [HUNG]


@pytest.mark.anyio
async def test_a_single_failing_key_gets_its_failure() -> None:
    loader = loader_of(FakeFetcher(), deadline_in=None)

    (outcome,) = await loader.batch_load_fn([MISSING])

    assert isinstance(outcome, UpstreamAnswered)


@pytest.mark.anyio
async def test_a_cancelled_request_cancels_the_fetches_it_was_waiting_for() -> None:
    fetcher = FakeFetcher()
    loader = loader_of(fetcher, deadline_in=None)
    batch = asyncio.ensure_future(loader.batch_load_fn([QUICK, HUNG, HUNG_TOO]))
    await asyncio.sleep(0.01)

    batch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await batch
    await asyncio.sleep(0)

    assert sorted(fetcher.cancelled) == [HUNG, HUNG_TOO]
