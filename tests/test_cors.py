"""CORS over real HTTP: which pages on other origins a browser lets call the gateway."""

from __future__ import annotations

import os

import httpx
import pytest
from pydantic import ValidationError

from gateway.demo.data import demo_id
from gateway.settings import Settings
from tests.conftest import StartGateway
from tests.processes import free_port, running
from tests.servers import Recorder

APP = "https://app.example.com"
OTHER = "https://evil.example.net"
ID = demo_id("research")
QUERY = {"query": f'{{ execution(id: "{ID}") {{ id }} }}'}


def preflight(
    client: httpx.Client,
    origin: str,
    method: str = "POST",
    headers: str = "content-type,authorization,x-project-id",
) -> httpx.Response:
    """The OPTIONS request a browser sends before a cross-origin JSON POST."""
    return client.options(
        "/graphql",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("POLOS_GATEWAY_"):
            monkeypatch.delenv(name)


def test_without_configured_origins_no_response_carries_cors_headers(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0])

    refused = preflight(client, APP)
    post = client.post("/graphql", json=QUERY, headers={"Origin": APP})

    assert refused.status_code == 405
    assert cors_headers(refused) == {}
    assert post.status_code == 200
    assert cors_headers(post) == {}


def test_a_preflight_from_an_allowed_origin_is_answered_with_what_it_may_send(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], cors_origins=[APP])

    response = preflight(client, APP)

    assert response.status_code == 200
    allowed = cors_headers(response)
    assert allowed["access-control-allow-origin"] == APP
    assert set(allowed["access-control-allow-methods"].split(", ")) == {"GET", "POST"}
    assert {"content-type", "authorization", "x-project-id", "project-id", "traceparent"} <= set(
        allowed["access-control-allow-headers"].split(", ")
    )
    assert allowed["access-control-max-age"] == "600"
    assert "access-control-allow-credentials" not in allowed
    assert "x-request-id" in response.headers  # answered inside the request id middleware
    assert upstream[1].requests == []


@pytest.mark.parametrize(
    ("origin", "method", "headers", "refused"),
    [
        (OTHER, "POST", "content-type", "origin"),
        (f"{APP}:8443", "POST", "content-type", "origin"),
        (APP, "DELETE", "content-type", "method"),
        (APP, "POST", "content-type,x-api-key", "headers"),
    ],
    ids=["other-origin", "other-port", "method", "header"],
)
def test_a_preflight_for_anything_not_allowed_is_refused(
    start_gateway: StartGateway,
    upstream: tuple[str, Recorder],
    origin: str,
    method: str,
    headers: str,
    refused: str,
) -> None:
    client = start_gateway(upstream[0], cors_origins=[APP])

    response = preflight(client, origin, method, headers)

    # A preflight answered with anything but 2xx fails: the browser sends nothing more.
    assert response.status_code == 400
    assert response.text == f"Disallowed CORS {refused}"
    if refused == "origin":
        assert "access-control-allow-origin" not in response.headers


def test_a_cross_origin_post_may_be_read_by_its_page_with_its_request_id(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], cors_origins=[APP])

    allowed = client.post("/graphql", json=QUERY, headers={"Origin": APP})
    other = client.post("/graphql", json=QUERY, headers={"Origin": OTHER})

    assert allowed.status_code == 200
    assert allowed.json() == {"data": {"execution": {"id": ID}}}
    assert allowed.headers["access-control-allow-origin"] == APP
    assert allowed.headers["access-control-expose-headers"].lower() == "x-request-id"
    assert "origin" in allowed.headers["vary"].lower()
    assert "x-request-id" in allowed.headers
    # The server still answers; without the header the browser keeps the answer from the page.
    assert "access-control-allow-origin" not in other.headers


def test_a_page_on_an_allowed_origin_can_read_a_refusal_of_an_oversized_body(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], cors_origins=[APP], max_request_bytes=1000)

    response = client.post(
        "/graphql",
        content=b'{"query": "' + b" " * 2000 + b'"}',
        headers={"Origin": APP, "Content-Type": "application/json"},
    )

    assert response.status_code == 413
    assert response.headers["access-control-allow-origin"] == APP
    assert "x-request-id" in response.headers


def test_credentials_cross_only_when_allowed(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], cors_origins=[APP], cors_allow_credentials=True)

    response = preflight(client, APP)
    post = client.post("/graphql", json=QUERY, headers={"Origin": APP})

    assert response.headers["access-control-allow-credentials"] == "true"
    assert post.headers["access-control-allow-credentials"] == "true"
    assert post.headers["access-control-allow-origin"] == APP


def test_any_origin_may_be_allowed_without_credentials(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], cors_origins=["*"])

    response = client.post("/graphql", json=QUERY, headers={"Origin": OTHER})

    assert response.headers["access-control-allow-origin"] == "*"


def test_any_origin_with_credentials_is_refused_saying_why() -> None:
    with pytest.raises(ValidationError, match="list the origins instead"):
        Settings(cors_origins=["*"], cors_allow_credentials=True)


@pytest.mark.parametrize("origin", [f"{APP}/", f"{APP}/app", "app.example.com", "ftp://x.example"])
def test_an_origin_that_a_browser_would_never_send_is_refused(origin: str) -> None:
    with pytest.raises(ValidationError, match="is not an origin"):
        Settings(cors_origins=[origin])


def test_cors_settings_come_from_comma_separated_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POLOS_GATEWAY_CORS_ORIGINS", f" {APP} , HTTP://LOCALHOST:3000,")
    monkeypatch.setenv("POLOS_GATEWAY_CORS_METHODS", "get,post,get")
    monkeypatch.setenv("POLOS_GATEWAY_CORS_HEADERS", "Content-Type, X-Project-ID")
    monkeypatch.setenv("POLOS_GATEWAY_CORS_ALLOW_CREDENTIALS", "true")
    monkeypatch.setenv("POLOS_GATEWAY_CORS_MAX_AGE", "60")

    settings = Settings()

    assert settings.cors_origins == [APP, "http://localhost:3000"]
    assert settings.cors_methods == ["GET", "POST"]
    assert settings.cors_headers == ["content-type", "x-project-id"]
    assert settings.cors_allow_credentials is True
    assert settings.cors_max_age == 60


def test_by_default_no_origin_is_allowed() -> None:
    settings = Settings()

    assert settings.cors_origins == []
    assert settings.cors_methods == ["GET", "POST"]
    assert settings.cors_allow_credentials is False


def test_serve_demo_allows_the_gateways_own_origins_and_no_other() -> None:
    port = free_port()
    with (
        running("serve", "--demo", "--port", str(port), port=port),
        httpx.Client(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        own = [preflight(client, f"http://{host}:{port}") for host in ("127.0.0.1", "localhost")]
        other = preflight(client, OTHER)

    assert [r.headers.get("access-control-allow-origin") for r in own] == [
        f"http://127.0.0.1:{port}",
        f"http://localhost:{port}",
    ]
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers


def test_serve_against_a_real_upstream_allows_no_origin_by_default(
    upstream: tuple[str, Recorder],
) -> None:
    port = free_port()
    with (
        running("serve", "--upstream-url", upstream[0], "--port", str(port), port=port),
        httpx.Client(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        response = preflight(client, f"http://127.0.0.1:{port}")

    assert cors_headers(response) == {}
