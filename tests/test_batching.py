"""Batching: the upstream sees one request per distinct execution, in one round per level."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.context import Context
from gateway.credentials import Credentials
from gateway.demo.data import CHAIN_DEPTH, demo_id
from gateway.demo.upstream import create_demo_app
from gateway.errors import UpstreamAnswered
from gateway.fetcher import ExecutionFetcher
from gateway.loaders import ExecutionLoader
from gateway.schema import build_schema
from gateway.settings import Settings
from gateway.upstream import UpstreamClient
from tests.conftest import StartGateway, graphql
from tests.servers import Recorder, serve

LEAVES = [demo_id(f"eval/runner/case-{index}") for index in range(100)]
MISSING_ID = "00000000-0000-4000-8000-000000000000"  # no demo execution has it
WITH_PARENT_AND_ROOT = """
query Leaves($ids: [ID!]!) { executions(ids: $ids) { id parent { id } root { id } } }
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def loader(upstream: tuple[str, Recorder]) -> AsyncIterator[ExecutionLoader]:
    """A request's loader, talking over real HTTP to the demo upstream."""
    settings = Settings(upstream_url=upstream[0])
    async with UpstreamClient(settings) as client:
        yield ExecutionLoader(
            ExecutionFetcher(client, settings, cache=None), Credentials(), max_fetches=1000
        )


async def run(loader: ExecutionLoader, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    context = Context(
        loader=loader, settings=Settings(upstream_url="http://unused"), request_id="t"
    )
    result = await build_schema().execute(query, variables, context_value=context)
    assert result.errors is None, result.errors
    assert result.data is not None
    return result.data


@pytest.mark.anyio
async def test_parent_and_root_of_an_execution_are_fetched_in_the_same_round(
    loader: ExecutionLoader, upstream: tuple[str, Recorder]
) -> None:
    leaf = demo_id("research/planner/search-0/summarise/llm")

    await run(
        loader, "query($id: ID!) { execution(id: $id) { parent { id } root { id } } }", {"id": leaf}
    )

    assert loader.batch_sizes == [1, 2]
    assert len(upstream[1].execution_ids()) == 3


@pytest.mark.anyio
async def test_a_hundred_leaves_with_parent_and_root_cost_one_call_each_in_two_rounds(
    loader: ExecutionLoader, upstream: tuple[str, Recorder]
) -> None:
    data = await run(loader, WITH_PARENT_AND_ROOT, {"ids": LEAVES})

    assert [entry["id"] for entry in data["executions"]] == LEAVES
    assert loader.batch_sizes == [100, 2]  # the leaves, then their shared parent and root
    seen = upstream[1].execution_ids()
    assert sorted(seen) == sorted({*LEAVES, demo_id("eval/runner"), demo_id("eval")})


@pytest.mark.anyio
async def test_walking_ancestors_costs_one_round_and_one_call_per_level(
    loader: ExecutionLoader, upstream: tuple[str, Recorder]
) -> None:
    tail = demo_id(f"chain/{CHAIN_DEPTH - 1}")

    data = await run(
        loader,
        "query($id: ID!) { execution(id: $id) { root { id } ancestors(limit: 50) { id } } }",
        {"id": tail},
    )

    assert len(data["execution"]["ancestors"]) == 50
    assert len(upstream[1].execution_ids()) == 1 + 50 + 1  # itself, 50 ancestors, the root
    assert loader.batch_sizes == [1, 2, *([1] * 49)]  # root rides along with the parent


def test_repeated_ids_across_fields_and_aliases_are_fetched_once(
    gateway: httpx.Client, upstream: tuple[str, Recorder]
) -> None:
    execution_id = demo_id("research/writer")
    query = """
    query($id: ID!) {
      a: execution(id: $id) { id parent { id } }
      b: executions(ids: [$id, $id, $id]) { id root { id } }
      c: node(id: $id) { id }
    }
    """

    body = graphql(gateway, query, {"id": execution_id})

    assert "errors" not in body
    assert sorted(upstream[1].execution_ids()) == sorted([execution_id, demo_id("research")])


def test_the_upstream_sees_exactly_the_distinct_executions_of_a_query_over_http(
    gateway: httpx.Client, upstream: tuple[str, Recorder]
) -> None:
    body = graphql(gateway, WITH_PARENT_AND_ROOT, {"ids": LEAVES})

    assert "errors" not in body
    assert len(upstream[1].execution_ids()) == len(LEAVES) + 2


def test_each_request_has_its_own_loader(
    gateway: httpx.Client, upstream: tuple[str, Recorder]
) -> None:
    query = "query($id: ID!) { execution(id: $id) { id } }"

    graphql(gateway, query, {"id": demo_id("research")})
    graphql(gateway, query, {"id": demo_id("research")})

    assert upstream[1].execution_ids() == [demo_id("research")] * 2


class Barrier:
    """Holds every execution request until ``parties`` of them are in flight at once.

    If the gateway sent a batch one request after another, the first would wait out the
    (generous) guard and be answered 503, and the test would see errors instead of data.
    """

    def __init__(self, app: ASGIApp, parties: int) -> None:
        self.app = app
        self.parties = parties
        self.arrived = 0
        self._all_here: asyncio.Event | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/v1/executions/"):
            if self._all_here is None:
                self._all_here = asyncio.Event()
            self.arrived += 1
            if self.arrived == self.parties:
                self._all_here.set()
            try:
                await asyncio.wait_for(self._all_here.wait(), timeout=20)
            except TimeoutError:
                await send({"type": "http.response.start", "status": 503, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)


@pytest.fixture
def barrier_upstream() -> Iterator[str]:
    with serve(Barrier(create_demo_app(), parties=len(LEAVES)), lifespan="off") as url:
        yield url


def test_a_batch_of_a_hundred_is_in_flight_upstream_all_at_once(
    start_gateway: StartGateway, barrier_upstream: str
) -> None:
    client = start_gateway(barrier_upstream)

    body = graphql(client, "query($ids: [ID!]!) { executions(ids: $ids) { id } }", {"ids": LEAVES})

    assert "errors" not in body
    assert [entry["id"] for entry in body["data"]["executions"]] == LEAVES


def test_a_request_may_fetch_only_so_many_executions_and_the_rest_are_refused_per_entry(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], max_fetches_per_request=30)
    query = """
    query($a: [ID!]!, $b: [ID!]!) { a: executions(ids: $a) { id } b: executions(ids: $b) { id } }
    """

    body = graphql(client, query, {"a": LEAVES[:20], "b": LEAVES[20:40]})

    served = [entry for entry in body["data"]["a"] + body["data"]["b"] if entry is not None]
    assert len(served) == 30
    assert {error["extensions"]["code"] for error in body["errors"]} == {"QUERY_TOO_COMPLEX"}
    assert len(body["errors"]) == 10
    assert len(upstream[1].execution_ids()) == 30


@pytest.mark.anyio
async def test_the_readmes_sample_query_costs_five_calls_in_four_rounds(
    loader: ExecutionLoader, upstream: tuple[str, Recorder]
) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    query = readme.split("```graphql\n", 1)[1].split("```", 1)[0]
    leaf = demo_id("research/planner/search-0/summarise/llm")

    data = await run(loader, query, {"id": leaf})

    assert len(data["execution"]["ancestors"]) == 4
    # The leaf; its parent and root together; then one per level, the root already known.
    assert loader.batch_sizes == [1, 2, 1, 1]
    assert len(upstream[1].execution_ids()) == 5


@pytest.mark.anyio
async def test_loading_one_execution_alone_is_one_round_of_one_with_its_own_failure(
    loader: ExecutionLoader, upstream: tuple[str, Recorder]
) -> None:
    """The REST route's way: the same accounting as a batch, and a failure raised as such."""
    found = await loader.load_alone(demo_id("research"))
    with pytest.raises(UpstreamAnswered) as missing:
        await loader.load_alone(MISSING_ID)

    assert found.record.id == demo_id("research")
    assert missing.value.status == 404
    assert loader.batch_sizes == [1, 1]
    assert upstream[1].execution_ids() == [demo_id("research"), MISSING_ID]
