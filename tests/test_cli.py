"""The command as a user runs it: real processes, real ports."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx
import pytest

from gateway.demo.data import demo_id
from tests.servers import closed_port_url

ROOT = Path(__file__).parent.parent
READY_LINE = "Uvicorn running on"
STARTED_LINE = "Application startup complete"
START_DEADLINE = 60


def free_port() -> int:
    return int(closed_port_url().rsplit(":", 1)[1])


@contextmanager
def running(*args: str, port: int, workers: int = 1) -> Iterator[list[str]]:
    """Run ``python -m gateway ARGS`` until it serves on ``port``; yield the lines it prints.

    Serving means uvicorn announced the port and every worker finished starting up. A process
    that never gets there fails the test after START_DEADLINE seconds instead of hanging it.
    """
    announced = f"{READY_LINE} http://127.0.0.1:{port}"
    lines: list[str] = []
    arrived: queue.Queue[str | None] = queue.Queue()

    def ready() -> bool:
        started = sum(STARTED_LINE in line for line in lines)
        return any(announced in line for line in lines) and started >= workers

    def pump(stream: IO[str]) -> None:
        for line in stream:  # also keeps a full pipe from blocking the server's logging
            arrived.put(line)
        arrived.put(None)

    with subprocess.Popen(
        [sys.executable, "-m", "gateway", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    ) as process:
        assert process.stdout is not None
        threading.Thread(target=pump, args=(process.stdout,), daemon=True).start()
        try:
            while not ready():
                line = arrived.get(timeout=START_DEADLINE)
                assert line is not None, "exited before serving:\n" + "".join(lines)
                lines.append(line)
            yield lines
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                raise


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
