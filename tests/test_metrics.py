"""``GET /metrics``: Prometheus text whose counters move by what the requests did.

Metrics are process-wide and the suite serves many gateways in one process, so each test
reads the metrics before and after its own requests and checks the difference.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import BoundedNames, forget_dead_workers
from tests.conftest import StartGateway, graphql
from tests.processes import ROOT, free_port, running
from tests.servers import Recorder, closed_port_url

Labels = frozenset[tuple[str, str]]
Samples = dict[tuple[str, Labels], float]

ROOT_ID = "f13cf9c2-9eff-5486-a927-c43988a27bdf"  # a completed research tree (root)
LEAF_ID = "e8c272a1-6dfa-5855-91e4-df68c681d226"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
EXECUTION_ROUTE = "/api/v1/executions/{execution_id}"


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def test_a_cold_then_warm_final_execution_costs_one_upstream_request_and_one_cache_hit(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0])
    before = scrape(client)

    assert client.get(f"/api/v1/executions/{ROOT_ID}").status_code == 200
    assert client.get(f"/api/v1/executions/{ROOT_ID}").status_code == 200
    after = scrape(client)

    requests = "polos_gateway_upstream_requests_total"
    assert moved(before, after, requests, outcome="ok", status="200") == 1
    assert moved(before, after, "polos_gateway_cache_hits_total", backend="memory") == 1
    assert moved(before, after, "polos_gateway_cache_misses_total", backend="memory") == 1
    assert moved(before, after, "polos_gateway_upstream_request_duration_seconds_count") == 1
    assert value(after, "polos_gateway_upstream_in_flight") == 0
    latency = "polos_gateway_http_request_duration_seconds_count"
    route = {"method": "GET", "route": EXECUTION_ROUTE, "status_class": "2xx"}
    assert moved(before, after, latency, **route) == 2


def test_an_unknown_execution_is_counted_by_its_upstream_status(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], cache_enabled=False)
    before = scrape(client)

    assert client.get(f"/api/v1/executions/{UNKNOWN_ID}").status_code == 404
    after = scrape(client)

    requests = "polos_gateway_upstream_requests_total"
    assert moved(before, after, requests, outcome="answered", status="404") == 1
    latency = "polos_gateway_http_request_duration_seconds_count"
    route = {"method": "GET", "route": EXECUTION_ROUTE, "status_class": "4xx"}
    assert moved(before, after, latency, **route) == 1


def test_the_same_id_fetched_twice_at_once_joins_one_upstream_call(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    # Without the loader's batching, both entries reach the fetcher in the same tick.
    client = start_gateway(upstream[0], batching_enabled=False)
    before = scrape(client)

    body = graphql(
        client, "query Twice($id: ID!) { executions(ids: [$id, $id]) { id } }", {"id": LEAF_ID}
    )
    after = scrape(client)

    assert body["data"]["executions"] == [{"id": LEAF_ID}, {"id": LEAF_ID}]
    assert moved(before, after, "polos_gateway_single_flight_joins_total") == 1
    assert upstream[1].execution_ids() == [LEAF_ID]


def test_one_batch_of_three_ids_is_one_loader_batch_of_size_three(
    gateway: httpx.Client, samples: dict[str, str]
) -> None:
    ids = list(samples.values())[:3]
    before = scrape(gateway)

    graphql(gateway, "query Three($ids: [ID!]!) { executions(ids: $ids) { id } }", {"ids": ids})
    after = scrape(gateway)

    assert moved(before, after, "polos_gateway_loader_batch_size_count") == 1
    assert moved(before, after, "polos_gateway_loader_batch_size_sum") == 3
    assert moved(before, after, "polos_gateway_loader_batch_size_bucket", le="2.0") == 0
    assert moved(before, after, "polos_gateway_loader_batch_size_bucket", le="5.0") == 1


def test_graphql_operations_are_counted_by_name_and_outcome_without_any_execution_id(
    gateway: httpx.Client,
) -> None:
    query = "query ShowOne($id: ID!) { execution(id: $id) { id } }"
    before = scrape(gateway)

    graphql(gateway, query, {"id": ROOT_ID})
    graphql(gateway, query, {"id": UNKNOWN_ID})
    graphql(gateway, '{ execution(id: "not-a-uuid") { id } }')
    after = scrape(gateway)

    operations = "polos_gateway_graphql_operations_total"
    assert moved(before, after, operations, operation="ShowOne", outcome="ok") == 1
    assert moved(before, after, operations, operation="ShowOne", outcome="NOT_FOUND") == 1
    assert moved(before, after, operations, operation="anonymous", outcome="BAD_USER_INPUT") == 1
    text = gateway.get("/metrics").text
    assert ROOT_ID not in text
    assert UNKNOWN_ID not in text
    assert "not-a-uuid" not in text


def test_graphql_requests_answered_without_running_an_operation_count_with_their_code(
    gateway: httpx.Client,
) -> None:
    before = scrape(gateway)

    batch = gateway.post("/graphql", json=[{"query": "{ __typename }"}] * 2)
    form = gateway.post(
        "/graphql", content="query={ __typename }", headers={"Content-Type": "text/plain"}
    )
    unknown = gateway.post(
        "/graphql", json={"query": "query A { __typename }", "operationName": "B"}
    )
    after = scrape(gateway)

    assert (batch.status_code, form.status_code, unknown.status_code) == (400, 415, 400)
    operations = "polos_gateway_graphql_operations_total"
    refused = {"operation": "(not run)", "outcome": "BAD_USER_INPUT"}
    assert moved(before, after, operations, **refused) == 3


def test_the_breaker_gauge_is_read_at_scrape_time_not_only_when_a_call_is_made(
    start_gateway: StartGateway,
) -> None:
    client = start_gateway(
        closed_port_url(), breaker_failure_threshold=1, retry_attempts=1, breaker_cooldown=600
    )
    assert client.get(f"/api/v1/executions/{ROOT_ID}").status_code == 502
    # Another gateway in this process sets the same gauge when its breaker moves.
    other = start_gateway(closed_port_url())
    assert other.get(f"/api/v1/executions/{ROOT_ID}").status_code == 502

    assert value(scrape(client), "polos_gateway_upstream_breaker_state") == 2


def test_unrouted_paths_are_one_label_not_one_per_path(gateway: httpx.Client) -> None:
    before = scrape(gateway)

    assert gateway.get(f"/nowhere/{ROOT_ID}").status_code == 404
    after = scrape(gateway)

    latency = "polos_gateway_http_request_duration_seconds_count"
    route = {"method": "GET", "route": "unrouted", "status_class": "4xx"}
    assert moved(before, after, latency, **route) == 1
    assert ROOT_ID not in gateway.get("/metrics").text


def test_an_open_breaker_shows_as_two(start_gateway: StartGateway) -> None:
    client = start_gateway(closed_port_url(), breaker_failure_threshold=1, retry_attempts=1)
    before = scrape(client)

    assert client.get(f"/api/v1/executions/{ROOT_ID}").status_code == 502
    assert client.get(f"/api/v1/executions/{ROOT_ID}").status_code == 502
    after = scrape(client)

    requests = "polos_gateway_upstream_requests_total"
    assert moved(before, after, requests, outcome="unavailable", status="none") == 1
    assert moved(before, after, requests, outcome="circuit_open", status="none") == 1
    assert value(after, "polos_gateway_upstream_breaker_state") == 2


def test_operation_names_are_cleaned_cut_and_capped() -> None:
    names = BoundedNames(limit=2, length=8)

    assert names.label("Show-One!") == "ShowOne"
    assert names.label("AVeryLongOperationName") == "AVeryLon"
    assert names.label("Third") == "other"
    assert names.label("ShowOne") == "ShowOne"
    assert names.label(None) == "anonymous"
    assert names.label("") == "anonymous"


def test_two_workers_report_the_requests_of_both_in_one_scrape() -> None:
    port = free_port()
    sent = 20
    with running("serve", "--workers", "2", "--demo", "--port", str(port), port=port, workers=2):
        base_url = f"http://127.0.0.1:{port}"
        for _ in range(sent):
            # A new connection each time, so the requests spread over the workers.
            with httpx.Client(base_url=base_url, timeout=30) as client:
                assert client.get("/healthz").status_code == 200
        scrapes: list[Mapping[tuple[str, Labels], float]] = []
        for _ in range(4):
            with httpx.Client(base_url=base_url, timeout=30) as client:
                scrapes.append(scrape(client))

    latency = "polos_gateway_http_request_duration_seconds_count"
    for samples in scrapes:
        assert total(dict(samples), latency, route="/healthz") == sent


def test_a_metrics_directory_given_by_the_operator_is_emptied_of_an_earlier_runs_counts(
    tmp_path: Path,
) -> None:
    stale = tmp_path / "counter_999999.db"
    stale.write_bytes(b"left by an earlier run")
    port = free_port()

    with running(
        "serve",
        "--workers",
        "2",
        "--demo",
        "--port",
        str(port),
        port=port,
        workers=2,
        env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
    ):
        scrape = httpx.get(f"http://127.0.0.1:{port}/metrics")

    assert scrape.status_code == 200
    assert not stale.exists()


def _python(code: str, *args: str, multiproc_dir: Path, **env: str) -> str:
    """What ``code`` prints, run by a fresh interpreter of its own at the repository root,
    in multiprocess mode with ``multiproc_dir``: a process that has ended when this returns."""
    environment = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir), **env}
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return done.stdout.strip()


# A worker that died with calls in flight: its live gauge file, written the way a worker's is.
_DEAD_WORKER = """
import os
from gateway.metrics import UPSTREAM_IN_FLIGHT
UPSTREAM_IN_FLIGHT.set(7)
print(os.getpid())
"""


def test_a_dead_workers_live_gauges_leave_the_scrape(tmp_path: Path) -> None:
    port = free_port()
    args = ("serve", "--workers", "2", "--demo", "--port", str(port))
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    with (
        running(*args, port=port, workers=2, env=env),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
    ):
        dead = _python(_DEAD_WORKER, multiproc_dir=tmp_path)
        left = tmp_path / f"gauge_livesum_{dead}.db"
        assert left.exists()
        workers = set(tmp_path.glob("gauge_livesum_*.db")) - {left}

        samples = scrape(client)

        assert not left.exists()
        assert value(samples, "polos_gateway_upstream_in_flight") == 0
        # The running workers' gauges stay.
        assert len(workers) == 2
        assert set(tmp_path.glob("gauge_livesum_*.db")) == workers


# A worker given the process id of one that died: the dead one's gauge file is now its own.
_REPLACEMENT_WORKER = """
import os, pathlib, sys
directory = pathlib.Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
dead, own = (directory / f"gauge_livesum_{pid}.db" for pid in (sys.argv[1], os.getpid()))
dead.rename(own)
from gateway.app import app_from_environment
app_from_environment()
from gateway.metrics import exposition
print(exposition().decode())
"""


def test_a_worker_given_a_dead_workers_process_id_starts_its_gauges_afresh(
    tmp_path: Path,
) -> None:
    dead = _python(_DEAD_WORKER, multiproc_dir=tmp_path)

    replacement = _python(
        _REPLACEMENT_WORKER,
        dead,
        multiproc_dir=tmp_path,
        POLOS_GATEWAY_UPSTREAM_URL=closed_port_url(),
    )

    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(replacement)
        for sample in family.samples
    }
    assert samples["polos_gateway_upstream_in_flight"] == 0


def test_a_dead_workers_gauges_another_scrape_deleted_meanwhile_are_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ended = _python("import os; print(os.getpid())", multiproc_dir=tmp_path)
    # Listed, then deleted by a concurrent scrape (another thread or worker) before this one.
    gone = tmp_path / f"gauge_livesum_{ended}.db"
    monkeypatch.setattr(Path, "glob", lambda self, pattern: iter([gone]))

    with caplog.at_level("WARNING", logger="gateway.metrics"):
        forget_dead_workers(str(tmp_path))

    assert caplog.records == []  # nothing to warn about: the file is gone, as wanted
