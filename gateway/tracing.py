"""OpenTelemetry tracing, optional: a server span per request, a client span per upstream call.

Installed with ``pip install 'polos-gateway[otel]'`` and configured only by the standard
``OTEL_*`` variables: tracing is on when ``OTEL_TRACES_EXPORTER`` (other than ``none``) or
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set, the packages
import and ``OTEL_SDK_DISABLED`` is not ``true``. ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_EXPORTER_OTLP_PROTOCOL`` (``http/protobuf``, the default,
or ``grpc``) and the exporter's own variables are read by the SDK. Otherwise every hook here
is a no-op and the client's ``traceparent`` is forwarded as it came.

With tracing on, a client's W3C ``traceparent`` is the parent of the server span, and the
upstream receives a ``traceparent`` naming the gateway's client span instead of the client's.

Usage::

    tracing = Tracing.from_environment()          # or Tracing(provider) in tests
    app.add_middleware(tracing.middleware)        # when tracing.enabled
    with tracing.upstream_call(execution_id, url, headers) as call:
        response = await http.get(url, headers=call.headers)
        call.record_status(response.status_code)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.access_log import route_template

try:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    AVAILABLE = True
except ImportError:  # pragma: no cover - depends on the installed extras
    AVAILABLE = False

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

logger = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
EXECUTION_ID_ATTRIBUTE = "polos.execution_id"
REQUEST_ID_ATTRIBUTE = "polos.request_id"
_INSTRUMENTATION = "polos-gateway"
_UPSTREAM_SPAN_NAME = "GET /api/v1/executions/{execution_id}"


def configured_by_environment(environ: Mapping[str, str] = os.environ) -> bool:
    """Do the ``OTEL_*`` variables ask for traces?"""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(
        exporter
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def _exporter_from_environment(environ: Mapping[str, str]) -> SpanExporter:
    names = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if names.split(",")[0].strip() == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    protocol = environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
    )
    if protocol.strip().lower() == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


class Tracing:
    """The gateway's tracer, or nothing: every method is safe to call when disabled."""

    def __init__(self, provider: TracerProvider | None = None, *, owned: bool = False) -> None:
        self._provider = provider if AVAILABLE else None
        self._owned = owned
        self._tracer: Tracer | None = (
            None if self._provider is None else self._provider.get_tracer(_INSTRUMENTATION)
        )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Tracing:
        """Enabled when the ``OTEL_*`` variables ask for traces and the extra is installed."""
        if not configured_by_environment(environ):
            return cls()
        if not AVAILABLE:
            logger.warning(
                "OTEL_* tracing variables are set but OpenTelemetry is not installed: "
                "pip install 'polos-gateway[otel]'; continuing without traces"
            )
            return cls()
        try:
            exporter = _exporter_from_environment(environ)
        except Exception:
            logger.exception("could not set up the trace exporter; continuing without traces")
            return cls()
        provider = TracerProvider(resource=Resource.create())
        provider.add_span_processor(BatchSpanProcessor(exporter))
        return cls(provider, owned=True)

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """ASGI middleware making a server span per HTTP request (the app itself when off)."""
        if self._tracer is None:
            return app
        return _ServerSpans(app, self._tracer)

    @contextmanager
    def upstream_call(
        self, execution_id: str, url: str, headers: Mapping[str, str], method: str = "GET"
    ) -> Iterator[UpstreamCall]:
        """A client span around one upstream call; ``call.headers`` are the ones to send."""
        if self._tracer is None:
            yield UpstreamCall(dict(headers), None)
            return
        with self._tracer.start_as_current_span(
            _UPSTREAM_SPAN_NAME,
            kind=SpanKind.CLIENT,
            attributes={
                EXECUTION_ID_ATTRIBUTE: execution_id,
                "http.request.method": method,
                "url.full": url,
            },
        ) as span:
            # The span now current names this call: the upstream's parent is the gateway.
            sent = {name: value for name, value in headers.items() if name != TRACEPARENT}
            carrier: dict[str, str] = {}
            TraceContextTextMapPropagator().inject(carrier)
            if TRACEPARENT in carrier:
                sent[TRACEPARENT] = carrier[TRACEPARENT]
            yield UpstreamCall(sent, span)

    def shutdown(self) -> None:
        """Flush and stop the exporter this object set up from the environment."""
        if self._owned and self._provider is not None:
            self._provider.shutdown()


class UpstreamCall:
    """The headers for one upstream call and the span (if any) that records its outcome."""

    def __init__(self, headers: dict[str, str], span: Span | None) -> None:
        self.headers = headers
        self._span = span

    def record_status(self, status: int) -> None:
        if self._span is not None:
            self._span.set_attribute("http.response.status_code", status)
            if status >= 500:
                self._span.set_status(Status(StatusCode.ERROR))

    def record_failure(self, kind: str) -> None:
        if self._span is not None:
            self._span.set_attribute("error.type", kind)
            self._span.set_status(Status(StatusCode.ERROR, kind))


class _ServerSpans:
    """A SERVER span per HTTP request, child of the client's ``traceparent`` when it has one.

    Named by the route template, it ends before the last response bytes leave, so whoever
    has the response can also see the span.
    """

    def __init__(self, app: ASGIApp, tracer: Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier: dict[str, str] = {}
        for name, value in scope.get("headers", ()):
            if name == TRACEPARENT.encode():
                carrier[TRACEPARENT] = value.decode("latin-1")
        parent = TraceContextTextMapPropagator().extract(carrier)
        method = str(scope["method"])
        span = self.tracer.start_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method},
        )
        ended = False

        def end(status: int | None) -> None:
            nonlocal ended
            if ended:
                return
            ended = True
            route = route_template(scope)
            span.update_name(f"{method} {route}")
            span.set_attribute("http.route", route)
            request_id = scope.get("state", {}).get("request_id")
            if request_id is not None:
                span.set_attribute(REQUEST_ID_ATTRIBUTE, str(request_id))
            if status is None:
                span.set_status(Status(StatusCode.ERROR, "no response"))
            else:
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
            span.end()

        status: int | None = None

        async def send_and_end(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                end(status)
            await send(message)

        try:
            with trace.use_span(span, end_on_exit=False):
                await self.app(scope, receive, send_and_end)
        finally:
            end(status)
