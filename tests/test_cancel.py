"""``cancelExecution`` over real HTTP: against the demo upstream's cancel, and against a
scripted upstream for every way a cancel can go wrong. A cancel is sent once, never retried."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from gql import Client, GraphQLRequest, gql
from gql.transport.websockets import WebsocketsTransport

from gateway.demo.data import demo_id
from gateway.demo.upstream import create_demo_app
from tests.conftest import AUTH_HEADERS, StartGateway, error_codes, graphql
from tests.records import EXECUTION_ID, execution_body
from tests.servers import Recorder, serve
from tests.stepped_upstream import Step, SteppedUpstream

CANCEL = """
mutation($id: ID!) {
  cancelExecution(id: $id) { id status isTerminal cancelledAt cancelledBy }
}"""
READ = "query($id: ID!) { execution(id: $id) { status } }"
LONG_JOB = demo_id("live/backfill")
COMPLETED = demo_id("research")


def cancel(gateway: httpx.Client, execution_id: str, **headers: str) -> dict[str, Any]:
    return graphql(gateway, CANCEL, {"id": execution_id}, **headers)


def step(status: str) -> Step:
    return Step(execution_body(EXECUTION_ID, status=status))


@pytest.fixture
def demo() -> Iterator[tuple[str, Recorder]]:
    """A demo upstream of this test's own: cancels change its state."""
    recorder = Recorder(create_demo_app())
    with serve(recorder, lifespan="off") as url:
        yield url, recorder


def test_a_cancel_returns_the_execution_as_it_is_afterwards(
    demo: tuple[str, Recorder], start_gateway: StartGateway
) -> None:
    url, recorder = demo
    gateway = start_gateway(url)

    body = cancel(gateway, LONG_JOB)

    assert "errors" not in body
    cancelled = body["data"]["cancelExecution"]
    assert cancelled["id"] == LONG_JOB
    assert (cancelled["status"], cancelled["isTerminal"]) == ("PENDING_CANCEL", False)
    assert cancelled["cancelledBy"] == "manual"
    assert cancelled["cancelledAt"] is not None
    posts = [r.path for r in recorder.requests if r.method == "POST"]
    assert posts == [f"/api/v1/executions/{LONG_JOB}/cancel"]


def test_a_final_execution_cannot_be_cancelled(
    demo: tuple[str, Recorder], start_gateway: StartGateway
) -> None:
    gateway = start_gateway(demo[0])

    body = cancel(gateway, COMPLETED)

    assert body["data"] == {"cancelExecution": None}
    (error,) = body["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "upstreamStatus": 400}
    assert error["message"] == f"Execution {COMPLETED} cannot be cancelled in status completed."


def test_a_cancel_drops_the_cached_copy_of_the_execution(
    stepped: tuple[str, SteppedUpstream], start_gateway: StartGateway
) -> None:
    url, upstream = stepped
    upstream.script(EXECUTION_ID, step("running"), step("pending_cancel"))
    upstream.on_cancel(EXECUTION_ID, Step(b'{"status": "pending_cancel"}'))
    # Running executions kept for ten minutes: only dropping the copy can show the change.
    gateway = start_gateway(url, cache_active_ttl=600)

    before = graphql(gateway, READ, {"id": EXECUTION_ID})
    cancelled = cancel(gateway, EXECUTION_ID)
    after = graphql(gateway, READ, {"id": EXECUTION_ID})

    assert before["data"]["execution"]["status"] == "RUNNING"
    assert cancelled["data"]["cancelExecution"]["status"] == "PENDING_CANCEL"
    assert after["data"]["execution"]["status"] == "PENDING_CANCEL"


@pytest.mark.parametrize(
    ("status", "code"),
    [(503, "UPSTREAM_ERROR"), (429, "RATE_LIMITED"), (502, "UPSTREAM_ERROR")],
)
def test_a_cancel_is_sent_once_even_when_a_read_would_be_retried(
    stepped: tuple[str, SteppedUpstream], start_gateway: StartGateway, status: int, code: str
) -> None:
    url, upstream = stepped
    upstream.on_cancel(EXECUTION_ID, Step(status=status))
    gateway = start_gateway(url, retry_attempts=3)

    body = cancel(gateway, EXECUTION_ID)

    assert body["errors"][0]["extensions"] == {"code": code, "upstreamStatus": status}
    if code == "UPSTREAM_ERROR":
        assert body["errors"][0]["message"] == (
            f"The orchestrator failed to cancel execution {EXECUTION_ID} (HTTP {status})."
        )
    assert upstream.cancels() == [f"/api/v1/executions/{EXECUTION_ID}/cancel"]


def test_a_cancel_that_times_out_says_it_may_have_happened_and_is_not_repeated(
    stepped: tuple[str, SteppedUpstream], start_gateway: StartGateway
) -> None:
    url, upstream = stepped
    upstream.on_cancel(EXECUTION_ID, Step(held=True))
    gateway = start_gateway(url, connect_timeout=0.2, read_timeout=0.2, upstream_timeout=0.3)

    body = cancel(gateway, EXECUTION_ID)

    (error,) = body["errors"]
    assert error["extensions"] == {"code": "UPSTREAM_TIMEOUT"}
    assert "may or may not be cancelled" in error["message"]
    assert upstream.cancels() == [f"/api/v1/executions/{EXECUTION_ID}/cancel"]


def test_cancels_carry_the_callers_credentials_and_their_refusals_keep_their_codes(
    start_gateway: StartGateway, secured_upstream: tuple[str, Recorder]
) -> None:
    url, recorder = secured_upstream
    gateway = start_gateway(url)

    anonymous = cancel(gateway, LONG_JOB)
    elsewhere = cancel(gateway, LONG_JOB, **{**AUTH_HEADERS, "X-Project-ID": "other"})
    allowed = cancel(gateway, LONG_JOB, **AUTH_HEADERS)

    assert error_codes(anonymous) == [("cancelExecution", "UNAUTHENTICATED")]
    assert error_codes(elsewhere) == [("cancelExecution", "FORBIDDEN")]
    assert elsewhere["errors"][0]["message"] == (
        f"The credentials sent with this request may not cancel execution {LONG_JOB}."
    )
    assert allowed["data"]["cancelExecution"]["status"] == "PENDING_CANCEL"
    sent = [r.headers for r in recorder.requests if r.method == "POST"]
    assert sent[-1]["authorization"] == AUTH_HEADERS["Authorization"]


@pytest.mark.parametrize("raw", ["../../admin", "not-a-uuid", f"{EXECUTION_ID}/cancel"])
def test_an_id_that_is_not_a_uuid_is_refused_before_any_upstream_call(
    stepped: tuple[str, SteppedUpstream], start_gateway: StartGateway, raw: str
) -> None:
    url, upstream = stepped
    gateway = start_gateway(url)

    body = cancel(gateway, raw)

    assert error_codes(body) == [("cancelExecution", "BAD_USER_INPUT")]
    assert upstream.app.requests == []


def test_a_cancel_goes_upstream_under_the_canonical_id(
    stepped: tuple[str, SteppedUpstream], start_gateway: StartGateway
) -> None:
    url, upstream = stepped
    upstream.script(EXECUTION_ID, step("pending_cancel"))
    upstream.on_cancel(EXECUTION_ID, Step(b"{}"))
    gateway = start_gateway(url)

    body = cancel(gateway, "{" + EXECUTION_ID.upper() + "}")

    assert body["data"]["cancelExecution"]["id"] == EXECUTION_ID
    assert upstream.cancels() == [f"/api/v1/executions/{EXECUTION_ID}/cancel"]


def test_a_cancel_over_get_is_refused_and_never_sent(
    stepped: tuple[str, SteppedUpstream], start_gateway: StartGateway
) -> None:
    url, upstream = stepped
    gateway = start_gateway(url)

    response = gateway.get(
        "/graphql",
        params={"query": CANCEL, "variables": f'{{"id": "{EXECUTION_ID}"}}'},
        headers={"Accept": "application/json"},
    )

    assert response.status_code == 405
    assert upstream.app.requests == []


@pytest.mark.anyio
async def test_a_subscriber_sees_a_cancel_without_waiting_for_its_next_poll(
    stepped: tuple[str, SteppedUpstream], start_gateway: StartGateway
) -> None:
    url, upstream = stepped
    upstream.script(EXECUTION_ID, step("running"), step("pending_cancel"))
    upstream.on_cancel(EXECUTION_ID, Step(b"{}"))
    # Ten minutes between polls: only the cancel's nudge can bring the next one forward.
    gateway = start_gateway(url, subscription_poll_interval=600, subscription_poll_max_interval=600)
    url_ws = str(gateway.base_url).replace("http://", "ws://") + "/graphql"
    subscription = GraphQLRequest(
        gql("subscription($id: ID!) { executionUpdated(id: $id) { status } }"),
        variable_values={"id": EXECUTION_ID},
    )

    transport = WebsocketsTransport(
        url=url_ws, subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL]
    )
    with anyio.fail_after(30):
        async with Client(transport=transport) as session:
            stream = session.subscribe(subscription)
            first = await anext(stream)
            await anyio.to_thread.run_sync(cancel, gateway, EXECUTION_ID)
            second = await anext(stream)
            await stream.aclose()

    assert [first, second] == [
        {"executionUpdated": {"status": "RUNNING"}},
        {"executionUpdated": {"status": "PENDING_CANCEL"}},
    ]
