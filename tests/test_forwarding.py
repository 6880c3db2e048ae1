"""Credentials: exactly the contract's headers and cookie reach the upstream, over the wire."""

from __future__ import annotations

import httpx
import pytest

from gateway.demo.data import demo_id
from tests.conftest import StartGateway, graphql
from tests.servers import Recorder

CLIENT_HEADERS = {
    "Authorization": "Bearer sk_project_key",
    "X-Project-ID": "proj-1",
    "Project-ID": "proj-1",
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "Cookie": "polos_auth=jwt.token.value; session=other; tracking=1",
    "X-Api-Key": "must-not-pass",
    "X-Forwarded-For": "203.0.113.9",
    "Proxy-Authorization": "Basic c2VjcmV0",
    "X-Custom": "nope",
}
FORWARDED = {
    "authorization": "Bearer sk_project_key",
    "x-project-id": "proj-1",
    "project-id": "proj-1",
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "cookie": "polos_auth=jwt.token.value",
}
# What any HTTP client sends on its own; nothing here comes from the incoming request.
TRANSPORT = {"host", "accept", "accept-encoding", "user-agent", "connection", "content-length"}


def _credential_headers(recorder: Recorder) -> list[dict[str, str]]:
    return [
        {name: value for name, value in request.headers.items() if name not in TRANSPORT}
        for request in recorder.requests
    ]


def test_graphql_forwards_exactly_the_allowed_credentials_on_every_upstream_call(
    gateway: httpx.Client, upstream: tuple[str, Recorder]
) -> None:
    leaf = demo_id("research/planner/search-0/summarise/llm")

    body = graphql(
        gateway,
        "query($id: ID!) { execution(id: $id) { parent { id } root { id } } }",
        {"id": leaf},
        **CLIENT_HEADERS,
    )

    assert "errors" not in body
    assert _credential_headers(upstream[1]) == [FORWARDED] * 3
    assert all(r.headers["user-agent"] == "polos-gateway" for r in upstream[1].requests)


def test_the_rest_route_forwards_exactly_the_allowed_credentials(
    gateway: httpx.Client, upstream: tuple[str, Recorder]
) -> None:
    response = gateway.get(f"/api/v1/executions/{demo_id('research')}", headers=CLIENT_HEADERS)

    assert response.status_code == 200
    assert _credential_headers(upstream[1]) == [FORWARDED]


def test_a_request_without_credentials_forwards_none(
    gateway: httpx.Client, upstream: tuple[str, Recorder]
) -> None:
    gateway.get(f"/api/v1/executions/{demo_id('research')}")

    assert _credential_headers(upstream[1]) == [{}]


def test_a_narrowed_setting_forwards_fewer_headers(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], forward_headers="authorization", forward_cookies=[])

    client.get(f"/api/v1/executions/{demo_id('research')}", headers=CLIENT_HEADERS)

    assert _credential_headers(upstream[1]) == [{"authorization": "Bearer sk_project_key"}]


@pytest.mark.parametrize(
    "path", ["/healthz", "/graphql?query={__typename}", "/api/v1/executions/x"]
)
def test_every_response_carries_the_clients_request_id_or_a_new_one(
    gateway: httpx.Client, path: str
) -> None:
    echoed = gateway.get(path, headers={"X-Request-ID": "client-chosen-id-1"})
    fresh = [gateway.get(path).headers["x-request-id"] for _ in range(2)]
    unusable = gateway.get(path, headers={"X-Request-ID": "has spaces\tand tabs"})

    assert echoed.headers["x-request-id"] == "client-chosen-id-1"
    assert fresh[0] != fresh[1]
    assert all(len(value) == 32 for value in fresh)
    assert unusable.headers["x-request-id"] != "has spaces\tand tabs"
