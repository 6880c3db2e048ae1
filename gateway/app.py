"""Wiring: ``create_app(settings)`` builds the ASGI app with both front doors and health.

Usage::

    app = create_app(Settings(upstream_url="http://orchestrator:8080"))
    uvicorn.run(app)

``app_from_environment`` is the same for process managers that import a factory by name
(``uvicorn --factory gateway.app:app_from_environment``, and ``--workers`` > 1).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from gateway import health, metrics, rest
from gateway.access_log import AccessLog, configure_logging
from gateway.body_limit import BodySizeLimit
from gateway.cache import ExecutionCache, MemoryCache
from gateway.cache_headers import CredentialCaching
from gateway.context import Services
from gateway.errors import ErrorCode
from gateway.explorer_route import create_explorer_router
from gateway.fetcher import ExecutionFetcher
from gateway.graphql_route import create_graphql_router
from gateway.hot_routes import HotRoutes
from gateway.persisted_queries import open_persisted_queries
from gateway.redis_cache import RedisCache, TieredCache, connect_redis
from gateway.request_id import HEADER, RequestIdMiddleware
from gateway.response_cache import ResponseCache
from gateway.settings import Settings
from gateway.subscriptions import ExecutionWatch
from gateway.tracing import Tracing
from gateway.upstream import UpstreamClient

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    tracing: Tracing | None = None,
    samples: Callable[[], Mapping[str, str]] | None = None,
) -> FastAPI:
    """The gateway for ``settings``; its lifespan opens and closes the upstream client.

    ``tracing`` defaults to what the ``OTEL_*`` variables configure (nothing when unset).
    ``samples``, when given, is asked for the explorer's samples on every request instead of
    ``settings.explorer_samples`` (``serve --demo`` offers fresh runs of the live trees so).
    """
    if settings.upstream_url is None:
        raise ValueError(
            "no upstream configured: set POLOS_GATEWAY_UPSTREAM_URL, or run "
            "`polos-gateway serve --demo` for the embedded demo upstream"
        )
    traces = tracing if tracing is not None else Tracing.from_environment()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            UpstreamClient(settings, tracing=traces) as upstream,
            _open_cache(settings) as (cache, shared),
            open_persisted_queries(settings) as persisted_queries,
        ):
            app.state.upstream = upstream
            app.state.before_scrape = upstream.show_breaker
            app.state.readiness = health.ReadinessProbe(upstream)
            app.state.persisted_queries = persisted_queries
            app.state.shared_cache = shared
            secret = settings.cache_key_secret
            app.state.fetcher = fetcher = ExecutionFetcher(
                upstream,
                settings,
                cache=cache,
                secret=None if secret is None else secret.get_secret_value().encode(),
            )
            watch = ExecutionWatch(upstream, settings, fingerprint=fetcher.fingerprint)
            app.state.services = Services(upstream, fetcher, watch)
            app.state.responses = ResponseCache.from_settings(settings)
            try:
                yield
            finally:
                await watch.aclose()
                # The exporter's last flush sends spans over the network: not on the loop.
                await asyncio.to_thread(traces.shutdown)

    app = FastAPI(
        title="polos-gateway",
        summary="GraphQL over the Polos executions API, with a REST compatibility route.",
        version="0.1.0",
        lifespan=lifespan,
        # The orchestrator answers a trailing slash with 404, not a redirect to a new URL.
        redirect_slashes=False,
        # The gateway traces and counts requests itself (gateway.tracing, gateway.metrics), and
        # only when configured. FastAPI's own telemetry would add a second server span wherever
        # a process-wide provider is set, and checks for one on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    graphql = create_graphql_router(settings)
    # The last added is the outermost. First, so innermost: the hot routes, answered inside
    # every other middleware but without FastAPI's routing (see gateway.hot_routes).
    app.add_middleware(HotRoutes, graphql=graphql, rest_routes=rest.router.routes)
    # The request id is set before the body is read, and is on a 413 too, as is the access
    # log line.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(
        CredentialCaching,
        header_names=settings.forward_headers,
        cookie_names=settings.forward_cookies,
    )
    if settings.cors_origins:
        # Outside the body limit, so a browser can read a 413; inside the request id and the
        # access log, so a preflight answered here carries its id and is logged.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=settings.cors_methods,
            allow_headers=settings.cors_headers,
            allow_credentials=settings.cors_allow_credentials,
            expose_headers=[HEADER],
            max_age=settings.cors_max_age,
        )
    app.add_middleware(AccessLog)
    if traces.enabled:
        # Inside the request id, which the server span carries as an attribute.
        app.add_middleware(traces.middleware)
    app.add_middleware(RequestIdMiddleware)
    app.add_exception_handler(Exception, _internal_error)
    app.add_exception_handler(404, rest.answer_unrouted)
    app.include_router(graphql)
    app.include_router(rest.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(create_explorer_router(samples))
    return app


@asynccontextmanager
async def _open_cache(
    settings: Settings,
) -> AsyncIterator[tuple[ExecutionCache | None, RedisCache | None]]:
    """The cache (None when off) and its Redis tier (None unless configured)."""
    if not settings.cache_enabled:
        yield None, None
        return
    memory = MemoryCache(max_entries=settings.cache_max_entries, max_bytes=settings.cache_max_bytes)
    if settings.redis_url is None:
        yield memory, None
        return
    shared = RedisCache(connect_redis(str(settings.redis_url), settings.redis_timeout))
    try:
        yield TieredCache(memory, shared), shared
    finally:
        await shared.aclose()


async def _internal_error(request: Request, exc: Exception) -> Response:
    """The last resort for a bug: a coded body and the request id, never the stack.

    Starlette runs this outside the middleware stack, so it sets ``X-Request-ID`` itself.
    """
    request_id = str(request.scope.get("state", {}).get("request_id", "unknown"))
    logger.error("unhandled error (request %s)", request_id, exc_info=exc)
    return JSONResponse(
        {
            "error": f"Internal error; quote request id {request_id} when reporting it.",
            "error_type": ErrorCode.INTERNAL.value,
        },
        status_code=500,
        headers={HEADER: request_id},
    )


def freeze_startup_heap() -> None:
    """Take what exists once the app is built out of the cyclic garbage collector's sight.

    The imported modules, the schema, the settings and the app are tens of thousands of
    objects (tests/test_startup_heap.py counts them) that live as long as the process. Every
    full collection walked them all, pausing the process under load often enough to set the
    p99 of cached answers. Frozen, they are still freed by reference counting, but a cycle
    among them that becomes garbage later is never collected. So call this once per process,
    after building what the process keeps until it exits; the collection just before leaves
    no garbage frozen.
    """
    gc.collect()
    gc.freeze()


def app_from_environment() -> FastAPI:
    """``create_app`` with settings read from ``POLOS_GATEWAY_*`` variables; each worker
    process calls it once, so it starts its live gauges afresh (``start_live_gauges``) and
    freezes the startup heap (``freeze_startup_heap``)."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    metrics.start_live_gauges()
    freeze_startup_heap()
    return app
