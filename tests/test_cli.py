"""The command as a user runs it: real processes, real ports."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest
import websockets
from websockets.typing import Subprotocol

from gateway.demo.data import demo_id
from tests.processes import ROOT, free_port, running


def test_export_schema_prints_the_committed_schema_file() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "gateway", "export-schema"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout

    assert printed == (ROOT / "schema.graphql").read_text(), "run `make schema` and commit it"


def test_serve_demo_prints_sample_ids_and_a_query_and_answers_both_front_doors() -> None:
    port = free_port()
    with running("serve", "--demo", "--port", str(port), port=port) as lines:
        printed = "".join(lines)
        base = f"http://127.0.0.1:{port}"
        query = {
            "query": "query($id: ID!) { execution(id: $id) { workflowId root { workflowId } } }",
            "variables": {"id": demo_id("research/writer")},
        }
        graphql = httpx.post(f"{base}/graphql", json=query).json()
        rest = httpx.get(f"{base}/api/v1/executions/{demo_id('research')}")
        ready = httpx.get(f"{base}/readyz")

    assert demo_id("research") in printed
    assert "query Tree" in printed
    assert graphql == {
        "data": {
            "execution": {"workflowId": "writer_agent", "root": {"workflowId": "research_report"}}
        }
    }
    assert rest.json()["workflow_id"] == "research_report"
    assert ready.status_code == 200


def test_serve_with_several_workers_reads_its_settings_from_the_environment() -> None:
    port = free_port()
    with running("serve", "--demo", "--port", str(port), "--workers", "2", port=port, workers=2):
        responses = [
            httpx.get(f"http://127.0.0.1:{port}/api/v1/executions/{demo_id('support')}")
            for _ in range(4)
        ]

    assert {response.status_code for response in responses} == {200}


def test_demo_upstream_serves_the_orchestrator_path_on_its_own() -> None:
    port = free_port()
    with running("demo-upstream", "--port", str(port), "--unknown-status", "500", port=port):
        base = f"http://127.0.0.1:{port}/api/v1/executions"
        found = httpx.get(f"{base}/{demo_id('research')}")
        unknown = httpx.get(f"{base}/00000000-0000-0000-0000-000000000000")
        invalid = httpx.get(f"{base}/nope")

    assert found.json()["id"] == demo_id("research")
    assert (unknown.status_code, unknown.content) == (500, b"")
    assert (invalid.status_code, invalid.content) == (400, b"")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"POLOS_GATEWAY_PORT": "eighty"}, "port"),
        ({"POLOS_GATEWAY_READ_TIMEOUT": "-1"}, "read_timeout"),
        ({"POLOS_GATEWAY_FORWARD_HEADERS": "authorization,x-api-key"}, "x-api-key"),
        ({"POLOS_GATEWAY_UPSTREAM_URL": "not a url"}, "upstream_url"),
        ({"POLOS_GATEWAY_UPSTREAM_URL": "http://ops:s3cret@orchestrator:8080"}, "credentials"),
    ],
)
def test_a_bad_setting_stops_serve_with_a_clear_message(env: dict[str, str], message: str) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "gateway", "serve"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=ROOT,
        timeout=60,
        check=False,
    )

    assert finished.returncode == 2
    assert message in finished.stderr
    assert "Traceback" not in finished.stderr
    assert "s3cret" not in finished.stderr


@pytest.mark.anyio
async def test_serve_closes_a_websocket_whose_message_is_over_the_request_bound() -> None:
    port = free_port()
    env = {"POLOS_GATEWAY_MAX_REQUEST_BYTES": "4096"}
    with running("serve", "--demo", "--port", str(port), port=port, env=env):
        url = f"ws://127.0.0.1:{port}/graphql"
        protocol = [Subprotocol("graphql-transport-ws")]
        async with websockets.connect(url, subprotocols=protocol) as socket:
            await socket.send(json.dumps({"type": "connection_init"}))
            acknowledged = json.loads(await socket.recv())
            await socket.send(json.dumps({"type": "connection_init", "payload": {"x": "y" * 5000}}))
            with pytest.raises(websockets.ConnectionClosedError) as closed:
                await socket.recv()

    assert acknowledged == {"type": "connection_ack"}
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009  # message too big
