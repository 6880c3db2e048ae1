"""One log line per request on logger ``gateway.access``, and the request latency metric.

The line holds the request id, method, route template, status, duration, the GraphQL
operation name, the upstream calls and cache hits the request made and its error codes;
never a header value, so no credential can reach the log. ``configure_logging`` picks JSON
(one object per line, for machines) or text (for people, ``make run``).

Usage::

    app.add_middleware(AccessLog)      # inside RequestIdMiddleware, which sets the id
    configure_logging("info", "json")
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.metrics import HTTP_REQUEST_DURATION
from gateway.request_stats import SCOPE_KEY, RequestStats

logger = logging.getLogger("gateway.access")

TEXT_FORMAT = "%(levelname)-9s %(name)s: %(message)s"
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class AccessLog:
    """ASGI middleware: a ``RequestStats`` per HTTP request, then its line and its latency;
    a line per WebSocket connection when it ends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        stats = RequestStats()
        scope.setdefault("state", {})[SCOPE_KEY] = stats
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception escaped
        recorded = False

        def record() -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                _record(scope, stats, status, time.perf_counter() - started)

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                # Before the last bytes leave: whoever has the response can see its line.
                record()
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            record()

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One line when the connection ends: 101 if it was accepted, 403 if refused; no
        latency metric, since a connection's life says nothing about the gateway's speed."""
        started = time.perf_counter()
        status = 403  # unless accepted: refused (another origin) or failed before accepting

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "websocket.accept":
                status = 101
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            _log_line(scope, "WEBSOCKET", status, time.perf_counter() - started, None)


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/api/v1/executions/{execution_id}``), never the
    raw path; ``unrouted`` when no route matched."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unrouted"


def _record(scope: Scope, stats: RequestStats, status: int, seconds: float) -> None:
    method = scope["method"] if scope["method"] in _METHODS else "OTHER"
    HTTP_REQUEST_DURATION.labels(method, route_template(scope), f"{status // 100}xx").observe(
        seconds
    )
    _log_line(scope, method, status, seconds, stats)


def _log_line(
    scope: Scope, method: str, status: int, seconds: float, stats: RequestStats | None
) -> None:
    """The line; a WebSocket's (``stats`` None) leaves out what only one request has."""
    route = route_template(scope)
    # Probes and scrapes arrive every few seconds from machines: worth a line only when they
    # fail, unless the log level asks for everything.
    level = logging.DEBUG if route in QUIET_ROUTES and status < 400 else logging.INFO
    if not logger.isEnabledFor(level):
        return
    fields: dict[str, Any] = {
        "request_id": scope.get("state", {}).get("request_id"),
        "method": method,
        "route": route,
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
    }
    if stats is None:
        logger.log(
            level,
            "%s %s %s %.1fms request_id=%s",
            method,
            route,
            status,
            fields["duration_ms"],
            fields["request_id"],
            extra={"fields": fields},
        )
        return
    fields |= {
        "operation_name": stats.operation_name,
        "upstream_calls": stats.upstream_calls,
        "cache_hits": stats.cache_hits,
        "error_codes": stats.error_codes,
    }
    logger.log(
        level,
        "%s %s %s %.1fms request_id=%s operation=%s upstream_calls=%d cache_hits=%d errors=%s",
        method,
        route,
        status,
        fields["duration_ms"],
        fields["request_id"],
        stats.operation_name or "-",
        stats.upstream_calls,
        stats.cache_hits,
        ",".join(stats.error_codes) or "-",
        extra={"fields": fields},
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(level: str, log_format: str = "json") -> None:
    """Send the gateway's own log records to stderr at ``level``, beside uvicorn's."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
