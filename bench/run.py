"""Benchmark the gateway against the demo upstream and rewrite ``docs/benchmarks.md`` and its chart.

Everything runs as real processes on 127.0.0.1 (free ports): the demo upstream
(``python -m gateway demo-upstream --latency-ms 5``), a second demo upstream answering at once
(``--latency-ms 0``), and a FRESH gateway (``python -m gateway serve``, one worker) for every
(target, scenario), so no run inherits another's cache, connections or memory. To count upstream
rounds exactly, the demo app also runs in a thread of this script at 250 ms, noting when each
execution request arrives.

Scenarios (ids from ``gateway.demo.data``):

* A: one completed root execution with every ``Execution`` field of ``schema.graphql``
* B: a leaf five levels down with its parent and root
* C: ``executions(ids)`` over 100 fan-out leaves, each with parent and root
* D: ``ancestors(limit: 50)`` of the tail of the 60-deep chain
* E: the REST route ``GET /api/v1/executions/{id}`` for one id

Targets:

* ``direct``: the upstream itself, doing what a REST client would (A and E: one GET, driven
  by ``hey``; B, C, D: the GETs a REST client needs, driven by a small closed-loop asyncio
  client in this script, so those rows are measured by the Python client, not by ``hey``)
* ``naive``: the gateway with batching and the shared cache off (one upstream call per field)
* ``cold``: the gateway with every cache TTL at 0 (batching and single-flight on, nothing kept)
* ``warm``: the gateway with its default settings, after one warm-up request

For each it runs ``hey`` (or the Python client) at concurrency 1 and 32 for ``--seconds`` and
reports upstream calls per request (from the demo's ``/_demo/stats``), p50/p99 latency, req/s
and the gateway's peak RSS. Then: throughput per gateway worker against the 0 ms upstream,
a py-spy profile of the warm gateway, a long run that watches the gateway's memory, single-flight
bursts and upstream round counts, and ``bench/transport.py --rounds 5``. It checks each target
of the performance issue against the figures and writes everything to ``docs/benchmarks.md``
and ``docs/benchmarks.png``.

hey sees only status codes, and GraphQL reports errors inside 200 answers; so after each gateway
run at concurrency c the script sends c identical requests at once and checks every answer. The
doc warns loudly about any non-2xx or incomplete answer, about other processes taking more than
5% of the machine's CPU during the run, and about the gateway's source changing under it.

Rerun it from the repository root::

    make bench                                     # installs hey and the bench extra, then runs
    .venv/bin/python bench/run.py                  # --seconds 4 --latency-ms 5
    .venv/bin/python bench/run.py --seconds 10 --skip-profile --output-dir /tmp/bench

About five minutes at the defaults. The load generator, the upstream and the gateway share the
machine's cores: compare rows of one run, not numbers across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import http.client
import io
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from importlib.metadata import version
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import uvicorn
import uvloop
from starlette.types import Receive, Scope, Send

from gateway.cli import listening_socket
from gateway.demo.data import CHAIN_DEPTH, demo_id
from gateway.demo.upstream import DemoOptions, create_demo_app

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCIES = (1, 32)
HIGH = CONCURRENCIES[-1]
BURST_SIZE = 32
ANCESTOR_LIMIT = 50
FANOUT_SIZE = 100
CLIENT_CONNECTIONS = 100
STARTUP_TIMEOUT = 60.0
MEMORY_TOLERANCE_MIB = 2.0
# The memory run lasts this many --seconds, of which the first MEMORY_WARMUP_RUNS are warm-up:
# long enough for the allocator's arenas and the connection pools to reach their working size.
MEMORY_RUNS = 8
MEMORY_WARMUP_RUNS = 3
PROFILE_RATE = 200
PROFILE_TOP = 12
SPINE_SHARE = 0.99
# Where a warm GraphQL request's time goes: a stage is every sample with its function on the
# stack (functions do not recurse, so each sample counts once per stage; stages nest).
PROFILE_STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("the app, after uvicorn parsed the request (middlewares, routes)", ("FastAPI.__call__ (",)),
    ("  the GraphQL operation (Strawberry's `Schema.execute`)", ("Schema.execute (",)),
    ("    graphql-core resolving and completing the fields", ("Schema._execute_operation (",)),
    ("    parse, validation and limits (cached documents)", ("Schema._prepare_operation_async (",)),
    ("  reading and checking the JSON body", ("GatewayGraphQLRouter.parse_http_body (",)),
    ("  the request's context: credentials and loader", ("get_context (gateway/",)),
    ("  sending the answer through the middlewares", ("Response.__call__ (",)),
    (
        "the loader: batches and fetches (cache lookups, cached bodies parsed)",
        ("ExecutionLoader.batch_load_fn (", "ExecutionFetcher.fetch ("),
    ),
)
TRANSPORT_ROUNDS = 5
OTHER_LOAD_LIMIT = 0.05  # share of the machine other processes may use before the doc warns
OVERHEAD_BUDGET_MS = 1.0
# Rounds and single-flight bursts are measured with the upstream this slow: issuing C's 100
# upstream calls takes the gateway tens of ms of CPU, so at 50-100 ms a round's last calls could
# go out after its first answers were back, and the last of 32 requests sent at once could reach
# the fetch too late to share it.
RECORDING_LATENCY_MS = 250.0

ROOT_ID = demo_id("research")
LEAF_ID = demo_id("research/planner/search-0/summarise/llm")
FANOUT_IDS = tuple(demo_id(f"eval/runner/case-{index}") for index in range(FANOUT_SIZE))
CHAIN_TAIL_ID = demo_id(f"chain/{CHAIN_DEPTH - 1}")

TARGETS = ("direct", "naive", "cold", "warm")
GATEWAY_ENV: dict[str, dict[str, str]] = {
    "naive": {"POLOS_GATEWAY_BATCHING_ENABLED": "false", "POLOS_GATEWAY_CACHE_ENABLED": "false"},
    "cold": {
        "POLOS_GATEWAY_CACHE_FINAL_TTL": "0",
        "POLOS_GATEWAY_CACHE_ACTIVE_TTL": "0",
        "POLOS_GATEWAY_CACHE_NOT_FOUND_TTL": "0",
    },
    "warm": {},
}
TARGET_MEANING = {
    "direct": "the demo upstream called directly over REST, doing what a REST client would",
    "naive": "the gateway with batching and the shared cache off: one upstream call per field",
    "cold": "the gateway with every cache TTL at 0: batching and single-flight on, nothing kept",
    "warm": "the gateway with its default settings, after one warm-up request",
}


def log(message: str) -> None:
    """Progress on stdout, so `make bench` shows where it is."""
    print(message, flush=True)


# --- requests and scenarios -------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One HTTP request as hey, the bursts and the warm-ups send it."""

    method: str
    url: str
    body: bytes | None = None

    @property
    def target(self) -> str:
        """The path and query, what goes on the request line."""
        parts = urlsplit(self.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")


class ClientFailure(Exception):
    """A GET of the direct plan answered with a non-2xx status."""


Plan = Callable[[aiohttp.ClientSession, str], Awaitable[None]]


async def _get(session: aiohttp.ClientSession, base: str, execution_id: str) -> dict[str, Any]:
    async with session.get(f"{base}/api/v1/executions/{execution_id}") as response:
        body = await response.read()
        if not 200 <= response.status < 300:
            raise ClientFailure(f"GET {execution_id}: {response.status}")
        record: dict[str, Any] = orjson.loads(body)
        return record


async def leaf_with_parent_and_root(session: aiohttp.ClientSession, base: str) -> None:
    """B as a REST client does it: the leaf, then its parent and root together."""
    leaf = await _get(session, base, LEAF_ID)
    linked = (leaf["parent_execution_id"], leaf["root_execution_id"])
    await asyncio.gather(*(_get(session, base, execution_id) for execution_id in linked))


async def leaves_with_parents_and_roots(session: aiohttp.ClientSession, base: str) -> None:
    """C as a REST client does it: 100 leaves at once, then their distinct parents and roots."""
    leaves = await asyncio.gather(*(_get(session, base, leaf) for leaf in FANOUT_IDS))
    linked = {
        execution_id
        for leaf in leaves
        for execution_id in (leaf["parent_execution_id"], leaf["root_execution_id"])
        if execution_id
    }
    await asyncio.gather(*(_get(session, base, execution_id) for execution_id in sorted(linked)))


async def ancestors_walk(session: aiohttp.ClientSession, base: str) -> None:
    """D as a REST client does it: the tail, then one GET per level up, one after another."""
    current = await _get(session, base, CHAIN_TAIL_ID)
    for _ in range(ANCESTOR_LIMIT):
        parent = current["parent_execution_id"]
        if parent is None:
            return
        current = await _get(session, base, parent)


@dataclass(frozen=True)
class Scenario:
    """One thing a client asks for, as GraphQL (or REST) and as the direct REST work."""

    key: str
    title: str
    label: str  # short, for the chart
    distinct: int  # executions the query touches
    rounds: int  # sequential upstream rounds it needs at least
    all_final: bool  # every execution it touches is completed, failed or cancelled
    query: str | None  # the GraphQL document; None: the REST route
    variables: dict[str, Any]
    plan: Plan | None  # the direct work for the Python client; None: one GET, driven by hey

    def gateway_request(self, base: str) -> Request:
        """What a client sends the gateway for this scenario."""
        if self.query is None:
            return Request("GET", f"{base}/api/v1/executions/{ROOT_ID}")
        body = orjson.dumps({"query": self.query, "variables": self.variables})
        return Request("POST", f"{base}/graphql", body)


def execution_selection(schema_text: str) -> str:
    """Every field of ``type Execution`` in the SDL; linked executions as ``{ id status }``."""
    block = re.search(r"^type Execution\b[^{]*\{(.*?)^\}", schema_text, re.MULTILINE | re.DOTALL)
    if block is None:
        raise RuntimeError("schema.graphql has no `type Execution`")
    body = re.sub(r'"""(.*?)"""', "", block.group(1), flags=re.DOTALL)
    fields = re.findall(r"^\s+(\w+)(?:\([^)]*\))?\s*:\s*\[?(\w+)", body, re.MULTILINE)
    parts = [f"{name} {{ id status }}" if kind == "Execution" else name for name, kind in fields]
    return " ".join(parts)


def build_scenarios(schema_text: str) -> tuple[Scenario, ...]:
    """The five scenarios of the issue, with the demo's ids."""
    linked = "id status parent { id status } root { id status }"
    every_field = execution_selection(schema_text)
    return (
        Scenario(
            key="A",
            title="one completed root execution, every field",
            label="A: one execution,\nevery field",
            distinct=1,
            rounds=1,
            all_final=True,
            query=f"query A($id: ID!) {{ execution(id: $id) {{ {every_field} }} }}",
            variables={"id": ROOT_ID},
            plan=None,
        ),
        Scenario(
            key="B",
            title="a leaf with parent and root",
            label="B: a leaf with\nparent and root",
            distinct=3,
            rounds=2,
            all_final=True,
            query=f"query B($id: ID!) {{ execution(id: $id) {{ {linked} }} }}",
            variables={"id": LEAF_ID},
            plan=leaf_with_parent_and_root,
        ),
        Scenario(
            key="C",
            title=f"`executions(ids)` over {FANOUT_SIZE} leaves with parent and root",
            label=f"C: {FANOUT_SIZE} leaves with\nparent and root",
            distinct=FANOUT_SIZE + 2,
            rounds=2,
            all_final=False,
            query=f"query C($ids: [ID!]!) {{ executions(ids: $ids) {{ {linked} }} }}",
            variables={"ids": list(FANOUT_IDS)},
            plan=leaves_with_parents_and_roots,
        ),
        Scenario(
            key="D",
            title=f"`ancestors(limit: {ANCESTOR_LIMIT})` of the {CHAIN_DEPTH}-deep chain's tail",
            label=f"D: {ANCESTOR_LIMIT} ancestors\nup a chain",
            distinct=ANCESTOR_LIMIT + 1,
            rounds=ANCESTOR_LIMIT + 1,
            all_final=True,
            query=f"query D($id: ID!) {{ execution(id: $id) {{ id status "
            f"ancestors(limit: {ANCESTOR_LIMIT}) {{ id status }} }} }}",
            variables={"id": CHAIN_TAIL_ID},
            plan=ancestors_walk,
        ),
        Scenario(
            key="E",
            title="the REST route for one id",
            label="E: REST route,\none id",
            distinct=1,
            rounds=1,
            all_final=True,
            query=None,
            variables={},
            plan=None,
        ),
    )


def answer_problem(scenario: Scenario, graphql: bool, status: int, body: bytes) -> str | None:
    """Why an answer is not the full, error-free one the scenario asks for; None if it is."""
    if not 200 <= status < 300:
        return f"status {status}"
    document = json.loads(body)
    if not graphql:
        return None if document.get("id") == ROOT_ID else "REST body is not the execution"
    if document.get("errors"):
        error = document["errors"][0]
        code = (error.get("extensions") or {}).get("code", "no code")
        return f"GraphQL error {code}: {str(error.get('message'))[:90]}"
    data = document.get("data") or {}
    answer = data.get("executions") if scenario.key == "C" else data.get("execution")
    if not answer:
        return "no data"
    if scenario.key == "C" and (len(answer) != FANOUT_SIZE or not all(answer)):
        return "executions(ids) is missing entries"
    if scenario.key == "D" and len(answer.get("ancestors") or []) != ANCESTOR_LIMIT:
        return "ancestors is short"
    return None


# --- processes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """A process serving HTTP at ``url``."""

    url: str
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid


class Processes:
    """Every process the benchmark starts; leaving the ``with`` block stops those still running."""

    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self._started: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for process in reversed(self._started):
            self.stop(process)

    def start(
        self, name: str, command: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``command`` with stdout discarded and stderr in ``<logs>/<name>.log``."""
        with (self._logs / f"{name}.log").open("wb") as stderr:
            # Commands are built here from our own interpreter, tools found on PATH and numbers.
            process = subprocess.Popen(  # noqa: S603
                command, stdout=subprocess.DEVNULL, stderr=stderr, env=env, cwd=ROOT
            )
        self._started.append(process)
        return process

    def log_tail(self, name: str) -> str:
        path = self._logs / f"{name}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    @staticmethod
    def stop(process: subprocess.Popen[bytes]) -> None:
        """Stop one process we started, killing it if it does not exit in time."""
        if process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_call(request: Request, timeout: float = 60.0) -> tuple[int, bytes]:
    """Send one request on a fresh connection; return (status, body)."""
    parts = urlsplit(request.url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout)
    try:
        headers = {"Content-Type": "application/json"} if request.body is not None else {}
        connection.request(request.method, request.target, body=request.body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_until_serving(procs: Processes, name: str, server: Server, path: str) -> None:
    """Poll ``path`` until it answers 200 (a benchmark may poll); fail if the process dies."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{name} exited at start:\n{procs.log_tail(name)}")
        try:
            if http_call(Request("GET", server.url + path), timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not serve {path} within {STARTUP_TIMEOUT:g} s")


def start_upstream(procs: Processes, latency_ms: float) -> Server:
    """A demo upstream process answering after ``latency_ms``."""
    port = free_port()
    name = f"upstream-{latency_ms:g}ms"
    command = [sys.executable, "-m", "gateway", "demo-upstream", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--latency-ms", f"{latency_ms:g}"]
    server = Server(f"http://127.0.0.1:{port}", procs.start(name, command))
    wait_until_serving(procs, name, server, "/health")
    return server


def start_gateway(procs: Processes, name: str, upstream: str, target: str) -> Server:
    """A fresh one-worker gateway on ``upstream`` with the settings of ``target``."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("POLOS_GATEWAY_")}
    env.update({"POLOS_GATEWAY_LOG_LEVEL": "warning", **GATEWAY_ENV[target]})
    command = [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--upstream-url", upstream]
    server = Server(f"http://127.0.0.1:{port}", procs.start(name, command, env))
    wait_until_serving(procs, name, server, "/healthz")
    return server


def upstream_count(upstream: str) -> int:
    """Execution requests the demo upstream has answered so far."""
    status, body = http_call(Request("GET", f"{upstream}/_demo/stats"))
    if status != 200:
        raise RuntimeError(f"/_demo/stats answered {status}")
    count: int = json.loads(body)["execution_requests"]
    return count


def proc_status_mib(pid: int, key: str) -> float:
    """``VmHWM`` or ``VmRSS`` of a process from /proc, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no {key}")


@dataclass(frozen=True)
class CpuSnapshot:
    """Machine-wide busy CPU seconds, and those of this script and its finished children."""

    busy: float
    ours: float


def cpu_snapshot() -> CpuSnapshot:
    """From /proc/stat (user, nice, system, idle, iowait, irq, softirq, steal) and os.times()."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    own = os.times()
    return CpuSnapshot(busy, own.user + own.system + own.children_user + own.children_system)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- load ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """One timed run: latencies in seconds, non-2xx answers, and how long it ran."""

    latencies: tuple[float, ...]
    failures: int
    duration: float

    @property
    def completed(self) -> int:
        return len(self.latencies)

    def percentile_ms(self, percent: float) -> float:
        """Nearest-rank percentile, in ms."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        index = max(0, math.ceil(percent / 100 * len(ordered)) - 1)
        return ordered[index] * 1000

    @property
    def rps(self) -> float:
        return self.completed / self.duration if self.duration > 0 else 0.0


def parse_hey_csv(text: str) -> Load:
    """hey's ``-o csv`` rows: response-time and offset in seconds, status-code."""
    latencies: list[float] = []
    failures = 0
    end = 0.0
    for row in csv.DictReader(io.StringIO(text)):
        latency = float(row["response-time"])
        latencies.append(latency)
        failures += not 200 <= int(row["status-code"]) < 300
        end = max(end, float(row["offset"]) + latency)
    return Load(tuple(latencies), failures, end)


def hey_command(
    hey: str, request: Request, concurrency: int, seconds: float, work: Path, *options: str
) -> list[str]:
    """The hey command line for ``request``; a body goes to a file, as ``-D`` wants.

    Options must come before the URL: hey stops reading flags at the first other argument.
    """
    command = [hey, "-z", f"{seconds:g}s", "-c", str(concurrency), *options]
    if request.body is not None:
        body_file = work / "body.json"
        body_file.write_bytes(request.body)
        command += ["-m", "POST", "-T", "application/json", "-D", str(body_file)]
    return [*command, request.url]


def run_hey(hey: str, request: Request, concurrency: int, seconds: float, work: Path) -> Load:
    """Drive ``request`` with hey for ``seconds`` at ``concurrency``."""
    command = hey_command(hey, request, concurrency, seconds, work, "-o", "csv")
    # hey finishes the requests in flight when the time is up; allow for slow ones.
    result = subprocess.run(  # noqa: S603
        command, capture_output=True, check=True, timeout=seconds + 120
    )
    return parse_hey_csv(result.stdout.decode())


async def _worker(
    plan: Plan, session: aiohttp.ClientSession, base: str, deadline: float
) -> list[tuple[float, bool]]:
    outcomes: list[tuple[float, bool]] = []
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        try:
            await plan(session, base)
            ok = True
        except (ClientFailure, aiohttp.ClientError, TimeoutError):
            ok = False
        outcomes.append((time.perf_counter() - started, ok))
    return outcomes


def _client_session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=CLIENT_CONNECTIONS)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120))


async def _client_load(plan: Plan, base: str, concurrency: int, seconds: float) -> Load:
    async with _client_session() as session:
        started = time.perf_counter()
        workers = (_worker(plan, session, base, started + seconds) for _ in range(concurrency))
        results = await asyncio.gather(*workers)
        duration = time.perf_counter() - started
    outcomes = [outcome for result in results for outcome in result]
    failures = sum(not ok for _, ok in outcomes)
    return Load(tuple(latency for latency, _ in outcomes), failures, duration)


def run_client_load(plan: Plan, base: str, concurrency: int, seconds: float) -> Load:
    """Closed loop: ``concurrency`` workers each run ``plan`` again and again for ``seconds``."""
    return uvloop.run(_client_load(plan, base, concurrency, seconds))


async def _client_once(plan: Plan, base: str) -> None:
    async with _client_session() as session:
        await plan(session, base)


async def _at_once(health: str, request: Request, size: int) -> list[tuple[int, bytes]]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def send(method: str, url: str, body: bytes | None) -> tuple[int, bytes]:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            async with session.request(method, url, data=body, headers=headers) as response:
                return response.status, await response.read()

        # Open one connection per request first, so the burst itself goes out at once.
        await asyncio.gather(*(send("GET", health, None) for _ in range(size)))
        sends = (send(request.method, request.url, request.body) for _ in range(size))
        return list(await asyncio.gather(*sends))


class RecordingUpstream:
    """The demo app served in a thread of this process, noting when execution requests arrive.

    It answers execution requests after ``latency`` seconds, which may change between
    requests. Arrival times tell the upstream rounds of a request exactly, where latencies only
    hint at them through the gateway's own CPU time.
    """

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.arrivals: list[float] = []
        self._socket = listening_socket("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        demo = create_demo_app(DemoOptions())

        async def recording(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope["path"].startswith("/api/v1/executions/"):
                self.arrivals.append(time.monotonic())
                await asyncio.sleep(self.latency)
            await demo(scope, receive, send)

        config = uvicorn.Config(recording, log_config=None, access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> RecordingUpstream:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def rounds(self) -> int:
        """Rounds among the arrivals so far.

        A call that arrives less than one latency after the first call of the current round
        cannot depend on any answer of that round (none is back yet), so it belongs to it; a
        later one starts the next round.
        """
        count, start = 0, -math.inf
        for arrival in sorted(self.arrivals):
            if arrival - start >= self.latency:
                count, start = count + 1, arrival
        return count


# --- measurements -------------------------------------------------------------------------------


@dataclass
class Row:
    """One (scenario, target): a load per concurrency and upstream calls per request."""

    scenario: Scenario
    target: str
    tool: str
    loads: dict[int, Load]
    calls: dict[int, float]
    peak_rss_mib: float | None = None
    flagged: bool = False  # non-2xx answers, or incomplete ones in the check after a run


@dataclass(frozen=True)
class Throughput:
    """Scenario A at concurrency 32 against the 0 ms upstream, one gateway worker."""

    target: str
    load: Load
    calls: float
    cpu: float  # gateway CPU seconds during the run

    @property
    def per_cpu_second(self) -> float:
        return self.load.completed / self.cpu if self.cpu > 0 else math.nan


@dataclass(frozen=True)
class Memory:
    """The warm gateway's RSS over a long run of scenario C."""

    samples: tuple[tuple[float, float], ...]  # (seconds since start, VmRSS MiB)
    after_warmup: float
    end: float
    peak: float
    load: Load
    calls: float


@dataclass(frozen=True)
class Profile:
    """py-spy samples of the warm gateway: shares of functions, inclusive and self."""

    samples: int
    summary: str
    inclusive: list[tuple[str, float]]
    self_share: list[tuple[str, float]]
    spine: list[str]
    stages: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class Findings:
    """Everything one run measured."""

    rows: list[Row] = field(default_factory=list)
    rounds: dict[str, int] = field(default_factory=dict)  # scenario key -> upstream rounds
    bursts: dict[str, int] = field(default_factory=dict)  # scenario key -> upstream calls
    throughput: list[Throughput] = field(default_factory=list)
    memory: Memory | None = None
    profile: Profile | str | None = None  # a str says why there is none
    transport: str = ""
    problems: list[str] = field(default_factory=list)
    revision: str = ""  # the gateway code's commit when the run started
    others_cpu: float = 0.0  # CPU seconds other processes on the machine used during the run
    others_share: float = 0.0  # the same, as a share of the machine's capacity

    def row(self, key: str, target: str) -> Row:
        return next(r for r in self.rows if r.scenario.key == key and r.target == target)


@dataclass(frozen=True)
class Bench:
    """What every measurement needs: options, tools, the upstreams and a scratch folder."""

    seconds: float
    latency_ms: float
    hey: str
    procs: Processes
    upstream: Server
    fast_upstream: Server
    work: Path
    findings: Findings


def counted(bench: Bench, upstream: Server, run: Callable[[], Load]) -> tuple[Load, float]:
    """Run a load and count the upstream calls it caused, per completed request."""
    before = upstream_count(upstream.url)
    load = run()
    calls = upstream_count(upstream.url) - before
    return load, calls / load.completed if load.completed else math.nan


def note_failures(bench: Bench, label: str, load: Load) -> None:
    if load.failures:
        bench.findings.problems.append(f"{load.failures} non-2xx responses in {label}")
    if not load.completed:
        bench.findings.problems.append(f"no request completed in {label}")


def warm_up(bench: Bench, label: str, scenario: Scenario, request: Request) -> None:
    """One untimed request; a wrong answer is recorded as a problem."""
    status, body = http_call(request)
    problem = answer_problem(scenario, request.body is not None, status, body)
    if problem:
        bench.findings.problems.append(f"{label}: {problem}")


def report_load(label: str, load: Load, calls: float) -> None:
    log(
        f"  {label:<22} p50 {load.percentile_ms(50):7.1f} ms  p99 {load.percentile_ms(99):7.1f} ms"
        f"  {load.rps:8.1f} req/s  {calls:8.3f} upstream calls/request"
    )


def measure_direct(bench: Bench, scenario: Scenario) -> Row:
    """The upstream itself: hey for one GET, the Python client for the REST plans."""
    upstream = bench.upstream
    plan = scenario.plan
    if plan is None:
        request = Request("GET", f"{upstream.url}/api/v1/executions/{ROOT_ID}")
        warm_up(bench, f"direct {scenario.key}", scenario, request)
        tool = "hey"

        def run(concurrency: int) -> Load:
            return run_hey(bench.hey, request, concurrency, bench.seconds, bench.work)

    else:
        uvloop.run(_client_once(plan, upstream.url))
        tool = "Python client"

        def run(concurrency: int) -> Load:
            return run_client_load(plan, upstream.url, concurrency, bench.seconds)

    row = Row(scenario, "direct", tool, {}, {})
    for concurrency in CONCURRENCIES:
        load, calls = counted(bench, upstream, partial(run, concurrency))
        label = f"direct {scenario.key} c={concurrency}"
        note_failures(bench, label, load)
        report_load(label, load, calls)
        row.loads[concurrency], row.calls[concurrency] = load, calls
        row.flagged |= load.failures > 0
    return row


def measure_gateway(bench: Bench, scenario: Scenario, target: str) -> Row:
    """A fresh gateway for (target, scenario): c=1 and c=32, then its peak RSS."""
    name = f"gateway-{target}-{scenario.key}"
    server = start_gateway(bench.procs, name, bench.upstream.url, target)
    try:
        request = scenario.gateway_request(server.url)
        warm_up(bench, f"{target} {scenario.key}", scenario, request)
        row = Row(scenario, target, "hey", {}, {})
        for concurrency in CONCURRENCIES:
            load, calls = counted(
                bench,
                bench.upstream,
                partial(run_hey, bench.hey, request, concurrency, bench.seconds, bench.work),
            )
            label = f"{target} {scenario.key} c={concurrency}"
            note_failures(bench, label, load)
            report_load(label, load, calls)
            row.loads[concurrency], row.calls[concurrency] = load, calls
            row.flagged |= load.failures > 0
            row.flagged |= bool(at_once(bench, label, scenario, server, request, concurrency))
        row.peak_rss_mib = proc_status_mib(server.pid, "VmHWM")
        warm_up(bench, f"{target} {scenario.key} after the load", scenario, request)
        return row
    finally:
        bench.procs.stop(server.process)


def measure_rounds_and_bursts(bench: Bench, scenarios: Sequence[Scenario]) -> None:
    """On a cold gateway over the recording upstream: each scenario's rounds, then a burst."""
    with RecordingUpstream(RECORDING_LATENCY_MS / 1000) as upstream:
        server = start_gateway(bench.procs, "gateway-cold-rounds", upstream.url, "cold")
        try:
            for scenario in scenarios:
                request = scenario.gateway_request(server.url)
                upstream.arrivals = []
                warm_up(bench, f"rounds {scenario.key}", scenario, request)
                bench.findings.rounds[scenario.key] = upstream.rounds()
                upstream.arrivals = []
                burst(bench, scenario, server, request)
                bench.findings.bursts[scenario.key] = len(upstream.arrivals)
                log(
                    f"  {scenario.key}: {bench.findings.rounds[scenario.key]} rounds alone; "
                    f"{BURST_SIZE} at once cost {len(upstream.arrivals)} upstream calls"
                )
        finally:
            bench.procs.stop(server.process)


def at_once(
    bench: Bench, label: str, scenario: Scenario, server: Server, request: Request, size: int
) -> list[str]:
    """Send ``size`` identical requests at once and check every answer; return the problems."""
    answers = uvloop.run(_at_once(f"{server.url}/healthz", request, size))
    graphql = request.body is not None
    problems = [answer_problem(scenario, graphql, status, body) for status, body in answers]
    found = Counter(problem for problem in problems if problem)
    if found:
        listed = "; ".join(f"{count}x {problem}" for problem, count in found.most_common(3))
        bench.findings.problems.append(
            f"{label}: {found.total()} of {size} answers sent at once were not complete: {listed}"
        )
    return [problem for problem in problems if problem]


def burst(bench: Bench, scenario: Scenario, server: Server, request: Request) -> None:
    """Send ``BURST_SIZE`` identical requests at once, over connections opened beforehand."""
    at_once(bench, f"the cold {scenario.key} burst", scenario, server, request, BURST_SIZE)


def measure_fast_cold(bench: Bench, scenarios: Sequence[Scenario]) -> None:
    """Against the 0 ms upstream: cold A's throughput."""
    upstream = bench.fast_upstream
    server = start_gateway(bench.procs, "gateway-cold-fast", upstream.url, "cold")
    try:
        bench.findings.throughput.append(throughput(bench, server, scenarios[0], "cold"))
    finally:
        bench.procs.stop(server.process)


def throughput(bench: Bench, server: Server, scenario: Scenario, target: str) -> Throughput:
    """Scenario A at c=32 on one worker; CPU seconds from /proc around the run."""
    request = scenario.gateway_request(server.url)
    warm_up(bench, f"throughput {target}", scenario, request)
    cpu_before = cpu_seconds(server.pid)
    load, calls = counted(
        bench,
        bench.fast_upstream,
        lambda: run_hey(bench.hey, request, HIGH, bench.seconds, bench.work),
    )
    cpu = cpu_seconds(server.pid) - cpu_before
    note_failures(bench, f"throughput {target} A", load)
    report_load(f"throughput {target} A", load, calls)
    at_once(bench, f"throughput {target} A", scenario, server, request, HIGH)
    return Throughput(target, load, calls, cpu)


def measure_fast_warm(bench: Bench, scenario: Scenario, profile: bool) -> None:
    """Against the 0 ms upstream: warm A's throughput, then a py-spy profile of the same load."""
    server = start_gateway(bench.procs, "gateway-warm-fast", bench.fast_upstream.url, "warm")
    try:
        bench.findings.throughput.append(throughput(bench, server, scenario, "warm"))
        if profile:
            bench.findings.profile = run_profile(
                bench, server, scenario.gateway_request(server.url)
            )
        else:
            bench.findings.profile = "skipped (`--skip-profile`)"
    finally:
        bench.procs.stop(server.process)


def find_py_spy() -> str | None:
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return shutil.which("py-spy", path=search)


def run_profile(bench: Bench, server: Server, request: Request) -> Profile | str:
    """py-spy on the gateway while hey drives warm A at c=32; a str says why it failed."""
    py_spy = find_py_spy()
    if py_spy is None:
        return "py-spy is not installed (`pip install -e '.[bench]'`)"
    seconds = max(1, round(bench.seconds))
    output = bench.work / "profile.txt"
    load = hey_command(bench.hey, request, HIGH, seconds + 2, bench.work)
    hey = bench.procs.start("hey-profile", load)
    try:
        time.sleep(0.5)
        command = [py_spy, "record", "--format", "raw", "--duration", str(seconds)]
        command += ["--rate", str(PROFILE_RATE), "--pid", str(server.pid)]
        # Not --nonblocking: on a busy 2-core machine it read a fifth of the samples with errors
        # and cut two stacks in five short, which leaves inclusive shares meaningless.
        command += ["--output", str(output)]
        result = subprocess.run(  # noqa: S603
            command, capture_output=True, check=False, timeout=seconds + 60
        )
    finally:
        bench.procs.stop(hey)
    messages = (result.stdout + result.stderr).decode(errors="replace")
    if result.returncode != 0 or not output.exists():
        return f"py-spy failed (exit {result.returncode}): {messages.strip()[-600:]}"
    summary = re.search(r"Samples: \d+ Errors: \d+", messages)
    return parse_profile(output.read_text(), summary.group(0) if summary else "")


def frame_function(frame: str) -> str:
    """``name (file.py:12)`` -> ``name (file.py)``: one entry per function, whatever the line."""
    return re.sub(r":\d+\)$", ")", frame.strip())


def parse_profile(text: str, summary: str) -> Profile:
    """Collapsed stacks (``frame;frame;... count``) -> top functions by inclusive and self share."""
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    staged: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [frame_function(frame) for frame in stack.split(";")]
        total += int(count)
        leaf[frames[-1]] += int(count)
        for name in set(frames):
            inclusive[name] += int(count)
        for stage, functions in PROFILE_STAGES:
            if any(frame.startswith(functions) for frame in frames):
                staged[stage] += int(count)
    if total == 0:
        return Profile(0, summary, [], [], [])
    spine = [name for name, count in inclusive.most_common() if count / total >= SPINE_SHARE]
    top = [(name, count / total) for name, count in inclusive.most_common() if name not in spine]
    own = [(name, count / total) for name, count in leaf.most_common(PROFILE_TOP)]
    stages = [(stage, staged[stage] / total) for stage, _ in PROFILE_STAGES]
    return Profile(total, summary, top[:PROFILE_TOP], own, spine, stages)


@contextmanager
def sampling_rss(pid: int, interval: float) -> Iterator[list[tuple[float, float]]]:
    """Sample a process's VmRSS every ``interval`` seconds in a thread while the block runs."""
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    started = time.monotonic()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.monotonic() - started, proc_status_mib(pid, "VmRSS")))
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def measure_memory(bench: Bench, scenario: Scenario) -> Memory:
    """Warm C at c=32 for MEMORY_RUNS x --seconds; the first MEMORY_WARMUP_RUNS are warm-up."""
    server = start_gateway(bench.procs, "gateway-warm-memory", bench.upstream.url, "warm")
    try:
        request = scenario.gateway_request(server.url)
        warm_up(bench, "memory run", scenario, request)
        seconds = MEMORY_RUNS * bench.seconds
        with sampling_rss(server.pid, 0.25) as samples:
            load, calls = counted(
                bench,
                bench.upstream,
                lambda: run_hey(bench.hey, request, HIGH, seconds, bench.work),
            )
        end = proc_status_mib(server.pid, "VmRSS")
        peak = proc_status_mib(server.pid, "VmHWM")
    finally:
        bench.procs.stop(server.process)
    note_failures(bench, "the memory run", load)
    warmed = MEMORY_WARMUP_RUNS * bench.seconds
    after = next((rss for at, rss in samples if at >= warmed), samples[-1][1])
    log(f"  memory: {after:.1f} MiB after warm-up, {end:.1f} MiB at the end, peak {peak:.1f} MiB")
    return Memory(tuple(samples), after, end, peak, load, calls)


def run_transport() -> str:
    """``bench/transport.py --rounds 5``'s printed table (or why there is none)."""
    command = [sys.executable, str(ROOT / "bench" / "transport.py"), "--rounds"]
    result = subprocess.run(  # noqa: S603
        [*command, str(TRANSPORT_ROUNDS)], capture_output=True, check=False, cwd=ROOT, timeout=600
    )
    table = result.stdout.decode(errors="replace").strip()
    if result.returncode != 0:
        table += f"\n\n**bench/transport.py exited with status {result.returncode}**"
    return table


# --- targets ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One target of the issue, the figure measured for it, and whether it is met."""

    target: str
    measured: str
    met: bool | None  # None: a figure to report, nothing to pass or fail


def number(value: float) -> str:
    """Upstream calls: whole numbers plain, fractions with enough digits to see them."""
    if math.isnan(value):
        return "n/a"
    if abs(value - round(value)) < 0.005:
        return str(round(value))
    return f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def check_cold_calls(findings: Findings, scenarios: Sequence[Scenario]) -> Check:
    cold = {s.key: findings.row(s.key, "cold").calls[1] for s in scenarios}
    met = all(abs(cold[s.key] - s.distinct) < 0.01 for s in scenarios)
    measured = "; ".join(f"{s.key} {number(cold[s.key])} (touches {s.distinct})" for s in scenarios)
    return Check(
        "Upstream calls: cold = the distinct executions the query touches",
        f"cold, c=1: {measured}",
        met,
    )


def check_warm_calls(findings: Findings, scenarios: Sequence[Scenario]) -> Check:
    final = [s for s in scenarios if s.all_final]
    warm = {s.key: findings.row(s.key, "warm").calls for s in scenarios}
    met = all(warm[s.key][c] == 0 for s in final for c in CONCURRENCIES)
    parts = [f"{s.key} {number(warm[s.key][1])} / {number(warm[s.key][HIGH])}" for s in final]
    others = [
        f"{s.key} {number(warm[s.key][1])} / {number(warm[s.key][HIGH])}"
        for s in scenarios
        if not s.all_final
    ]
    measured = f"warm, c=1 / c={HIGH}: {'; '.join(parts)}"
    if others:
        measured += (
            f" (not all final, kept for the active TTL only, so not a target: {'; '.join(others)})"
        )
    return Check("Upstream calls: warm = 0 for final executions", measured, met)


def check_single_flight(findings: Findings, scenarios: Sequence[Scenario]) -> Check:
    alone = {s.key: findings.row(s.key, "cold").calls[1] for s in scenarios}
    met = all(abs(findings.bursts[s.key] - alone[s.key]) < 0.01 for s in scenarios)
    measured = "; ".join(
        f"{s.key} {number(findings.bursts[s.key])} (one alone: {number(alone[s.key])})"
        for s in scenarios
    )
    return Check(
        "Upstream calls, single-flight: N concurrent identical queries cost what one does",
        f"{BURST_SIZE} identical requests at once on a cold gateway (nothing kept, so only "
        f"single-flight can share), upstream at {RECORDING_LATENCY_MS:g} ms: {measured}",
        met,
    )


def check_rounds(findings: Findings, scenarios: Sequence[Scenario]) -> Check:
    rounds = findings.rounds
    measured = "; ".join(f"{s.key} {rounds[s.key]} (needs {s.rounds})" for s in scenarios)
    return Check(
        "Round trips: one upstream round per level walked (B: parent and root in one round)",
        f"cold, one request alone, rounds seen at the upstream (answering after "
        f"{RECORDING_LATENCY_MS:g} ms; a call a full latency after its round's first starts "
        f"the next): {measured}",
        all(rounds[s.key] == s.rounds for s in scenarios),
    )


def check_cold_overhead(findings: Findings, key: str) -> Check:
    cold, direct = findings.row(key, "cold").loads[1], findings.row(key, "direct").loads[1]
    added = cold.percentile_ms(50) - direct.percentile_ms(50)
    return Check(
        f"Overhead: cold ({key}) adds under {OVERHEAD_BUDGET_MS:g} ms at p50 over the upstream",
        f"c=1: cold {cold.percentile_ms(50):.1f} ms, direct {direct.percentile_ms(50):.1f} ms: "
        f"{added:+.1f} ms",
        added < OVERHEAD_BUDGET_MS,
    )


def check_warm_faster(findings: Findings, key: str, concurrency: int) -> Check:
    warm = findings.row(key, "warm").loads[concurrency]
    direct = findings.row(key, "direct").loads[concurrency]
    p50 = (warm.percentile_ms(50), direct.percentile_ms(50))
    p99 = (warm.percentile_ms(99), direct.percentile_ms(99))
    return Check(
        f"Overhead: warm ({key}) faster than the upstream at p50 and p99 (c={concurrency})",
        f"p50 {p50[0]:.1f} vs {p50[1]:.1f} ms; p99 {p99[0]:.1f} vs {p99[1]:.1f} ms",
        p50[0] < p50[1] and p99[0] < p99[1],
    )


def check_warm_rps(findings: Findings) -> Check:
    warm, cold = findings.row("A", "warm").loads[HIGH], findings.row("A", "cold").loads[HIGH]
    ratio = warm.rps / cold.rps if cold.rps else math.nan
    return Check(
        f"Overhead: at c={HIGH} warm (A) req/s is at least 2x cold (A)",
        f"warm {warm.rps:.0f} req/s, cold {cold.rps:.0f} req/s: {ratio:.2f}x",
        ratio >= 2,
    )


def check_throughput(findings: Findings) -> Check:
    parts = [
        f"{t.target} (A) {t.load.rps:.0f} req/s on one worker "
        f"({t.per_cpu_second:.0f} per CPU-second of the gateway)"
        for t in findings.throughput
    ]
    return Check(
        "Throughput per core: req/s per worker, (A) cold and warm, upstream at 0 ms",
        "; ".join(parts),
        None,
    )


def check_profile(findings: Findings) -> Check:
    profile = findings.profile
    if not isinstance(profile, Profile):
        measured = f"no profile: {profile}"
    else:
        top = ", ".join(f"`{name}` {share:.0%}" for name, share in profile.self_share[:3])
        measured = f"{profile.samples} samples; top self costs {top} (see Profile)"
    return Check("Profile the top costs and state them", measured, None)


def check_memory(findings: Findings) -> Check:
    memory = findings.memory
    target = "Memory: bounded by the cache settings, no growth after warm-up"
    if memory is None:
        return Check(target, "not measured", False)
    growth = memory.end - memory.after_warmup
    return Check(
        target,
        f"warm (C), c={HIGH}: VmRSS {memory.after_warmup:.1f} MiB after warm-up, "
        f"{memory.end:.1f} MiB at the end ({growth:+.1f} MiB; tolerance "
        f"{MEMORY_TOLERANCE_MIB:g} MiB)",
        growth <= MEMORY_TOLERANCE_MIB,
    )


def evaluate_targets(
    findings: Findings, bench: Bench, scenarios: Sequence[Scenario]
) -> list[Check]:
    """Every target of the issue's "Targets" list, checked against this run's figures."""
    return [
        check_cold_calls(findings, scenarios),
        check_warm_calls(findings, scenarios),
        check_single_flight(findings, scenarios),
        check_rounds(findings, scenarios),
        check_cold_overhead(findings, "A"),
        check_cold_overhead(findings, "E"),
        *(check_warm_faster(findings, key, c) for key in ("A", "E") for c in CONCURRENCIES),
        check_warm_rps(findings),
        check_throughput(findings),
        check_profile(findings),
        check_memory(findings),
    ]


# --- the document and the chart -----------------------------------------------------------------


def gateway_revision() -> str:
    """The commit the gateway code was measured at, and whether gateway/ had changes on top."""
    git = shutil.which("git")
    if git is None:
        return "unknown (no git)"
    # Read-only queries of the repository this script sits in.
    head = subprocess.run(  # noqa: S603
        [git, "rev-parse", "--short", "HEAD"], capture_output=True, check=False, cwd=ROOT
    )
    dirty = subprocess.run(  # noqa: S603
        [git, "status", "--porcelain", "--", "gateway"], capture_output=True, check=False, cwd=ROOT
    )
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    changes = " with uncommitted changes in gateway/" if dirty.stdout.strip() else ""
    return f"commit {head.stdout.decode().strip()}{changes}"


def gateway_fingerprint() -> str:
    """A hash of the gateway's source, to notice it changing under a run."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def machine(findings: Findings) -> list[tuple[str, str]]:
    """What the run ran on, from /proc and the interpreter."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    meminfo = Path("/proc/meminfo").read_text()
    total = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.MULTILINE)
    return [
        ("cores", str(os.cpu_count())),
        ("CPU", model.group(1).strip() if model else platform.processor() or "unknown"),
        ("memory", f"{int(total.group(1)) / 2**20:.1f} GiB" if total else "unknown"),
        ("OS", f"{platform.system()} {platform.release()} {platform.machine()}"),
        ("Python", platform.python_version()),
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("gateway code", findings.revision),
        (
            "other load",
            f"{findings.others_cpu:.0f} CPU-seconds used by processes other than the benchmark's "
            f"during the run ({findings.others_share:.1%} of the machine)",
        ),
        (
            "packages",
            ", ".join(
                f"{name} {version(name)}"
                for name in ("strawberry-graphql", "fastapi", "uvicorn", "aiohttp", "uvloop")
            ),
        ),
    ]


def ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1f}"


def main_table(findings: Findings) -> list[str]:
    lines = [
        "| scenario | target | upstream calls/request c=1 | c=32 | p50 ms c=1 | p99 ms c=1 "
        "| req/s c=1 | p50 ms c=32 | p99 ms c=32 | req/s c=32 | peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in findings.rows:
        low, high = row.loads[1], row.loads[HIGH]
        target = f"{row.target} ({row.tool})" if row.target == "direct" else row.target
        target += " **⚠**" if row.flagged else ""
        rss = "—" if row.peak_rss_mib is None else f"{row.peak_rss_mib:.1f}"
        lines.append(
            f"| {row.scenario.key} | {target} | {number(row.calls[1])} "
            f"| {number(row.calls[HIGH])} | {ms(low.percentile_ms(50))} "
            f"| {ms(low.percentile_ms(99))} | {low.rps:.0f} | {ms(high.percentile_ms(50))} "
            f"| {ms(high.percentile_ms(99))} | {high.rps:.0f} | {rss} |"
        )
    return lines


def scenario_table(scenarios: Sequence[Scenario]) -> list[str]:
    lines = [
        "| scenario | what | executions touched | rounds needed | direct: what the client does |",
        "|---|---|---:|---:|---|",
    ]
    direct = {
        "A": "1 GET (hey)",
        "B": "GET the leaf, then parent and root concurrently (Python client)",
        "C": f"{FANOUT_SIZE} leaf GETs concurrently, then the 2 distinct parents/roots "
        "(Python client)",
        "D": f"{ANCESTOR_LIMIT + 1} sequential GETs up the chain (Python client)",
        "E": "1 GET (hey)",
    }
    for s in scenarios:
        lines.append(f"| {s.key} | {s.title} | {s.distinct} | {s.rounds} | {direct[s.key]} |")
    return lines


def problems_block(findings: Findings) -> list[str]:
    checked = (
        "hey sees only status codes, and GraphQL answers errors with 200; so after every gateway "
        "run at concurrency c the script sends c identical requests at once and checks each "
        "answer (no `errors`, every entry present), as it does with each warm-up."
    )
    if not findings.problems:
        return [f"Every response of every run was 2xx and every checked answer complete. {checked}"]
    lines = [
        "> **WARNING: some answers were not 2xx or not complete; rows marked ⚠ measured them.** "
        + checked,
        ">",
    ]
    lines += [f"> - {problem}" for problem in findings.problems]
    return lines


def targets_section(checks: Sequence[Check]) -> list[str]:
    verdict = {True: "yes", False: "**NO**", None: "reported"}
    lines = [
        "## Targets",
        "",
        "The targets of the performance issue, each with this run's figure; *met* is computed by "
        "`bench/run.py` from the figures above, not written by hand.",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    lines += [f"| {c.target} | {c.measured} | {verdict[c.met]} |" for c in checks]
    return lines


def throughput_section(findings: Findings) -> list[str]:
    lines = [
        "## Throughput per core",
        "",
        f"Scenario A at c={HIGH} for the run's duration, one gateway worker, the upstream "
        "answering at once (a second demo upstream with `--latency-ms 0`). *CPU-seconds* is the "
        "gateway process's user+system time during the run from `/proc/<pid>/stat`; hey and the "
        "upstream share the same cores, so req/s is below what a worker does with a core of its "
        "own, and req per CPU-second is the closer figure for sizing `--workers`.",
        "",
        "| target | req/s | gateway CPU-seconds | req per gateway CPU-second | p50 ms | p99 ms "
        "| upstream calls/request |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t in findings.throughput:
        lines.append(
            f"| {t.target} | {t.load.rps:.0f} | {t.cpu:.2f} | {t.per_cpu_second:.0f} "
            f"| {ms(t.load.percentile_ms(50))} | {ms(t.load.percentile_ms(99))} "
            f"| {number(t.calls)} |"
        )
    return lines


def memory_section(findings: Findings, seconds: float) -> list[str]:
    memory = findings.memory
    lines = ["## Memory stability", ""]
    if memory is None:
        return [*lines, "Not measured."]
    post = [rss for at, rss in memory.samples if at >= MEMORY_WARMUP_RUNS * seconds]
    return [
        *lines,
        f"A fresh warm gateway runs scenario C at c={HIGH} for {MEMORY_RUNS * seconds:g} s "
        f"({memory.load.completed} requests, {number(memory.calls)} upstream calls/request: C's "
        "fan-out is mostly running executions, re-read after the 1 s active TTL). VmRSS is "
        f"sampled every 0.25 s; the first {MEMORY_WARMUP_RUNS * seconds:g} s count as warm-up.",
        "",
        "| VmRSS after warm-up | VmRSS at the end | growth | min / max after warm-up "
        "| peak (VmHWM) |",
        "|---:|---:|---:|---:|---:|",
        f"| {memory.after_warmup:.1f} MiB | {memory.end:.1f} MiB "
        f"| {memory.end - memory.after_warmup:+.1f} MiB "
        f"| {min(post, default=math.nan):.1f} / {max(post, default=math.nan):.1f} MiB "
        f"| {memory.peak:.1f} MiB |",
        "",
        "The cache itself is bounded by `POLOS_GATEWAY_CACHE_MAX_ENTRIES` and "
        "`POLOS_GATEWAY_CACHE_MAX_BYTES`; this run shows the process does not grow under a "
        "steady load once warm.",
    ]


def stage_table(stages: Sequence[tuple[str, float]]) -> list[str]:
    """Stages with their nesting (two leading spaces a level) shown as dots."""
    lines = ["| stage | share of samples |", "|---|---:|"]
    for name, share in stages:
        text = name.lstrip(" ")
        depth = (len(name) - len(text)) // 2
        lines.append(f"| {'· ' * depth}{text} | {share:.1%} |")
    return lines


def share_table(title: str, shares: Sequence[tuple[str, float]]) -> list[str]:
    lines = [f"| function ({title}) | share of samples |", "|---|---:|"]
    return lines + [f"| `{name}` | {share:.1%} |" for name, share in shares]


def profile_section(findings: Findings) -> list[str]:
    profile = findings.profile
    lines = ["## Profile", ""]
    if not isinstance(profile, Profile):
        return [*lines, f"No profile in this run: {profile}"]
    return [
        *lines,
        f"py-spy (`record --format raw --rate {PROFILE_RATE}`, idle samples excluded) on the "
        f"warm gateway while hey drives scenario A at c={HIGH} against the 0 ms upstream, in a "
        f"run of its own after the throughput run: {profile.samples} samples ({profile.summary}). "
        "py-spy pauses the process for each sample; `--nonblocking` does not, but on this "
        "2-core machine it lost about a fifth of the samples to read errors and cut two stacks "
        "in five short, which makes inclusive shares meaningless. Functions are merged across "
        "their lines. *Inclusive*: samples with the function anywhere on the stack; the "
        f"{len(profile.spine)} functions on more than {SPINE_SHARE:.0%} of stacks (the entry "
        "point, uvicorn and the event loop's runner) are left out. *Self*: samples with the "
        "function at the top of the stack, where the CPU actually was.",
        "",
        "Where the time goes, by stage (a stage is every sample with its function on the "
        "stack; indented stages are within the one above; what is left is uvicorn and "
        "httptools reading and writing the sockets, and the event loop):",
        "",
        *stage_table(profile.stages),
        "",
        *share_table("inclusive", profile.inclusive),
        "",
        *share_table("self", profile.self_share),
    ]


def transport_section(findings: Findings) -> list[str]:
    return [
        "## The upstream client's transport",
        "",
        "A GraphQL query over 100 executions becomes 100 concurrent "
        "`GET /api/v1/executions/{id}` on the gateway's one shared `httpx.AsyncClient`. "
        "`bench/transport.py` measures such a round against the demo upstream in a separate "
        "process, answering after 50 ms, after one warm-up round so that connections are reused, "
        "for several client transports and pool settings. This run "
        f"(`bench/transport.py --rounds {TRANSPORT_ROUNDS}`):",
        "",
        findings.transport,
        "",
        "httpx's own pool spends the client's core in httpcore's connection assignment, which "
        "rescans every pooled connection for every queued request; its figures vary widely from "
        "run to run, while the aiohttp transport stays near one upstream latency. The gateway "
        "keeps httpx's API and uses the aiohttp transport (`c`) with "
        "`TCPConnector(limit=POLOS_GATEWAY_MAX_CONCURRENT_UPSTREAM)`; the unlimited connector "
        "(`c-unl`) has not been consistently faster across runs and would drop the cap on "
        "upstream sockets. Rerun it alone with `.venv/bin/python bench/transport.py` "
        "(`--rounds 10 --latency-ms 50 --concurrency 100` by default).",
    ]


def render(
    findings: Findings,
    bench: Bench,
    scenarios: Sequence[Scenario],
    elapsed: float,
) -> str:
    """docs/benchmarks.md."""
    env_lines = [
        f"- `{target}`: "
        + (", ".join(f"`{k}={v}`" for k, v in GATEWAY_ENV[target].items()) or "defaults")
        + f" — {TARGET_MEANING[target]}"
        for target in GATEWAY_ENV
    ]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `bench/run.py`; do not edit by hand, rerun it. Compare rows of one run, "
        "not numbers across machines: the load generator, the upstream and the gateway share "
        "the machine's cores.",
        "",
        "## How to rerun",
        "",
        "```sh",
        "make bench    # installs hey (apt) and the bench extra, then runs bench/run.py",
        ".venv/bin/python bench/run.py --seconds 4 --latency-ms 5 --output-dir docs",
        ".venv/bin/python bench/run.py --skip-profile   # without py-spy",
        "```",
        "",
        "`--seconds` is the length of each timed run (default 4), `--latency-ms` the demo "
        "upstream's injected latency (default 5), `--skip-profile` skips py-spy, `--output-dir` "
        "is where `benchmarks.md` and `benchmarks.png` go (default `docs`). "
        f"This run took {elapsed / 60:.1f} minutes.",
        "",
        "## Machine",
        "",
        *[f"- {key}: {value}" for key, value in machine(findings)],
        "",
        "## Settings",
        "",
        f"- Demo upstream: `python -m gateway demo-upstream --latency-ms {bench.latency_ms:g}`, "
        "one process, one worker; a second one with `--latency-ms 0` for throughput and profile.",
        "- Rounds and single-flight: the demo app in a thread of `bench/run.py`, answering after "
        f"{RECORDING_LATENCY_MS:g} ms and noting when each execution request arrives. A cold "
        "gateway on it serves each scenario once alone (rounds: a call arriving a full latency "
        "after the first call of its round starts the next one, since only then can it depend "
        f"on that round's answers), then {BURST_SIZE} identical requests sent at once over "
        "connections opened beforehand (upstream calls: arrivals). Why so slow an upstream: "
        "issuing C's 100 upstream calls takes the gateway tens of ms of CPU; at 50-100 ms a "
        "round's last calls could leave after its first answers were back, and the last "
        "requests of a C burst sometimes reached the fetch only then, so they were not "
        "concurrent and, with nothing kept, asked again.",
        "- Gateway: `python -m gateway serve --upstream-url <upstream>`, one worker, "
        "`POLOS_GATEWAY_LOG_LEVEL=warning`, a fresh process for every (target, scenario):",
        *[f"  {line}" for line in env_lines],
        f"- `direct`: {TARGET_MEANING['direct']}.",
        f"- Load: each (scenario, target) at concurrency {' and '.join(map(str, CONCURRENCIES))}, "
        f"{bench.seconds:g} s each, closed loop, after one untimed warm-up request (for `warm` "
        "it fills the cache; for the others it only opens connections). Gateway and A/E direct "
        "rows: `hey -z <s>s -c <c> -o csv` (POST with a JSON body file for GraphQL). Direct B, C "
        "and D: this script's asyncio client on uvloop (one aiohttp session, at most "
        f"{CLIENT_CONNECTIONS} connections, like the gateway's upstream pool), timing each "
        "logical request from its first GET to its last.",
        "- Upstream calls/request: the demo's `/_demo/stats` counter after minus before a run, "
        "divided by the requests completed (hey and the client finish the requests in flight "
        "when the time is up, so the count is exact).",
        "- Latency: nearest-rank p50 and p99 of every request of the run (hey reports 0.1 ms "
        "steps); req/s: requests completed over the span from the first request's start to the "
        "last one's end; peak RSS: the gateway's `VmHWM` after both runs.",
        "",
        "## Scenarios",
        "",
        *scenario_table(scenarios),
        "",
        "## Results",
        "",
        *problems_block(findings),
        "",
        *main_table(findings),
        "",
        "hey's CSV lists only requests that got an HTTP answer; a connection error would not "
        "show there (none is expected on loopback). `direct (Python client)` rows are measured "
        "by this script's client, not by hey, and pay the client's own CPU cost on the same "
        "cores.",
        "",
        "![upstream calls per request and p50 latency per scenario and target](benchmarks.png)",
        "",
        *targets_section(evaluate_targets(findings, bench, scenarios)),
        "",
        *throughput_section(findings),
        "",
        *memory_section(findings, bench.seconds),
        "",
        *profile_section(findings),
        "",
        *transport_section(findings),
    ]
    return "\n".join(lines) + "\n"


def calls_at_1(row: Row) -> float:
    return row.calls[1]


def p50_at_1(row: Row) -> float:
    return row.loads[1].percentile_ms(50)


def write_chart(
    findings: Findings, scenarios: Sequence[Scenario], subtitle: str, path: Path
) -> None:
    """Two log-scale bar charts: upstream calls per request and p50 at c=1, per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(14, 5.5))
    panels: tuple[tuple[Any, str, Callable[[Row], float]], ...] = (
        (axes[0], "upstream calls per request (c=1, log scale)", calls_at_1),
        (axes[1], "p50 latency at c=1, ms (log scale)", p50_at_1),
    )
    width = 0.2
    for axis, title, value in panels:
        values = [[value(findings.row(s.key, t)) for s in scenarios] for t in TARGETS]
        positive = [v for row in values for v in row if v > 0]
        floor = min(positive, default=1.0) / 3
        for index, (target, row) in enumerate(zip(TARGETS, values, strict=True)):
            xs = [x + (index - (len(TARGETS) - 1) / 2) * width for x in range(len(scenarios))]
            legend = "direct (B, C, D: Python client)" if target == "direct" else target
            axis.bar(xs, [v if v > 0 else math.nan for v in row], width, label=legend)
            for x, v in zip(xs, row, strict=True):
                label = number(v) if "calls" in title else f"{v:.1f}"
                axis.annotate(
                    label,
                    (x, max(v, floor)),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    rotation=90,
                )
        axis.set_yscale("log")
        axis.set_ylim(floor, max(positive, default=1.0) * 8)
        axis.set_xticks(range(len(scenarios)), [s.label for s in scenarios])
        axis.tick_params(axis="x", labelsize=8)
        axis.set_title(title)
        axis.legend(fontsize=8, loc="upper left")
    figure.suptitle(subtitle, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# --- main ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--seconds", type=float, default=4.0, help="length of each timed run (default 4)"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=5.0, help="demo upstream latency (default 5)"
    )
    parser.add_argument("--skip-profile", action="store_true", help="do not run py-spy")
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=ROOT / "docs",
        help="where benchmarks.md and benchmarks.png go (default docs/)",
    )
    return parser


def measure_all(bench: Bench, scenarios: Sequence[Scenario], profile: bool) -> None:
    """Every measurement, in order; the caller owns the processes."""
    findings = bench.findings
    for scenario in scenarios:
        log(f"direct {scenario.key}")
        findings.rows.append(measure_direct(bench, scenario))
    for target in ("naive", "cold", "warm"):
        for scenario in scenarios:
            log(f"{target} {scenario.key}")
            findings.rows.append(measure_gateway(bench, scenario, target))
    findings.rows.sort(key=lambda r: (r.scenario.key, TARGETS.index(r.target)))
    log(f"rounds and single-flight bursts (recording upstream at {RECORDING_LATENCY_MS:g} ms)")
    measure_rounds_and_bursts(bench, scenarios)
    log("throughput per core and profile (upstream at 0 ms)")
    measure_fast_cold(bench, scenarios)
    measure_fast_warm(bench, scenarios[0], profile)
    log("memory stability")
    findings.memory = measure_memory(bench, next(s for s in scenarios if s.key == "C"))


def note_other_load(
    findings: Findings, before: CpuSnapshot, after: CpuSnapshot, elapsed: float
) -> None:
    """How much CPU the rest of the machine took while we measured; warn when it is much."""
    others = max(0.0, (after.busy - before.busy) - (after.ours - before.ours))
    findings.others_cpu = others
    findings.others_share = others / (elapsed * (os.cpu_count() or 1))
    if findings.others_share > OTHER_LOAD_LIMIT:
        findings.problems.append(
            f"other processes used {others:.0f} CPU-seconds during the run "
            f"({findings.others_share:.0%} of the machine): the timings are disturbed, rerun it "
            "on a quiet machine"
        )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.seconds <= 0 or args.latency_ms < 0:
        print("--seconds must be positive and --latency-ms not negative", file=sys.stderr)
        return 2
    hey = shutil.which("hey")
    if hey is None:
        print("hey is not installed: apt-get install hey (or run `make bench`)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    scenarios = build_scenarios((ROOT / "schema.graphql").read_text())
    findings = Findings(revision=gateway_revision())
    fingerprint = gateway_fingerprint()
    cpu_before = cpu_snapshot()
    with tempfile.TemporaryDirectory(prefix="polos-bench-") as scratch:
        work = Path(scratch)
        with Processes(work) as procs:
            bench = Bench(
                seconds=args.seconds,
                latency_ms=args.latency_ms,
                hey=hey,
                procs=procs,
                upstream=start_upstream(procs, args.latency_ms),
                fast_upstream=start_upstream(procs, 0),
                work=work,
                findings=findings,
            )
            measure_all(bench, scenarios, profile=not args.skip_profile)
    log("transport (bench/transport.py)")
    findings.transport = run_transport()
    if gateway_fingerprint() != fingerprint:
        findings.problems.append("the gateway's source changed during the run: rerun it")
    note_other_load(findings, cpu_before, cpu_snapshot(), time.monotonic() - started)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    subtitle = (
        f"demo upstream answering after {args.latency_ms:g} ms; one gateway worker; "
        f"{args.seconds:g} s per run; {datetime.now(UTC):%Y-%m-%d}"
    )
    write_chart(findings, scenarios, subtitle, args.output_dir / "benchmarks.png")
    text = render(findings, bench, scenarios, time.monotonic() - started)
    (args.output_dir / "benchmarks.md").write_text(text)
    log(
        f"wrote {args.output_dir / 'benchmarks.md'} and benchmarks.png in "
        f"{time.monotonic() - started:.0f} s"
    )
    for problem in findings.problems:
        log(f"WARNING: {problem}")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        print("interrupted: every process it started has been stopped", file=sys.stderr)
        raise SystemExit(130) from None
