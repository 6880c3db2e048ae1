"""Driving load: hey for single requests, a closed-loop asyncio client for the REST plans.

A ``Load`` holds one timed run's latencies, non-2xx count and duration, and gives its
nearest-rank percentiles and req/s. hey's CSV output and the Python client both end up as one.
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import uvloop

from bench.scenarios import ClientFailure, Plan, Request

CLIENT_CONNECTIONS = 100


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
