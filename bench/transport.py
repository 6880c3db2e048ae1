"""How long ~100 concurrent upstream GETs take through one shared ``httpx.AsyncClient``.

The gateway fans a GraphQL query out into up to ~100 concurrent ``GET
/api/v1/executions/{id}`` calls on one shared client. This script measures the wall time of
one such fan-out against the project's own demo upstream (``gateway.demo.upstream``) with an
injected latency (50 ms by default), for several client transports and pool settings:

* ``a``: httpx's default transport, ``Limits(max_connections=100, max_keepalive_connections=100)``
* ``b``: httpx's default transport with its default limits (100 connections, 20 kept alive)
* ``c``: ``httpx_aiohttp.AiohttpTransport`` on its own ``aiohttp.ClientSession`` with
  ``TCPConnector(limit=100)`` and a ``DummyCookieJar``, ``Limits(max_connections=100)``
  (the gateway's configuration, see ``gateway/upstream.py``)

plus a few variations (``a`` with ``http1=True, http2=False`` spelled out, ``a`` with no
limits at all, ``c`` with ``TCPConnector(limit=0)``, i.e. unlimited).

The upstream runs as ``polos-gateway demo-upstream --latency-ms 50`` in a separate process
(uvicorn, one worker), so the client's event loop never shares a thread with the server. For
each transport a fresh client first does one warm-up round of ``--concurrency`` concurrent GETs
(so later rounds reuse pooled connections, which is the case where a pool can degrade), then
``--rounds`` measured rounds of ``--concurrency`` concurrent GETs (``asyncio.gather``), each
round followed by one lone GET. Every response must be 200 (the ids are the demo's 100-case
fan-out, ``eval/runner/case-{i}``); any other status makes the script exit with status 1.

The table gives, per transport, the median and max wall time of a round and the median time
of a lone GET, in ms. The ideal round time is about one upstream latency.

Rerun it from the repository root::

    .venv/bin/python bench/transport.py
    .venv/bin/python bench/transport.py --rounds 20 --latency-ms 50 --concurrency 100
    .venv/bin/python bench/transport.py --loop asyncio   # default: uvloop, as uvicorn uses

The machine it runs on matters (the client and the upstream each want a core); compare rows of
one run rather than numbers across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from gateway.demo.data import FANOUT_LEAVES, demo_id, seed

ClientFactory = Callable[[], httpx.AsyncClient]


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


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_upstream(port: int, latency_ms: float) -> subprocess.Popen[bytes]:
    """Start the demo upstream in its own process; it answers after ``latency_ms``."""
    command = [
        sys.executable,
        "-m",
        "gateway",
        "demo-upstream",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--latency-ms",
        str(latency_ms),
    ]
    # The command is built from our own interpreter and integers, never from outside input.
    return subprocess.Popen(command, stdout=subprocess.DEVNULL)  # noqa: S603


def wait_until_listening(process: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    """Block until the upstream accepts TCP connections on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the demo upstream exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the demo upstream did not listen on port {port} within {timeout} s")


def stop_upstream(process: subprocess.Popen[bytes]) -> None:
    """Stop the upstream process (and only it), killing it if it does not exit in time."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


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


def run(main: Coroutine[Any, Any, list[Result]], loop: str) -> list[Result]:
    """Run ``main`` on the asyncio loop or on uvloop (which uvicorn picks when installed)."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def render(results: Sequence[Result], args: argparse.Namespace, loop: str) -> str:
    """The results as a markdown table, with a line saying how they were made."""
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
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="client event loop (default uvloop, what uvicorn runs the gateway on)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[variant.key for variant in VARIANTS],
        help="measure only these variants",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.rounds < 1 or args.concurrency < 1:
        print("--rounds and --concurrency must be at least 1", file=sys.stderr)
        return 2
    store = seed()
    ids = [demo_id(f"eval/runner/case-{index}") for index in range(FANOUT_LEAVES)]
    assert all(execution_id in store.executions for execution_id in ids)
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v1/executions/"
    # Distinct ids, as a fan-out asks; beyond the fan-out's size they repeat.
    urls = [base + ids[index % len(ids)] for index in range(args.concurrency)]
    variants = [v for v in VARIANTS if args.only is None or v.key in args.only]
    upstream = start_upstream(port, args.latency_ms)
    try:
        wait_until_listening(upstream, port, timeout=30)
        results = run(run_all(variants, urls, args.rounds), args.loop)
    finally:
        stop_upstream(upstream)
    print(render(results, args, args.loop))
    if any(result.non_200 for result in results):
        print("some responses were not 200", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
