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
    RELAYED_HEADERS,
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


def execution_url(base_url: str, execution_id: str) -> str:
    """``base_url`` + ``/api/v1/executions/`` + the id as one percent-encoded path segment.

    Every character outside RFC 3986's unreserved set is encoded, ``/`` included, and the dot
    segments ``.`` and ``..`` are encoded too, since URL normalisation would otherwise resolve
    them; the result always names a child of ``/api/v1/executions/``.
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


def _refused(exc: BaseException) -> bool:
    """True when no connection could be made (refused, unknown host) rather than a timeout.

    httpx-aiohttp reports aiohttp's connector errors as ``httpx.ConnectTimeout``; the
    original error, kept as the cause, says what really happened.
    """
    cause = exc.__cause__
    return isinstance(cause, aiohttp.ClientConnectorError) and not isinstance(cause, TimeoutError)


class _NoCookies(DefaultCookiePolicy):
    """Refuse every cookie an upstream sets, so none is replayed for another caller."""

    def set_ok(self, cookie: object, request: object) -> bool:
        return False


def _build_http_client(settings: Settings) -> httpx.AsyncClient:
    timeout = httpx.Timeout(
        connect=settings.connect_timeout,
        read=settings.read_timeout,
        write=settings.read_timeout,
        # Waiting for a pooled connection counts against the overall deadline instead.
        pool=settings.upstream_timeout,
    )
    limits = httpx.Limits(
        max_connections=settings.max_concurrent_upstream,
        max_keepalive_connections=settings.max_concurrent_upstream,
    )
    # The aiohttp transport keeps ~100 concurrent requests on reused connections at about one
    # upstream latency, where httpx's own pool queues them (see docs/benchmarks.md); a session
    # of our own makes sure aiohttp's cookie jar stays empty as well.
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=settings.max_concurrent_upstream),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
    )
    return httpx.AsyncClient(
        transport=AiohttpTransport(client=session, limits=limits),
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
            async with self._slots, asyncio.timeout(self._deadline):
                response = await self._http.get(url, headers=credentials.as_dict())
        except httpx.DecodingError:
            return UpstreamMalformed(execution_id, "its body could not be decoded")
        except (TimeoutError, httpx.TransportError) as exc:
            if _refused(exc) or not isinstance(exc, TimeoutError | httpx.TimeoutException):
                logger.warning("upstream unreachable: %s", type(exc).__name__)
                return UpstreamUnavailable(
                    f"The orchestrator could not be reached to fetch execution {execution_id}."
                )
            return UpstreamTimeout(
                f"The orchestrator did not answer for execution {execution_id} in time."
            )
        return classify_response(
            execution_id, response.status_code, response.content, response.headers
        )

    async def probe(self) -> bool:
        """True when the orchestrator answers HTTP at all (any status below 500)."""
        try:
            async with asyncio.timeout(self._deadline):
                response = await self._http.get(f"{self._base_url}/health")
        except (TimeoutError, httpx.HTTPError):
            return False
        return response.status_code < 500
