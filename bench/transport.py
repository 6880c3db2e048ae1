"""Two costs of the gateway's upstream HTTP client, measured against the demo upstream.

**Fan-out rounds.** The gateway fans a GraphQL query out into up to ~100 concurrent ``GET
/api/v1/executions/{id}`` calls on one shared aiohttp session. This part measures the wall time
of one such fan-out against the project's own demo upstream (``gateway.demo.upstream``) with an
injected latency (50 ms by default), for several client transports and pool settings, each
driven through an ``httpx.AsyncClient``:

* ``a``: httpx's default transport, ``Limits(max_connections=100, max_keepalive_connections=100)``
* ``b``: httpx's default transport with its default limits (100 connections, 20 kept alive)
* ``c``: ``httpx_aiohttp.AiohttpTransport`` on its own ``aiohttp.ClientSession`` with
  ``TCPConnector(limit=100)`` and a ``DummyCookieJar``, ``Limits(max_connections=100)``
  (the transport and connector the gateway uses, see ``gateway/upstream.py``)

plus a few variations (``a`` with ``http1=True, http2=False`` spelled out, ``a`` with no
limits at all, ``c`` with ``TCPConnector(limit=0)``, i.e. unlimited).

The upstream runs as ``polos-gateway demo-upstream --latency-ms 50`` in a separate process
(uvicorn, one worker), so the client's event loop never shares a thread with the server. For
each transport a fresh client first does one warm-up round of ``--concurrency`` concurrent GETs
(so later rounds reuse pooled connections, which is the case where a pool can degrade), then
``--rounds`` measured rounds of ``--concurrency`` concurrent GETs (``asyncio.gather``), each
round followed by one lone GET. Every response must be 200 (the ids are the demo's 100-case
fan-out, ``eval/runner/case-{i}``); any other status makes the script exit with status 1.

The first table gives, per transport, the median and max wall time of a round and the median
time of a lone GET, in ms. The ideal round time is about one upstream latency.

**CPU per call.** The gateway no longer calls the upstream through ``httpx.AsyncClient``: it
builds an ``httpx.Request`` and hands it to ``AiohttpTransport.handle_async_request`` itself
(``UpstreamClient._read``). This part measures what one upstream call costs the client's CPU,
made one at a time against a second demo upstream, ``--latency-ms 0``, along four call paths
with the same URL (one demo execution) and the same headers, each on its own session like the
gateway's (``TCPConnector(limit=100)``, ``DummyCookieJar``, ``auto_decompress=False``):

* ``client``: ``httpx.AsyncClient.stream`` over ``AiohttpTransport``, as the gateway called
  it before (timeout, a cookie jar refusing every cookie, no redirects, no proxies from the
  environment), the body read with ``aiter_bytes``
* ``transport``: ``AiohttpTransport.handle_async_request`` with a prebuilt ``httpx.Request``
  carrying the timeouts in its extensions, the body read with the gateway's ``body_chunks``
  (raw without a content coding), then the response closed (what the gateway does now)
* ``aiohttp``: ``aiohttp.ClientSession.get`` alone, the body read with ``read()`` (what the
  transport adds its cost to)
* ``gateway``: the gateway's own ``UpstreamClient.fetch_execution``, that is ``transport`` with
  everything around it (the id check, the call's deadline, the breaker and bulkhead, the
  metrics, the body parsed and checked)

Each path first makes ``WARMUP_CALLS`` calls (its kept-alive connection open), then the paths
take turns for ``--repeats`` repetitions of ``--calls`` sequential calls, the order rotating so
that no path always goes first and machine noise does not favour one. The second table
gives, per path, the median over the repetitions of the client process's CPU time
(``time.process_time()``) and wall time per call, in ms, and the range of the CPU figure. Every
response must be 200 here too.

Rerun it from the repository root::

    .venv/bin/python bench/transport.py
    .venv/bin/python bench/transport.py --rounds 20 --latency-ms 50 --concurrency 100
    .venv/bin/python bench/transport.py --calls 5000 --repeats 5
    .venv/bin/python bench/transport.py --loop asyncio   # default: uvloop, as uvicorn uses

The machine it runs on matters (the client and the upstream each want a core); compare rows of
one run rather than numbers across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

# Run as a script, Python puts bench/ on the path, not the repository root the package sits in.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.processes import Processes, start_upstream
from gateway.credentials import Credentials
from gateway.demo.data import FANOUT_LEAVES, demo_id, seed
from gateway.demo.upstream import DEMO_PROJECT_ID
from gateway.errors import UpstreamAnswered
from gateway.settings import Settings
from gateway.upstream import (
    EXECUTIONS_PATH,
    REQUEST_HEADERS,
    UpstreamClient,
    body_chunks,
    build_session,
    request_timeouts,
)

ClientFactory = Callable[[], httpx.AsyncClient]
T = TypeVar("T")

# Calls each path makes before any is timed: its connection opened, its code paths run once.
WARMUP_CALLS = 200
# The gateway's default settings: its timeouts and session, as gateway.upstream derives them.
GATEWAY = Settings()
CALL_TIMEOUT = request_timeouts(GATEWAY)
# What the gateway sends on every upstream GET: its own headers and a caller's credentials.
CALL_HEADERS = {
    **REQUEST_HEADERS,
    "authorization": "Bearer demo-benchmark-token",
    "x-project-id": DEMO_PROJECT_ID,
}


@dataclass(frozen=True)
class Variant:
    """One client configuration under test."""

    key: str
    description: str
    build: ClientFactory


@dataclass(frozen=True)
class Result:
    """What one variant measured, in seconds."""

    variant: Variant
    rounds: list[float]
    singles: list[float]
    non_200: int


def _httpx_client(limits: httpx.Limits, *, explicit_http1: bool = False) -> ClientFactory:
    def build() -> httpx.AsyncClient:
        if explicit_http1:
            transport = httpx.AsyncHTTPTransport(limits=limits, http1=True, http2=False)
            return httpx.AsyncClient(transport=transport, trust_env=False)
        return httpx.AsyncClient(limits=limits, trust_env=False)

    return build


def _aiohttp_client(connector_limit: int) -> ClientFactory:
    def build() -> httpx.AsyncClient:
        # Made inside the running loop: aiohttp binds its session to the current loop.
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connector_limit),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        transport = AiohttpTransport(client=session, limits=httpx.Limits(max_connections=100))
        # Closing the client closes the transport, which closes the session.
        return httpx.AsyncClient(transport=transport, trust_env=False)

    return build


VARIANTS: tuple[Variant, ...] = (
    Variant(
        "a",
        "httpx default transport, Limits(max_connections=100, max_keepalive_connections=100)",
        _httpx_client(httpx.Limits(max_connections=100, max_keepalive_connections=100)),
    ),
    Variant(
        "a-h1",
        "as a, AsyncHTTPTransport(http1=True, http2=False) spelled out",
        _httpx_client(
            httpx.Limits(max_connections=100, max_keepalive_connections=100),
            explicit_http1=True,
        ),
    ),
    Variant(
        "a-unl",
        "as a, Limits(max_connections=None, max_keepalive_connections=None)",
        _httpx_client(httpx.Limits(max_connections=None, max_keepalive_connections=None)),
    ),
    Variant(
        "b",
        "httpx default transport, default limits (100 connections, 20 keep-alive)",
        _httpx_client(httpx.Limits(max_connections=100, max_keepalive_connections=20)),
    ),
    Variant(
        "c",
        "AiohttpTransport, TCPConnector(limit=100), DummyCookieJar",
        _aiohttp_client(100),
    ),
    Variant(
        "c-unl",
        "AiohttpTransport, TCPConnector(limit=0) (unlimited), DummyCookieJar",
        _aiohttp_client(0),
    ),
)


Call = Callable[[], Awaitable[int]]


@dataclass(frozen=True)
class OpenPath:
    """One call path, opened: ``call`` makes one GET and returns its status."""

    call: Call
    close: Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class CallPath:
    """One way to make an upstream call; ``open`` takes the URL, inside the running loop."""

    key: str
    description: str
    open: Callable[[str], OpenPath]


@dataclass(frozen=True)
class CallResult:
    """What one call path measured: seconds per call, one figure per repetition."""

    path: CallPath
    cpu: list[float]
    wall: list[float]
    non_200: int


class _NoCookies(DefaultCookiePolicy):
    """Refuse every cookie an upstream sets (the gateway's client did, before)."""

    def set_ok(self, cookie: object, request: object) -> bool:
        return False


def _via_client(url: str) -> OpenPath:
    client = httpx.AsyncClient(
        transport=AiohttpTransport(client=build_session(GATEWAY)),
        timeout=CALL_TIMEOUT,
        # A raw jar keeps its policy; httpx.Cookies(...) would copy it into a default jar.
        cookies=CookieJar(policy=_NoCookies()),
        follow_redirects=False,
        trust_env=False,
    )

    async def call() -> int:
        async with client.stream("GET", url, headers=CALL_HEADERS) as response:
            b"".join([chunk async for chunk in response.aiter_bytes()])
            return response.status_code

    # Closing the client closes the transport, which closes the session.
    return OpenPath(call, client.aclose)


def _via_transport(url: str) -> OpenPath:
    transport = AiohttpTransport(client=build_session(GATEWAY))
    timeouts = CALL_TIMEOUT.as_dict()

    async def call() -> int:
        request = httpx.Request("GET", url, headers=CALL_HEADERS, extensions={"timeout": timeouts})
        response = await transport.handle_async_request(request)
        try:
            b"".join([chunk async for chunk in body_chunks(response)])
            return response.status_code
        finally:
            await response.aclose()

    return OpenPath(call, transport.aclose)


def _via_aiohttp(url: str) -> OpenPath:
    session = build_session(GATEWAY)
    # The same timeouts as AiohttpTransport derives from CALL_TIMEOUT.
    timeout = aiohttp.ClientTimeout(
        sock_connect=CALL_TIMEOUT.connect, sock_read=CALL_TIMEOUT.read, connect=CALL_TIMEOUT.pool
    )

    async def call() -> int:
        async with session.get(
            url, headers=CALL_HEADERS, allow_redirects=False, timeout=timeout
        ) as response:
            await response.read()
            return response.status

    return OpenPath(call, session.close)


def _via_gateway(url: str) -> OpenPath:
    base, _, execution_id = url.rpartition(EXECUTIONS_PATH)
    upstream = UpstreamClient(GATEWAY.model_copy(update={"upstream_url": base}))
    credentials = Credentials.from_request(CALL_HEADERS)

    async def call() -> int:
        try:
            await upstream.fetch_execution(execution_id, credentials)
        except UpstreamAnswered as answer:
            return answer.status
        return 200

    return OpenPath(call, upstream.aclose)


CALL_PATHS: tuple[CallPath, ...] = (
    CallPath(
        "client",
        "httpx.AsyncClient.stream over AiohttpTransport (the gateway before)",
        _via_client,
    ),
    CallPath(
        "transport",
        "AiohttpTransport.handle_async_request with a prebuilt httpx.Request (the gateway now)",
        _via_transport,
    ),
    CallPath(
        "aiohttp",
        "aiohttp.ClientSession.get alone (for reference)",
        _via_aiohttp,
    ),
    CallPath(
        "gateway",
        "UpstreamClient.fetch_execution: the transport call with the id check, deadline, "
        "breaker, bulkhead, metrics and the body parsed",
        _via_gateway,
    ),
)


def against_upstream(latency_ms: float, work: Callable[[str], T]) -> T:
    """Run ``work(base_url)`` while a demo upstream answering after ``latency_ms`` serves it."""
    with (
        tempfile.TemporaryDirectory(prefix="polos-transport-") as logs,
        Processes(Path(logs)) as procs,
    ):
        return work(start_upstream(procs, latency_ms).url)


async def _round(client: httpx.AsyncClient, urls: Sequence[str]) -> tuple[float, int]:
    """Time one round of concurrent GETs; return (seconds, number of non-200 answers)."""
    started = time.perf_counter()
    responses = await asyncio.gather(*(client.get(url) for url in urls))
    elapsed = time.perf_counter() - started
    return elapsed, sum(response.status_code != 200 for response in responses)


async def measure(variant: Variant, urls: Sequence[str], rounds: int) -> Result:
    """Warm one fresh client up with one round, then time ``rounds`` rounds and lone GETs."""
    round_times: list[float] = []
    single_times: list[float] = []
    async with variant.build() as client:
        _, non_200 = await _round(client, urls)
        for index in range(rounds):
            elapsed, failed = await _round(client, urls)
            round_times.append(elapsed)
            non_200 += failed
            single, failed = await _round(client, urls[index % len(urls) : index % len(urls) + 1])
            single_times.append(single)
            non_200 += failed
    return Result(variant, round_times, single_times, non_200)


async def run_all(variants: Sequence[Variant], urls: Sequence[str], rounds: int) -> list[Result]:
    """Measure every variant in turn, one fresh client at a time."""
    return [await measure(variant, urls, rounds) for variant in variants]


async def _sequential(call: Call, calls: int) -> tuple[float, float, int]:
    """Make ``calls`` calls one after another: (CPU s per call, wall s per call, non-200)."""
    gc.collect()  # so that no collection owed by the previous path lands in this one
    non_200 = 0
    cpu_started = time.process_time()
    wall_started = time.perf_counter()
    for _ in range(calls):
        if await call() != 200:
            non_200 += 1
    wall = time.perf_counter() - wall_started
    cpu = time.process_time() - cpu_started
    return cpu / calls, wall / calls, non_200


async def measure_calls(
    paths: Sequence[CallPath], url: str, calls: int, repeats: int
) -> list[CallResult]:
    """Warm every path up, then time ``repeats`` turns of ``calls`` calls on each, interleaved."""
    opened = [path.open(url) for path in paths]
    cpu: list[list[float]] = [[] for _ in paths]
    wall: list[list[float]] = [[] for _ in paths]
    non_200 = [0 for _ in paths]
    try:
        for index, path in enumerate(opened):
            for _ in range(WARMUP_CALLS):
                non_200[index] += await path.call() != 200
        for repeat in range(repeats):
            # The order rotates, so that no path always runs first.
            for step in range(len(paths)):
                index = (repeat + step) % len(paths)
                per_cpu, per_wall, failed = await _sequential(opened[index].call, calls)
                cpu[index].append(per_cpu)
                wall[index].append(per_wall)
                non_200[index] += failed
    finally:
        for path in opened:
            await path.close()
    return [
        CallResult(path, cpu[index], wall[index], non_200[index])
        for index, path in enumerate(paths)
    ]


def run(main: Coroutine[Any, Any, T], loop: str) -> T:
    """Run ``main`` on the asyncio loop or on uvloop (which uvicorn picks when installed)."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _ms3(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


def render(results: Sequence[Result], args: argparse.Namespace, loop: str) -> str:
    """The round results as a markdown table, with a line saying how they were made."""
    lines = [
        f"{args.rounds} rounds of {args.concurrency} concurrent GETs after one warm-up round, "
        f"upstream latency {args.latency_ms:g} ms, client loop {loop}, "
        f"Python {sys.version.split()[0]}, httpx {httpx.__version__}, "
        f"aiohttp {aiohttp.__version__}",
        "",
        "| transport | round median (ms) | round max (ms) | 1 GET median (ms) | non-200 |",
        "|---|---:|---:|---:|---:|",
    ]
    for result in results:
        lines.append(
            f"| {result.variant.key}: {result.variant.description} "
            f"| {_ms(statistics.median(result.rounds))} | {_ms(max(result.rounds))} "
            f"| {_ms(statistics.median(result.singles))} | {result.non_200} |"
        )
    return "\n".join(lines)


def render_calls(results: Sequence[CallResult], args: argparse.Namespace, loop: str) -> str:
    """The per-call results as a markdown table, with lines saying how they were made."""
    lines = [
        f"{args.repeats} interleaved repetitions of {args.calls} sequential GETs of one "
        f"execution per call path, after {WARMUP_CALLS} warm-up calls each on a kept-alive "
        f"connection, upstream latency 0 ms, client loop {loop}",
        "",
        "| call path | CPU per call (ms) | CPU range (ms) | wall per call (ms) | non-200 |",
        "|---|---:|---:|---:|---:|",
    ]
    for result in results:
        lines.append(
            f"| {result.path.key}: {result.path.description} "
            f"| {_ms3(statistics.median(result.cpu))} "
            f"| {_ms3(min(result.cpu))} to {_ms3(max(result.cpu))} "
            f"| {_ms3(statistics.median(result.wall))} | {result.non_200} |"
        )
    lines += [
        "",
        "CPU is the client process's `time.process_time()` over a repetition's calls divided by "
        "their number, wall the same by `time.perf_counter()` (the upstream's answer included); "
        "both are medians over the repetitions, the range is the CPU figure's lowest and highest.",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=10, help="measured rounds (default 10)")
    parser.add_argument(
        "--latency-ms", type=float, default=50.0, help="upstream latency (default 50)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=100, help="concurrent GETs per round (default 100)"
    )
    parser.add_argument(
        "--calls",
        type=int,
        default=2000,
        help="sequential calls per path and repetition, for the CPU per call (default 2000)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="interleaved repetitions of the sequential calls (default 3)",
    )
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="client event loop (default uvloop, what uvicorn runs the gateway on)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[variant.key for variant in VARIANTS],
        help="measure only these variants in the rounds",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if min(args.rounds, args.concurrency, args.calls, args.repeats) < 1:
        print("--rounds, --concurrency, --calls and --repeats must be at least 1", file=sys.stderr)
        return 2
    store = seed()
    ids = [demo_id(f"eval/runner/case-{index}") for index in range(FANOUT_LEAVES)]
    assert all(execution_id in store.executions for execution_id in ids)
    variants = [v for v in VARIANTS if args.only is None or v.key in args.only]

    def rounds(upstream: str) -> list[Result]:
        # Distinct ids, as a fan-out asks; beyond the fan-out's size they repeat.
        urls = [
            upstream + EXECUTIONS_PATH + ids[index % len(ids)] for index in range(args.concurrency)
        ]
        return run(run_all(variants, urls, args.rounds), args.loop)

    def per_call(upstream: str) -> list[CallResult]:
        url = upstream + EXECUTIONS_PATH + ids[0]
        return run(measure_calls(CALL_PATHS, url, args.calls, args.repeats), args.loop)

    results = against_upstream(args.latency_ms, rounds)
    call_results = against_upstream(0, per_call)
    print(render(results, args, args.loop))
    print()
    print(render_calls(call_results, args, args.loop))
    if any(result.non_200 for result in results) or any(r.non_200 for r in call_results):
        print("some responses were not 200", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
