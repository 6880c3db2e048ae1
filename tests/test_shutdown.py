"""Graceful shutdown: on SIGTERM new connections are refused and in-flight requests finish."""

from __future__ import annotations

import signal
import threading
from concurrent.futures import Future
from typing import Any

import httpx
import pytest

from gateway.settings import Settings
from tests.conftest import graphql
from tests.processes import free_port, started
from tests.records import EXECUTION_ID, execution_body
from tests.servers import ScriptedUpstream, serve

QUERY = "query($id: ID!) { execution(id: $id) { id status } }"
# Logged by uvicorn after it closed its listening socket, while connections remain open.
CLOSED_LINE = "Waiting for connections to close"


def test_sigterm_refuses_new_connections_finishes_the_request_in_flight_and_exits_zero() -> None:
    upstream = ScriptedUpstream()
    upstream.hold(EXECUTION_ID, execution_body())
    port = free_port()
    answer: Future[dict[str, Any]] = Future()

    def ask() -> None:
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                answer.set_result(graphql(client, QUERY, {"id": EXECUTION_ID}))
        except BaseException as exc:
            answer.set_exception(exc)

    with (
        serve(upstream.app, lifespan="off") as upstream_url,
        started(
            "serve",
            "--port",
            str(port),
            "--upstream-url",
            upstream_url,
            port=port,
            env={"POLOS_GATEWAY_SHUTDOWN_TIMEOUT": "30", "POLOS_GATEWAY_LOG_FORMAT": "text"},
        ) as gateway,
    ):
        try:
            threading.Thread(target=ask, daemon=True).start()
            upstream.wait_held()

            gateway.popen.send_signal(signal.SIGTERM)
            gateway.wait_for_line(CLOSED_LINE)
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            assert gateway.popen.poll() is None  # still waiting for the request in flight
        finally:
            upstream.release()

        body = answer.result(timeout=30)
        assert gateway.popen.wait(timeout=30) == 0
        # The lifespan's shutdown ran: the upstream client and the cache are closed.
        gateway.wait_for_line("Application shutdown complete")

    assert body == {"data": {"execution": {"id": EXECUTION_ID, "status": "COMPLETED"}}}


def test_the_shutdown_grace_period_is_thirty_seconds_unless_set() -> None:
    assert Settings().shutdown_timeout == 30.0
    assert Settings(shutdown_timeout=2.5).shutdown_timeout == 2.5


def test_sigterm_stops_every_worker_cleanly_and_the_supervisor_exits_zero() -> None:
    """With --workers, uvicorn's supervisor passes SIGTERM on; each worker runs its lifespan's
    shutdown, and the command exits 0, which is what a process manager reads as a clean stop."""
    port = free_port()
    with started(
        "serve",
        "--demo",
        "--port",
        str(port),
        "--workers",
        "2",
        port=port,
        workers=2,
        env={"POLOS_GATEWAY_LOG_FORMAT": "text"},
    ) as gateway:
        answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)

        gateway.popen.send_signal(signal.SIGTERM)
        status = gateway.popen.wait(timeout=30)
        while gateway.next_line() is not None:
            pass  # the rest of what it printed

    assert answer.status_code == 200
    assert status == 0
    assert sum("Application shutdown complete" in line for line in gateway.lines) == 2
