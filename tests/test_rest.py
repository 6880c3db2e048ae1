"""The REST compatibility route answers exactly as the orchestrator does."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from polos.runtime.client import PolosClient

from gateway.demo.data import demo_id
from tests.conftest import API_KEY, AUTH_HEADERS, StartGateway
from tests.servers import Recorder, ScriptedUpstream, closed_port_url

SEED_SPEC = Path(__file__).parent.parent / "docs" / "reference" / "polos-get-execution.openapi.yaml"
MISSING = "00000000-0000-4000-8000-000000000000"


def answer(response: httpx.Response) -> tuple[int, bytes, str | None]:
    return response.status_code, response.content, response.headers.get("content-type")


@pytest.mark.parametrize(
    ("path_id", "headers"),
    [
        (demo_id("research"), AUTH_HEADERS),
        (demo_id("research/planner/search-0/summarise/llm"), AUTH_HEADERS),
        (demo_id("pipeline/audit"), AUTH_HEADERS),
        ("{" + demo_id("support").upper() + "}", AUTH_HEADERS),
        ("urn:uuid:" + demo_id("support"), AUTH_HEADERS),
        (demo_id("research"), {}),
        (demo_id("research"), {"Authorization": "Bearer wrong", "X-Project-ID": "demo-project"}),
        (demo_id("research"), {"Authorization": f"Bearer {API_KEY}"}),
        (demo_id("research"), {"Authorization": f"Bearer {API_KEY}", "Project-ID": "other"}),
        (demo_id("research"), {"Authorization": f"Bearer {API_KEY}", "Project-ID": "demo-project"}),
        (MISSING, AUTH_HEADERS),
        ("not-a-uuid", AUTH_HEADERS),
        ("123", {}),
    ],
)
def test_the_gateway_answers_like_the_orchestrator(
    start_gateway: StartGateway,
    secured_upstream: tuple[str, Recorder],
    path_id: str,
    headers: dict[str, str],
) -> None:
    upstream_url, _ = secured_upstream
    direct = httpx.get(f"{upstream_url}/api/v1/executions/{path_id}", headers=headers)
    client = start_gateway(upstream_url)

    through_gateway = client.get(f"/api/v1/executions/{path_id}", headers=headers)

    assert answer(through_gateway) == answer(direct)


def test_the_polos_auth_cookie_authenticates_like_a_bearer_token(
    start_gateway: StartGateway, secured_upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(secured_upstream[0])
    client.cookies.set("polos_auth", API_KEY)

    response = client.get(
        f"/api/v1/executions/{demo_id('research')}", headers={"X-Project-ID": "demo-project"}
    )

    assert response.status_code == 200
    assert response.json()["id"] == demo_id("research")


def test_an_id_that_is_not_a_uuid_is_answered_400_without_asking_the_upstream(
    gateway: httpx.Client, upstream: tuple[str, Recorder]
) -> None:
    for bad in ["nope", "%2e%2e", demo_id("research") + "x", "%20", "%3Cscript%3E"]:
        response = gateway.get(f"/api/v1/executions/{bad}")
        assert (response.status_code, response.content) == (400, b""), bad

    assert upstream[1].execution_ids() == []


def test_an_unknown_id_is_404_with_an_empty_body_as_the_spec_says(gateway: httpx.Client) -> None:
    response = gateway.get(f"/api/v1/executions/{MISSING}")

    assert (response.status_code, response.content) == (404, b"")


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_and_the_body_of_a_refusal_are_relayed(
    start_gateway: StartGateway, scripted: tuple[str, ScriptedUpstream], status: int
) -> None:
    url, upstream = scripted
    upstream.answer(
        MISSING,
        status,
        b'{"error":"slow down","error_type":"RATE_LIMITED"}',
        **{"Retry-After": "7", "Content-Type": "application/json", "X-Internal": "secret"},
    )

    response = start_gateway(url).get(f"/api/v1/executions/{MISSING}")

    assert response.status_code == status
    assert response.headers["retry-after"] == "7"
    assert "x-internal" not in response.headers
    assert response.json() == {"error": "slow down", "error_type": "RATE_LIMITED"}


def _gateway_error(response: httpx.Response, upstream_url: str) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "error_type"}
    assert upstream_url.removeprefix("http://") not in response.text
    assert "Traceback" not in response.text
    return body


def test_a_body_that_is_not_an_execution_becomes_a_502_in_the_orchestrators_shape(
    start_gateway: StartGateway, scripted: tuple[str, ScriptedUpstream]
) -> None:
    url, upstream = scripted
    upstream.answer(MISSING, 200, b'{"id": "' + MISSING.encode() + b'", "status": 3}')

    response = start_gateway(url).get(f"/api/v1/executions/{MISSING}")

    assert response.status_code == 502
    assert _gateway_error(response, url)["error_type"] == "UPSTREAM_ERROR"


def test_an_upstream_that_does_not_answer_in_time_becomes_a_504(
    start_gateway: StartGateway, scripted: tuple[str, ScriptedUpstream]
) -> None:
    url, upstream = scripted
    upstream.hang(MISSING)

    response = start_gateway(url, upstream_timeout=0.5, read_timeout=0.5, connect_timeout=0.5).get(
        f"/api/v1/executions/{MISSING}"
    )

    assert response.status_code == 504
    assert _gateway_error(response, url)["error_type"] == "UPSTREAM_TIMEOUT"


def test_an_upstream_that_cannot_be_reached_becomes_a_502(start_gateway: StartGateway) -> None:
    url = closed_port_url()

    response = start_gateway(url).get(f"/api/v1/executions/{MISSING}")

    assert response.status_code == 502
    assert _gateway_error(response, url)["error_type"] == "UPSTREAM_UNAVAILABLE"


def test_the_polos_sdk_behaves_the_same_against_the_gateway_and_the_orchestrator(
    start_gateway: StartGateway, secured_upstream: tuple[str, Recorder]
) -> None:
    upstream_url, _ = secured_upstream
    gateway_url = str(start_gateway(upstream_url).base_url).rstrip("/")

    async def fetch(api_url: str, execution_id: str) -> dict[str, Any] | int:
        sdk = PolosClient(api_url=api_url, api_key=API_KEY, project_id="demo-project")
        try:
            found: dict[str, Any] = await sdk.get_execution(execution_id)
            return found
        except httpx.HTTPStatusError as exc:
            return exc.response.status_code

    for execution_id in [demo_id("research/writer/cite"), demo_id("loop/self"), MISSING, "bad"]:
        direct = asyncio.run(fetch(upstream_url, execution_id))
        through_gateway = asyncio.run(fetch(gateway_url, execution_id))
        assert through_gateway == direct, execution_id


def _normalise(schema: dict[str, Any]) -> dict[str, Any]:
    """A property's types as a set, whether written as a list or pydantic's anyOf."""
    if "anyOf" in schema:
        types = {option.get("type") for option in schema["anyOf"]}
    elif isinstance(schema.get("type"), list):
        types = set(schema["type"])
    else:
        types = {schema.get("type")}
    return {"types": types - {None} or {"any"}, "description": schema.get("description")}


def test_the_openapi_description_declares_the_orchestrators_execution_response(
    gateway: httpx.Client,
) -> None:
    seed = yaml.safe_load(SEED_SPEC.read_text())["components"]["schemas"]["ExecutionResponse"]
    ours = gateway.get("/openapi.json").json()["components"]["schemas"]["ExecutionResponse"]

    assert sorted(ours["required"]) == sorted(seed["required"])
    assert {name: _normalise(s) for name, s in ours["properties"].items()} == {
        name: _normalise(s) for name, s in seed["properties"].items()
    }
    operation = gateway.get("/openapi.json").json()["paths"]["/api/v1/executions/{execution_id}"]
    assert operation["get"]["operationId"] == "get_execution"
