"""Liveness and readiness."""

from __future__ import annotations

import httpx

from tests.conftest import StartGateway
from tests.servers import closed_port_url


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
