"""Fixtures: the demo upstream and the gateway, each a real uvicorn server on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.demo.data import SAMPLES
from gateway.demo.upstream import DemoOptions, create_demo_app
from gateway.settings import Settings
from tests.servers import Recorder, ScriptedUpstream, serve
from tests.stepped_upstream import SteppedUpstream

API_KEY = "sk_test_demo_key"
AUTH_HEADERS = {"Authorization": f"Bearer {API_KEY}", "X-Project-ID": "demo-project"}

StartGateway = Callable[..., httpx.Client]


@pytest.fixture
def samples() -> dict[str, str]:
    return dict(SAMPLES)


@pytest.fixture(scope="session")
def _shared_upstream() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder(create_demo_app())
    with serve(recorder, lifespan="off") as url:
        yield url, recorder


@pytest.fixture
def upstream(_shared_upstream: tuple[str, Recorder]) -> tuple[str, Recorder]:
    """The open demo upstream (no API key, 404 for unknown ids), its request log emptied."""
    _shared_upstream[1].clear()
    return _shared_upstream


@pytest.fixture
def secured_upstream() -> Iterator[tuple[str, Recorder]]:
    """The demo upstream requiring ``AUTH_HEADERS``, answering 500 for unknown ids as today."""
    recorder = Recorder(create_demo_app(DemoOptions(api_key=API_KEY, unknown_status=500)))
    with serve(recorder, lifespan="off") as url:
        yield url, recorder


@pytest.fixture
def scripted() -> Iterator[tuple[str, ScriptedUpstream]]:
    """An upstream whose answers each test scripts."""
    upstream = ScriptedUpstream()
    with serve(upstream.app, lifespan="off") as url:
        try:
            yield url, upstream
        finally:
            upstream.release()  # before the server stops, or it would wait for a hung request


@pytest.fixture
def stepped() -> Iterator[tuple[str, SteppedUpstream]]:
    """An upstream answering each poll of an execution with the next step of a script."""
    upstream = SteppedUpstream()
    with serve(upstream.app, lifespan="off") as url:
        try:
            yield url, upstream
        finally:
            upstream.release()  # before the server stops, or it would wait for a held step


@pytest.fixture
def start_gateway() -> Iterator[StartGateway]:
    """Start a gateway in front of ``upstream_url``; returns an HTTP client bound to it."""
    with ExitStack() as stack:

        def start(upstream_url: str, **settings: Any) -> httpx.Client:
            app = create_app(Settings(upstream_url=upstream_url, **settings))
            base_url = stack.enter_context(serve(app))
            return stack.enter_context(httpx.Client(base_url=base_url, timeout=30))

        yield start


@pytest.fixture(scope="session")
def _shared_gateway(_shared_upstream: tuple[str, Recorder]) -> Iterator[httpx.Client]:
    # Without the shared cache, so every test sees the upstream calls its own request makes;
    # tests of the cache start gateways of their own.
    app = create_app(Settings(upstream_url=_shared_upstream[0], cache_enabled=False))
    with serve(app) as base_url, httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


@pytest.fixture
def gateway(_shared_gateway: httpx.Client, upstream: tuple[str, Recorder]) -> httpx.Client:
    """A gateway in front of the open demo upstream (``upstream``), shared by the session.

    Its cache is off, so it keeps nothing between requests and sharing it changes no test.
    """
    return _shared_gateway


def graphql(
    client: httpx.Client, query: str, variables: dict[str, Any] | None = None, **headers: str
) -> dict[str, Any]:
    """POST a GraphQL query; the response must be 200 JSON."""
    response = client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def error_codes(body: dict[str, Any]) -> list[tuple[str, ...]]:
    """``(path, code)`` of every error, sorted, with the path joined by dots."""
    return sorted(
        (".".join(str(p) for p in error.get("path") or ()), error["extensions"]["code"])
        for error in body.get("errors", [])
    )
