"""Every failure comes back as a coded error beside the data that did resolve."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from gateway.demo.data import demo_id, seed
from gateway.upstream import UpstreamClient
from tests.conftest import StartGateway, error_codes, graphql
from tests.servers import Recorder, ScriptedUpstream, closed_port_url

GOOD = demo_id("research")
BAD = "11111111-2222-4333-8444-555555555555"
ONE = "query($id: ID!) { execution(id: $id) { id workflowId } }"
SECRET = "sk_live_do_not_leak"


def good_body() -> bytes:
    return json.dumps(seed().executions[GOOD]).encode()


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "BAD_USER_INPUT"),
        (401, "UNAUTHENTICATED"),
        (403, "FORBIDDEN"),
        (404, "NOT_FOUND"),
        (429, "RATE_LIMITED"),
        (500, "UPSTREAM_ERROR"),
        (502, "UPSTREAM_ERROR"),
        (503, "UPSTREAM_ERROR"),
    ],
)
def test_each_upstream_status_has_its_code_and_the_upstream_status(
    start_gateway: StartGateway, scripted: tuple[str, ScriptedUpstream], status: int, code: str
) -> None:
    url, upstream = scripted
    upstream.answer(GOOD, 200, good_body())
    upstream.answer(BAD, status, b'{"error":"internal detail","error_type":"X"}')
    client = start_gateway(url)

    body = graphql(
        client,
        "query($good: ID!, $bad: ID!) {"
        " a: execution(id: $good) { id } b: execution(id: $bad) { id } }",
        {"good": GOOD, "bad": BAD},
    )

    assert body["data"] == {"a": {"id": GOOD}, "b": None}
    assert [error["extensions"] for error in body["errors"]] == [
        {"code": code, "upstreamStatus": status}
    ]
    assert "internal detail" not in body["errors"][0]["message"]


@pytest.mark.parametrize(
    "reply",
    [
        b"not json",
        b"[1, 2]",
        b'{"id": "' + BAD.encode() + b'"}',
        b'{"id": "' + GOOD.encode() + b'", "workflow_id": "w", "status": "completed", "payload": 1,'
        b' "created_at": "2026-11-14T13:00:00+00:00", "retry_count": 0}',
        b'{"id": "' + BAD.encode() + b'", "workflow_id": "w", "status": "completed", "payload": 1,'
        b' "created_at": "yesterday", "retry_count": 0}',
        b'{"id": "' + BAD.encode() + b'", "workflow_id": "w", "status": "completed", "payload":',
    ],
    ids=["not-json", "array", "missing-fields", "another-execution", "bad-timestamp", "truncated"],
)
def test_a_lying_upstream_is_an_upstream_error_for_that_execution_only(
    start_gateway: StartGateway, scripted: tuple[str, ScriptedUpstream], reply: bytes
) -> None:
    url, upstream = scripted
    upstream.answer(GOOD, 200, good_body())
    upstream.answer(BAD, 200, reply)
    client = start_gateway(url)

    body = graphql(
        client, "query($ids: [ID!]!) { executions(ids: $ids) { id } }", {"ids": [GOOD, BAD]}
    )

    assert body["data"] == {"executions": [{"id": GOOD}, None]}
    assert body["errors"][0]["extensions"] == {"code": "UPSTREAM_ERROR", "upstreamStatus": 200}


def test_a_hanging_upstream_is_a_timeout_and_the_rest_of_the_query_resolves(
    start_gateway: StartGateway, scripted: tuple[str, ScriptedUpstream]
) -> None:
    url, upstream = scripted
    upstream.answer(GOOD, 200, good_body())
    upstream.hang(BAD)
    client = start_gateway(url, upstream_timeout=0.5, read_timeout=0.5, connect_timeout=0.5)

    body = graphql(
        client, "query($ids: [ID!]!) { executions(ids: $ids) { id } }", {"ids": [GOOD, BAD]}
    )

    assert body["data"] == {"executions": [{"id": GOOD}, None]}
    assert error_codes(body) == [("executions.1", "UPSTREAM_TIMEOUT")]


def test_an_unreachable_upstream_is_unavailable_without_leaking_its_address(
    start_gateway: StartGateway,
) -> None:
    url = closed_port_url()
    client = start_gateway(url)

    body = graphql(client, ONE, {"id": GOOD})

    assert body["data"] == {"execution": None}
    assert error_codes(body) == [("execution", "UPSTREAM_UNAVAILABLE")]
    assert url.removeprefix("http://") not in str(body)


@pytest.mark.parametrize("bad_id", ["", "nope", "../../admin", "1" * 5000, "😀", "a\u0000b"])
def test_an_id_that_is_not_a_uuid_is_refused_before_any_upstream_call(
    gateway: httpx.Client, upstream: tuple[str, Recorder], bad_id: str
) -> None:
    body = graphql(gateway, ONE, {"id": bad_id})

    assert body["data"] == {"execution": None}
    assert error_codes(body) == [("execution", "BAD_USER_INPUT")]
    assert len(body["errors"][0]["message"]) < 200
    assert upstream[1].execution_ids() == []


def test_too_many_ids_are_refused_with_the_cap_in_the_message(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], max_ids_per_query=3)

    body = graphql(
        client, "query($ids: [ID!]!) { executions(ids: $ids) { id } }", {"ids": [GOOD] * 4}
    )

    assert body["data"] == {"executions": None}
    assert error_codes(body) == [("executions", "BAD_USER_INPUT")]
    assert "at most 3 ids" in body["errors"][0]["message"]
    assert upstream[1].execution_ids() == []


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("{ execution(id: 1) { nope } }", {}),
        ("{ execution(id: ", {}),
        ("query($id: ID!) { execution(id: $id) { id } }", {}),
        ("query($id: ID!) { execution(id: $id) { id } }", {"id": {"a": 1}}),
        ("{ execution { id } }", {}),
    ],
    ids=["unknown-field", "syntax", "missing-variable", "wrong-variable-type", "missing-arg"],
)
def test_a_malformed_document_is_bad_user_input(
    gateway: httpx.Client, query: str, variables: dict[str, Any]
) -> None:
    response = gateway.post("/graphql", json={"query": query, "variables": variables})

    body = response.json()
    assert body["errors"]
    assert {error["extensions"]["code"] for error in body["errors"]} == {"BAD_USER_INPUT"}


def test_an_unexpected_failure_is_masked_as_internal_with_the_request_id_and_logged(
    start_gateway: StartGateway,
    upstream: tuple[str, Recorder],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*_: object) -> None:
        raise RuntimeError(f"bug near http://10.0.0.9:8080 with Bearer {SECRET}")

    monkeypatch.setattr(UpstreamClient, "fetch_execution", broken)
    client = start_gateway(upstream[0])

    with caplog.at_level(logging.ERROR, logger="gateway.schema"):
        response = client.post(
            "/graphql",
            json={"query": ONE, "variables": {"id": GOOD}},
            headers={"X-Request-ID": "req-42"},
        )

    body = response.json()
    assert body["data"] == {"execution": None}
    assert body["errors"][0]["extensions"] == {"code": "INTERNAL"}
    assert "req-42" in body["errors"][0]["message"]
    for leak in ("10.0.0.9", SECRET, "RuntimeError", "Traceback"):
        assert leak not in response.text
    assert any(record.exc_info and "req-42" in record.getMessage() for record in caplog.records)


def test_queries_also_run_over_get(gateway: httpx.Client) -> None:
    response = gateway.get("/graphql", params={"query": f'{{ execution(id: "{GOOD}") {{ id }} }}'})

    assert response.json() == {"data": {"execution": {"id": GOOD}}}


def test_graphiql_is_served_to_a_browser(gateway: httpx.Client) -> None:
    response = gateway.get("/graphql", headers={"Accept": "text/html"})

    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


def test_over_the_ids_cap_a_sibling_field_in_the_same_query_keeps_its_data(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], max_ids_per_query=3)

    body = graphql(
        client,
        "query($good: ID!, $ids: [ID!]!) {"
        " a: execution(id: $good) { id } executions(ids: $ids) { id } }",
        {"good": GOOD, "ids": [GOOD, BAD, GOOD, BAD]},
    )

    assert body["data"] == {"a": {"id": GOOD}, "executions": None}
    assert error_codes(body) == [("executions", "BAD_USER_INPUT")]
    assert upstream[1].execution_ids() == [GOOD]


def test_an_upstream_400_is_explained_as_a_request_to_check_the_project_header(
    start_gateway: StartGateway, scripted: tuple[str, ScriptedUpstream]
) -> None:
    url, upstream = scripted
    upstream.answer(BAD, 400, b'{"error":"Missing project ID header","error_type":"BAD_REQUEST"}')

    body = graphql(start_gateway(url), ONE, {"id": BAD})

    assert body["data"] == {"execution": None}
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "upstreamStatus": 400}
    assert "X-Project-ID" in body["errors"][0]["message"]
    assert BAD in body["errors"][0]["message"]


def test_a_null_ancestors_limit_is_accepted_and_means_fifty(gateway: httpx.Client) -> None:
    deep = demo_id("chain/59")
    query = "query($id: ID!) { execution(id: $id) { ancestors(limit: null) { id } } }"

    body = graphql(gateway, query, {"id": deep})

    assert "errors" not in body
    ancestors = body["data"]["execution"]["ancestors"]
    assert [entry["id"] for entry in ancestors] == [
        demo_id(f"chain/{level}") for level in range(58, 8, -1)
    ]
