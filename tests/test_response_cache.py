"""Whole answers kept for queries that read only final executions, for the same caller only.

Counted at the upstream and in ``/metrics`` (``cache_hits{backend="response"}``), never timed.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from gateway.demo.data import demo_id
from tests.conftest import StartGateway, graphql
from tests.records import EXECUTION_ID, execution_body
from tests.servers import Recorder
from tests.stepped_upstream import Step, SteppedUpstream
from tests.test_metrics import moved, scrape

COMPLETED_LEAF = demo_id("research/planner/search-0/summarise/llm")
RUNNING = demo_id("support/resolve/refund/approval/notify")
TREE = """query Tree($id: ID!) {
  execution(id: $id) { id status parent { id status } root { id } ancestors { id } }
}"""
HITS = "polos_gateway_cache_hits_total"


def answered_twice(
    client: httpx.Client, query: str, variables: dict[str, Any], **headers: str
) -> tuple[dict[str, Any], dict[str, Any], float]:
    """The first and the second answer, and how many whole answers the second one reused."""
    first = graphql(client, query, variables, **headers)
    before = scrape(client)
    second = graphql(client, query, variables, **headers)
    return first, second, moved(before, scrape(client), HITS, backend="response")


def test_a_query_over_final_executions_is_answered_again_whole_without_running(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    url, recorder = upstream
    client = start_gateway(url)

    first, second, reused = answered_twice(client, TREE, {"id": COMPLETED_LEAF})

    assert "errors" not in first
    assert second == first
    assert reused == 1
    assert len(recorder.execution_ids()) == 5  # the leaf and its four ancestors, once


def test_a_query_that_read_a_running_execution_is_run_again(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0])

    first, _, reused = answered_twice(client, TREE, {"id": RUNNING})

    assert first["data"]["execution"]["status"] == "QUEUED"
    assert reused == 0


def test_an_answer_with_errors_is_never_kept(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0])
    unknown = "00000000-0000-4000-8000-000000000000"

    first, _, reused = answered_twice(client, TREE, {"id": unknown})

    assert first["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert reused == 0


def test_another_caller_never_gets_an_answer_kept_for_someone_else(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    url, recorder = upstream
    client = start_gateway(url)
    graphql(client, TREE, {"id": COMPLETED_LEAF}, Authorization="Bearer sk_alice")
    recorder.clear()
    before = scrape(client)

    graphql(client, TREE, {"id": COMPLETED_LEAF}, Authorization="Bearer sk_bob")

    assert moved(before, scrape(client), HITS, backend="response") == 0
    assert {r.headers["authorization"] for r in recorder.requests} == {"Bearer sk_bob"}


def test_other_variables_or_another_operation_are_other_answers(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0])
    graphql(client, TREE, {"id": COMPLETED_LEAF})
    before = scrape(client)

    other_id = graphql(client, TREE, {"id": demo_id("research")})
    other_document = graphql(
        client, "query Tree($id: ID!) { execution(id: $id) { id } }", {"id": COMPLETED_LEAF}
    )

    assert other_id["data"]["execution"]["id"] == demo_id("research")
    assert other_document["data"] == {"execution": {"id": COMPLETED_LEAF}}
    assert moved(before, scrape(client), HITS, backend="response") == 0


def test_a_mutation_is_never_answered_from_a_kept_answer(
    stepped: tuple[str, SteppedUpstream], start_gateway: StartGateway
) -> None:
    url, upstream = stepped
    # The read after the cancel finds the execution already cancelled, a final status.
    upstream.script(EXECUTION_ID, Step(execution_body(EXECUTION_ID, status="cancelled")))
    upstream.on_cancel(EXECUTION_ID, Step(b"{}"))
    client = start_gateway(url)
    cancel = "mutation($id: ID!) { cancelExecution(id: $id) { status } }"

    for _ in range(2):
        body = graphql(client, cancel, {"id": EXECUTION_ID})
        assert body["data"]["cancelExecution"]["status"] == "CANCELLED"

    assert len(upstream.cancels()) == 2


def test_with_the_cache_off_nothing_is_kept(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], cache_enabled=False)

    _, _, reused = answered_twice(client, TREE, {"id": COMPLETED_LEAF})

    assert reused == 0


def test_an_answer_that_read_no_execution_is_not_kept_whatever_credentials_came_with_it(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0])

    _, _, reused = answered_twice(client, "{ __typename }", {}, Authorization="Bearer sk_any")

    # Nothing asked the upstream, so nothing proved those credentials: such answers would only
    # let anybody fill the cache.
    assert reused == 0


def test_a_kept_answer_counts_under_the_name_its_operation_ran_with(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0])
    operations = "polos_gateway_graphql_operations_total"
    before = scrape(client)

    for _ in range(3):  # no operationName sent: the document's only operation names itself
        graphql(client, TREE, {"id": COMPLETED_LEAF})

    assert moved(before, scrape(client), operations, operation="Tree", outcome="ok") == 3


def test_each_operation_of_a_document_is_an_answer_of_its_own(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0])
    document = (
        "query Ids($id: ID!) { execution(id: $id) { id } } "
        "query Workflows($id: ID!) { execution(id: $id) { workflowId } }"
    )

    def ask(operation: str) -> dict[str, Any]:
        body = {"query": document, "variables": {"id": COMPLETED_LEAF}, "operationName": operation}
        answer: dict[str, Any] = client.post("/graphql", json=body).json()
        return answer

    ids, workflows = ask("Ids"), ask("Workflows")
    before = scrape(client)
    ids_again, workflows_again = ask("Ids"), ask("Workflows")

    assert ids["data"] == ids_again["data"] == {"execution": {"id": COMPLETED_LEAF}}
    assert workflows["data"] == workflows_again["data"] == {"execution": {"workflowId": "llm_call"}}
    assert moved(before, scrape(client), HITS, backend="response") == 2


MISSES = "polos_gateway_cache_misses_total"


def test_a_kept_answer_is_the_first_answer_byte_for_byte_headers_included(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0])
    body = {"query": TREE, "variables": {"id": COMPLETED_LEAF}}
    first = client.post("/graphql", json=body)
    before = scrape(client)

    second = client.post("/graphql", json=body)

    assert moved(before, scrape(client), HITS, backend="response") == 1
    assert second.content == first.content
    unique = {"x-request-id", "date"}
    assert {k: v for k, v in second.headers.items() if k not in unique} == {
        k: v for k, v in first.headers.items() if k not in unique
    }


def test_a_request_that_finds_no_kept_answer_looks_once(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0])
    before = scrape(client)

    graphql(client, TREE, {"id": COMPLETED_LEAF})

    assert moved(before, scrape(client), MISSES, backend="response") == 1


def test_what_the_view_refuses_is_refused_even_with_an_answer_kept(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    """A kept answer is given only to a request the view would have run: each of these
    differs from the kept one only in how it asks, and is answered as without a cache."""
    client = start_gateway(upstream[0])
    body = {"query": TREE, "variables": {"id": COMPLETED_LEAF}}
    kept = graphql(client, TREE, {"id": COMPLETED_LEAF})
    encoded = json.dumps(body)
    before = scrape(client)

    as_text = client.post("/graphql", content=encoded, headers={"content-type": "text/plain"})
    as_batch = client.post("/graphql", json=[body])
    not_json = [
        client.post("/graphql", content=broken, headers={"content-type": "application/json"})
        for broken in (b"{", b"")
    ]
    unknown_hash = {**body, "extensions": {"persistedQuery": {"version": 1, "sha256Hash": "0"}}}
    with_wrong_hash = client.post("/graphql", json=unknown_hash)

    assert as_text.status_code == 415
    assert as_batch.status_code == 400
    for answer in not_json:
        assert answer.status_code == 400
        assert answer.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert with_wrong_hash.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert moved(before, scrape(client), HITS, backend="response") == 0
    # The same request asked plainly, as a POST or a GET, still gets the kept answer.
    again = graphql(client, TREE, {"id": COMPLETED_LEAF})
    params = {"query": TREE, "variables": json.dumps(body["variables"])}
    over_get = client.get("/graphql", params=params)
    assert again == over_get.json() == kept
    assert moved(before, scrape(client), HITS, backend="response") == 2


def test_an_answer_with_integers_beyond_64_bits_is_kept_and_given_again_exactly(
    stepped: tuple[str, SteppedUpstream], start_gateway: StartGateway
) -> None:
    url, upstream = stepped
    huge = 2**64 + 1
    body = execution_body(EXECUTION_ID, status="completed", payload={"n": huge})
    upstream.script(EXECUTION_ID, Step(body))
    client = start_gateway(url)
    query = "query Payload($id: ID!) { execution(id: $id) { payload } }"
    variables = {"id": EXECUTION_ID}
    first = client.post("/graphql", json={"query": query, "variables": variables})
    before = scrape(client)

    again = client.post("/graphql", json={"query": query, "variables": variables})
    params = {"query": query, "variables": json.dumps(variables)}
    over_get = client.get("/graphql", params=params)

    assert moved(before, scrape(client), HITS, backend="response") == 2
    assert json.loads(first.content)["data"]["execution"]["payload"] == {"n": huge}
    assert again.content == first.content
    assert json.loads(over_get.content) == json.loads(first.content)
