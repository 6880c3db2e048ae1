"""The only module that speaks HTTP to the orchestrator.

``UpstreamClient.fetch_execution`` turns every outcome of ``GET /api/v1/executions/{id}``
into a ``FetchedExecution`` or one of the ``UpstreamFailure`` errors (see ``gateway.errors``).
One client per process, opened and closed by the app's lifespan, shares one connection pool.
"""

from __future__ import annotations

import asyncio
import logging
from http.cookiejar import CookieJar, DefaultCookiePolicy
from urllib.parse import quote

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from gateway.credentials import Credentials
from gateway.errors import (
    UpstreamAnswered,
    UpstreamFailure,
    UpstreamMalformed,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.executions import (
    FetchedExecution,
    NotAnExecution,
    decode_execution,
    parse_execution_id,
)
from gateway.settings import Settings

logger = logging.getLogger(__name__)

EXECUTIONS_PATH = "/api/v1/executions/"
# The upstream headers a REST client may act on; everything else stays behind the gateway.
RELAYED_HEADERS = ("content-type", "retry-after", "www-authenticate")


def execution_url(base_url: str, execution_id: str) -> str:
    """``base_url`` + ``/api/v1/executions/`` + the id as one percent-encoded path segment.

    Every character outside RFC 3986's unreserved set is encoded, ``/`` included, and the dot
    segments ``.`` and ``..`` are encoded too, since URL normalisation would otherwise resolve
    them. ``UpstreamClient`` only ever passes canonical UUIDs, so this is a second wall.
    """
    segment = quote(execution_id, safe="")
    if segment in {".", ".."}:
        segment = segment.replace(".", "%2E")
    return f"{base_url.rstrip('/')}{EXECUTIONS_PATH}{segment}"


def classify_response(
    execution_id: str,
    status: int,
    body: bytes,
    headers: httpx.Headers,
) -> FetchedExecution | UpstreamFailure:
    """The typed outcome of one upstream answer."""
    if status == 200:
        try:
            return decode_execution(execution_id, body)
        except NotAnExecution as exc:
            return UpstreamMalformed(execution_id, str(exc))
    relayed = tuple((name, headers[name]) for name in RELAYED_HEADERS if name in headers)
    return UpstreamAnswered(execution_id, status, body, relayed)


def _unreachable(exc: BaseException) -> bool:
    """True when no answer could be had on a connection: refused, unknown host, reset, closed.

    httpx-aiohttp reports every aiohttp connection error as ``httpx.ConnectTimeout``; the
    original error, kept as the cause, says what really happened.
    """
    if not isinstance(exc, TimeoutError | httpx.TimeoutException):
        return True  # any other transport error
    cause = exc.__cause__
    return isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(cause, TimeoutError)


class _NoCookies(DefaultCookiePolicy):
    """Refuse every cookie an upstream sets, so none is replayed for another caller."""

    def set_ok(self, cookie: object, request: object) -> bool:
        return False


class _BodyTooLarge(Exception):
    pass


def _build_http_client(settings: Settings) -> httpx.AsyncClient:
    timeout = httpx.Timeout(
        connect=settings.connect_timeout,
        read=settings.read_timeout,
        write=settings.read_timeout,
        pool=settings.upstream_timeout,
    )
    # The aiohttp transport keeps ~100 concurrent requests on reused connections at about one
    # upstream latency, where httpx's own pool queues them (docs/benchmarks.md). The session
    # is ours so that its connector carries the cap and its cookie jar stays empty.
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=settings.max_concurrent_upstream),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
    )
    return httpx.AsyncClient(
        transport=AiohttpTransport(client=session),
        timeout=timeout,
        # A raw jar keeps its policy; httpx.Cookies(...) would copy it into a default jar.
        cookies=CookieJar(policy=_NoCookies()),
        follow_redirects=False,
        trust_env=False,
        headers={"accept": "application/json", "user-agent": "polos-gateway"},
    )


class UpstreamClient:
    """Fetches executions from the orchestrator with the caller's credentials.

    Usage::

        async with UpstreamClient(settings) as upstream:
            fetched = await upstream.fetch_execution(execution_id, credentials)
    """

    def __init__(self, settings: Settings, http: httpx.AsyncClient | None = None) -> None:
        self._base_url = settings.upstream_base
        self._deadline = settings.upstream_timeout
        self._probe_deadline = settings.connect_timeout
        self._max_body = settings.max_upstream_body_bytes
        self._http = http if http is not None else _build_http_client(settings)
        self._slots = asyncio.Semaphore(settings.max_concurrent_upstream)

    async def __aenter__(self) -> UpstreamClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def fetch_execution(
        self, execution_id: str, credentials: Credentials
    ) -> FetchedExecution:
        """The execution, or raise the ``UpstreamFailure`` that says why not.

        ``execution_id`` must already be canonical (see ``parse_execution_id``).
        """
        outcome = await self._get(execution_id, credentials)
        if isinstance(outcome, UpstreamFailure):
            raise outcome
        return outcome

    async def _get(
        self, execution_id: str, credentials: Credentials
    ) -> FetchedExecution | UpstreamFailure:
        if parse_execution_id(execution_id) != execution_id:
            raise ValueError("fetch_execution takes canonical execution ids only")
        url = execution_url(self._base_url, execution_id)
        try:
            # The deadline covers the wait for a slot as well as the call itself.
            async with asyncio.timeout(self._deadline), self._slots:
                status, body, headers = await self._read(url, credentials)
        except _BodyTooLarge:
            return UpstreamMalformed(execution_id, f"its body is over {self._max_body} bytes")
        except httpx.DecodingError:
            return UpstreamMalformed(execution_id, "its body could not be decoded")
        except (TimeoutError, httpx.TransportError) as exc:
            if _unreachable(exc):
                logger.warning("upstream unreachable: %s", type(exc.__cause__ or exc).__name__)
                return UpstreamUnavailable(
                    f"The orchestrator could not be reached to fetch execution {execution_id}."
                )
            return UpstreamTimeout(
                f"The orchestrator did not answer for execution {execution_id} in time."
            )
        except Exception:
            # Whatever else the HTTP stack raises (a reply that is not HTTP, say) is still
            # the upstream failing us, not a bug of ours to show as INTERNAL.
            logger.exception("unreadable upstream answer for execution %s", execution_id)
            return UpstreamMalformed(execution_id, "its answer could not be read as HTTP")
        return classify_response(execution_id, status, body, headers)

    async def _read(self, url: str, credentials: Credentials) -> tuple[int, bytes, httpx.Headers]:
        async with self._http.stream("GET", url, headers=credentials.as_dict()) as response:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self._max_body:
                raise _BodyTooLarge
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self._max_body:
                    raise _BodyTooLarge
                chunks.append(chunk)
            return response.status_code, b"".join(chunks), response.headers

    async def probe(self) -> bool:
        """True when the orchestrator answers HTTP at all (any status below 500), quickly."""
        try:
            async with asyncio.timeout(self._probe_deadline):
                response = await self._http.get(f"{self._base_url}/health")
        except Exception:
            return False
        return response.status_code < 500
