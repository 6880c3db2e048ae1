"""Sharing between requests: the status-aware cache and single-flight, scoped by credentials."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.app import create_app
from gateway.cache import MemoryCache
from gateway.credentials import Credentials
from gateway.demo.data import demo_id
from gateway.demo.upstream import create_demo_app
from gateway.errors import UpstreamAnswered
from gateway.fetcher import ExecutionFetcher
from gateway.settings import Settings
from gateway.upstream import UpstreamClient
from tests.conftest import AUTH_HEADERS, StartGateway, graphql
from tests.servers import Recorder, ScriptedUpstream, serve

FINAL = demo_id("research")  # completed
RUNNING = demo_id("support")  # running
MISSING = "00000000-0000-4000-8000-000000000000"
ONE = "query($id: ID!) { execution(id: $id) { id status } }"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_a_final_execution_is_fetched_once_and_then_served_to_both_front_doors(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0])

    first = graphql(client, ONE, {"id": FINAL})
    rest = client.get(f"/api/v1/executions/{FINAL}")
    again = graphql(client, ONE, {"id": FINAL})

    assert first == again == {"data": {"execution": {"id": FINAL, "status": "COMPLETED"}}}
    assert rest.json()["id"] == FINAL
    assert upstream[1].execution_ids() == [FINAL]


def test_the_rest_route_serves_the_cached_body_byte_for_byte(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0])
    direct = httpx.get(f"{upstream[0]}/api/v1/executions/{FINAL}")

    cold = client.get(f"/api/v1/executions/{FINAL}")
    warm = client.get(f"/api/v1/executions/{FINAL}")

    assert cold.content == warm.content == direct.content
    assert len(upstream[1].execution_ids()) == 2  # the direct call and the cold one


def test_a_running_execution_is_kept_only_for_the_active_ttl(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    without = start_gateway(upstream[0], cache_active_ttl=0)
    graphql(without, ONE, {"id": RUNNING})
    graphql(without, ONE, {"id": RUNNING})
    uncached_calls = len(upstream[1].execution_ids())
    upstream[1].clear()

    with_ttl = start_gateway(upstream[0], cache_active_ttl=600)
    graphql(with_ttl, ONE, {"id": RUNNING})
    graphql(with_ttl, ONE, {"id": RUNNING})

    assert uncached_calls == 2
    assert upstream[1].execution_ids() == [RUNNING]


def test_a_missing_execution_is_remembered_for_the_not_found_ttl(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0])

    answers = [client.get(f"/api/v1/executions/{MISSING}") for _ in range(3)]

    assert [(a.status_code, a.content) for a in answers] == [(404, b"")] * 3
    assert upstream[1].execution_ids() == [MISSING]


def test_failures_are_never_cached(
    start_gateway: StartGateway, scripted: tuple[str, ScriptedUpstream]
) -> None:
    url, upstream = scripted
    upstream.answer(MISSING, 500)
    client = start_gateway(url)

    statuses = [client.get(f"/api/v1/executions/{MISSING}").status_code for _ in range(3)]

    assert statuses == [500] * 3
    assert len(upstream.app.execution_ids()) == 3


def test_nothing_fetched_with_one_credential_is_served_to_another(
    start_gateway: StartGateway, secured_upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(secured_upstream[0])
    path = f"/api/v1/executions/{FINAL}"
    stranger = {"Authorization": "Bearer sk_someone_else", "X-Project-ID": "demo-project"}
    other_project = {**AUTH_HEADERS, "X-Project-ID": "other-project"}

    owner = client.get(path, headers=AUTH_HEADERS)
    refused = [client.get(path, headers=h).status_code for h in (stranger, other_project, {})]
    via_graphql = graphql(client, ONE, {"id": FINAL}, **stranger)
    owner_again = client.get(path, headers=AUTH_HEADERS)

    assert owner.status_code == owner_again.status_code == 200
    assert refused == [401, 403, 401]
    assert via_graphql["data"] == {"execution": None}
    assert via_graphql["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    # One call for the owner (then cached), one for each other credential, none served across.
    assert len(secured_upstream[1].execution_ids()) == 1 + 3 + 1


def test_a_different_traceparent_still_shares_the_cache(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0])
    parents = ["00-" + f"{n:032x}" + "-00f067aa0ba902b7-01" for n in (1, 2)]

    for traceparent in parents:
        client.get(f"/api/v1/executions/{FINAL}", headers={"traceparent": traceparent})

    assert upstream[1].execution_ids() == [FINAL]


def test_the_naive_setting_calls_the_upstream_once_per_field(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    query = (
        "query($id: ID!) { a: execution(id: $id) { id } b: execution(id: $id) { parent { id } } }"
    )
    leaf = demo_id("research/writer")
    naive = start_gateway(upstream[0], batching_enabled=False, cache_enabled=False)

    graphql(naive, query, {"id": leaf})

    assert upstream[1].execution_ids() == [leaf, leaf, FINAL]


class Gate:
    """Holds every execution request until the test opens the gate."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.opened = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await asyncio.to_thread(self.opened.wait, 30)
        await self.app(scope, receive, send)


@pytest.fixture
def gated_upstream() -> Iterator[tuple[str, Recorder, Gate]]:
    recorder = Recorder(create_demo_app())
    gate = Gate(recorder)
    with serve(gate, lifespan="off") as url:
        try:
            yield url, recorder, gate
        finally:
            gate.opened.set()


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Block until ``condition`` holds; a condition that never holds fails the test."""
    ready = threading.Event()
    for _ in range(3000):
        if condition():
            return
        ready.wait(0.01)
    raise AssertionError(f"never happened: {what}")


def test_concurrent_identical_requests_cost_the_upstream_one_call(
    gated_upstream: tuple[str, Recorder, Gate],
) -> None:
    url, recorder, gate = gated_upstream
    app = create_app(Settings(upstream_url=url))
    requests = 8

    with serve(app) as base, ThreadPoolExecutor(requests) as pool:

        def ask(_: int) -> dict[str, Any]:
            response = httpx.post(
                f"{base}/graphql", json={"query": ONE, "variables": {"id": FINAL}}, timeout=60
            )
            body: dict[str, Any] = response.json()
            return body

        answers = pool.map(ask, range(requests))

        def all_joined() -> bool:
            fetcher: ExecutionFetcher | None = getattr(app.state, "fetcher", None)
            return fetcher is not None and fetcher.flights.joins == requests - 1

        wait_for(all_joined, "every request joined the one upstream call")
        gate.opened.set()
        results = list(answers)

    assert results == [{"data": {"execution": {"id": FINAL, "status": "COMPLETED"}}}] * requests
    assert recorder.execution_ids() == [FINAL]


@pytest.fixture
async def demo_client(upstream: tuple[str, Recorder]) -> AsyncIterator[UpstreamClient]:
    async with UpstreamClient(Settings(upstream_url=upstream[0])) as client:
        yield client


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.anyio
async def test_ttls_follow_the_status_on_a_controllable_clock(
    demo_client: UpstreamClient, upstream: tuple[str, Recorder]
) -> None:
    clock = Clock()
    settings = Settings(
        upstream_url=upstream[0], cache_final_ttl=3600, cache_active_ttl=2, cache_not_found_ttl=5
    )
    cache = MemoryCache(max_entries=100, max_bytes=2**20, clock=clock)
    fetcher = ExecutionFetcher(demo_client, settings, cache=cache)
    nobody = Credentials()

    async def calls_after(seconds: float) -> int:
        clock.now = seconds
        before = len(upstream[1].execution_ids())
        for execution_id in (FINAL, RUNNING):
            await fetcher.fetch(execution_id, nobody)
        with pytest.raises(UpstreamAnswered):
            await fetcher.fetch(MISSING, nobody)
        return len(upstream[1].execution_ids()) - before

    assert await calls_after(0) == 3  # all cold
    assert await calls_after(1.9) == 0  # all warm
    assert await calls_after(2.1) == 1  # the running one expired
    assert await calls_after(5.2) == 2  # the running one again, and the 404
    assert await calls_after(3599.9) == 2
    assert await calls_after(3600.1) == 1  # the final one at last; the others are fresh
