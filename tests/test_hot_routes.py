"""The hot routes (``gateway.hot_routes``) answer only their own method and path pairs.

Everything else still reaches FastAPI: other methods on the same paths, the OpenAPI
description, the unrouted-path handling. The answers of the hot routes themselves are tested
by the GraphQL and REST tests, which all pass through them.
"""

from __future__ import annotations

import json

import httpx

from gateway.demo.data import demo_id

RESEARCH = demo_id("research")


def test_other_methods_on_the_hot_paths_are_answered_by_fastapi_405(
    gateway: httpx.Client,
) -> None:
    put = gateway.put("/graphql", json={"query": "{ __typename }"})
    post = gateway.post(f"/api/v1/executions/{RESEARCH}")

    assert put.status_code == 405
    assert post.status_code == 405


def test_the_openapi_description_still_lists_both_routes(gateway: httpx.Client) -> None:
    paths = gateway.get("/openapi.json").json()["paths"]

    assert set(paths["/graphql"]) == {"get", "post"}
    assert set(paths["/api/v1/executions/{execution_id}"]) == {"get"}


def test_a_path_deeper_than_the_execution_route_is_left_to_the_unrouted_handler(
    gateway: httpx.Client,
) -> None:
    encoded = gateway.get(f"/api/v1/executions/{RESEARCH}%2Fparent")
    nested = gateway.get(f"/api/v1/executions/{RESEARCH}/parent")

    assert (encoded.status_code, encoded.content) == (400, b"")
    assert (nested.status_code, nested.content) == (404, b"")


def test_graphql_over_get_runs_queries_through_the_hot_route(gateway: httpx.Client) -> None:
    response = gateway.get(
        "/graphql",
        params={
            "query": "query($id: ID!) { execution(id: $id) { id } }",
            "variables": json.dumps({"id": RESEARCH}),
        },
        headers={"accept": "application/json"},
    )

    assert response.status_code == 200
    assert response.json() == {"data": {"execution": {"id": RESEARCH}}}
