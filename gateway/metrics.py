"""Prometheus metrics of the process, and ``GET /metrics`` to scrape them.

Every metric is defined here, once per process, in prometheus-client's default registry: the
test suite builds many apps in one process, and they all count into the same metrics. Label
values are bounded: routes are templates, operation names are cleaned and capped, ids never
appear.

With ``--workers`` > 1 every worker writes its values to files in ``PROMETHEUS_MULTIPROC_DIR``
(prometheus-client's multiprocess mode, chosen when the variable is set before the worker
imports it; ``polos-gateway serve`` sets it), and ``/metrics`` adds up all the workers' files,
whichever worker is scraped. A worker that died (uvicorn's supervisor starts another) leaves its
live gauges behind; each scrape deletes those of workers that are gone first. The directory
belongs to one ``serve``: its files are named by process ids, which mean something only there.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

logger = logging.getLogger(__name__)

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

UPSTREAM_REQUESTS = Counter(
    "polos_gateway_upstream_requests",
    "Upstream GETs by outcome and HTTP status (none when there was no answer), retries included.",
    ["outcome", "status"],
)
UPSTREAM_LATENCY = Histogram(
    "polos_gateway_upstream_request_duration_seconds",
    "Seconds one upstream GET took, from sending to the last body byte.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
UPSTREAM_IN_FLIGHT = Gauge(
    "polos_gateway_upstream_in_flight",
    "Upstream GETs in flight now.",
    multiprocess_mode="livesum",
)
BREAKER_STATE = Gauge(
    "polos_gateway_upstream_breaker_state",
    "The upstream circuit breaker as last seen by a call: 0 closed, 1 half-open, 2 open.",
    multiprocess_mode="livemax",
)
LOADER_BATCH_SIZE = Histogram(
    "polos_gateway_loader_batch_size",
    "Executions fetched per loader batch (one upstream round of one request).",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
CACHE_HITS = Counter("polos_gateway_cache_hits", "Cache lookups answered.", ["backend"])
CACHE_MISSES = Counter("polos_gateway_cache_misses", "Cache lookups not answered.", ["backend"])
CACHE_EVICTIONS = Counter(
    "polos_gateway_cache_evictions", "Entries dropped to stay within the bounds.", ["backend"]
)
SINGLE_FLIGHT_JOINS = Counter(
    "polos_gateway_single_flight_joins",
    "Fetches that joined an identical upstream call already in flight instead of making one.",
)
SUBSCRIPTION_WATCHERS = Gauge(
    "polos_gateway_subscriptions",
    "executionUpdated subscriptions served now.",
    multiprocess_mode="livesum",
)
SUBSCRIPTION_POLLERS = Gauge(
    "polos_gateway_subscription_pollers",
    "Upstream pollers behind the subscriptions: one per credential and execution watched.",
    multiprocess_mode="livesum",
)
PERSISTED_QUERIES = Counter(
    "polos_gateway_persisted_queries",
    "Automatic persisted queries by outcome: hit (the hash ran its stored document), miss "
    "(PersistedQueryNotFound), registered (a new document stored).",
    ["outcome"],
)
GRAPHQL_OPERATIONS = Counter(
    "polos_gateway_graphql_operations",
    "GraphQL operations by operation name and outcome (ok, or the first error's code).",
    ["operation", "outcome"],
)
HTTP_REQUEST_DURATION = Histogram(
    "polos_gateway_http_request_duration_seconds",
    "Seconds to answer an HTTP request, by method, route template and status class.",
    ["method", "route", "status_class"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class BoundedNames:
    """Client-chosen names made into label values: cleaned, cut, and at most ``limit``
    distinct ones (per process); later new names are all ``other``."""

    def __init__(self, limit: int = 100, length: int = 64) -> None:
        self.limit = limit
        self.length = length
        self._seen: set[str] = set()
        self._lock = threading.Lock()  # the test suite serves apps from several threads

    def label(self, name: str | None) -> str:
        if not name:
            return "anonymous"
        cleaned = _NOT_A_NAME_CHARACTER.sub("", name)[: self.length] or "other"
        with self._lock:
            if cleaned not in self._seen:
                if len(self._seen) >= self.limit:
                    return "other"
                self._seen.add(cleaned)
        return cleaned


_NOT_A_NAME_CHARACTER = re.compile(r"[^A-Za-z0-9_]")
OPERATION_NAMES = BoundedNames()


def exposition() -> bytes:
    """The metrics in Prometheus text format: of every worker in multiprocess mode, after
    deleting the live gauges of workers that died (``forget_dead_workers``)."""
    directory = os.environ.get(MULTIPROC_DIR_VARIABLE)
    if directory:
        forget_dead_workers(directory)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


# prometheus-client's files of live gauges: one per process and kind (livesum, livemax).
_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def forget_dead_workers(directory: str) -> None:
    """Delete the live gauge files of processes that no longer run.

    A worker that crashed leaves its last values behind (calls it had in flight, subscriptions
    it held), and the multiprocess collector would add them to every scrape for good.
    prometheus-client leaves this to the process manager (its ``mark_process_dead``);
    uvicorn's supervisor has no hook for it, so every scrape does it. The files are deleted
    here, not by ``mark_process_dead``, which fails when another scrape (another thread or
    worker) deleted a file between its listing and its removal. Counters and histograms stay:
    what a dead worker counted still happened.
    """
    for path in Path(directory).glob("gauge_live*.db"):
        match = _LIVE_GAUGE_FILE.fullmatch(path.name)
        if match is None or _running(int(match.group(1))):
            continue
        try:
            path.unlink(missing_ok=True)
        except OSError as failure:
            # Another user's file, say: its values stay in the scrape, and the log says why.
            logger.warning("cannot delete %s, a dead worker's gauges: %s", path, failure.strerror)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: delivers nothing, only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user's
    return True


# The gauges of what a worker holds now; prometheus-client keeps them per live process.
LIVE_GAUGES = (UPSTREAM_IN_FLIGHT, BREAKER_STATE, SUBSCRIPTION_WATCHERS, SUBSCRIPTION_POLLERS)


def start_live_gauges() -> None:
    """Set this worker's live gauges to their values at start: nothing in flight, nothing
    subscribed, the breaker closed (0).

    In multiprocess mode a gauge reads its last value back from its file, which is named by
    process id: a worker given the id of one that died would carry on from the dead one's
    values, since its files are then not a dead process's.
    """
    for gauge in LIVE_GAUGES:
        gauge.set(0)


router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus text exposition (a plain ``def``: multiprocess mode reads files).

    ``app.state.before_scrape``, when set, brings gauges that change by time alone up to
    date first (in multiprocess mode, those of the worker that answers).
    """
    before_scrape: Callable[[], None] | None = getattr(request.app.state, "before_scrape", None)
    if before_scrape is not None:
        before_scrape()
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
