"""Query limits: what one request may ask for is capped, and refused before any upstream call.

Each limit is tested at its value (the query runs) and one past it (refused with
``QUERY_TOO_COMPLEX``, a message naming the limit and its value, and no upstream request).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from graphql import Lexer, Source, TokenKind

from gateway.demo.data import demo_id
from tests.conftest import StartGateway, error_codes, graphql
from tests.servers import Recorder

LEAF = demo_id("research/planner/search-0/summarise/llm")
LEAVES = [demo_id(f"eval/runner/case-{index}") for index in range(100)]


def refused(body: dict[str, Any], code: str = "QUERY_TOO_COMPLEX") -> str:
    """The message of the one error of a request refused before execution."""
    assert body["data"] is None, body
    assert [error["extensions"]["code"] for error in body["errors"]] == [code], body
    message: str = body["errors"][0]["message"]
    return message


def nested_parents(levels: int) -> str:
    """``execution`` with ``parent`` nested ``levels`` deep: a query ``levels + 1`` deep."""
    selection = "parent { " * levels + "id" + " }" * levels
    return f"query($id: ID!) {{ execution(id: $id) {{ {selection} }} }}"


def tokens(document: str) -> int:
    lexer = Lexer(Source(document))
    count = 0
    while lexer.advance().kind != TokenKind.EOF:
        count += 1
    return count


# Depth ---------------------------------------------------------------------------------------


def test_a_query_nested_deeper_than_the_limit_is_refused_and_told_to_use_ancestors(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], max_query_depth=3)

    body = graphql(client, nested_parents(3), {"id": LEAF})

    message = refused(body)
    assert "the limit is 3" in message
    assert "ancestors" in message
    assert body["errors"][0]["extensions"] == {
        "code": "QUERY_TOO_COMPLEX",
        "depth": 4,
        "limit": 3,
    }
    assert upstream[1].execution_ids() == []


def test_a_query_exactly_as_deep_as_the_limit_runs(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], max_query_depth=3)

    body = graphql(client, nested_parents(2), {"id": LEAF})

    assert "errors" not in body
    assert body["data"]["execution"]["parent"]["parent"]["id"]


@pytest.mark.parametrize(
    "query",
    [
        "query($id: ID!) { execution(id: $id) { ...Up } }"
        " fragment Up on Execution { parent { parent { parent { id } } } }",
        "query($id: ID!) { execution(id: $id) { ... on Execution { parent { ... on Execution {"
        " parent { parent { id } } } } } } }",
        "query($id: ID!) { node(id: $id) { ...A } } fragment A on Execution { parent { ...B } }"
        " fragment B on Execution { parent { ...C } } fragment C on Execution { parent { id } }",
    ],
    ids=["fragment", "inline-fragments", "fragment-chain"],
)
def test_depth_hidden_in_fragments_is_counted(
    start_gateway: StartGateway, upstream: tuple[str, Recorder], query: str
) -> None:
    client = start_gateway(upstream[0], max_query_depth=3)

    body = graphql(client, query, {"id": LEAF})

    assert "the limit is 3" in refused(body)
    assert upstream[1].execution_ids() == []


def test_introspection_does_not_count_towards_the_depth(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], max_query_depth=2)

    body = graphql(client, "{ __schema { types { fields { type { ofType { name } } } } } }")

    assert "errors" not in body
    assert body["data"]["__schema"]["types"]


# Aliases -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "query($id: ID!) { a: execution(id: $id) { id } b: execution(id: $id) { id }"
        " c: execution(id: $id) { id } }",
        "query($id: ID!) { ...Three } fragment Three on Query { a: execution(id: $id) { id }"
        " b: execution(id: $id) { id } c: execution(id: $id) { id } }",
        "query($id: ID!) { ... on Query { a: execution(id: $id) { id }"
        " b: execution(id: $id) { id } c: execution(id: $id) { id } } }",
        "query($id: ID!) { execution(id: $id) { ...Names } }"
        " fragment Names on Execution { a: id b: id ... on Execution { c: id } }",
        "query($id: ID!) { execution(id: $id) { ...Two ...Two } }"
        " fragment Two on Execution { a: id b: workflowId }",
    ],
    ids=["fields", "fragment", "inline-fragment", "nested-in-fragment", "fragment-twice"],
)
def test_aliases_over_the_limit_are_refused_wherever_they_hide(
    start_gateway: StartGateway, upstream: tuple[str, Recorder], query: str
) -> None:
    client = start_gateway(upstream[0], max_aliases=2)

    body = graphql(client, query, {"id": LEAF})

    message = refused(body)
    assert "the limit is 2" in message
    assert "aliased" in message
    assert upstream[1].execution_ids() == []


def test_aliases_up_to_the_limit_run(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], max_aliases=2)

    body = graphql(
        client,
        "query($id: ID!) { ...Two } fragment Two on Query {"
        " a: execution(id: $id) { id } b: execution(id: $id) { id } }",
        {"id": LEAF},
    )

    assert body == {"data": {"a": {"id": LEAF}, "b": {"id": LEAF}}}


# A document built to make a naive checker expand fragments 2**60 times.
FRAGMENT_BOMB_LEVELS = 60


def fragment_bomb(leaf: str) -> str:
    levels = "".join(
        f" fragment F{level} on Execution {{ ...F{level + 1} ...F{level + 1} }}"
        for level in range(FRAGMENT_BOMB_LEVELS)
    )
    return (
        f"query($id: ID!) {{ execution(id: $id) {{ ...F0 }} }}{levels}"
        f" fragment F{FRAGMENT_BOMB_LEVELS} on Execution {{ {leaf} }}"
    )


@pytest.mark.parametrize(
    ("leaf", "counted"),
    [
        ("a: id", f"{2**FRAGMENT_BOMB_LEVELS} aliased fields"),
        ("parent { id }", f"{2**FRAGMENT_BOMB_LEVELS + 1} upstream fetches"),
    ],
    ids=["aliases", "cost"],
)
def test_fragments_that_spread_each_other_twice_are_measured_once_each_and_refused(
    start_gateway: StartGateway, upstream: tuple[str, Recorder], leaf: str, counted: str
) -> None:
    # Strawberry's own limiters expand every spread: this document would keep them busy for
    # longer than the client waits, and the request would time out instead of being refused.
    client = start_gateway(upstream[0])

    body = graphql(client, fragment_bomb(leaf), {"id": LEAF})

    assert counted in refused(body)
    assert upstream[1].execution_ids() == []


def test_a_spread_of_an_unknown_fragment_is_bad_user_input_not_an_internal_error(
    gateway: httpx.Client, upstream: tuple[str, Recorder]
) -> None:
    body = graphql(gateway, "query($id: ID!) { execution(id: $id) { ...Nope } }", {"id": LEAF})

    assert "Nope" in refused(body, "BAD_USER_INPUT")
    assert upstream[1].execution_ids() == []


# Tokens --------------------------------------------------------------------------------------

TOKENS_QUERY = "query($id: ID!) { execution(id: $id) { id workflowId parent { id } } }"


def test_a_document_with_more_tokens_than_the_limit_is_refused(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    limit = tokens(TOKENS_QUERY) - 1
    client = start_gateway(upstream[0], max_tokens=limit)

    body = graphql(client, TOKENS_QUERY, {"id": LEAF})

    message = refused(body)
    assert f"the limit is {limit}" in message
    assert "tokens" in message
    assert upstream[1].execution_ids() == []


def test_a_document_with_as_many_tokens_as_the_limit_runs(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], max_tokens=tokens(TOKENS_QUERY))

    body = graphql(client, TOKENS_QUERY, {"id": LEAF})

    assert "errors" not in body
    assert body["data"]["execution"]["id"] == LEAF


def test_a_syntax_error_is_still_bad_user_input_under_a_token_limit(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], max_tokens=100)

    body = graphql(client, "{ execution(id: ")

    refused(body, "BAD_USER_INPUT")


# Cost: the upstream fetches a query may cause ------------------------------------------------

EXECUTIONS = "query($ids: [ID!]!) { executions(ids: $ids) { id } }"
WITH_PARENT_AND_ROOT = (
    "query($ids: [ID!]!) { executions(ids: $ids) { id parent { id } root { id } } }"
)


def test_executions_of_more_ids_than_the_cost_limit_are_refused_with_the_cost_and_limit(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], max_query_cost=5)

    body = graphql(client, EXECUTIONS, {"ids": LEAVES[:6]})

    message = refused(body)
    assert message.startswith("This query may cause 6 upstream fetches; the limit is 5.")
    assert body["errors"][0]["extensions"] == {"code": "QUERY_TOO_COMPLEX", "cost": 6, "limit": 5}
    assert upstream[1].execution_ids() == []


def test_ids_written_into_the_document_cost_as_much_as_ids_in_variables(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], max_query_cost=5)
    literal = ", ".join(f'"{leaf}"' for leaf in LEAVES[:6])

    body = graphql(client, f"{{ executions(ids: [{literal}]) {{ id }} }}")

    assert "may cause 6 upstream fetches" in refused(body)
    assert upstream[1].execution_ids() == []


def test_a_query_costing_exactly_the_limit_runs(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], max_query_cost=6)

    body = graphql(client, WITH_PARENT_AND_ROOT, {"ids": LEAVES[:2]})

    assert "errors" not in body
    assert [entry["id"] for entry in body["data"]["executions"]] == LEAVES[:2]


def test_nested_parent_and_root_cost_once_per_execution_they_apply_to(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], max_query_cost=5)

    # 2 executions + 2 parents + 2 roots.
    body = graphql(client, WITH_PARENT_AND_ROOT, {"ids": LEAVES[:2]})

    assert "may cause 6 upstream fetches" in refused(body)
    assert upstream[1].execution_ids() == []


@pytest.mark.parametrize(
    ("field", "variables", "cost"),
    [
        ("ancestors(limit: 10) { id }", {}, 11),
        ("ancestors { id }", {}, 51),
        ("ancestors(limit: null) { id }", {}, 51),
        ("ancestors(limit: $limit) { id }", {"limit": 30}, 31),
        ("ancestors(limit: $limit) { id }", {"limit": None}, 51),
        ("ancestors(limit: 10) { id parent { id } root { id } }", {}, 31),
        ("ancestors(limit: 10) { ancestors(limit: 10) { id } }", {}, 111),
    ],
    ids=["literal", "default", "null", "variable", "null-variable", "nested", "ancestors-twice"],
)
def test_ancestors_cost_their_limit(
    start_gateway: StartGateway,
    upstream: tuple[str, Recorder],
    field: str,
    variables: dict[str, Any],
    cost: int,
) -> None:
    client = start_gateway(upstream[0], max_query_cost=cost - 1)
    limit = ", $limit: Int" if "$limit" in field else ""
    query = f"query($id: ID!{limit}) {{ execution(id: $id) {{ {field} }} }}"

    body = graphql(client, query, {"id": LEAF, **variables})

    assert f"may cause {cost} upstream fetches; the limit is {cost - 1}." in refused(body)
    assert upstream[1].execution_ids() == []


def test_a_list_over_its_own_cap_is_refused_by_that_cap_not_by_the_cost(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    # Neither field fetches anything (each is refused with its cap), so the cost does not
    # refuse the query, and the sibling execution still resolves.
    client = start_gateway(upstream[0], max_ids_per_query=3, max_ancestors=5, max_query_cost=3)
    query = (
        "query($id: ID!, $ids: [ID!]!) { executions(ids: $ids) { id }"
        " execution(id: $id) { id ancestors(limit: 6) { id } } }"
    )

    body = graphql(client, query, {"id": LEAF, "ids": LEAVES[:4]})

    assert body["data"] == {"executions": None, "execution": {"id": LEAF, "ancestors": None}}
    assert error_codes(body) == [
        ("execution.ancestors", "BAD_USER_INPUT"),
        ("executions", "BAD_USER_INPUT"),
    ]
    assert upstream[1].execution_ids() == [LEAF]


def test_a_variable_default_is_what_the_cost_counts(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], max_query_cost=20)
    query = (
        "query($id: ID!, $limit: Int = 30)"
        " { execution(id: $id) { ancestors(limit: $limit) { id } } }"
    )

    assert "may cause 31 upstream fetches" in refused(graphql(client, query, {"id": LEAF}))
    body = graphql(client, query, {"id": LEAF, "limit": 3})
    assert "errors" not in body
    assert len(body["data"]["execution"]["ancestors"]) == 3


def test_fragments_and_inline_fragments_are_counted_where_they_are_spread(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], max_query_cost=9)
    query = (
        "query($ids: [ID!]!) { executions(ids: $ids) { ...Links } }"
        " fragment Links on Execution { parent { id } ... on Execution { root { id } } }"
    )
    # node(id) gives a Node: its Execution fields come through an inline fragment.
    node_query = (
        "query($id: ID!) { node(id: $id) { ... on Execution { ...Links } } }"
        " fragment Links on Execution { parent { id } root { id } }"
    )

    assert "may cause 12 upstream fetches" in refused(graphql(client, query, {"ids": LEAVES[:4]}))
    assert upstream[1].execution_ids() == []
    body = graphql(client, node_query, {"id": LEAF})
    assert "errors" not in body
    assert body["data"]["node"]["parent"]["id"]


def test_only_the_operation_named_by_operation_name_is_counted(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], max_query_cost=5)
    document = (
        "query Cheap($ids: [ID!]!) { executions(ids: $ids) { id } }"
        " query Dear($ids: [ID!]!) { executions(ids: $ids) { id parent { id } } }"
    )

    def post(operation: str) -> dict[str, Any]:
        response = client.post(
            "/graphql",
            json={"query": document, "variables": {"ids": LEAVES[:3]}, "operationName": operation},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    assert "may cause 6 upstream fetches" in refused(post("Dear"))
    assert upstream[1].execution_ids() == []
    assert [entry["id"] for entry in post("Cheap")["data"]["executions"]] == LEAVES[:3]


def test_the_default_limits_let_the_largest_demo_queries_run(
    gateway: httpx.Client, upstream: tuple[str, Recorder]
) -> None:
    # 100 leaves with their parent and root: cost 300; a 50-ancestor walk: cost 51.
    leaves = graphql(gateway, WITH_PARENT_AND_ROOT, {"ids": LEAVES})
    walk = graphql(
        gateway,
        "query($id: ID!) { execution(id: $id) { id ancestors(limit: 50) { id workflowId } } }",
        {"id": demo_id("chain/59")},
    )

    assert "errors" not in leaves
    assert len(leaves["data"]["executions"]) == 100
    assert "errors" not in walk
    assert len(walk["data"]["execution"]["ancestors"]) == 50


# Document and request size -------------------------------------------------------------------


def padded(document: str, size: int) -> str:
    """``document`` with a comment making it exactly ``size`` UTF-8 bytes."""
    padding = size - len(document.encode()) - 3
    assert padding >= 0
    return "#" + "x" * padding + "\n" + document + "\n"


DOCUMENT = "query($id: ID!) { execution(id: $id) { id } }"


def test_a_document_larger_than_the_limit_is_refused_unparsed(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], max_document_bytes=200)

    # Not even a document: it is refused for its size before anyone parses it.
    body = graphql(client, padded(DOCUMENT, 201).replace("}", "{"), {"id": LEAF})

    message = refused(body)
    assert "201 bytes" in message
    assert "the limit is 200 bytes" in message
    assert upstream[1].execution_ids() == []


def test_a_document_of_exactly_the_limit_runs(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], max_document_bytes=200)

    body = graphql(client, padded(DOCUMENT, 200), {"id": LEAF})

    assert body == {"data": {"execution": {"id": LEAF}}}


def test_the_document_size_is_counted_in_utf8_bytes_not_characters(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], max_document_bytes=200)
    document = "# " + "é" * 80 + "\n" + DOCUMENT
    assert len(document) == 128
    assert len(document.encode()) == 208

    body = graphql(client, document, {"id": LEAF})

    assert "208 bytes" in refused(body)
    assert upstream[1].execution_ids() == []


def request_body(size: int) -> bytes:
    """A valid GraphQL request body of exactly ``size`` bytes (an unused variable pads it)."""
    head = f'{{"query": "{DOCUMENT}", "variables": {{"id": "{LEAF}", "pad": "'
    tail = '"}}'
    padding = size - len(head) - len(tail)
    assert padding >= 0
    return (head + "x" * padding + tail).encode()


def assert_too_large(response: httpx.Response, request_id: str) -> None:
    assert response.status_code == 413
    assert response.headers["x-request-id"] == request_id
    body = response.json()
    assert body["error_type"] == "QUERY_TOO_COMPLEX"
    assert "the limit is 1000 bytes" in body["error"]


def test_a_request_body_declared_larger_than_the_limit_is_refused_with_413(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], max_request_bytes=1000)

    response = client.post(
        "/graphql",
        content=request_body(1001),
        headers={"Content-Type": "application/json", "X-Request-ID": "req-big"},
    )

    assert_too_large(response, "req-big")
    assert "1001 bytes" in response.json()["error"]
    assert upstream[1].execution_ids() == []


def test_a_chunked_request_body_is_counted_as_it_streams_and_refused_past_the_limit(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], max_request_bytes=1000)
    body = request_body(1500)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 100):
            yield body[start : start + 100]

    response = client.post(
        "/graphql",
        content=chunks(),
        headers={"Content-Type": "application/json", "X-Request-ID": "req-chunked"},
    )

    assert response.request.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in response.request.headers
    assert_too_large(response, "req-chunked")
    assert upstream[1].execution_ids() == []


def test_a_chunked_request_body_within_the_limit_runs(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], max_request_bytes=1000)
    body = request_body(1000)

    response = client.post(
        "/graphql",
        content=iter([body[:500], body[500:]]),
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"execution": {"id": LEAF}}}


def test_the_request_body_limit_guards_every_route(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], max_request_bytes=1000)

    response = client.request(
        "GET",
        f"/api/v1/executions/{LEAF}",
        content=iter([b"x" * 800, b"x" * 800]),
        headers={"X-Request-ID": "req-rest"},
    )

    assert_too_large(response, "req-rest")
    assert upstream[1].execution_ids() == []


def test_a_request_body_of_exactly_the_limit_runs(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], max_request_bytes=1000)

    response = client.post(
        "/graphql", content=request_body(1000), headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"execution": {"id": LEAF}}}


# Batches -------------------------------------------------------------------------------------


def test_a_batch_of_operations_is_refused_with_a_json_error(
    gateway: httpx.Client, upstream: tuple[str, Recorder]
) -> None:
    operation = {"query": DOCUMENT, "variables": {"id": LEAF}}

    response = gateway.post("/graphql", json=[operation, operation])

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    error = response.json()["errors"][0]
    assert error["extensions"] == {"code": "BAD_USER_INPUT"}
    assert "one operation per request" in error["message"]
    assert upstream[1].execution_ids() == []


@pytest.mark.parametrize("body", [b'"query"', b"42", b"null", b"[]", b"{", b""])
def test_a_json_body_that_is_not_one_operation_is_a_400_json_error_not_a_500(
    gateway: httpx.Client, body: bytes
) -> None:
    response = gateway.post("/graphql", content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT"}


# What the schema tells about itself ----------------------------------------------------------

INTROSPECTION = ["{ __schema { types { name } } }", '{ __type(name: "Execution") { name } }']


@pytest.mark.parametrize("query", INTROSPECTION, ids=["schema", "type"])
def test_introspection_is_refused_when_switched_off(
    start_gateway: StartGateway, upstream: tuple[str, Recorder], query: str
) -> None:
    client = start_gateway(upstream[0], introspection_enabled=False)

    body = graphql(client, query)

    assert body["data"] is None
    assert {error["extensions"]["code"] for error in body["errors"]} == {"BAD_USER_INPUT"}
    assert "introspection has been disabled" in body["errors"][0]["message"]


def test_typename_still_answers_when_introspection_is_off(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], introspection_enabled=False)

    body = graphql(
        client, "query($id: ID!) { __typename execution(id: $id) { __typename } }", {"id": LEAF}
    )

    assert body == {"data": {"__typename": "Query", "execution": {"__typename": "Execution"}}}


@pytest.mark.parametrize("query", INTROSPECTION, ids=["schema", "type"])
def test_introspection_answers_by_default(gateway: httpx.Client, query: str) -> None:
    body = graphql(gateway, query)

    assert "errors" not in body


MISSPELT = [
    '{ execution(id: "x") { workflowid } }',
    '{ execution(idd: "x") { id } }',
    "query($id: IDD!) { execution(id: $id) { id } }",
]


@pytest.mark.parametrize("query", MISSPELT, ids=["field", "argument", "type"])
def test_no_suggestion_names_the_schema_when_suggestions_are_off(
    start_gateway: StartGateway, upstream: tuple[str, Recorder], query: str
) -> None:
    client = start_gateway(upstream[0], field_suggestions_enabled=False)

    response = client.post("/graphql", json={"query": query})

    body = response.json()
    assert {error["extensions"]["code"] for error in body["errors"]} == {"BAD_USER_INPUT"}
    assert "Did you mean" not in response.text


@pytest.mark.parametrize("query", MISSPELT, ids=["field", "argument", "type"])
def test_suggestions_are_made_by_default(gateway: httpx.Client, query: str) -> None:
    response = gateway.post("/graphql", json={"query": query})

    assert "Did you mean" in response.text
