"""Tracing: spans over real HTTP, W3C traceparent in and out, and no change when it is off."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway import tracing
from gateway.app import create_app
from gateway.demo.data import demo_id
from gateway.settings import Settings
from gateway.tracing import Tracing, configured_by_environment
from tests.conftest import StartGateway, graphql
from tests.servers import Recorder, serve

CLIENT_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN_ID = "00f067aa0ba902b7"
CLIENT_TRACEPARENT = f"00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01"
TREE_QUERY = "query($id: ID!) { execution(id: $id) { parent { id } root { id } } }"
OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def traced_gateway(
    exporter: InMemorySpanExporter, upstream: tuple[str, Recorder]
) -> Iterator[httpx.Client]:
    """A gateway whose spans go to ``exporter`` as each one ends."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(
        Settings(upstream_url=upstream[0], cache_enabled=False), tracing=Tracing(provider)
    )
    with serve(app) as base_url, httpx.Client(base_url=base_url, timeout=30) as client:
        yield client
    provider.shutdown()


@pytest.fixture
def no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def _of_kind(exporter: InMemorySpanExporter, kind: SpanKind) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.kind == kind]


def _traceparent_parts(value: str) -> tuple[str, str]:
    version, trace_id, parent_id, _flags = value.split("-")
    assert version == "00"
    return trace_id, parent_id


def test_a_traced_request_is_a_server_span_under_the_clients_span(
    traced_gateway: httpx.Client, exporter: InMemorySpanExporter
) -> None:
    graphql(
        traced_gateway,
        TREE_QUERY,
        {"id": demo_id("research/planner")},
        traceparent=CLIENT_TRACEPARENT,
        **{"X-Request-ID": "trace-me-1"},
    )

    [server] = _of_kind(exporter, SpanKind.SERVER)
    assert server.name == "POST /graphql"
    assert server.context is not None
    assert server.parent is not None
    assert format(server.context.trace_id, "032x") == CLIENT_TRACE_ID
    assert format(server.parent.span_id, "016x") == CLIENT_SPAN_ID
    assert server.parent.is_remote
    assert server.attributes is not None
    assert server.attributes["polos.request_id"] == "trace-me-1"
    assert server.attributes["http.response.status_code"] == 200


def test_each_upstream_call_is_a_client_span_with_the_execution_id_and_status(
    traced_gateway: httpx.Client, exporter: InMemorySpanExporter, upstream: tuple[str, Recorder]
) -> None:
    leaf = demo_id("research/planner")

    graphql(traced_gateway, TREE_QUERY, {"id": leaf}, traceparent=CLIENT_TRACEPARENT)

    [server] = _of_kind(exporter, SpanKind.SERVER)
    clients = _of_kind(exporter, SpanKind.CLIENT)
    assert server.context is not None
    assert len(clients) == len(upstream[1].requests) == 2
    assert sorted(str((span.attributes or {})["polos.execution_id"]) for span in clients) == sorted(
        upstream[1].execution_ids()
    )
    for span in clients:
        assert span.parent is not None
        assert span.parent.span_id == server.context.span_id
        assert (span.attributes or {})["http.response.status_code"] == 200


def test_the_upstream_receives_a_traceparent_naming_the_gateways_client_span(
    traced_gateway: httpx.Client, exporter: InMemorySpanExporter, upstream: tuple[str, Recorder]
) -> None:
    traced_gateway.get(
        f"/api/v1/executions/{demo_id('research')}", headers={"traceparent": CLIENT_TRACEPARENT}
    )

    [client] = _of_kind(exporter, SpanKind.CLIENT)
    [received] = upstream[1].requests
    trace_id, parent_id = _traceparent_parts(received.headers["traceparent"])
    assert client.context is not None
    assert trace_id == CLIENT_TRACE_ID
    assert parent_id == format(client.context.span_id, "016x")
    assert parent_id != CLIENT_SPAN_ID


def test_an_upstream_error_status_is_recorded_on_its_client_span(
    traced_gateway: httpx.Client, exporter: InMemorySpanExporter
) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"

    traced_gateway.get(f"/api/v1/executions/{unknown}")

    [client] = _of_kind(exporter, SpanKind.CLIENT)
    assert client.attributes is not None
    assert client.attributes["polos.execution_id"] == unknown
    assert client.attributes["http.response.status_code"] == 404


def test_without_a_client_traceparent_the_gateway_starts_a_new_trace(
    traced_gateway: httpx.Client, exporter: InMemorySpanExporter, upstream: tuple[str, Recorder]
) -> None:
    traced_gateway.get(f"/api/v1/executions/{demo_id('research')}")

    [server] = _of_kind(exporter, SpanKind.SERVER)
    [received] = upstream[1].requests
    assert server.parent is None
    assert server.context is not None
    assert server.name == "GET /api/v1/executions/{execution_id}"
    trace_id, _ = _traceparent_parts(received.headers["traceparent"])
    assert trace_id == format(server.context.trace_id, "032x")


@pytest.mark.usefixtures("no_otel_environment")
def test_without_otel_variables_tracing_is_off_and_the_traceparent_passes_unchanged(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    assert not Tracing.from_environment().enabled
    client = start_gateway(upstream[0])

    client.get(
        f"/api/v1/executions/{demo_id('research')}", headers={"traceparent": CLIENT_TRACEPARENT}
    )

    [received] = upstream[1].requests
    assert received.headers["traceparent"] == CLIENT_TRACEPARENT


def test_process_wide_providers_get_nothing_from_fastapis_own_telemetry(
    monkeypatch: pytest.MonkeyPatch,
    exporter: InMemorySpanExporter,
    start_gateway: StartGateway,
    upstream: tuple[str, Recorder],
) -> None:
    """The gateway traces and counts itself, only when asked; FastAPI's built-in telemetry
    would add a second server span and its own request metrics wherever an agent sets the
    global providers."""
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    monkeypatch.setattr(otel_trace, "get_tracer_provider", lambda: tracer_provider)
    monkeypatch.setattr(otel_metrics, "get_meter_provider", lambda: meter_provider)
    client = start_gateway(upstream[0])

    try:
        answer = client.get(f"/api/v1/executions/{demo_id('research')}")
        graphql(client, TREE_QUERY, {"id": demo_id("research/writer")})
        metrics = reader.get_metrics_data()
    finally:
        tracer_provider.shutdown()
        meter_provider.shutdown()

    assert answer.status_code == 200
    assert exporter.get_finished_spans() == ()
    assert metrics is None or not metrics.resource_metrics


@pytest.mark.usefixtures("no_otel_environment")
def test_without_the_otel_extra_the_variables_change_nothing_and_fail_nothing(
    monkeypatch: pytest.MonkeyPatch, start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    monkeypatch.setattr(tracing, "AVAILABLE", False)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert not Tracing.from_environment().enabled
    assert not Tracing(TracerProvider()).enabled
    client = start_gateway(upstream[0])

    response = client.get(
        f"/api/v1/executions/{demo_id('research')}", headers={"traceparent": CLIENT_TRACEPARENT}
    )

    assert response.status_code == 200
    [received] = upstream[1].requests
    assert received.headers["traceparent"] == CLIENT_TRACEPARENT


@pytest.mark.parametrize(
    ("environment", "configured"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "polos-gateway"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
    ],
)
def test_only_the_standard_otel_variables_switch_tracing_on(
    environment: dict[str, str], configured: bool
) -> None:
    assert configured_by_environment(environment) is configured


def test_an_otlp_endpoint_in_the_environment_builds_an_enabled_tracer() -> None:
    built = Tracing.from_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})

    assert built.enabled
    built.shutdown()  # nothing was recorded, so nothing is sent
