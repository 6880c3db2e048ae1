"""One access-log line per request on ``gateway.access``: JSON, with the request's own facts
and never a credential."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import httpx
import pytest
import websockets
from websockets.typing import Origin, Subprotocol

from gateway.access_log import TEXT_FORMAT, JsonFormatter
from tests.conftest import StartGateway
from tests.servers import Recorder, closed_port_url

ROOT_ID = "f13cf9c2-9eff-5486-a927-c43988a27bdf"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
SECRET_TOKEN = "sk_never_log_this_token"
SECRET_COOKIE = "never-log-this-cookie"


def access_lines(caplog: pytest.LogCaptureFixture, request_id: str) -> list[dict[str, Any]]:
    formatter = JsonFormatter()
    lines = [
        json.loads(formatter.format(record))
        for record in caplog.records
        if record.name == "gateway.access"
    ]
    return [line for line in lines if line["request_id"] == request_id]


def test_a_graphql_request_logs_one_json_line_with_its_id_operation_calls_and_errors(
    gateway: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    query = "query TwoOfThem($ids: [ID!]!) { executions(ids: $ids) { id } }"

    response = gateway.post(
        "/graphql",
        json={"query": query, "variables": {"ids": [ROOT_ID, UNKNOWN_ID]}},
        headers={"X-Request-ID": "trace-me-123"},
    )

    assert response.headers["x-request-id"] == "trace-me-123"
    [line] = access_lines(caplog, "trace-me-123")
    assert line["logger"] == "gateway.access"
    assert line["level"] == "info"
    assert line["method"] == "POST"
    assert line["route"] == "/graphql"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float)
    assert line["operation_name"] == "TwoOfThem"
    assert line["upstream_calls"] == 2
    assert line["cache_hits"] == 0
    assert line["error_codes"] == ["NOT_FOUND"]


def test_a_warm_request_logs_its_cache_hits_and_no_upstream_calls(
    start_gateway: StartGateway, upstream: tuple[str, Recorder], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    client = start_gateway(upstream[0])

    client.get(f"/api/v1/executions/{ROOT_ID}", headers={"X-Request-ID": "cold"})
    client.get(f"/api/v1/executions/{ROOT_ID}", headers={"X-Request-ID": "warm"})

    [cold] = access_lines(caplog, "cold")
    [warm] = access_lines(caplog, "warm")
    assert (cold["upstream_calls"], cold["cache_hits"]) == (1, 0)
    assert (warm["upstream_calls"], warm["cache_hits"]) == (0, 1)
    assert warm["route"] == "/api/v1/executions/{execution_id}"
    assert warm["operation_name"] is None
    assert warm["error_codes"] == []


def test_a_failed_rest_request_logs_its_error_code(
    gateway: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")

    response = gateway.get(f"/api/v1/executions/{UNKNOWN_ID}", headers={"X-Request-ID": "gone"})

    assert response.status_code == 404
    [line] = access_lines(caplog, "gone")
    assert line["status"] == 404
    assert line["error_codes"] == ["NOT_FOUND"]


def test_a_request_without_an_id_logs_the_one_it_was_given(
    gateway: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")

    response = gateway.get(f"/api/v1/executions/{ROOT_ID}")

    [line] = access_lines(caplog, response.headers["x-request-id"])
    assert (line["route"], line["status"]) == ("/api/v1/executions/{execution_id}", 200)


def test_credentials_sent_with_a_request_never_reach_the_log(
    gateway: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    gateway.post(
        "/graphql",
        json={"query": f'{{ execution(id: "{ROOT_ID}") {{ id }} }}'},
        headers={
            "Authorization": f"Bearer {SECRET_TOKEN}",
            "Cookie": f"polos_auth={SECRET_COOKIE}; other=1",
            "X-Request-ID": "with-secrets",
        },
    )

    [line] = access_lines(caplog, "with-secrets")
    assert line["upstream_calls"] == 1
    everything = caplog.text + "".join(JsonFormatter().format(r) for r in caplog.records)
    assert SECRET_TOKEN not in everything
    assert SECRET_COOKIE not in everything


def test_the_text_format_reads_as_one_line_for_people(
    gateway: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")

    gateway.get(f"/api/v1/executions/{ROOT_ID}", headers={"X-Request-ID": "for-people"})

    [record] = [r for r in caplog.records if "request_id=for-people" in r.getMessage()]
    text = logging.Formatter(TEXT_FORMAT).format(record)
    assert text.startswith("INFO      gateway.access: GET /api/v1/executions/{execution_id} 200 ")
    assert "\n" not in text


@contextmanager
def line_arrival(request_id: str) -> Iterator[threading.Event]:
    """Set when the access log writes a line for ``request_id``, in whichever thread."""
    arrived = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if getattr(record, "fields", {}).get("request_id") == request_id:
                arrived.set()

    watch = Watch()
    logging.getLogger("gateway.access").addHandler(watch)
    try:
        yield arrived
    finally:
        logging.getLogger("gateway.access").removeHandler(watch)


@pytest.mark.anyio
@pytest.mark.parametrize(("origin", "status"), [(None, 101), ("https://evil.example", 403)])
async def test_a_websocket_logs_one_line_when_it_ends_accepted_or_refused(
    gateway: httpx.Client, caplog: pytest.LogCaptureFixture, origin: str | None, status: int
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    with line_arrival(f"ws-{status}") as arrival:
        url = str(gateway.base_url).replace("http://", "ws://") + "/graphql"
        connect = websockets.connect(
            url,
            origin=None if origin is None else Origin(origin),
            subprotocols=[Subprotocol("graphql-transport-ws")],
            additional_headers={"X-Request-ID": f"ws-{status}", "Authorization": SECRET_TOKEN},
        )

        if status == 101:
            async with connect as socket:
                await socket.send(json.dumps({"type": "connection_init"}))
                await socket.recv()
        else:
            with pytest.raises(websockets.InvalidStatus):
                await connect
        # The server writes the line once the connection has ended on its side too.
        assert await anyio.to_thread.run_sync(arrival.wait, 30)

    [line] = access_lines(caplog, f"ws-{status}")
    assert (line["method"], line["route"], line["status"]) == ("WEBSOCKET", "/graphql", status)
    assert SECRET_TOKEN not in json.dumps(line)


def test_probes_and_scrapes_log_at_debug_unless_they_fail(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    gateway = start_gateway(closed_port_url(), retry_attempts=1)

    for path in ("/healthz", "/metrics", "/readyz"):
        gateway.get(path, headers={"X-Request-ID": f"probe{path.replace('/', '-')}"})
    caplog.set_level(logging.DEBUG, logger="gateway.access")
    gateway.get("/healthz", headers={"X-Request-ID": "probe-debug"})

    assert access_lines(caplog, "probe-healthz") == []
    assert access_lines(caplog, "probe-metrics") == []
    # No upstream: readiness fails, and a failing probe is worth a line.
    [failed] = access_lines(caplog, "probe-readyz")
    assert failed["status"] == 503
    [debug] = access_lines(caplog, "probe-debug")
    assert (debug["level"], debug["status"]) == ("debug", 200)


def test_requests_without_an_id_each_get_a_fresh_one_of_32_hex_digits(
    gateway: httpx.Client,
) -> None:
    ids = [gateway.get("/healthz").headers["x-request-id"] for _ in range(50)]

    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch("[0-9a-f]{32}", i) for i in ids)
