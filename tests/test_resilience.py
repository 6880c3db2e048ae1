"""Retries, the retry budget, the circuit breaker, the bulkhead and deadlines."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.credentials import Credentials
from gateway.demo.data import demo_id, seed
from gateway.errors import UpstreamAnswered, UpstreamTimeout, UpstreamUnavailable
from gateway.resilience import (
    BUDGET_BURST,
    BreakerState,
    Bulkhead,
    CircuitBreaker,
    Overloaded,
    Permit,
    RetryBudget,
    backoff_delay,
    retry_after_seconds,
)
from gateway.settings import Settings
from gateway.upstream import CircuitOpen, UpstreamClient
from tests.conftest import StartGateway, error_codes, graphql
from tests.servers import Recorder, ScriptedUpstream, closed_port_url, serve

ID = demo_id("research")
BODY = json.dumps(seed().executions[ID]).encode()
NOBODY = Credentials()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# --- the breaker, the budget, backoff and Retry-After, on their own ---------------------


def call(breaker: CircuitBreaker) -> Permit:
    permit = breaker.allow()
    assert permit is not None, "the breaker refused a call"
    return permit


def test_the_breaker_opens_after_consecutive_failures_and_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=5, clock=Clock())
    for _ in range(2):
        breaker.record_failure(call(breaker))
    breaker.record_success(call(breaker))
    for _ in range(2):
        breaker.record_failure(call(breaker))

    before = breaker.state
    breaker.record_failure(call(breaker))

    assert before is BreakerState.CLOSED
    assert breaker.state is BreakerState.OPEN
    assert breaker.allow() is None


def test_after_the_cooldown_one_probe_goes_through_and_decides() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, cooldown=5, clock=clock)
    breaker.record_failure(call(breaker))

    clock.now += 4.9
    assert breaker.allow() is None
    clock.now += 0.1
    probe = call(breaker)
    assert probe.probe
    assert breaker.allow() is None  # nobody else while it runs
    breaker.record_failure(probe)
    reopened = breaker.state  # the cooldown starts again
    clock.now += 5
    breaker.record_success(call(breaker))

    assert reopened is BreakerState.OPEN
    assert breaker.state is BreakerState.CLOSED
    assert all(breaker.allow() for _ in range(3))


def test_a_late_failure_of_a_call_from_before_the_opening_does_not_extend_it() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, cooldown=5, clock=clock)
    early, late = call(breaker), call(breaker)
    breaker.record_failure(early)  # opens at 100
    clock.now += 4
    breaker.record_failure(late)  # began before the opening: ignored
    clock.now += 1

    assert breaker.state is BreakerState.HALF_OPEN


def test_an_abandoned_probe_lets_another_probe_try() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, cooldown=1, clock=clock)
    breaker.record_failure(call(breaker))
    clock.now += 1

    breaker.record_abandoned(call(breaker))
    assert breaker.allow() is not None


def test_the_retry_budget_allows_a_burst_then_only_its_share_of_attempts() -> None:
    budget = RetryBudget(ratio=0.5)
    burst = sum(budget.try_spend() for _ in range(100))
    for _ in range(10):
        budget.record_attempt()
    share = sum(budget.try_spend() for _ in range(100))

    assert burst == BUDGET_BURST
    assert share == 5
    assert budget.refused == 100 - burst + 100 - share


@given(attempt=st.integers(0, 30), base=st.floats(0.001, 5), cap=st.floats(0.001, 60))
def test_backoff_is_full_jitter_below_the_exponential_bound(
    attempt: int, base: float, cap: float
) -> None:
    delay = backoff_delay(attempt, base, cap)

    assert 0 <= delay <= min(cap, base * 2**attempt)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    in_ten = format_datetime(now + timedelta(seconds=10), usegmt=True)

    assert retry_after_seconds("7") == 7
    assert retry_after_seconds(in_ten, now=now.timestamp()) == pytest.approx(10)
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


@pytest.mark.anyio
async def test_the_bulkhead_sheds_calls_beyond_its_slots_and_queue() -> None:
    bulkhead = Bulkhead(limit=1, queue=1)
    inside = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with bulkhead.slot():
            inside.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    await inside.wait()
    queued = asyncio.create_task(hold())
    await asyncio.sleep(0)  # one turn: the queued task runs up to its wait for the slot
    assert bulkhead.waiting == 1

    with pytest.raises(Overloaded) as shed:
        async with bulkhead.slot():
            pass
    release.set()
    await asyncio.gather(holder, queued)

    assert shed.value.code.value == "RATE_LIMITED"
    assert bulkhead.shed == 1
    async with bulkhead.slot():
        pass  # free again


# --- the upstream client against real servers ------------------------------------------


class Sequenced:
    """An upstream that answers each request with the next scripted answer (the last repeats)."""

    def __init__(self, *answers: tuple[int, bytes, dict[str, str]]) -> None:
        self.answers = list(answers)
        self.app = Recorder(Starlette(routes=[Route("/api/v1/executions/{id}", self._answer)]))

    async def _answer(self, _: Request) -> Response:
        status, body, headers = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return Response(body, status_code=status, headers=headers)


OK: tuple[int, bytes, dict[str, str]] = (200, BODY, {})


def overloaded(status: int = 503, **headers: str) -> tuple[int, bytes, dict[str, str]]:
    return (status, b"", headers)


def settings_for(url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "upstream_url": url,
        "retry_backoff_base": 0.001,
        "retry_backoff_max": 0.01,
        "breaker_failure_threshold": 1000,
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture
def sequenced() -> Iterator[tuple[str, Sequenced]]:
    upstream = Sequenced(OK)
    with serve(upstream.app, lifespan="off") as url:
        yield url, upstream


@pytest.mark.anyio
@pytest.mark.parametrize("status", [502, 503, 504])
async def test_a_burst_of_overload_answers_is_retried_until_the_execution_comes(
    sequenced: tuple[str, Sequenced], status: int
) -> None:
    url, upstream = sequenced
    upstream.answers = [overloaded(status), overloaded(status), OK]

    async with UpstreamClient(settings_for(url)) as client:
        fetched = await client.fetch_execution(ID, NOBODY)

    assert fetched.record.id == ID
    assert len(upstream.app.execution_ids()) == 3


@pytest.mark.anyio
@pytest.mark.parametrize("status", [400, 401, 403, 404, 500])
async def test_answers_about_the_request_itself_are_not_retried(
    sequenced: tuple[str, Sequenced], status: int
) -> None:
    url, upstream = sequenced
    upstream.answers = [overloaded(status), OK]

    async with UpstreamClient(settings_for(url)) as client:
        with pytest.raises(UpstreamAnswered):
            await client.fetch_execution(ID, NOBODY)

    assert len(upstream.app.execution_ids()) == 1


@pytest.mark.anyio
async def test_retries_stop_at_the_attempt_cap() -> None:
    async with UpstreamClient(settings_for(closed_port_url(), retry_attempts=4)) as client:
        with pytest.raises(UpstreamUnavailable):
            await client.fetch_execution(ID, NOBODY)

        assert client.attempts == 4


@pytest.mark.anyio
async def test_a_short_retry_after_is_honoured_and_a_long_one_is_handed_to_the_client(
    sequenced: tuple[str, Sequenced],
) -> None:
    url, upstream = sequenced
    async with UpstreamClient(settings_for(url, retry_backoff_max=1)) as client:
        upstream.answers = [overloaded(429, **{"Retry-After": "0"}), OK]
        short = await client.fetch_execution(ID, NOBODY)
        upstream.answers = [overloaded(503, **{"Retry-After": "30"}), OK]
        with pytest.raises(UpstreamAnswered) as long:
            await client.fetch_execution(ID, NOBODY)

    assert short.record.id == ID
    assert long.value.status == 503
    assert ("retry-after", "30") in long.value.headers
    assert len(upstream.app.execution_ids()) == 3


@pytest.mark.anyio
async def test_the_retry_budget_stops_retries_during_an_outage(
    sequenced: tuple[str, Sequenced],
) -> None:
    url, upstream = sequenced
    upstream.answers = [overloaded(503)]
    calls = 10

    async with UpstreamClient(settings_for(url, retry_budget_ratio=0)) as client:
        for _ in range(calls):
            with pytest.raises(UpstreamAnswered):
                await client.fetch_execution(ID, NOBODY)

        assert client.budget.refused > 0

    # The burst pays for BUDGET_BURST retries; after that every call makes one attempt only.
    assert len(upstream.app.execution_ids()) == calls + int(BUDGET_BURST)


@pytest.mark.anyio
async def test_the_breaker_fails_fast_while_open_and_recovers_through_a_probe(
    sequenced: tuple[str, Sequenced],
) -> None:
    url, upstream = sequenced
    clock = Clock()
    settings = settings_for(url, retry_attempts=1, breaker_failure_threshold=3, breaker_cooldown=5)
    upstream.answers = [overloaded(503)]

    async with UpstreamClient(settings, clock=clock) as client:
        for _ in range(3):
            with pytest.raises(UpstreamAnswered):
                await client.fetch_execution(ID, NOBODY)
        with pytest.raises(CircuitOpen) as fast:
            await client.fetch_execution(ID, NOBODY)
        seen_while_open = len(upstream.app.execution_ids())

        upstream.answers = [OK]
        clock.now += 5
        probe = await client.fetch_execution(ID, NOBODY)
        after = await client.fetch_execution(ID, NOBODY)

    assert fast.value.code.value == "UPSTREAM_UNAVAILABLE"
    assert seen_while_open == 3
    assert probe.record.id == after.record.id == ID
    assert client.breaker.state is BreakerState.CLOSED


@pytest.mark.anyio
async def test_a_500_for_an_unknown_id_never_opens_the_breaker(
    sequenced: tuple[str, Sequenced],
) -> None:
    url, upstream = sequenced
    upstream.answers = [overloaded(500)]

    async with UpstreamClient(settings_for(url, breaker_failure_threshold=2)) as client:
        for _ in range(5):
            with pytest.raises(UpstreamAnswered):
                await client.fetch_execution(ID, NOBODY)

        assert client.breaker.state is BreakerState.CLOSED
    assert len(upstream.app.execution_ids()) == 5


@pytest.mark.anyio
async def test_retries_end_by_the_calls_deadline(
    scripted: tuple[str, ScriptedUpstream],
) -> None:
    url, upstream = scripted
    upstream.hang(ID)
    settings = settings_for(
        url, retry_attempts=10, upstream_timeout=0.3, read_timeout=0.3, connect_timeout=0.3
    )

    async with UpstreamClient(settings) as client:
        with pytest.raises(UpstreamTimeout):
            await client.fetch_execution(ID, NOBODY)

        assert client.attempts == 1  # a timeout is not retried: its time is spent


# --- through the gateway ------------------------------------------------------------------


def test_a_request_deadline_keeps_what_resolved_and_codes_the_rest(
    start_gateway: StartGateway, scripted: tuple[str, ScriptedUpstream]
) -> None:
    url, upstream = scripted
    slow = "11111111-2222-4333-8444-555555555555"
    upstream.answer(ID, 200, BODY)
    upstream.hang(slow)
    client = start_gateway(url, request_deadline=0.5)

    body = graphql(
        client, "query($ids: [ID!]!) { executions(ids: $ids) { id } }", {"ids": [ID, slow]}
    )

    assert body["data"] == {"executions": [{"id": ID}, None]}
    assert error_codes(body) == [("executions.1", "UPSTREAM_TIMEOUT")]


class Gate:
    """Holds every request until the test opens it, counting those that arrived."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.arrived = threading.Event()
        self.opened = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.arrived.set()
        await asyncio.to_thread(self.opened.wait, 30)
        await self.app(scope, receive, send)


def test_load_beyond_the_bulkhead_is_shed_with_rate_limited_not_queued(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    gate = Gate(upstream[1].app)
    with serve(gate, lifespan="off") as gated_url:
        client = start_gateway(
            gated_url, max_concurrent_upstream=1, max_queued_upstream=0, cache_enabled=False
        )
        holder = threading.Thread(
            target=httpx.get, args=(str(client.base_url.join(f"/api/v1/executions/{ID}")),)
        )
        holder.start()
        assert gate.arrived.wait(30)  # the first call now holds the only upstream slot
        shed = graphql(client, "query($id: ID!) { execution(id: $id) { id } }", {"id": ID})
        rest = client.get(f"/api/v1/executions/{ID}")
        gate.opened.set()
        holder.join()

    assert error_codes(shed) == [("execution", "RATE_LIMITED")]
    assert (rest.status_code, rest.headers["retry-after"]) == (503, "1")
    assert rest.json()["error_type"] == "RATE_LIMITED"
