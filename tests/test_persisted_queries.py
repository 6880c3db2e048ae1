"""Automatic persisted queries, replaying the HTTP messages Apollo Client's persisted query link
sends (``createPersistedQueryLink({sha256, useGETForHashedQueries: true})``), over real HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from gateway.demo.data import demo_id
from gateway.graphiql import SAMPLE_QUERY
from gateway.persisted_queries import PersistedQueries
from gateway.redis_cache import connect_redis
from gateway.resilience import BreakerState
from tests.conftest import StartGateway
from tests.processes import free_port, running
from tests.redis_server import redis_server
from tests.servers import Recorder, closed_port_url

LEAF = demo_id("research/planner/search-0/summarise/llm")
ROOT = demo_id("research")
SECRET = "shared-by-every-replica"
ONE = "query One($id: ID!) {\n  execution(id: $id) {\n    id\n    workflowId\n  }\n}"
NOT_FOUND = {
    "errors": [{"message": "PersistedQueryNotFound", "extensions": {"code": "BAD_USER_INPUT"}}]
}
# What Apollo Client sends with every request, GET included.
APOLLO_HEADERS = {"accept": "*/*", "content-type": "application/json"}


def sha256(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


def extensions(document: str, version: object = 1) -> dict[str, Any]:
    return {"persistedQuery": {"version": version, "sha256Hash": sha256(document)}}


def js_json(value: object) -> str:
    """``JSON.stringify(value)``."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def encode_uri_component(text: str) -> str:
    return quote(text, safe="-_.!~*'()")


def apollo_get_url(operation: str, variables: dict[str, Any], document: str) -> str:
    """The URL Apollo Client's HTTP link builds for a hashed query (its rewriteURIForGET)."""
    params = [
        ("operationName", operation),
        ("variables", js_json(variables)),
        ("extensions", js_json(extensions(document))),
    ]
    return "/graphql?" + "&".join(f"{key}={encode_uri_component(value)}" for key, value in params)


def hashed_post(
    client: httpx.Client,
    operation: str,
    variables: dict[str, Any],
    document: str,
    *,
    with_query: bool,
) -> httpx.Response:
    """The POST body Apollo Client sends: hash only, or (after a miss) the document as well."""
    body: dict[str, Any] = {
        "operationName": operation,
        "variables": variables,
        "extensions": extensions(document),
    }
    if with_query:
        body["query"] = document
    return client.post("/graphql", content=js_json(body).encode(), headers=APOLLO_HEADERS)


def register(client: httpx.Client, document: str, variables: dict[str, Any]) -> httpx.Response:
    return hashed_post(client, "One", variables, document, with_query=True)


def apq_counts(client: httpx.Client) -> dict[str, float]:
    """The gateway's persisted query counter by outcome (process-wide: compare differences)."""
    counts = {"hit": 0.0, "miss": 0.0, "registered": 0.0}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "polos_gateway_persisted_queries_total":
                counts[sample.labels["outcome"]] = sample.value
    return counts


def moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {outcome: after[outcome] - before[outcome] for outcome in before}


def execution_data(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    return body


def test_apollo_clients_exchange_misses_once_registers_once_and_then_hits_over_get_and_post(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0])
    variables = {"id": LEAF}
    url = apollo_get_url("Tree", variables, SAMPLE_QUERY)
    before = apq_counts(client)

    miss = client.get(url, headers=APOLLO_HEADERS)
    calls_after_miss = upstream[1].execution_ids()
    registered = hashed_post(client, "Tree", variables, SAMPLE_QUERY, with_query=True)
    hit_get = client.get(url, headers=APOLLO_HEADERS)
    hit_post = hashed_post(client, "Tree", variables, SAMPLE_QUERY, with_query=False)

    assert (miss.status_code, miss.json()) == (200, NOT_FOUND)
    assert miss.headers["content-type"] == "application/json"
    assert "no-cache" in miss.headers["cache-control"]  # a CDN must not keep the miss
    assert "x-request-id" in miss.headers
    assert calls_after_miss == []
    answer = execution_data(registered)
    assert answer["data"]["execution"]["id"] == LEAF
    assert [a["workflowId"] for a in answer["data"]["execution"]["ancestors"]] == [
        "summarise_page",
        "web_search",
        "planner_agent",
        "research_report",
    ]
    assert execution_data(hit_get) == answer
    assert execution_data(hit_post) == answer
    assert moved(before, apq_counts(client)) == {"hit": 2, "miss": 1, "registered": 1}


def test_a_document_sent_again_with_its_hash_is_run_again_but_stored_once(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0])
    before = apq_counts(client)

    first = register(client, ONE, {"id": ROOT})
    second = register(client, ONE, {"id": LEAF})

    assert execution_data(first)["data"]["execution"]["id"] == ROOT
    assert execution_data(second)["data"]["execution"]["id"] == LEAF
    assert moved(before, apq_counts(client)) == {"hit": 0, "miss": 0, "registered": 1}


def test_a_hash_that_does_not_match_the_document_is_refused_unrun_and_nothing_is_stored(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0])
    other = "query One($id: ID!) { execution(id: $id) { id } }"
    body = {"query": ONE, "variables": {"id": ROOT}, "extensions": extensions(other)}

    refused = client.post("/graphql", json=body)
    by_claimed_hash = client.post("/graphql", json={"extensions": extensions(other)})
    by_true_hash = client.post("/graphql", json={"extensions": extensions(ONE)})

    assert refused.status_code == 400
    error = refused.json()["errors"][0]
    assert error["extensions"] == {"code": "BAD_USER_INPUT"}
    assert "does not match `extensions.persistedQuery.sha256Hash`" in error["message"]
    assert "data" not in refused.json()
    assert upstream[1].execution_ids() == []
    assert by_claimed_hash.json() == NOT_FOUND
    assert by_true_hash.json() == NOT_FOUND


def test_a_persisted_query_version_other_than_1_is_refused_with_a_coded_error(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0])

    for version in (2, "1", True, None):
        response = client.post(
            "/graphql",
            json={"query": ONE, "variables": {"id": ROOT}, "extensions": extensions(ONE, version)},
        )

        assert response.status_code == 400, version
        error = response.json()["errors"][0]
        assert error["extensions"] == {"code": "BAD_USER_INPUT"}
        assert "Unsupported persisted query version" in error["message"]
    assert upstream[1].execution_ids() == []


def test_a_malformed_persisted_query_extension_is_refused_with_a_coded_error(
    start_gateway: StartGateway,
    upstream: tuple[str, Recorder],
) -> None:
    client = start_gateway(upstream[0])

    for persisted in (
        "abc",
        {"version": 1},
        {"version": 1, "sha256Hash": "not-a-hash"},
        {"version": 1, "sha256Hash": sha256(ONE)[:-1]},
    ):
        response = client.post("/graphql", json={"extensions": {"persistedQuery": persisted}})

        assert response.status_code == 400, persisted
        assert response.json()["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT"}


def test_with_persisted_queries_switched_off_apollo_is_told_they_are_not_supported(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], persisted_queries_enabled=False)

    hashed = client.get(apollo_get_url("One", {"id": ROOT}, ONE), headers=APOLLO_HEADERS)
    plain = client.post("/graphql", json={"query": ONE, "variables": {"id": ROOT}})

    assert hashed.status_code == 200
    assert hashed.json() == {
        "errors": [
            {
                "message": "PersistedQueryNotSupported",
                "extensions": {"code": "BAD_USER_INPUT"},
            }
        ]
    }
    assert execution_data(plain)["data"]["execution"]["id"] == ROOT


def test_the_least_recently_used_document_is_evicted_beyond_the_entry_bound(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], persisted_queries_max_entries=2)
    first, second, third = (
        f"query One($id: ID!) {{ execution(id: $id) {{ id{' workflowId' * n} }} }}"
        for n in range(3)
    )
    variables = {"id": ROOT}

    for document in (first, second):
        execution_data(register(client, document, variables))
    execution_data(hashed_post(client, "One", variables, first, with_query=False))  # now recent
    execution_data(register(client, third, variables))

    def known(document: str) -> bool:
        body: dict[str, Any] = hashed_post(
            client, "One", variables, document, with_query=False
        ).json()
        return body != NOT_FOUND

    assert [known(first), known(second), known(third)] == [True, False, True]


def test_documents_beyond_the_byte_bounds_are_run_but_never_stored(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(
        upstream[0], persisted_queries_max_bytes=len(ONE), max_document_bytes=1000
    )
    padded = ONE + " " * 10
    too_long = ONE + " " * 1000
    before = apq_counts(client)

    fits = register(client, ONE, {"id": ROOT})
    over_store = register(client, padded, {"id": ROOT})
    over_limit = register(client, too_long, {"id": ROOT})
    later = [
        hashed_post(client, "One", {"id": ROOT}, document, with_query=False).json()
        for document in (ONE, padded, too_long)
    ]

    assert execution_data(fits)["data"]["execution"]["id"] == ROOT
    assert execution_data(over_store)["data"]["execution"]["id"] == ROOT
    assert over_limit.json()["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert later[0]["data"]["execution"]["id"] == ROOT
    assert later[1:] == [NOT_FOUND, NOT_FOUND]
    assert moved(before, apq_counts(client)) == {"hit": 1, "miss": 2, "registered": 1}


def test_a_persisted_mutation_over_get_is_refused_with_405_and_not_run(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0])
    mutation = "mutation Stop { __typename }"
    client.post("/graphql", json={"query": mutation, "extensions": extensions(mutation)})
    url = "/graphql?extensions=" + encode_uri_component(js_json(extensions(mutation)))

    response = client.get(url, headers=APOLLO_HEADERS)

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT"}
    assert "mutations are not allowed when using GET" in response.json()["errors"][0]["message"]
    assert upstream[1].execution_ids() == []


def test_a_hash_only_get_from_a_browser_is_answered_with_json_not_graphiql(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0])
    execution_data(register(client, ONE, {"id": ROOT}))

    response = client.get(
        apollo_get_url("One", {"id": ROOT}, ONE), headers={"accept": "text/html,*/*"}
    )

    assert execution_data(response)["data"]["execution"]["id"] == ROOT


def test_a_document_registered_on_one_replica_runs_by_hash_on_another_through_redis(
    upstream: tuple[str, Recorder],
) -> None:
    env = {
        "POLOS_GATEWAY_UPSTREAM_URL": upstream[0],
        "POLOS_GATEWAY_CACHE_KEY_SECRET": SECRET,
    }
    ports = free_port(), free_port()
    variables = {"id": LEAF}
    with redis_server() as (redis_url, _):
        env["POLOS_GATEWAY_REDIS_URL"] = redis_url
        with (
            running("serve", "--port", str(ports[0]), port=ports[0], env=env),
            running("serve", "--port", str(ports[1]), port=ports[1], env=env),
            httpx.Client(base_url=f"http://127.0.0.1:{ports[0]}") as one,
            httpx.Client(base_url=f"http://127.0.0.1:{ports[1]}") as other,
        ):
            registered = hashed_post(one, "Tree", variables, SAMPLE_QUERY, with_query=True)
            by_hash = other.get(
                apollo_get_url("Tree", variables, SAMPLE_QUERY), headers=APOLLO_HEADERS
            )
            again = other.get(
                apollo_get_url("Tree", variables, SAMPLE_QUERY), headers=APOLLO_HEADERS
            )
            counts = apq_counts(other)  # the other process's own counts
        stored = redis.Redis.from_url(redis_url).keys("polos-gateway-apq:*")

    assert execution_data(by_hash) == execution_data(registered)
    assert execution_data(again) == execution_data(registered)
    assert counts == {"hit": 2, "miss": 0, "registered": 0}
    assert stored == [f"polos-gateway-apq:{sha256(SAMPLE_QUERY)}".encode()]


def test_with_redis_unreachable_persisted_queries_still_work_from_memory(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    unreachable = closed_port_url().replace("http://", "redis://") + "/0"
    client = start_gateway(upstream[0], redis_url=unreachable, cache_key_secret=SECRET)

    miss = hashed_post(client, "One", {"id": ROOT}, ONE, with_query=False)
    registered = register(client, ONE, {"id": ROOT})
    hits = [hashed_post(client, "One", {"id": ROOT}, ONE, with_query=False) for _ in range(5)]

    assert miss.json() == NOT_FOUND
    assert execution_data(registered)["data"]["execution"]["id"] == ROOT
    assert [execution_data(hit) for hit in hits] == [execution_data(registered)] * 5


def test_killing_redis_mid_run_fails_no_persisted_query(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    with redis_server() as (redis_url, redis_process):
        client = start_gateway(upstream[0], redis_url=redis_url, cache_key_secret=SECRET)
        execution_data(register(client, ONE, {"id": ROOT}))
        redis_process.kill()
        redis_process.wait(timeout=10)
        second = "query Two($id: ID!) { execution(id: $id) { id status } }"
        registered = hashed_post(client, "Two", {"id": LEAF}, second, with_query=True)
        hits = [
            hashed_post(client, name, {"id": LEAF}, document, with_query=False)
            for name, document in (("One", ONE), ("Two", second))
        ]

    assert execution_data(registered)["data"]["execution"]["id"] == LEAF
    assert [execution_data(hit)["data"]["execution"]["id"] for hit in hits] == [LEAF, LEAF]


def test_redis_keeps_no_more_documents_than_the_bound_whoever_registers_them(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    with redis_server() as (redis_url, _):
        client = start_gateway(
            upstream[0],
            redis_url=redis_url,
            cache_key_secret=SECRET,
            persisted_queries_max_entries=3,
        )
        documents = [f"query One {{ n{n}: __typename }}" for n in range(8)]
        for document in documents:
            assert register(client, document, {}).status_code == 200
        stored = set(redis.Redis.from_url(redis_url).keys("polos-gateway-apq:*"))

    # The three registered last are kept; nothing else is.
    assert stored == {f"polos-gateway-apq:{sha256(d)}".encode() for d in documents[-3:]}


@pytest.mark.anyio
async def test_registrations_arriving_together_trim_redis_to_the_bound_once() -> None:
    with redis_server() as (redis_url, _):
        store = PersistedQueries(max_entries=3, redis=connect_redis(redis_url, 5.0))
        documents = [f"query One {{ n{n}: __typename }}" for n in range(12)]
        try:
            stored = await asyncio.gather(*(store.put(sha256(d), d) for d in documents))
            kept = set(redis.Redis.from_url(redis_url).keys("polos-gateway-apq:*"))
        finally:
            await store.aclose()

    assert stored == [True] * 12
    # Each registration trimmed what was beyond the bound, and nothing more.
    assert len(kept) == 3
    assert store.breaker.state is BreakerState.CLOSED
