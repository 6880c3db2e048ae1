"""``executionUpdated`` over real WebSockets, spoken by a real client (gql), and the pollers
behind it, counted at the upstream.

The upstream answers each poll with the next step of a script and holds a step until the test
releases it, so every count here is exact and nothing waits on a clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any, cast

import anyio
import httpx
import pytest
import websockets
from gql import Client, GraphQLRequest, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport
from websockets.typing import Origin, Subprotocol

from gateway.credentials import Credentials
from gateway.settings import Settings
from gateway.subscriptions import ExecutionWatch, TooManySubscriptions, WatchEvent, _Watcher
from gateway.upstream import UpstreamClient
from tests.conftest import StartGateway
from tests.records import EXECUTION_ID, execution_body
from tests.stepped_upstream import Step, SteppedUpstream

PARENT_ID = "0b7a1d8e-2f3c-4a5b-8c9d-0e1f2a3b4c5d"
SUBSCRIPTION = gql("subscription($id: ID!) { executionUpdated(id: $id) { id status isTerminal } }")
# Polls follow each other at once: the scripts and holds, not the clock, set the pace.
FAST_POLLS: dict[str, Any] = {
    "subscription_poll_interval": 0.001,
    "subscription_poll_max_interval": 0.001,
}


def step(status: str, *, held: bool = False, **fields: Any) -> Step:
    return Step(execution_body(EXECUTION_ID, status=status, **fields), held=held)


def asking(request: GraphQLRequest, execution_id: str) -> GraphQLRequest:
    return GraphQLRequest(request, variable_values={"id": execution_id})


def ws_url(gateway: httpx.Client) -> str:
    return str(gateway.base_url).replace("http://", "ws://") + "/graphql"


def transport(gateway: httpx.Client, **options: Any) -> WebsocketsTransport:
    options.setdefault("subprotocols", [WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL])
    return WebsocketsTransport(url=ws_url(gateway), **options)


async def statuses(
    gateway: httpx.Client, execution_id: str = EXECUTION_ID, **options: Any
) -> list[str]:
    """Every status one subscription receives until the gateway completes it."""
    async with Client(transport=transport(gateway, **options)) as session:
        return [
            event["executionUpdated"]["status"]
            async for event in session.subscribe(asking(SUBSCRIPTION, execution_id))
        ]


async def statuses_until_error(
    gateway: httpx.Client, execution_id: str = EXECUTION_ID
) -> tuple[list[str], dict[str, Any]]:
    """The statuses a subscription receives, and the one error that ends it."""
    received: list[str] = []

    async def consume() -> None:
        async with Client(transport=transport(gateway)) as session:
            async for event in session.subscribe(asking(SUBSCRIPTION, execution_id)):
                received.append(event["executionUpdated"]["status"])

    with pytest.raises(TransportQueryError) as ended:
        await consume()
    assert ended.value.errors is not None
    (error,) = ended.value.errors
    return received, error


async def error_of(gateway: httpx.Client, execution_id: str = EXECUTION_ID) -> dict[str, Any]:
    """The error that ends a subscription that sends no data first."""
    received, error = await statuses_until_error(gateway, execution_id)
    assert received == []
    return error


@pytest.mark.anyio
async def test_a_subscription_sends_the_execution_then_each_change_and_completes_when_final(
    stepped: tuple[str, SteppedUpstream], start_gateway: StartGateway
) -> None:
    url, upstream = stepped
    upstream.script(
        EXECUTION_ID, step("queued"), step("running"), step("running"), step("completed")
    )
    gateway = start_gateway(url, **FAST_POLLS)

    received = await statuses(gateway)

    # The second RUNNING poll changed nothing, so nothing was sent for it.
    assert received == ["QUEUED", "RUNNING", "COMPLETED"]
    assert upstream.polls[EXECUTION_ID] == 4


@pytest.mark.anyio
async def test_many_subscribers_of_one_execution_share_one_upstream_poller(
    stepped: tuple[str, SteppedUpstream], start_gateway: StartGateway
) -> None:
    url, upstream = stepped
    upstream.script(EXECUTION_ID, step("queued"), step("running", held=True), step("completed"))
    gateway = start_gateway(url, **FAST_POLLS)

    async with contextlib.AsyncExitStack() as stack:
        streams = []
        for _ in range(12):  # each on a connection of its own
            session = await stack.enter_async_context(Client(transport=transport(gateway)))
            stream = session.subscribe(asking(SUBSCRIPTION, EXECUTION_ID))
            # Its first event proves it is registered with the poller.
            assert (await anext(stream))["executionUpdated"]["status"] == "QUEUED"
            streams.append(stream)
        await anyio.to_thread.run_sync(upstream.wait_held)
        upstream.release()
        rest = [[e["executionUpdated"]["status"] async for e in stream] for stream in streams]

    assert rest == [["RUNNING", "COMPLETED"]] * 12
    # Three polls for twelve subscribers: one poller did all the asking.
    assert upstream.polls[EXECUTION_ID] == 3


@pytest.mark.anyio
async def test_subscribers_with_other_credentials_get_pollers_of_their_own(
    stepped: tuple[str, SteppedUpstream], start_gateway: StartGateway
) -> None:
    url, upstream = stepped
    upstream.script(EXECUTION_ID, step("completed"))
    gateway = start_gateway(url, **FAST_POLLS)

    for key in ("sk_alice", "sk_bob", "sk_alice"):
        assert await statuses(gateway, init_payload={"Authorization": f"Bearer {key}"}) == [
            "COMPLETED"
        ]

    sent = [r.headers.get("authorization") for r in upstream.app.requests]
    assert sent == ["Bearer sk_alice", "Bearer sk_bob", "Bearer sk_alice"]


@pytest.mark.anyio
async def test_credentials_come_from_the_upgrade_request_and_connection_init_overrides_them(
    stepped: tuple[str, SteppedUpstream], start_gateway: StartGateway
) -> None:
    url, upstream = stepped
    upstream.script(EXECUTION_ID, step("completed"))
    gateway = start_gateway(url, **FAST_POLLS)
    upgrade = {
        "Authorization": "Bearer sk_from_upgrade",
        "X-Project-ID": "proj-1",
        "Cookie": "polos_auth=jwt.from.cookie; tracking=nope",
        "X-Api-Key": "not-forwarded",
    }

    await statuses(gateway, headers=upgrade)
    await statuses(
        gateway,
        headers=upgrade,
        init_payload={"Authorization": "Bearer sk_from_init", "polos_auth": "jwt.from.init"},
    )

    first, second = (r.headers for r in upstream.app.requests)
    assert first["authorization"] == "Bearer sk_from_upgrade"
    assert first["x-project-id"] == "proj-1"
    assert first["cookie"] == "polos_auth=jwt.from.cookie"
    assert "x-api-key" not in first
    assert second["authorization"] == "Bearer sk_from_init"
    assert second["x-project-id"] == "proj-1"
    assert second["cookie"] == "polos_auth=jwt.from.init"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "code"), [(404, "NOT_FOUND"), (401, "UNAUTHENTICATED"), (403, "FORBIDDEN")]
)
async def test_an_execution_that_disappears_or_access_lost_ends_the_subscription_with_its_code(
    stepped: tuple[str, SteppedUpstream], start_gateway: StartGateway, status: int, code: str
) -> None:
    url, upstream = stepped
    upstream.script(EXECUTION_ID, step("running"), Step(status=status))
    gateway = start_gateway(url, **FAST_POLLS)

    received, error = await statuses_until_error(gateway)

    assert received == ["RUNNING"]
    assert error["extensions"] == {"code": code, "upstreamStatus": status}
    assert upstream.polls[EXECUTION_ID] == 2


@pytest.mark.anyio
async def test_an_execution_that_cannot_be_read_at_first_is_refused_at_once(
    stepped: tuple[str, SteppedUpstream], start_gateway: StartGateway
) -> None:
    url, upstream = stepped
    gateway = start_gateway(url, **FAST_POLLS)

    error = await error_of(gateway)

    assert error["extensions"]["code"] == "NOT_FOUND"
    assert EXECUTION_ID in error["message"]
    assert len(upstream.app.requests) == 1


@pytest.mark.anyio
async def test_a_passing_upstream_failure_does_not_end_the_subscription(
    stepped: tuple[str, SteppedUpstream], start_gateway: StartGateway
) -> None:
    url, upstream = stepped
    upstream.script(EXECUTION_ID, step("running"), Step(status=502), step("completed"))
    gateway = start_gateway(url, retry_attempts=1, **FAST_POLLS)

    assert await statuses(gateway) == ["RUNNING", "COMPLETED"]


@pytest.mark.anyio
async def test_a_lasting_upstream_failure_ends_the_subscription_after_the_configured_polls(
    stepped: tuple[str, SteppedUpstream], start_gateway: StartGateway
) -> None:
    url, upstream = stepped
    upstream.script(EXECUTION_ID, step("running"), Step(status=502))
    gateway = start_gateway(url, retry_attempts=1, subscription_max_failures=3, **FAST_POLLS)

    received, error = await statuses_until_error(gateway)

    assert received == ["RUNNING"]
    assert error["extensions"] == {"code": "UPSTREAM_ERROR", "upstreamStatus": 502}
    assert upstream.polls[EXECUTION_ID] == 1 + 3


@pytest.mark.anyio
async def test_a_bad_id_is_refused_with_bad_user_input_and_no_upstream_call(
    stepped: tuple[str, SteppedUpstream], start_gateway: StartGateway
) -> None:
    url, upstream = stepped
    gateway = start_gateway(url, **FAST_POLLS)

    error = await error_of(gateway, "../../admin")

    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert upstream.app.requests == []


@pytest.mark.anyio
async def test_fields_under_each_event_are_read_afresh_for_that_event(
    stepped: tuple[str, SteppedUpstream], start_gateway: StartGateway
) -> None:
    url, upstream = stepped
    links: dict[str, Any] = {"parent_execution_id": PARENT_ID, "root_execution_id": PARENT_ID}
    upstream.script(EXECUTION_ID, step("running", **links), step("completed", **links))
    upstream.script(
        PARENT_ID,
        Step(execution_body(PARENT_ID, status="running")),
        Step(execution_body(PARENT_ID, status="completed")),
    )
    gateway = start_gateway(url, cache_active_ttl=0, **FAST_POLLS)
    query = gql("subscription($id: ID!) { executionUpdated(id: $id) { status parent { status } } }")

    async with Client(transport=transport(gateway)) as session:
        events = [e async for e in session.subscribe(asking(query, EXECUTION_ID))]

    # A loader kept for the whole connection would have served the parent's first state again.
    assert [e["executionUpdated"] for e in events] == [
        {"status": "RUNNING", "parent": {"status": "RUNNING"}},
        {"status": "COMPLETED", "parent": {"status": "COMPLETED"}},
    ]


@pytest.mark.anyio
async def test_subscriptions_above_the_cap_of_a_connection_are_refused_with_rate_limited(
    stepped: tuple[str, SteppedUpstream], start_gateway: StartGateway
) -> None:
    url, upstream = stepped
    upstream.script(EXECUTION_ID, step("running"))
    gateway = start_gateway(url, max_subscriptions_per_connection=2, **FAST_POLLS)

    async with Client(transport=transport(gateway)) as session:
        held = [session.subscribe(asking(SUBSCRIPTION, EXECUTION_ID)) for _ in range(2)]
        for stream in held:
            assert (await anext(stream))["executionUpdated"]["status"] == "RUNNING"
        with pytest.raises(TransportQueryError) as refused:
            await anext(session.subscribe(asking(SUBSCRIPTION, EXECUTION_ID)))
        for stream in held:
            await stream.aclose()

    assert refused.value.errors is not None
    assert refused.value.errors[0]["extensions"]["code"] == "RATE_LIMITED"


@pytest.mark.anyio
async def test_subscriptions_above_the_cap_of_the_process_are_refused_with_rate_limited(
    stepped: tuple[str, SteppedUpstream], start_gateway: StartGateway
) -> None:
    url, upstream = stepped
    upstream.script(EXECUTION_ID, step("running"))
    gateway = start_gateway(url, max_subscriptions=1, **FAST_POLLS)

    async with Client(transport=transport(gateway)) as first:
        stream = first.subscribe(asking(SUBSCRIPTION, EXECUTION_ID))
        assert (await anext(stream))["executionUpdated"]["status"] == "RUNNING"
        error = await error_of(gateway)
        await stream.aclose()

    assert error["extensions"]["code"] == "RATE_LIMITED"


@pytest.mark.anyio
async def test_the_legacy_graphql_ws_protocol_is_served_too(
    stepped: tuple[str, SteppedUpstream], start_gateway: StartGateway
) -> None:
    url, upstream = stepped
    upstream.script(EXECUTION_ID, step("queued"), step("completed"))
    gateway = start_gateway(url, **FAST_POLLS)

    received = await statuses(gateway, subprotocols=[WebsocketsTransport.APOLLO_SUBPROTOCOL])

    assert received == ["QUEUED", "COMPLETED"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("origin", "cors_origins", "accepted"),
    [
        ("https://evil.example", [], False),
        ("https://app.example", ["https://app.example"], True),
        (None, [], True),  # not a browser: no ambient cookies to abuse
    ],
)
async def test_only_allowed_origins_may_open_a_websocket(
    stepped: tuple[str, SteppedUpstream],
    start_gateway: StartGateway,
    origin: str | None,
    cors_origins: list[str],
    accepted: bool,
) -> None:
    gateway = start_gateway(stepped[0], cors_origins=cors_origins)
    connect = websockets.connect(
        ws_url(gateway),
        origin=None if origin is None else Origin(origin),
        subprotocols=[Subprotocol("graphql-transport-ws")],
    )

    if accepted:
        async with connect as socket:
            assert socket.subprotocol == "graphql-transport-ws"
    else:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await connect
        assert refused.value.response.status_code == 403


@pytest.mark.anyio
async def test_a_page_on_the_gateways_own_origin_may_open_a_websocket(
    stepped: tuple[str, SteppedUpstream], start_gateway: StartGateway
) -> None:
    gateway = start_gateway(stepped[0])
    origin = Origin(str(gateway.base_url).rstrip("/"))

    async with websockets.connect(ws_url(gateway), origin=origin) as socket:
        assert socket.request is not None


# --- the watch itself, in-process -------------------------------------------------------


@contextlib.asynccontextmanager
async def watch_of(url: str, **settings: Any) -> AsyncIterator[ExecutionWatch]:
    config = Settings(upstream_url=url, retry_attempts=1, **{**FAST_POLLS, **settings})
    async with UpstreamClient(config) as client:
        watch = ExecutionWatch(client, config, fingerprint=lambda c: str(c.headers))
        try:
            yield watch
        finally:
            await watch.aclose()


@pytest.mark.anyio
async def test_the_poller_stops_when_its_last_subscriber_leaves(
    stepped: tuple[str, SteppedUpstream],
) -> None:
    url, upstream = stepped
    upstream.script(EXECUTION_ID, step("running"))

    async with watch_of(url) as watch:
        first = watch.watch(EXECUTION_ID, Credentials())
        second = watch.watch(EXECUTION_ID, Credentials())
        assert (await anext(first)).execution is not None
        assert (await anext(second)).execution is not None
        await first.aclose()
        assert (watch.pollers, watch.watching) == (1, 1)
        await second.aclose()

        assert (watch.pollers, watch.watching) == (0, 0)


@pytest.mark.anyio
async def test_a_poller_that_ended_is_replaced_for_the_next_subscriber(
    stepped: tuple[str, SteppedUpstream],
) -> None:
    url, upstream = stepped
    upstream.script(EXECUTION_ID, step("completed"))

    async with watch_of(url) as watch:
        for _ in range(2):
            events = [event async for event in watch.watch(EXECUTION_ID, Credentials())]
            assert [e.execution.record.status for e in events if e.execution] == ["completed"]

        assert watch.pollers == 0
    assert upstream.polls[EXECUTION_ID] == 2


def test_a_slow_subscriber_skips_to_the_newest_event() -> None:
    watcher = _Watcher()
    older, newer = WatchEvent(), WatchEvent()

    watcher.offer(older)
    watcher.offer(newer)

    assert anyio.run(watcher.take) is newer


# --- cookies, origins and the connection's credentials -----------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("origin", "settings", "cookie_forwarded"),
    [
        ("https://evil.example", {"cors_origins": ["*"]}, False),
        ("https://app.example", {"cors_origins": ["https://app.example"]}, False),
        (
            "https://app.example",
            {"cors_origins": ["https://app.example"], "cors_allow_credentials": True},
            True,
        ),
        (None, {}, True),
        ("own", {}, True),
        ("behind-a-proxy", {}, True),
    ],
)
async def test_a_browsers_own_cookie_counts_only_where_cors_lets_it_send_credentials(
    stepped: tuple[str, SteppedUpstream],
    start_gateway: StartGateway,
    origin: str | None,
    settings: dict[str, Any],
    cookie_forwarded: bool,
) -> None:
    url, upstream = stepped
    upstream.script(EXECUTION_ID, step("completed"))
    gateway = start_gateway(url, **settings, **FAST_POLLS)
    headers = {"Cookie": "polos_auth=the.visitors.session"}
    if origin == "own":  # the gateway's own page
        headers["Origin"] = str(gateway.base_url).rstrip("/")
    elif origin == "behind-a-proxy":
        # A proxy rewrote Host, so Origin no longer matches it; the browser says same-origin.
        headers |= {"Origin": "https://gateway.example", "Sec-Fetch-Site": "same-origin"}
    elif origin is not None:
        headers["Origin"] = origin

    await statuses(gateway, headers=headers)

    [seen] = upstream.app.requests
    assert ("cookie" in seen.headers) is cookie_forwarded


@pytest.mark.anyio
async def test_a_page_on_another_allowed_origin_may_send_credentials_of_its_own(
    stepped: tuple[str, SteppedUpstream], start_gateway: StartGateway
) -> None:
    url, upstream = stepped
    upstream.script(EXECUTION_ID, step("completed"))
    gateway = start_gateway(url, cors_origins=["https://app.example"], **FAST_POLLS)

    await statuses(
        gateway,
        headers={"Origin": "https://app.example", "Cookie": "polos_auth=ambient"},
        init_payload={"Authorization": "Bearer sk_the_page_chose", "polos_auth": "chosen"},
    )

    [seen] = upstream.app.requests
    assert seen.headers["authorization"] == "Bearer sk_the_page_chose"
    assert seen.headers["cookie"] == "polos_auth=chosen"


@pytest.mark.anyio
async def test_a_second_connection_init_of_the_legacy_protocol_changes_no_credentials(
    stepped: tuple[str, SteppedUpstream], start_gateway: StartGateway
) -> None:
    url, upstream = stepped
    upstream.script(EXECUTION_ID, step("completed"))
    gateway = start_gateway(url, **FAST_POLLS)
    start = {
        "type": "start",
        "id": "1",
        "payload": {
            "query": "subscription($id: ID!) { executionUpdated(id: $id) { status } }",
            "variables": {"id": EXECUTION_ID},
        },
    }

    async with websockets.connect(ws_url(gateway), subprotocols=[Subprotocol("graphql-ws")]) as ws:
        for key in ("sk_first", "sk_second"):
            init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}
            await ws.send(json.dumps(init))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps(start))
        received = [json.loads(await ws.recv()) for _ in range(2)]

    assert [m["type"] for m in received] == ["data", "complete"]
    assert [r.headers["authorization"] for r in upstream.app.requests] == ["Bearer sk_first"]


# --- only over the WebSocket ---------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_subscription_sent_as_an_http_request_is_refused_with_a_pointer_to_the_websocket(
    stepped: tuple[str, SteppedUpstream], start_gateway: StartGateway, method: str
) -> None:
    url, upstream = stepped
    gateway = start_gateway(url)
    query = 'subscription { executionUpdated(id: "' + EXECUTION_ID + '") { status } }'

    if method == "GET":
        response = gateway.get(
            "/graphql", params={"query": query}, headers={"Accept": "application/json"}
        )
    else:
        response = gateway.post("/graphql", json={"query": query})
    streamed = gateway.post(
        "/graphql",
        json={"query": query},
        headers={"Accept": 'multipart/mixed;subscriptionSpec="1.0"'},
    )

    for answer in (response, streamed):
        assert answer.status_code == 400
        [error] = answer.json()["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert "WebSocket" in error["message"]
    assert upstream.app.requests == []


# --- the watch's pacing, failures and caps, in-process -------------------------------------


@pytest.mark.anyio
async def test_polls_back_off_while_nothing_changes_and_speed_up_after_a_change(
    stepped: tuple[str, SteppedUpstream],
) -> None:
    url, upstream = stepped
    upstream.script(
        EXECUTION_ID, *(step("queued") for _ in range(4)), step("running"), step("completed")
    )
    waits: list[float] = []

    async def record(_: asyncio.Event, seconds: float) -> None:
        waits.append(seconds)

    config = Settings(
        upstream_url=url, subscription_poll_interval=1, subscription_poll_max_interval=5
    )
    async with UpstreamClient(config) as client:
        watch = ExecutionWatch(client, config, fingerprint=str, wait=record)
        events = [e async for e in watch.watch(EXECUTION_ID, Credentials())]

    assert [e.execution.record.status for e in events if e.execution] == [
        "queued",
        "running",
        "completed",
    ]
    # After a change 1 s; doubling while nothing changes, up to 5 s; 1 s again after one.
    assert waits == [1, 2, 4, 5, 1]


@pytest.mark.anyio
async def test_a_nudge_during_a_poll_is_not_lost(stepped: tuple[str, SteppedUpstream]) -> None:
    url, upstream = stepped
    upstream.script(
        EXECUTION_ID, step("running"), step("running", held=True), step("pending_cancel")
    )

    # Ten minutes between polls: only the nudges can bring the polls forward.
    async with watch_of(
        url, subscription_poll_interval=600, subscription_poll_max_interval=600
    ) as watch:
        events = watch.watch(EXECUTION_ID, Credentials())
        first = await anext(events)
        watch.nudge(EXECUTION_ID)  # a first cancel: the poll it starts is held upstream
        await anyio.to_thread.run_sync(upstream.wait_held)
        watch.nudge(EXECUTION_ID)  # a second one, while that poll is in flight
        upstream.release()
        with anyio.fail_after(30):
            second = await anext(events)
        await events.aclose()

    assert first.execution is not None
    assert first.execution.record.status == "running"
    assert second.execution is not None
    assert second.execution.record.status == "pending_cancel"


class _BrokenUpstream:
    async def fetch_execution(self, execution_id: str, credentials: Credentials) -> None:
        raise RuntimeError("a bug in the gateway")


@pytest.mark.anyio
async def test_a_bug_while_polling_ends_the_watch_with_internal_instead_of_hanging_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = Settings(upstream_url="http://unused.invalid", **FAST_POLLS)
    upstream = cast(UpstreamClient, _BrokenUpstream())
    watch = ExecutionWatch(upstream, config, fingerprint=str)

    with anyio.fail_after(30):
        events = [e async for e in watch.watch(EXECUTION_ID, Credentials())]

    [ended] = events
    assert ended.error is not None
    assert ended.error.code.value == "INTERNAL"
    assert "a bug in the gateway" not in ended.error.message
    assert "a bug in the gateway" in caplog.text
    assert (watch.pollers, watch.watching) == (0, 0)


@pytest.mark.anyio
async def test_one_caller_may_hold_only_so_many_subscriptions_however_many_connections(
    stepped: tuple[str, SteppedUpstream],
) -> None:
    url, upstream = stepped
    upstream.script(EXECUTION_ID, step("running"))
    alice, bob = (Credentials((("authorization", f"Bearer {k}"),)) for k in ("a", "b"))

    async with watch_of(url, max_subscriptions_per_credential=2) as watch:
        held = [watch.watch(EXECUTION_ID, alice) for _ in range(2)]
        for events in held:
            assert (await anext(events)).execution is not None
        with pytest.raises(TooManySubscriptions):
            await anext(watch.watch(EXECUTION_ID, alice))
        others = watch.watch(EXECUTION_ID, bob)
        assert (await anext(others)).execution is not None
        for events in [*held, others]:
            await events.aclose()
        assert watch.watching == 0


@pytest.mark.anyio
async def test_a_bug_between_polls_ends_the_watch_with_internal_too(
    stepped: tuple[str, SteppedUpstream], caplog: pytest.LogCaptureFixture
) -> None:
    url, upstream = stepped
    upstream.script(EXECUTION_ID, step("running"))

    async def broken_wait(_: asyncio.Event, seconds: float) -> None:
        raise RuntimeError("a bug between polls")

    config = Settings(upstream_url=url)
    async with UpstreamClient(config) as client:
        watch = ExecutionWatch(client, config, fingerprint=str, wait=broken_wait)
        with anyio.fail_after(30):
            events = [e async for e in watch.watch(EXECUTION_ID, Credentials())]

    # The mailbox keeps only the newest event: the error that ends the watch.
    assert events[-1].error is not None
    assert events[-1].error.code.value == "INTERNAL"
    assert "a bug between polls" in caplog.text
