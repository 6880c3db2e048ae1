"""Liveness and readiness."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gateway.demo.data import demo_id
from gateway.health import ReadinessProbe
from gateway.settings import Settings
from gateway.upstream import UpstreamClient
from tests.conftest import StartGateway
from tests.servers import Recorder, ScriptedUpstream, closed_port_url


def test_healthz_is_ok_while_the_process_serves(gateway: httpx.Client) -> None:
    response = gateway.get("/healthz")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_is_200_when_the_upstream_answers(gateway: httpx.Client) -> None:
    response = gateway.get("/readyz")

    assert (response.status_code, response.json()) == (200, {"status": "ready"})


def test_readyz_is_503_with_a_reason_when_the_upstream_does_not_answer(
    start_gateway: StartGateway,
) -> None:
    client = start_gateway(closed_port_url())

    response = client.get("/readyz")
    alive = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["reason"]
    assert alive.status_code == 200


def test_readyz_needs_no_probe_while_upstream_calls_go_well(
    gateway: httpx.Client, upstream: tuple[str, Recorder]
) -> None:
    gateway.get(f"/api/v1/executions/{demo_id('research')}")

    response = gateway.get("/readyz")

    assert response.status_code == 200
    assert [r.path for r in upstream[1].requests] == [f"/api/v1/executions/{demo_id('research')}"]


def test_readyz_is_503_while_the_circuit_breaker_is_open(
    start_gateway: StartGateway, scripted: tuple[str, ScriptedUpstream]
) -> None:
    url, upstream = scripted
    failing = "11111111-2222-4333-8444-555555555555"
    upstream.answer(failing, 503)
    client = start_gateway(url, breaker_failure_threshold=1, retry_attempts=1)

    client.get(f"/api/v1/executions/{failing}")
    response = client.get("/readyz")

    assert response.status_code == 503
    assert "circuit breaker is open" in response.json()["reason"]


@pytest.mark.anyio
async def test_readiness_checks_that_arrive_together_or_soon_after_share_one_probe(
    scripted: tuple[str, ScriptedUpstream],
) -> None:
    url, upstream = scripted
    now = [100.0]
    async with UpstreamClient(Settings(upstream_url=url)) as client:
        probe = ReadinessProbe(client, ttl=1.0, clock=lambda: now[0])

        together = await asyncio.gather(*(probe.upstream_answers() for _ in range(20)))
        now[0] += 0.5
        soon_after = await probe.upstream_answers()
        probes_so_far = len(upstream.app.requests)
        now[0] += 1.0
        later = await probe.upstream_answers()

    # The scripted upstream has no /health: 404 is still an HTTP answer, so it is up.
    assert together == [True] * 20
    assert (soon_after, later) == (True, True)
    assert probes_so_far == 1
    assert [r.path for r in upstream.app.requests] == ["/health", "/health"]
