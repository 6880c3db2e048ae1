"""Edges of the REST route and of the app around it: methods, paths, odd answers, bugs."""

from __future__ import annotations

import httpx
import pytest

from gateway import rest as rest_route
from gateway.demo.data import demo_id
from tests.conftest import AUTH_HEADERS, StartGateway
from tests.servers import Recorder, ScriptedUpstream

RESEARCH = demo_id("research")
MISSING = "00000000-0000-4000-8000-000000000000"


def own_connection(gateway: httpx.Client) -> httpx.Client:
    """A client of the shared gateway with its own connections.

    For requests after which the server closes the connection (a 500 from a bug, a refused
    upgrade): a pooled connection closed that way must not be handed to the next test.
    """
    return httpx.Client(base_url=gateway.base_url, timeout=30)


def test_head_on_an_execution_answers_200_with_no_body(gateway: httpx.Client) -> None:
    get = gateway.get(f"/api/v1/executions/{RESEARCH}")

    head = gateway.head(f"/api/v1/executions/{RESEARCH}")

    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]


def test_head_on_an_unknown_execution_answers_like_get(gateway: httpx.Client) -> None:
    head = gateway.head(f"/api/v1/executions/{MISSING}")

    assert (head.status_code, head.content) == (404, b"")


def test_a_trailing_slash_is_not_redirected(gateway: httpx.Client) -> None:
    response = gateway.get(f"/api/v1/executions/{RESEARCH}/")

    assert response.status_code != 307
    assert not response.is_redirect
    assert "location" not in response.headers


def test_an_upstream_redirect_is_answered_502_in_the_orchestrators_error_shape(
    start_gateway: StartGateway, scripted: tuple[str, ScriptedUpstream]
) -> None:
    url, upstream = scripted
    upstream.answer(MISSING, 302, b"", Location="http://internal.test/login")

    response = start_gateway(url).get(f"/api/v1/executions/{MISSING}")

    assert response.status_code == 502
    body = response.json()
    assert set(body) == {"error", "error_type"}
    assert body["error_type"] == "UPSTREAM_ERROR"
    assert "location" not in response.headers
    assert "internal.test" not in response.text


def test_a_non_ascii_authorization_is_dropped_so_the_upstream_answers_as_without_it(
    start_gateway: StartGateway, secured_upstream: tuple[str, Recorder]
) -> None:
    upstream_url, recorder = secured_upstream
    client = start_gateway(upstream_url)
    without = httpx.get(
        f"{upstream_url}/api/v1/executions/{RESEARCH}", headers={"X-Project-ID": "demo-project"}
    )
    recorder.clear()

    response = client.get(
        f"/api/v1/executions/{RESEARCH}",
        headers={b"Authorization": b"Bearer \xff", b"X-Project-ID": b"demo-project"},
    )

    assert response.status_code == 401
    assert (response.status_code, response.content) == (without.status_code, without.content)
    assert response.json()["error_type"] == "UNAUTHORIZED"
    assert [request.headers.get("authorization") for request in recorder.requests] == [None]


def test_a_valid_authorization_beside_a_non_ascii_project_header_still_reaches_the_upstream(
    start_gateway: StartGateway, secured_upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(secured_upstream[0])

    response = client.get(
        f"/api/v1/executions/{RESEARCH}",
        headers={
            b"Authorization": AUTH_HEADERS["Authorization"].encode(),
            b"X-Project-ID": b"caf\xe9",
        },
    )

    # The project header is dropped, so the orchestrator asks for one: its 400, relayed.
    assert response.status_code == 400
    assert response.json()["error_type"] == "BAD_REQUEST"


def test_an_unexpected_error_in_the_route_is_a_coded_500_with_the_request_id_and_no_detail(
    gateway: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(raw: str) -> str | None:
        raise RuntimeError("bug near http://10.0.0.9:8080 with Bearer sk_live_do_not_leak")

    monkeypatch.setattr(rest_route, "parse_execution_id", broken)

    with own_connection(gateway) as client:
        response = client.get(
            f"/api/v1/executions/{RESEARCH}", headers={"X-Request-ID": "req-rest-500"}
        )

    assert response.status_code == 500
    assert response.headers["x-request-id"] == "req-rest-500"
    body = response.json()
    assert set(body) == {"error", "error_type"}
    assert body["error_type"] == "INTERNAL"
    assert "req-rest-500" in body["error"]
    for leak in ("Traceback", "RuntimeError", "bug near", "10.0.0.9", "sk_live_do_not_leak"):
        assert leak not in response.text
