"""Unit tests of ``gateway.upstream``: the URL, the outcome of an answer, and the client."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from typing import Any
from urllib.parse import unquote

import anyio
import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.credentials import Credentials
from gateway.errors import (
    ErrorCode,
    UpstreamAnswered,
    UpstreamFailure,
    UpstreamMalformed,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.executions import FetchedExecution
from gateway.settings import Settings
from gateway.upstream import UpstreamClient, classify_response, execution_url
from tests.records import EXECUTION_ID, execution_body
from tests.servers import closed_port_url, serve

BASE = "http://upstream.test:8080"
PREFIX = "/api/v1/executions/"
OTHER_ID = "0b1c2d3e-4f50-4617-a8b9-cadbecf00112"
CALLER_KEY = "sk_live_Zq9TOPSECRET"

# What httpx itself puts on every request; anything else the upstream sees must be a credential.
TRANSPORT_HEADERS = frozenset({"host", "accept", "accept-encoding", "connection", "user-agent"})


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def full_credentials() -> Credentials:
    """Credentials picked from a request that also carries much that must not be forwarded."""
    headers = Headers(
        {
            "Authorization": f"Bearer {CALLER_KEY}",
            "X-Project-ID": "project-1",
            "Project-ID": "project-1",
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "X-Api-Key": "must-not-travel",
            "Proxy-Authorization": "Basic must-not-travel",
            "Cookie": "polos_auth=jwt.value.sig; session=must-not-travel",
            "X-Forwarded-For": "10.0.0.1",
        }
    )
    return Credentials.from_request(headers)


Handler = Callable[[httpx.Request], httpx.Response]
AsyncHandler = Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]


def mock_client(handler: Handler | AsyncHandler, **settings: Any) -> UpstreamClient:
    transport = httpx.MockTransport(handler)
    return UpstreamClient(
        Settings(upstream_url=BASE, **settings),
        transport=transport,
    )


# --- execution_url ------------------------------------------------------------------------


def test_a_canonical_id_is_appended_to_the_executions_path_unchanged() -> None:
    assert execution_url(BASE, EXECUTION_ID) == f"{BASE}/api/v1/executions/{EXECUTION_ID}"


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        (f"{BASE}/", f"{BASE}/api/v1/executions/{EXECUTION_ID}"),
        (f"{BASE}/polos", f"{BASE}/polos/api/v1/executions/{EXECUTION_ID}"),
        (f"{BASE}/polos/", f"{BASE}/polos/api/v1/executions/{EXECUTION_ID}"),
    ],
)
def test_a_base_url_with_a_trailing_slash_or_a_path_gives_no_double_slash(
    base: str, expected: str
) -> None:
    assert execution_url(base, EXECUTION_ID) == expected


@pytest.mark.parametrize(
    ("raw", "segment"),
    [
        (".", "%2E"),
        ("..", "%2E%2E"),
        ("../x", "..%2Fx"),
        ("a/b", "a%2Fb"),
        ("%2e%2e", "%252e%252e"),
        ("?x=1", "%3Fx%3D1"),
        ("#top", "%23top"),
        ("a b", "a%20b"),
        ("\x00\n", "%00%0A"),
        ("é", "%C3%A9"),
        ("...", "..."),
        ("a-b_c.d~e", "a-b_c.d~e"),
    ],
)
def test_an_id_is_sent_as_a_single_percent_encoded_segment(raw: str, segment: str) -> None:
    assert execution_url(BASE, raw) == f"{BASE}{PREFIX}{segment}"


awkward_ids = st.one_of(
    st.text(),
    st.sampled_from(
        [
            "",
            ".",
            "..",
            "../",
            "../x",
            "../../health",
            "./..",
            "%2e%2e",
            "%2E%2E%2Fadmin",
            "%2f",
            "..%2f..%2f",
            "a/b",
            "\\..\\x",
            "?x=1",
            "#frag",
            "a?b#c",
            "@evil.test",
            "//evil.test/x",
            "http://evil.test/",
            ";x",
            "\x00",
            "\r\nHost: evil.test",
            "\t",
            " ",
            "\u202e",
            "\U0001f600",
        ]
    ),
    st.lists(
        st.sampled_from(["..", ".", "/", "%", "2e", "2E", "%2f", "?", "#", "\\", ";", "@", ":"]),
        max_size=12,
    ).map("".join),
    st.builds(
        lambda piece, times: piece * times,
        st.text(min_size=1, max_size=8),
        st.integers(min_value=100, max_value=250),
    ),
)


@given(awkward_ids)
@example("..")
@example(".")
@example("a" * 10_000)
def test_any_id_yields_a_url_naming_one_child_of_the_executions_path_on_the_same_host(
    raw: str,
) -> None:
    built = execution_url(BASE, raw)
    url = httpx.URL(built)
    base = httpx.URL(BASE)

    assert (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)
    assert url.query == b""
    assert url.fragment == ""
    raw_path = url.raw_path.decode("ascii")
    assert raw_path.startswith(PREFIX)
    segment = raw_path.removeprefix(PREFIX)
    assert "/" not in segment
    assert "?" not in segment
    assert "#" not in segment
    assert segment not in {".", ".."}
    assert unquote(segment, errors="strict") == raw
    assert str(url) == built  # httpx's normalisation changes nothing


# --- classify_response --------------------------------------------------------------------


UPSTREAM_HEADERS = httpx.Headers(
    {
        "content-type": "application/json",
        "retry-after": "30",
        "set-cookie": "session=abc",
        "server": "polos-orchestrator/1.2",
        "x-internal-host": "db-7.internal",
    }
)


def test_a_200_with_an_execution_body_is_a_fetched_execution() -> None:
    body = execution_body()

    outcome = classify_response(EXECUTION_ID, 200, body, UPSTREAM_HEADERS)

    assert isinstance(outcome, FetchedExecution)
    assert outcome.record.id == EXECUTION_ID
    assert outcome.body == body


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"<html>oops</html>", id="html"),
        pytest.param(b"[]", id="array"),
        pytest.param(b'{"id": "' + EXECUTION_ID.encode() + b'"}', id="missing-fields"),
        pytest.param(execution_body(OTHER_ID), id="other-execution"),
    ],
)
def test_a_200_without_an_execution_body_is_malformed_with_upstream_status_200(
    body: bytes,
) -> None:
    outcome = classify_response(EXECUTION_ID, 200, body, UPSTREAM_HEADERS)

    assert isinstance(outcome, UpstreamMalformed)
    assert outcome.code is ErrorCode.UPSTREAM_ERROR
    assert outcome.upstream_status == 200
    assert outcome.extensions == {"code": "UPSTREAM_ERROR", "upstreamStatus": 200}
    assert EXECUTION_ID in outcome.message
    assert OTHER_ID not in outcome.message


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, ErrorCode.BAD_USER_INPUT),
        (401, ErrorCode.UNAUTHENTICATED),
        (403, ErrorCode.FORBIDDEN),
        (404, ErrorCode.NOT_FOUND),
        (429, ErrorCode.RATE_LIMITED),
        (500, ErrorCode.UPSTREAM_ERROR),
        (502, ErrorCode.UPSTREAM_ERROR),
        (503, ErrorCode.UPSTREAM_ERROR),
    ],
)
def test_a_non_200_answer_becomes_upstream_answered_with_the_code_for_its_status(
    status: int, code: ErrorCode
) -> None:
    body = b'{"error": "something", "error_type": "SOMETHING"}'

    outcome = classify_response(EXECUTION_ID, status, body, UPSTREAM_HEADERS)

    assert isinstance(outcome, UpstreamAnswered)
    assert outcome.code is code
    assert outcome.status == status
    assert outcome.upstream_status == status
    assert outcome.extensions == {"code": code.value, "upstreamStatus": status}
    assert outcome.body == body  # kept for the REST route to relay


def test_the_orchestrators_500_with_an_empty_body_for_an_unknown_id_is_an_upstream_error() -> None:
    outcome = classify_response(EXECUTION_ID, 500, b"", httpx.Headers())

    assert isinstance(outcome, UpstreamAnswered)
    assert outcome.code is ErrorCode.UPSTREAM_ERROR
    assert outcome.upstream_status == 500
    assert outcome.body == b""
    assert outcome.headers == ()


def test_a_429_relays_retry_after_and_content_type_but_no_other_upstream_header() -> None:
    outcome = classify_response(EXECUTION_ID, 429, b"{}", UPSTREAM_HEADERS)

    assert isinstance(outcome, UpstreamAnswered)
    assert dict(outcome.headers) == {"content-type": "application/json", "retry-after": "30"}


def test_a_401_relays_www_authenticate() -> None:
    headers = httpx.Headers({"WWW-Authenticate": 'Bearer realm="polos"', "Set-Cookie": "a=b"})

    outcome = classify_response(EXECUTION_ID, 401, b"", headers)

    assert isinstance(outcome, UpstreamAnswered)
    assert outcome.headers == (("www-authenticate", 'Bearer realm="polos"'),)


def test_a_redirect_is_an_upstream_error_and_its_location_is_not_relayed() -> None:
    headers = httpx.Headers({"Location": "http://elsewhere.test/login", "Content-Length": "0"})

    outcome = classify_response(EXECUTION_ID, 302, b"", headers)

    assert isinstance(outcome, UpstreamAnswered)
    assert outcome.code is ErrorCode.UPSTREAM_ERROR
    assert outcome.upstream_status == 302
    assert "location" not in dict(outcome.headers)


# --- UpstreamClient.fetch_execution over a mock transport ---------------------------------


@pytest.mark.anyio
async def test_the_request_goes_to_the_exact_execution_url_with_get() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=execution_body())

    async with mock_client(handler) as client:
        await client.fetch_execution(EXECUTION_ID, Credentials())

    assert len(seen) == 1
    assert seen[0].method == "GET"
    assert str(seen[0].url) == f"{BASE}/api/v1/executions/{EXECUTION_ID}"
    assert seen[0].url.raw_path == f"{PREFIX}{EXECUTION_ID}".encode()


@pytest.mark.anyio
async def test_the_upstream_sees_exactly_the_forwardable_credentials_and_nothing_else() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=execution_body())

    credentials = full_credentials()
    async with mock_client(handler) as client:
        await client.fetch_execution(EXECUTION_ID, credentials)

    sent = {name: value for name, value in seen[0].headers.items() if name not in TRANSPORT_HEADERS}
    assert sent == {
        "authorization": f"Bearer {CALLER_KEY}",
        "x-project-id": "project-1",
        "project-id": "project-1",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "cookie": "polos_auth=jwt.value.sig",
    }
    assert sent == credentials.as_dict()
    assert "must-not-travel" not in str(seen[0].headers.raw)


@pytest.mark.anyio
async def test_a_request_without_credentials_sends_no_credential_header_at_all() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=execution_body())

    async with mock_client(handler) as client:
        await client.fetch_execution(EXECUTION_ID, Credentials())

    assert set(seen[0].headers.keys()) <= TRANSPORT_HEADERS
    assert "cookie" not in seen[0].headers
    assert "authorization" not in seen[0].headers


@pytest.mark.anyio
async def test_each_request_carries_the_timeouts_and_asks_for_json() -> None:
    """The transport is called directly, so nothing adds these for the gateway: without the
    timeouts a silent upstream would hold a connection until the call's overall deadline."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=execution_body())

    settings = {"connect_timeout": 1.5, "read_timeout": 2.5, "upstream_timeout": 7.0}
    async with mock_client(handler, **settings) as client:
        await client.fetch_execution(EXECUTION_ID, Credentials())

    [request] = seen
    assert request.extensions["timeout"] == {
        "connect": 1.5,
        "read": 2.5,
        "write": 2.5,
        "pool": 7.0,
    }
    assert request.headers["accept"] == "application/json"
    assert request.headers["user-agent"] == "polos-gateway"
    assert request.headers["host"] == "upstream.test:8080"


@pytest.mark.anyio
async def test_a_good_answer_is_returned_with_the_upstream_bytes() -> None:
    body = execution_body(payload=2**70)

    async with mock_client(lambda _: httpx.Response(200, content=body)) as client:
        fetched = await client.fetch_execution(EXECUTION_ID, Credentials())

    assert fetched.body == body
    assert fetched.record.payload == 2**70


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, ErrorCode.UNAUTHENTICATED),
        (404, ErrorCode.NOT_FOUND),
        (429, ErrorCode.RATE_LIMITED),
        (500, ErrorCode.UPSTREAM_ERROR),
    ],
)
async def test_a_non_200_answer_is_raised_as_upstream_answered(
    status: int, code: ErrorCode
) -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers={"retry-after": "7"})

    async with mock_client(handler) as client:
        with pytest.raises(UpstreamAnswered) as exc_info:
            await client.fetch_execution(EXECUTION_ID, Credentials())

    assert exc_info.value.code is code
    assert exc_info.value.upstream_status == status
    assert ("retry-after", "7") in exc_info.value.headers


@pytest.mark.anyio
async def test_a_200_with_another_executions_body_is_raised_as_malformed() -> None:
    async with mock_client(lambda _: httpx.Response(200, content=execution_body(OTHER_ID))) as c:
        with pytest.raises(UpstreamMalformed) as exc_info:
            await c.fetch_execution(EXECUTION_ID, Credentials())

    assert exc_info.value.upstream_status == 200


def raising(error: type[httpx.TransportError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        # A chatty transport: the message names the URL and the credential it was sent with.
        raise error(f"{request.url} {request.headers.get('authorization')}", request=request)

    return handler


@pytest.mark.anyio
@pytest.mark.parametrize(
    "error", [httpx.ReadTimeout, httpx.ConnectTimeout, httpx.WriteTimeout, httpx.PoolTimeout]
)
async def test_an_httpx_timeout_becomes_upstream_timeout(
    error: type[httpx.TransportError],
) -> None:
    async with mock_client(raising(error)) as client:
        with pytest.raises(UpstreamTimeout) as exc_info:
            await client.fetch_execution(EXECUTION_ID, full_credentials())

    assert exc_info.value.code is ErrorCode.UPSTREAM_TIMEOUT
    assert exc_info.value.upstream_status is None
    assert exc_info.value.extensions == {"code": "UPSTREAM_TIMEOUT"}


@pytest.mark.anyio
async def test_an_upstream_that_never_answers_is_cut_off_by_the_overall_deadline() -> None:
    never = anyio.Event()

    async def handler(_: httpx.Request) -> httpx.Response:
        await never.wait()
        return httpx.Response(200)

    client = mock_client(handler, connect_timeout=0.01, upstream_timeout=0.05)
    async with client:
        with pytest.raises(UpstreamTimeout):
            await client.fetch_execution(EXECUTION_ID, Credentials())


@pytest.mark.anyio
@pytest.mark.parametrize(
    "error", [httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, httpx.ProxyError]
)
async def test_a_connection_failure_becomes_upstream_unavailable(
    error: type[httpx.TransportError],
) -> None:
    async with mock_client(raising(error)) as client:
        with pytest.raises(UpstreamUnavailable) as exc_info:
            await client.fetch_execution(EXECUTION_ID, full_credentials())

    assert exc_info.value.code is ErrorCode.UPSTREAM_UNAVAILABLE
    assert exc_info.value.upstream_status is None
    assert exc_info.value.extensions == {"code": "UPSTREAM_UNAVAILABLE"}


def _echoing(status: int) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        # An upstream that echoes where it was reached and with what.
        echo = f"{request.url} {request.headers.get('authorization')}".encode()
        return httpx.Response(status, content=echo, headers={"content-type": "text/plain"})

    return handler


@pytest.mark.anyio
@pytest.mark.parametrize(
    "handler",
    [
        pytest.param(raising(httpx.ReadTimeout), id="read-timeout"),
        pytest.param(raising(httpx.ConnectTimeout), id="connect-timeout"),
        pytest.param(raising(httpx.ConnectError), id="connect-error"),
        pytest.param(raising(httpx.RemoteProtocolError), id="protocol-error"),
        pytest.param(_echoing(200), id="malformed-200"),
        pytest.param(_echoing(400), id="400"),
        pytest.param(_echoing(401), id="401"),
        pytest.param(_echoing(403), id="403"),
        pytest.param(_echoing(500), id="500"),
        pytest.param(_echoing(502), id="502"),
    ],
)
async def test_no_error_message_names_the_upstream_or_the_callers_credential(
    handler: Handler,
) -> None:
    async with mock_client(handler) as client:
        with pytest.raises(UpstreamFailure) as exc_info:
            await client.fetch_execution(EXECUTION_ID, full_credentials())

    error = exc_info.value
    for text in (str(error), error.message, repr(error), json.dumps(error.extensions)):
        assert "upstream.test" not in text
        assert "http://" not in text
        assert CALLER_KEY not in text
        assert "jwt.value.sig" not in text
    assert error.__cause__ is None
    assert error.__context__ is None


@pytest.mark.anyio
async def test_a_200_whose_content_encoding_cannot_be_decoded_becomes_an_upstream_failure() -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-encoding": "gzip"}, content=b"not gzip")

    async with mock_client(handler) as client:
        with pytest.raises(UpstreamFailure) as exc_info:
            await client.fetch_execution(EXECUTION_ID, Credentials())

    assert exc_info.value.code is ErrorCode.UPSTREAM_ERROR


@pytest.mark.anyio
async def test_a_200_sent_gzipped_is_decoded_and_relayed_as_the_upstream_meant_it() -> None:
    body = execution_body(EXECUTION_ID)

    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-encoding": "gzip"}, content=gzip.compress(body)
        )

    async with mock_client(handler) as client:
        fetched = await client.fetch_execution(EXECUTION_ID, Credentials())

    assert fetched.body == body
    assert fetched.record.id == EXECUTION_ID


# --- the real client over real HTTP -------------------------------------------------------


def cookie_setting_upstream(cookies_seen: list[str | None]) -> Starlette:
    """An upstream that answers every execution, sets a cookie, and records the Cookie header."""

    async def answer(request: Request) -> Response:
        cookies_seen.append(request.headers.get("cookie"))
        return Response(
            execution_body(request.path_params["execution_id"]),
            media_type="application/json",
            headers={"set-cookie": "session=abc; Path=/"},
        )

    return Starlette(routes=[Route("/api/v1/executions/{execution_id}", answer)])


def credentials_with(authorization: str, polos_auth: str | None) -> Credentials:
    headers = {"authorization": authorization}
    if polos_auth is not None:
        headers["cookie"] = f"session=must-not-travel; polos_auth={polos_auth}"
    return Credentials.from_request(Headers(headers))


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("second_cookie", "expected_cookie_header"),
    [("second-jwt", "polos_auth=second-jwt"), (None, None)],
)
async def test_a_cookie_set_by_the_upstream_is_never_replayed_on_a_later_request(
    second_cookie: str | None, expected_cookie_header: str | None
) -> None:
    cookies_seen: list[str | None] = []

    with serve(cookie_setting_upstream(cookies_seen), lifespan="off") as url:
        client = UpstreamClient(Settings(upstream_url=url))
        try:
            first = await client.fetch_execution(
                EXECUTION_ID, credentials_with("Bearer first", "first-jwt")
            )
            second = await client.fetch_execution(
                OTHER_ID, credentials_with("Bearer second", second_cookie)
            )
        finally:
            await client.aclose()

    assert first.record.id == EXECUTION_ID
    assert second.record.id == OTHER_ID
    assert cookies_seen == ["polos_auth=first-jwt", expected_cookie_header]


@pytest.mark.anyio
async def test_the_real_client_reads_plain_and_gzipped_bodies_alike() -> None:
    """A body without a content coding is read raw, one with gzip through httpx's decoder."""

    async def answer(request: Request) -> Response:
        body = execution_body(request.path_params["execution_id"])
        if request.path_params["execution_id"] == OTHER_ID:
            return Response(gzip.compress(body), headers={"content-encoding": "gzip"})
        return Response(body, media_type="application/json")

    upstream = Starlette(routes=[Route("/api/v1/executions/{execution_id}", answer)])
    with serve(upstream, lifespan="off") as url:
        client = UpstreamClient(Settings(upstream_url=url))
        try:
            plain = await client.fetch_execution(EXECUTION_ID, Credentials())
            gzipped = await client.fetch_execution(OTHER_ID, Credentials())
        finally:
            await client.aclose()

    assert plain.body == execution_body(EXECUTION_ID)
    assert gzipped.body == execution_body(OTHER_ID)
    assert gzipped.record.id == OTHER_ID


@pytest.mark.anyio
async def test_the_real_client_reports_a_refused_connection_as_unavailable_not_as_a_timeout() -> (
    None
):
    client = UpstreamClient(Settings(upstream_url=closed_port_url()))
    try:
        with pytest.raises(UpstreamUnavailable) as exc_info:
            await client.fetch_execution(EXECUTION_ID, full_credentials())
    finally:
        await client.aclose()

    assert exc_info.value.code is ErrorCode.UPSTREAM_UNAVAILABLE
    assert "127.0.0.1" not in str(exc_info.value)


# --- the real client against a raw TCP server that misbehaves ------------------------------


ConnectionHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(handler: ConnectionHandler) -> AsyncIterator[str]:
    """A TCP server on 127.0.0.1 running ``handler`` per connection; yields its base URL.

    Every connection is closed, and every handler finished, before the block is left.
    """
    handlers: list[asyncio.Task[None]] = []

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up first; nothing to answer any more
        finally:
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(connected, "127.0.0.1", 0)
    try:
        async with server:
            yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        await asyncio.gather(*handlers, return_exceptions=True)


async def read_request_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def http_200(body: bytes, *, framing: str = "content-length") -> bytes:
    """A 200 answer carrying ``body`` framed by Content-Length, chunks, or the connection's end."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    if framing == "content-length":
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    if framing == "chunked":
        chunks = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 1000]), body[i : i + 1000])
            for i in range(0, len(body), 1000)
        )
        return head + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    assert framing == "until-close"
    return head + b"Connection: close\r\n\r\n" + body


@pytest.mark.anyio
async def test_a_reply_that_is_not_http_is_raised_as_malformed() -> None:
    async def not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()

    async with raw_server(not_http) as url, UpstreamClient(Settings(upstream_url=url)) as client:
        with pytest.raises(UpstreamMalformed) as exc_info:
            await client.fetch_execution(EXECUTION_ID, full_credentials())

    assert exc_info.value.code is ErrorCode.UPSTREAM_ERROR
    assert EXECUTION_ID in exc_info.value.message
    assert "127.0.0.1" not in exc_info.value.message


@pytest.mark.anyio
async def test_a_connection_closed_without_a_reply_is_unavailable_not_a_timeout() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        return  # the wrapper closes the connection at once, before any reply

    async with raw_server(hang_up) as url, UpstreamClient(Settings(upstream_url=url)) as client:
        with pytest.raises(UpstreamFailure) as exc_info:
            await client.fetch_execution(EXECUTION_ID, full_credentials())

    assert isinstance(exc_info.value, UpstreamUnavailable)
    assert not isinstance(exc_info.value, UpstreamTimeout)
    assert exc_info.value.code is ErrorCode.UPSTREAM_UNAVAILABLE


@pytest.mark.anyio
@pytest.mark.parametrize("framing", ["content-length", "chunked", "until-close"])
async def test_a_body_over_the_byte_limit_is_raised_as_malformed_naming_the_limit(
    framing: str,
) -> None:
    body = execution_body(payload="x" * 5000)
    assert len(body) > 5000

    async def too_big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(http_200(body, framing=framing))
        await writer.drain()

    async with raw_server(too_big) as url:
        settings = Settings(upstream_url=url, max_upstream_body_bytes=2048)
        async with UpstreamClient(settings) as client:
            with pytest.raises(UpstreamMalformed) as exc_info:
                await client.fetch_execution(EXECUTION_ID, Credentials())

    assert exc_info.value.code is ErrorCode.UPSTREAM_ERROR
    assert "2048 bytes" in exc_info.value.message


@pytest.mark.anyio
@pytest.mark.parametrize("framing", ["content-length", "chunked", "until-close"])
async def test_a_body_within_the_byte_limit_is_accepted_however_it_is_framed(
    framing: str,
) -> None:
    body = execution_body(payload="x" * 500)

    async def small(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(http_200(body, framing=framing))
        await writer.drain()

    async with raw_server(small) as url:
        settings = Settings(upstream_url=url, max_upstream_body_bytes=2048)
        async with UpstreamClient(settings) as client:
            fetched = await client.fetch_execution(EXECUTION_ID, Credentials())

    assert fetched.body == body


THIRD_ID = "7c2a1e55-0d4b-4f3e-9a61-2b8e5f0c9d17"


@pytest.mark.anyio
async def test_calls_waiting_for_a_free_slot_are_bounded_by_the_overall_deadline() -> None:
    """With one slot and an upstream that never answers, waiting calls time out too.

    Three calls start together: the first takes the slot and hangs, the other two wait. The
    upstream would answer the third, but the third can get the slot only when the second
    gives up, a few microseconds before the third's own deadline: it must time out. Were the
    wait for a slot not counted against a call's deadline, the third would get a deadline of
    its own once the second gave up, and succeed.
    """
    released = asyncio.Event()

    async def answer_only_other(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_request_head(reader)
        if OTHER_ID.encode() not in head:
            await released.wait()  # never answers while the test runs
            return
        # A large answer takes the third call a few milliseconds to read: more than it could
        # have left even if the process stalled between the second and third calls' start.
        writer.write(http_200(execution_body(OTHER_ID, payload="x" * 2_000_000)))
        await writer.drain()

    async with raw_server(answer_only_other) as url:
        settings = Settings(
            upstream_url=url,
            max_concurrent_upstream=1,
            upstream_timeout=0.3,
            read_timeout=0.3,
            connect_timeout=0.3,
        )
        async with UpstreamClient(settings) as client:
            try:
                outcomes = await asyncio.gather(
                    client.fetch_execution(EXECUTION_ID, Credentials()),
                    client.fetch_execution(THIRD_ID, Credentials()),
                    client.fetch_execution(OTHER_ID, Credentials()),
                    return_exceptions=True,
                )
            finally:
                released.set()

    assert [type(outcome) for outcome in outcomes] == [UpstreamTimeout] * 3, outcomes
