"""CSRF and methods: only requests a web page cannot forge without a CORS preflight execute.

A page on another origin can make its visitor's browser send, with the visitor's cookies,
a GET or a POST whose body is a form or plain text, without asking the gateway first. So a
GET runs queries only, and a POST runs only with ``Content-Type: application/json`` (which
forces a preflight); everything else is refused before anything is executed.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import httpx
import pytest

from gateway.demo.data import demo_id
from tests.servers import Recorder

ID = demo_id("research")
QUERY = f'{{ execution(id: "{ID}") {{ id }} }}'


def assert_bad_request(response: httpx.Response, status: int) -> str:
    """A refusal in GraphQL's JSON error shape; returns its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert "data" not in body
    assert [error["extensions"] for error in body["errors"]] == [{"code": "BAD_USER_INPUT"}]
    message: str = body["errors"][0]["message"]
    return message


def test_a_mutation_over_get_is_refused_with_405_and_allow_post(
    gateway: httpx.Client, upstream: tuple[str, Recorder]
) -> None:
    response = gateway.get("/graphql", params={"query": "mutation { __typename }"})

    assert "mutations are not allowed when using GET" in assert_bad_request(response, 405)
    assert response.headers["allow"] == "POST"
    assert "x-request-id" in response.headers


def test_a_query_over_get_still_runs(gateway: httpx.Client, upstream: tuple[str, Recorder]) -> None:
    response = gateway.get("/graphql", params={"query": QUERY})

    assert response.status_code == 200
    assert response.json() == {"data": {"execution": {"id": ID}}}
    assert upstream[1].execution_ids() == [ID]


# What a plain HTML form or fetch(..., {mode: "no-cors"}) can send to another origin.
SIMPLE_BODIES = [
    ("text/plain", json.dumps({"query": QUERY}).encode()),
    ("text/plain; charset=utf-8", json.dumps({"query": QUERY}).encode()),
    ("text/plain;application/json", json.dumps({"query": QUERY}).encode()),
    ("application/x-www-form-urlencoded", urlencode({"query": QUERY}).encode()),
    (
        "multipart/form-data; boundary=b",
        f'--b\r\nContent-Disposition: form-data; name="query"\r\n\r\n{QUERY}\r\n--b--\r\n'.encode(),
    ),
    (None, json.dumps({"query": QUERY}).encode()),
]


@pytest.mark.parametrize(
    ("content_type", "body"),
    SIMPLE_BODIES,
    ids=["text", "text-charset", "text-json-param", "form", "multipart", "no-content-type"],
)
def test_a_post_a_browser_sends_without_preflight_is_refused_with_415_and_not_run(
    gateway: httpx.Client,
    upstream: tuple[str, Recorder],
    content_type: str | None,
    body: bytes,
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}

    response = gateway.post("/graphql", content=body, headers=headers)

    assert "application/json" in assert_bad_request(response, 415)
    assert upstream[1].execution_ids() == []


def test_a_post_without_a_content_type_really_sent_none(gateway: httpx.Client) -> None:
    # httpx adds no Content-Type of its own to raw content: the case above is what it says.
    response = gateway.post("/graphql", content=b"{}")

    assert "content-type" not in response.request.headers


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
def test_a_json_post_runs(
    gateway: httpx.Client, upstream: tuple[str, Recorder], content_type: str
) -> None:
    response = gateway.post(
        "/graphql",
        content=json.dumps({"query": QUERY}).encode(),
        headers={"Content-Type": content_type},
    )

    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"execution": {"id": ID}}}
    assert upstream[1].execution_ids() == [ID]


def test_other_methods_are_refused(gateway: httpx.Client, upstream: tuple[str, Recorder]) -> None:
    for method in ("PUT", "PATCH", "DELETE"):
        response = gateway.request(method, "/graphql", json={"query": QUERY})

        assert response.status_code == 405, method
    assert upstream[1].execution_ids() == []
