"""The only module that speaks HTTP to the orchestrator.

``UpstreamClient.fetch_execution`` turns every outcome of ``GET /api/v1/executions/{id}``
into a ``FetchedExecution`` or one of the ``UpstreamFailure`` errors (see ``gateway.errors``);
``cancel_execution`` does the same for ``POST /api/v1/executions/{id}/cancel``, once.
One client per process, opened and closed by the app's lifespan, shares one connection pool.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar
from urllib.parse import quote

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from gateway.credentials import Credentials
from gateway.errors import (
    NotCancellable,
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
from gateway.metrics import (
    BREAKER_STATE,
    UPSTREAM_IN_FLIGHT,
    UPSTREAM_LATENCY,
    UPSTREAM_REQUESTS,
)
from gateway.resilience import (
    BreakerState,
    Bulkhead,
    CircuitBreaker,
    Overloaded,
    RetryBudget,
    backoff_delay,
    retry_after_seconds,
)
from gateway.settings import Settings
from gateway.tracing import Tracing, UpstreamCall

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


class CancelAccepted:
    """The orchestrator took a cancel: the execution is on its way to ``cancelled``."""


_Outcome = TypeVar("_Outcome", FetchedExecution, CancelAccepted)
# The status the orchestrator names in "Execution cannot be cancelled (status: completed)".
_REFUSED_STATUS = re.compile(r"\(status: ([a-z_]{1,40})\)")


def classify_cancel_response(
    execution_id: str, status: int, body: bytes, headers: httpx.Headers
) -> CancelAccepted | UpstreamFailure:
    """The typed outcome of one answer to a cancel."""
    if status == 200:
        return CancelAccepted()
    relayed = tuple((name, headers[name]) for name in RELAYED_HEADERS if name in headers)
    if status == 400:
        try:
            refusal = json.loads(body)
        except ValueError:
            refusal = None
        if isinstance(refusal, dict) and refusal.get("error_type") == "CANCELLATION_ERROR":
            # Only the status word is taken from the upstream's text, never the text itself.
            found = _REFUSED_STATUS.search(str(refusal.get("error", "")))
            return NotCancellable(execution_id, found and found.group(1), body, relayed)
    return UpstreamAnswered(execution_id, status, body, relayed, verb="cancel")


def _is_upstream_failure(outcome: object) -> bool:
    """Does this outcome count against the orchestrator's health (the breaker)?"""
    if isinstance(outcome, UpstreamAnswered):
        return outcome.status in _OVERLOAD_STATUSES
    return isinstance(outcome, UpstreamUnavailable | UpstreamTimeout)


def _unreachable(exc: BaseException) -> bool:
    """True when no answer could be had on a connection: refused, unknown host, reset, closed.

    httpx-aiohttp reports every aiohttp connection error as ``httpx.ConnectTimeout``; the
    original error, kept as the cause, says what really happened.
    """
    if not isinstance(exc, TimeoutError | httpx.TimeoutException):
        return True  # any other transport error
    cause = exc.__cause__
    return isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(cause, TimeoutError)


class _BodyTooLarge(Exception):
    pass


# What every upstream request carries besides the caller's credentials. No cookie jar, no
# redirects, no proxies from the environment: the transport is called directly (see
# UpstreamClient._read), so nothing an upstream sets is ever replayed for another caller.
REQUEST_HEADERS = {
    "accept": "application/json",
    "accept-encoding": "gzip, deflate",
    "user-agent": "polos-gateway",
}


def body_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body of an upstream answer, chunk by chunk, decoded.

    Without a content coding the raw bytes are the body, and httpx's decoder chain would only
    copy them at a cost the gateway pays on every call (bench/transport.py measures the
    `transport` path this way). gzip and deflate go through that chain, and so does a body a
    transport has already read, which only the chain gives back.
    """
    if "content-encoding" in response.headers or response.is_stream_consumed:
        return response.aiter_bytes()
    return response.aiter_raw()


def request_timeouts(settings: Settings) -> httpx.Timeout:
    """Each upstream request's timeouts: connecting, reading, and waiting for a connection,
    which may take the whole call."""
    return httpx.Timeout(
        connect=settings.connect_timeout,
        read=settings.read_timeout,
        write=settings.read_timeout,
        pool=settings.upstream_timeout,
    )


def build_session(settings: Settings) -> aiohttp.ClientSession:
    """The one HTTP session a process calls the orchestrator on; make it inside the loop."""
    # The aiohttp transport keeps ~100 concurrent requests on reused connections at about one
    # upstream latency, where httpx's own pool queues them (docs/benchmarks.md). The session
    # is ours so that its connector carries the cap and its cookie jar stays empty.
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=settings.max_concurrent_upstream),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
    )


def _outcome_labels(outcome: object) -> tuple[str, str]:
    """``(outcome, status)`` labels of one attempt's outcome for the requests metric."""
    if isinstance(outcome, FetchedExecution | CancelAccepted):
        return "ok", "200"
    if isinstance(outcome, UpstreamAnswered):
        return "answered", str(outcome.status)
    if isinstance(outcome, UpstreamMalformed):
        return "malformed", "none"
    if isinstance(outcome, UpstreamTimeout):
        return "timeout", "none"
    return "unavailable", "none"


def _count_attempt(outcome: str, status: str = "none") -> None:
    UPSTREAM_REQUESTS.labels(outcome, status).inc()


_BREAKER_GAUGE_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


def _show_breaker(breaker: CircuitBreaker) -> None:
    BREAKER_STATE.set(_BREAKER_GAUGE_VALUE[breaker.state])


class CircuitOpen(UpstreamUnavailable):
    """The breaker is open: the orchestrator failed too often just now; not even tried."""


# Answers that say the orchestrator (or a proxy before it) is struggling, not the request.
_OVERLOAD_STATUSES = frozenset({502, 503, 504})


class UpstreamClient:
    """Fetches executions from the orchestrator with the caller's credentials.

    One GET is retried (it is idempotent) on connection failures, 502/503/504 and 429, with
    backoff or the upstream's ``Retry-After``, within the call's deadline, the attempt cap and
    the retry budget; a circuit breaker and a bulkhead guard the upstream (``resilience``).

    Usage::

        async with UpstreamClient(settings) as upstream:
            fetched = await upstream.fetch_execution(execution_id, credentials)
    """

    def __init__(
        self,
        settings: Settings,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        tracing: Tracing | None = None,
    ) -> None:
        self._tracing = tracing if tracing is not None else Tracing()
        self._base_url = settings.upstream_base
        self._deadline = settings.upstream_timeout
        self._probe_deadline = settings.connect_timeout
        self._max_body = settings.max_upstream_body_bytes
        self._attempts = settings.retry_attempts
        self._backoff_base = settings.retry_backoff_base
        self._backoff_max = settings.retry_backoff_max
        self._transport = (
            transport if transport is not None else AiohttpTransport(client=build_session(settings))
        )
        self._timeouts = request_timeouts(settings).as_dict()
        self.bulkhead = Bulkhead(
            limit=settings.max_concurrent_upstream, queue=settings.max_queued_upstream
        )
        self.breaker = CircuitBreaker(
            threshold=settings.breaker_failure_threshold,
            cooldown=settings.breaker_cooldown,
            clock=clock,
        )
        self.budget = RetryBudget(settings.retry_budget_ratio)
        self.attempts = 0  # every GET sent, retries included

    async def __aenter__(self) -> UpstreamClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    def show_breaker(self) -> None:
        """Set the breaker gauge from the breaker now: it moves from open to half-open by
        time alone, with no call to report it."""
        _show_breaker(self.breaker)

    async def fetch_execution(
        self, execution_id: str, credentials: Credentials
    ) -> FetchedExecution:
        """The execution, or raise the ``UpstreamFailure`` that says why not.

        Raises ``Overloaded`` (RATE_LIMITED) when the bulkhead sheds the call.
        ``execution_id`` must already be canonical (see ``parse_execution_id``).
        """
        if parse_execution_id(execution_id) != execution_id:
            raise ValueError("fetch_execution takes canonical execution ids only")
        url = execution_url(self._base_url, execution_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._deadline
        try:
            # One deadline for the whole call: slot waits, attempts and backoff included.
            async with asyncio.timeout_at(deadline):
                outcome = await self._with_retries(execution_id, url, credentials, deadline)
        except TimeoutError:
            outcome = UpstreamTimeout(
                f"The orchestrator did not answer for execution {execution_id} in time."
            )
        if isinstance(outcome, UpstreamFailure):
            raise outcome
        return outcome

    async def cancel_execution(self, execution_id: str, credentials: Credentials) -> None:
        """Ask the orchestrator to cancel the execution (and its children); return once it
        has accepted, or raise the ``UpstreamFailure`` that says why not.

        Sent once, never retried: a cancel is not idempotent in effect, and a call that timed
        out may have been carried out. ``NotCancellable`` when the execution is already final.
        """
        if parse_execution_id(execution_id) != execution_id:
            raise ValueError("cancel_execution takes canonical execution ids only")
        url = f"{execution_url(self._base_url, execution_id)}/cancel"
        try:
            async with asyncio.timeout(self._deadline):
                outcome = await self._guarded(
                    lambda: self._cancel_attempt(execution_id, url, credentials)
                )
        except TimeoutError:
            outcome = UpstreamTimeout(
                f"The orchestrator did not answer in time while cancelling execution "
                f"{execution_id}."
            )
        if isinstance(outcome, UpstreamTimeout | UpstreamUnavailable) and not isinstance(
            outcome, CircuitOpen
        ):
            # The request may have arrived and been carried out before the answer was lost.
            outcome.reword(
                f"{outcome.message} It may or may not be cancelled: read it again before retrying."
            )
        if isinstance(outcome, UpstreamFailure):
            raise outcome

    async def _cancel_attempt(
        self, execution_id: str, url: str, credentials: Credentials
    ) -> CancelAccepted | UpstreamFailure:
        with self._tracing.upstream_call(
            execution_id, url, credentials.as_dict(), method="POST"
        ) as call:
            answer = await self._exchange("POST", url, call.headers, execution_id, "cancelling")
            if isinstance(answer, UpstreamFailure):
                call.record_failure(type(answer).__name__)
                return answer
            call.record_status(answer[0])
            return classify_cancel_response(execution_id, *answer)

    async def _with_retries(
        self, execution_id: str, url: str, credentials: Credentials, deadline: float
    ) -> FetchedExecution | UpstreamFailure:
        self.budget.record_attempt()
        attempt = 0
        while True:
            outcome = await self._guarded_attempt(execution_id, url, credentials)
            delay = self._retry_delay(outcome, attempt, deadline)
            if delay is None or not self.budget.try_spend():
                return outcome
            await asyncio.sleep(delay)
            attempt += 1

    def _retry_delay(
        self, outcome: FetchedExecution | UpstreamFailure, attempt: int, deadline: float
    ) -> float | None:
        """How long to wait before trying again, or None when this outcome is final."""
        if attempt + 1 >= self._attempts or isinstance(outcome, FetchedExecution | CircuitOpen):
            return None
        if isinstance(outcome, UpstreamAnswered):
            if outcome.status not in _OVERLOAD_STATUSES and outcome.status != 429:
                return None
            asked = retry_after_seconds(dict(outcome.headers).get("retry-after"))
            if asked is not None and asked > self._backoff_max:
                return None  # the client gets the answer, Retry-After included
        elif isinstance(outcome, UpstreamUnavailable):
            asked = None
        else:
            return None  # a timeout spent its time; a malformed answer would come again
        delay = (
            asked
            if asked is not None
            else backoff_delay(attempt, self._backoff_base, self._backoff_max)
        )
        remaining = deadline - asyncio.get_running_loop().time()
        return delay if delay < remaining else None

    async def _guarded_attempt(
        self, execution_id: str, url: str, credentials: Credentials
    ) -> FetchedExecution | UpstreamFailure:
        return await self._guarded(lambda: self._attempt(execution_id, url, credentials))

    async def _guarded(
        self, attempt: Callable[[], Awaitable[_Outcome | UpstreamFailure]]
    ) -> _Outcome | UpstreamFailure:
        """One attempt through the breaker and the bulkhead, counted in the metrics."""
        permit = self.breaker.allow()
        if permit is None:
            _count_attempt("circuit_open")
            _show_breaker(self.breaker)
            return CircuitOpen(
                "The orchestrator is failing; the gateway is not calling it for a few seconds."
            )
        try:
            async with self.bulkhead.slot():
                self.attempts += 1
                with UPSTREAM_IN_FLIGHT.track_inprogress(), UPSTREAM_LATENCY.time():
                    outcome = await attempt()
        except Overloaded:
            _count_attempt("shed")
            self.breaker.record_abandoned(permit)
            raise
        except BaseException:
            # Cancelled: the call's deadline passed, or every request waiting for it left.
            _count_attempt("abandoned")
            self.breaker.record_abandoned(permit)
            raise
        _count_attempt(*_outcome_labels(outcome))
        if _is_upstream_failure(outcome):
            self.breaker.record_failure(permit)
        else:
            self.breaker.record_success(permit)
        _show_breaker(self.breaker)
        return outcome

    async def _attempt(
        self, execution_id: str, url: str, credentials: Credentials
    ) -> FetchedExecution | UpstreamFailure:
        with self._tracing.upstream_call(execution_id, url, credentials.as_dict()) as call:
            outcome = await self._traced_attempt(execution_id, url, call)
            if isinstance(outcome, UpstreamAnswered):
                call.record_status(outcome.status)
            elif isinstance(outcome, FetchedExecution):
                call.record_status(200)
            else:
                call.record_failure(type(outcome).__name__)
            return outcome

    async def _traced_attempt(
        self, execution_id: str, url: str, call: UpstreamCall
    ) -> FetchedExecution | UpstreamFailure:
        answer = await self._exchange("GET", url, call.headers, execution_id, "fetching")
        if isinstance(answer, UpstreamFailure):
            return answer
        return classify_response(execution_id, *answer)

    async def _exchange(
        self, method: str, url: str, headers: dict[str, str], execution_id: str, doing: str
    ) -> tuple[int, bytes, httpx.Headers] | UpstreamFailure:
        """One HTTP exchange: the answer, or the failure that kept us from reading one.

        ``doing`` names the action for messages ("fetching", "cancelling").
        """
        try:
            return await self._read(method, url, headers)
        except _BodyTooLarge:
            return UpstreamMalformed(execution_id, f"its body is over {self._max_body} bytes")
        except httpx.DecodingError:
            return UpstreamMalformed(execution_id, "its body could not be decoded")
        except httpx.TransportError as exc:
            if _unreachable(exc):
                logger.warning("upstream unreachable: %s", type(exc.__cause__ or exc).__name__)
                return UpstreamUnavailable(
                    f"The orchestrator could not be reached, or dropped the connection, "
                    f"while {doing} execution {execution_id}."
                )
            return UpstreamTimeout(
                f"The orchestrator did not answer in time while {doing} execution {execution_id}."
            )
        except Exception:
            # Whatever else the HTTP stack raises (a reply that is not HTTP, say) is still
            # the upstream failing us, not a bug of ours to show as INTERNAL.
            logger.exception("unreadable upstream answer %s execution %s", doing, execution_id)
            return UpstreamMalformed(execution_id, "its answer could not be read as HTTP")

    async def _read(
        self, method: str, url: str, request_headers: dict[str, str]
    ) -> tuple[int, bytes, httpx.Headers]:
        # httpx's request and response over the transport, without httpx.AsyncClient: the
        # client's URL merging, auth, redirect, cookie and logging steps do nothing for the
        # gateway yet cost CPU on every call (measured by bench/transport.py).
        request = httpx.Request(
            method,
            url,
            headers=REQUEST_HEADERS | request_headers,
            extensions={"timeout": self._timeouts},
        )
        response = await self._transport.handle_async_request(request)
        try:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self._max_body:
                raise _BodyTooLarge
            chunks: list[bytes] = []
            size = 0
            async for chunk in body_chunks(response):
                size += len(chunk)
                if size > self._max_body:
                    raise _BodyTooLarge
                chunks.append(chunk)
            return response.status_code, b"".join(chunks), response.headers
        finally:
            await response.aclose()

    async def probe(self) -> bool:
        """True when the orchestrator answers HTTP at all (any status below 500), quickly.

        The answer is read like any other, so one over ``max_upstream_body_bytes`` is False.
        """
        try:
            async with asyncio.timeout(self._probe_deadline):
                status, _, _ = await self._read("GET", f"{self._base_url}/health", {})
        except Exception:
            return False
        return status < 500
