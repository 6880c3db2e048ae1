"""What GET answers tell caches: nothing read with one caller's credentials may be kept by a
shared cache (a CDN in front of persisted-query GETs) for another."""

from __future__ import annotations

import json

import httpx
import pytest

from gateway.demo.data import demo_id

ROOT = demo_id("research")
VARIABLES = json.dumps({"id": ROOT})
PATHS = [
    f"/api/v1/executions/{ROOT}",
    f"/graphql?query=query($id: ID!) {{ execution(id: $id) {{ status }} }}&variables={VARIABLES}",
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "credential",
    [
        {"Authorization": "Bearer sk_x"},
        {"X-Project-ID": "p"},
        {"Project-ID": "p"},
        {"Cookie": "polos_auth=jwt"},
    ],
)
def test_a_get_with_credentials_is_private_and_varies_by_them(
    gateway: httpx.Client, path: str, credential: dict[str, str]
) -> None:
    response = gateway.get(path, headers={"Accept": "application/json", **credential})

    assert response.status_code == 200
    assert response.headers["cache-control"] == "private"
    vary = {name.strip().lower() for name in response.headers["vary"].split(",")}
    assert {"authorization", "x-project-id", "project-id", "cookie"} <= vary


@pytest.mark.parametrize("path", PATHS)
def test_a_get_without_credentials_varies_by_them_and_leaves_caching_to_the_cache(
    gateway: httpx.Client, path: str
) -> None:
    # A cookie the gateway never forwards and a traceparent say nothing about who asks.
    headers = {
        "Accept": "application/json",
        "Cookie": "tracking=1",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }

    response = gateway.get(path, headers=headers)

    assert response.status_code == 200
    assert "cache-control" not in response.headers
    assert "authorization" in response.headers["vary"].lower()


def test_a_stricter_choice_of_the_route_is_kept(gateway: httpx.Client) -> None:
    missing = "0" * 64
    response = gateway.get(
        "/graphql",
        params={
            "extensions": json.dumps({"persistedQuery": {"version": 1, "sha256Hash": missing}})
        },
        headers={"Accept": "application/json", "Authorization": "Bearer sk_x"},
    )

    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert response.headers["cache-control"] == "private, no-cache, must-revalidate"
