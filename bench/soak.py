"""Soak the gateway against a faulty upstream that also goes down and comes back.

It starts two real processes on 127.0.0.1 (free ports): the demo upstream injecting faults into
a share of its answers (``polos-gateway demo-upstream --fault-rate R``, every kind of
``gateway.demo.faults``) and the gateway in front of it (``python -m gateway serve``) with short
timeouts and the shared cache off, so every request reaches the faulty upstream. Then it sends
``--requests`` requests at ``--concurrency`` with an asyncio client, a seeded mix of:

* GraphQL ``execution(id)`` with ``parent`` and ``root``;
* GraphQL ``executions(ids)`` over 10 ids, one unknown and one not a UUID among them;
* GraphQL ``ancestors(limit: 10)`` up the demo's 60-deep chain;
* REST ``GET /api/v1/executions/{id}`` (known, unknown and invalid ids).

Halfway through it kills the upstream (SIGKILL) and starts it again on the same port about
``--down-seconds`` later. Every response is checked against the contract (``Tally.check``):
GraphQL answers 200 with ``data`` and errors coded from the contract's list; REST answers with
a JSON body or an empty one with the upstream's status, or with the gateway's own coded
502/503/504, never a 500 of its own. It prints a markdown summary (faults injected from both
upstream lifetimes' ``/_demo/stats``, errors by code, REST statuses, latency, the gateway's
VmRSS after a warm-up and at the end) and exits 1 if the gateway answered 500 itself, a
response was malformed or missing, an error was ``INTERNAL``, or an answer took longer than
the request deadline plus 2 s.

Rerun it from the repository root::

    .venv/bin/python bench/soak.py                       # 5000 requests, concurrency 50
    .venv/bin/python bench/soak.py --requests 1000 --fault-rate 0.5 --seconds 60

``tests/test_soak.py`` runs a smaller load through the same ``run_load`` and ``Tally``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp

from gateway.demo.data import CHAIN_DEPTH, demo_id, seed

ROOT = Path(__file__).resolve().parent.parent

# The contract's codes (README "Errors"); written out so the gateway cannot widen them itself.
CONTRACT_CODES = frozenset(
    {
        "NOT_FOUND",
        "BAD_USER_INPUT",
        "UNAUTHENTICATED",
        "FORBIDDEN",
        "UPSTREAM_ERROR",
        "UPSTREAM_TIMEOUT",
        "UPSTREAM_UNAVAILABLE",
        "CYCLE_DETECTED",
        "QUERY_TOO_COMPLEX",
        "RATE_LIMITED",
        "INTERNAL",
    }
)
# Statuses the gateway may answer with in its own {"error", "error_type"} shape.
GATEWAY_STATUSES = frozenset({502, 503, 504})

# The gateway's settings for the soak: short timeouts, no shared cache, a quick breaker that
# trips on the outage rather than on the scattered faults, so retries get exercised too.
REQUEST_DEADLINE = 3.0
GATEWAY_SETTINGS = {
    "log_level": "warning",
    "connect_timeout": "1",
    "read_timeout": "1",
    "upstream_timeout": "2",
    "request_deadline": str(REQUEST_DEADLINE),
    "cache_enabled": "false",
    "breaker_cooldown": "1",
    "breaker_failure_threshold": "25",
}
GATEWAY_ENV = {f"POLOS_GATEWAY_{name.upper()}": value for name, value in GATEWAY_SETTINGS.items()}
# How the gateway says its circuit breaker is open (gateway.upstream.UpstreamClient).
BREAKER_MESSAGE = "the gateway is not calling it"
LATENCY_SLACK = 2.0  # an answer may take the request deadline plus this, no more

UNKNOWN_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "polos-gateway/soak/unknown"))
INVALID_ID = "not-an-execution-id"

EXECUTION = """query One($id: ID!) {
  execution(id: $id) { id workflowId status parent { id status } root { id status } }
}"""
EXECUTIONS = """query Many($ids: [ID!]!) {
  executions(ids: $ids) { id status parent { id } }
}"""
ANCESTORS = """query Walk($id: ID!) {
  execution(id: $id) { id ancestors(limit: 10) { id } }
}"""


@dataclass(frozen=True)
class Probe:
    """One request of the mix: GraphQL (``query`` set) or a REST GET of ``execution_id``."""

    name: str
    execution_id: str = ""
    query: str = ""
    variables: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_graphql(self) -> bool:
        return bool(self.query)


def probes(seed_value: int) -> Callable[[], Probe]:
    """A seeded generator of the request mix, a quarter of each kind."""
    rng = random.Random(seed_value)  # noqa: S311 - a reproducible mix, not a secret
    known = sorted(seed().executions)
    chain = [demo_id(f"chain/{level}") for level in range(10, CHAIN_DEPTH)]

    def some_id() -> str:
        roll = rng.random()
        if roll < 0.1:
            return UNKNOWN_ID
        if roll < 0.15:
            return INVALID_ID
        return rng.choice(known)

    def next_probe() -> Probe:
        kind = rng.randrange(4)
        if kind == 0:
            return Probe("graphql execution", query=EXECUTION, variables={"id": some_id()})
        if kind == 1:
            ids = [*rng.sample(known, 8), UNKNOWN_ID, INVALID_ID]
            rng.shuffle(ids)
            return Probe("graphql executions", query=EXECUTIONS, variables={"ids": ids})
        if kind == 2:
            return Probe("graphql ancestors", query=ANCESTORS, variables={"id": rng.choice(chain)})
        return Probe("rest", execution_id=some_id())

    return next_probe


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


@dataclass
class Tally:
    """What the gateway answered, checked against the contract as it arrives."""

    sent: int = 0
    answered: int = 0
    unanswered: int = 0
    by_probe: Counter[str] = field(default_factory=Counter)
    graphql_clean: int = 0
    graphql_codes: Counter[str] = field(default_factory=Counter)
    rest_statuses: Counter[int] = field(default_factory=Counter)
    gateway_errors: Counter[str] = field(default_factory=Counter)  # own 502/503/504 by type
    gateway_500: int = 0
    breaker_open: int = 0  # UPSTREAM_UNAVAILABLE answered by the open breaker (by message)
    malformed: int = 0
    internal: int = 0
    latencies: list[float] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)

    def _problem(self, probe: Probe, status: int, body: bytes, what: str) -> None:
        if len(self.examples) < 10:
            self.examples.append(f"{probe.name} -> {status}: {what}: {body[:200]!r}")

    def check(self, probe: Probe, status: int, body: bytes, seconds: float) -> None:
        """Count one answer and every way it breaks the contract."""
        self.answered += 1
        self.by_probe[probe.name] += 1
        self.latencies.append(seconds)
        if probe.is_graphql:
            self._check_graphql(probe, status, body)
        else:
            self._check_rest(probe, status, body)

    def _check_graphql(self, probe: Probe, status: int, body: bytes) -> None:
        parsed = _json(body)
        if status != 200:
            if status == 500:
                self.gateway_500 += 1
            else:
                self.malformed += 1
            self._problem(probe, status, body, "GraphQL answered other than 200")
            return
        if not isinstance(parsed, dict) or not isinstance(parsed.get("data"), dict):
            self.malformed += 1
            self._problem(probe, status, body, "no data object")
            return
        errors = parsed.get("errors", [])
        if not isinstance(errors, list):
            self.malformed += 1
            self._problem(probe, status, body, "errors is not a list")
            return
        if not errors:
            self.graphql_clean += 1
        for error in errors:
            extensions = error.get("extensions") if isinstance(error, dict) else None
            code = extensions.get("code") if isinstance(extensions, dict) else None
            if code not in CONTRACT_CODES or not isinstance(error.get("message"), str):
                self.malformed += 1
                self._problem(probe, status, body, f"an error without a contract code: {code}")
                continue
            self.graphql_codes[code] += 1
            self.breaker_open += BREAKER_MESSAGE in error["message"]
            if code == "INTERNAL":
                self.internal += 1
                self._problem(probe, status, body, "INTERNAL")

    def _check_rest(self, probe: Probe, status: int, body: bytes) -> None:
        self.rest_statuses[status] += 1
        if not body:
            return  # the upstream's own status relayed with its empty body
        parsed = _json(body)
        if not isinstance(parsed, dict):
            self.malformed += 1
            self._problem(probe, status, body, "a body that is not a JSON object")
            return
        if status == 200:
            if parsed.get("id") != probe.execution_id:
                self.malformed += 1
                self._problem(probe, status, body, "another execution than asked for")
            return
        error_type = parsed.get("error_type")
        if status == 500:
            # The demo's 500s are empty: a 500 with a body is the gateway's own.
            self.gateway_500 += 1
            self.internal += error_type == "INTERNAL"
            self._problem(probe, status, body, "the gateway's own 500")
        elif status in GATEWAY_STATUSES:
            if error_type not in CONTRACT_CODES or not isinstance(parsed.get("error"), str):
                self.malformed += 1
                self._problem(probe, status, body, "a gateway error without a contract code")
            elif error_type == "INTERNAL":
                self.internal += 1
                self._problem(probe, status, body, "INTERNAL")
            else:
                self.gateway_errors[f"REST {status} {error_type}"] += 1
                self.breaker_open += BREAKER_MESSAGE in str(parsed.get("error"))

    def failures(self, latency_limit: float) -> list[str]:
        """Why the run fails the contract; empty when it passes."""
        slow = sum(seconds > latency_limit for seconds in self.latencies)
        problems = {
            "responses without an answer": self.unanswered,
            "500s of the gateway's own": self.gateway_500,
            "malformed responses": self.malformed,
            "INTERNAL errors": self.internal,
            f"answers slower than {latency_limit:g} s": slow,
        }
        return [f"{count} {what}" for what, count in problems.items() if count]

    def percentile(self, share: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


async def run_load(
    base_url: str,
    *,
    requests: int,
    concurrency: int,
    seed_value: int = 1,
    stop_at: float | None = None,
    hooks: Mapping[int, Callable[[], object]] | None = None,
    client_timeout: float = REQUEST_DEADLINE + 10,
    tally: Tally | None = None,
) -> Tally:
    """Send ``requests`` requests of the mix at ``concurrency`` and check every answer.

    ``hooks[n]`` runs right after the ``n``-th request is sent (it may start a task);
    ``stop_at`` (event-loop time) stops sending new requests, for a hard time cap. Answers
    are counted into ``tally`` (a new one by default) as they arrive.
    """
    tally = tally if tally is not None else Tally()
    next_probe = probes(seed_value)
    loop = asyncio.get_running_loop()
    hooks = hooks or {}
    timeout = aiohttp.ClientTimeout(total=client_timeout)
    connector = aiohttp.TCPConnector(limit=concurrency)

    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as session:

        async def send(probe: Probe) -> tuple[int, bytes]:
            if probe.is_graphql:
                payload = {"query": probe.query, "variables": dict(probe.variables)}
                request = session.post("/graphql", json=payload)
            else:
                request = session.get(f"/api/v1/executions/{probe.execution_id}")
            async with request as response:
                return response.status, await response.read()

        async def worker() -> None:
            while tally.sent < requests and (stop_at is None or loop.time() < stop_at):
                tally.sent += 1
                hook = hooks.get(tally.sent)
                if hook is not None:
                    hook()
                probe = next_probe()
                started = loop.time()
                try:
                    status, body = await send(probe)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    tally.unanswered += 1
                    if len(tally.examples) < 10:
                        tally.examples.append(f"{probe.name}: no answer: {exc!r}")
                    continue
                tally.check(probe, status, body, loop.time() - started)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tally


# --- the processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def vm_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Process:
    """``python -m gateway ARGS`` with its output in a log file; killed at the end."""

    def __init__(self, name: str, args: list[str], log_dir: Path, env: Mapping[str, str]) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("ab")
        self.popen = subprocess.Popen(  # noqa: S603 - our own command, fixed arguments
            [sys.executable, "-m", "gateway", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, **env},
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    async def wait_serving(self, url: str, deadline: float = 60.0) -> None:
        """Poll ``url`` until it answers 200; fail with the log if the process dies first."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + deadline
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while loop.time() < give_up:
                if self.popen.poll() is not None:
                    raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
                with suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url) as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} did not serve {url} in {deadline} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: the upstream dies as a crashed orchestrator does, mid-request."""
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


async def fetch_faults(url: str) -> Counter[str]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
        session.get(f"{url}/_demo/stats") as response,
    ):
        stats = await response.json()
    return Counter({kind: int(count) for kind, count in stats["faults"].items()})


@dataclass
class SoakRun:
    requests: int
    concurrency: int
    fault_rate: float
    seconds: float
    tally: Tally = field(default_factory=Tally)
    faults: Counter[str] = field(default_factory=Counter)
    rss_after_warmup: float = float("nan")
    rss_at_end: float = float("nan")
    wall_seconds: float = 0.0
    killed_at: int = 0
    down_seconds: float = 0.0
    cut_short: bool = False
    gateway_log_errors: int = 0


async def soak(args: argparse.Namespace, log_dir: Path) -> SoakRun:
    run = SoakRun(args.requests, args.concurrency, args.fault_rate, args.seconds)
    loop = asyncio.get_running_loop()
    started = loop.time()
    upstream_port, gateway_port = free_port(), free_port()
    upstream_url = f"http://127.0.0.1:{upstream_port}"
    gateway_url = f"http://127.0.0.1:{gateway_port}"

    def start_upstream(lifetime: int) -> Process:
        return Process(
            f"upstream-{lifetime}",
            [
                "demo-upstream",
                "--port",
                str(upstream_port),
                "--fault-rate",
                str(args.fault_rate),
                "--fault-seed",
                str(args.seed + lifetime),
            ],
            log_dir,
            {},
        )

    processes: list[Process] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        processes.append(start_upstream(1))
        gateway = Process(
            "gateway",
            ["serve", "--port", str(gateway_port), "--upstream-url", upstream_url],
            log_dir,
            GATEWAY_ENV,
        )
        processes.append(gateway)
        await processes[0].wait_serving(f"{upstream_url}/health")
        await gateway.wait_serving(f"{gateway_url}/healthz")

        async def bounce() -> None:
            """Kill the upstream, keep it down, start it again on the same port."""
            run.killed_at = run.tally.sent
            run.faults += await fetch_faults(upstream_url)
            down = loop.time()
            await asyncio.to_thread(processes[0].kill)
            await asyncio.sleep(args.down_seconds)
            processes.append(start_upstream(2))
            await processes[-1].wait_serving(f"{upstream_url}/health")
            run.down_seconds = loop.time() - down

        def warmed_up() -> None:
            run.rss_after_warmup = vm_rss_mib(gateway.pid)

        def halfway() -> None:
            tasks.append(asyncio.create_task(bounce()))

        hooks: dict[int, Callable[[], object]] = {
            min(200, args.requests): warmed_up,
            max(1, args.requests // 2): halfway,
        }
        # Stop sending in time for the last answers and the teardown to fit the cap.
        stop_at = started + args.seconds - (REQUEST_DEADLINE + 10)
        await run_load(
            gateway_url,
            requests=args.requests,
            concurrency=args.concurrency,
            seed_value=args.seed,
            stop_at=stop_at,
            hooks=hooks,
            tally=run.tally,
        )
        await asyncio.gather(*tasks)
        run.cut_short = run.tally.sent < args.requests
        run.rss_at_end = vm_rss_mib(gateway.pid)
        run.faults += await fetch_faults(upstream_url)
    finally:
        for process in reversed(processes):
            process.stop()
        for task in tasks:
            task.cancel()
    log = (log_dir / "gateway.log").read_text(errors="replace")
    run.gateway_log_errors = sum(line.startswith("ERROR") for line in log.splitlines())
    run.wall_seconds = loop.time() - started
    return run


# --- the report ------------------------------------------------------------------------------


def _counts(counter: Mapping[Any, int]) -> str:
    return ", ".join(f"{key} {count}" for key, count in sorted(counter.items()) if count) or "none"


def summary(run: SoakRun, latency_limit: float) -> str:
    tally = run.tally
    growth = run.rss_at_end - run.rss_after_warmup
    lines = [
        f"## Soak: {run.requests} requests at concurrency {run.concurrency}, "
        f"fault rate {run.fault_rate:g}",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| requests sent / answered / unanswered | {tally.sent} / {tally.answered} / "
        f"{tally.unanswered} |",
        f"| requests by kind | {_counts(tally.by_probe)} |",
        f"| wall time | {run.wall_seconds:.1f} s (cap {run.seconds:g} s) |",
        f"| upstream killed after request | {run.killed_at}, serving again "
        f"{run.down_seconds:.1f} s later |",
        f"| faults injected (both upstream lifetimes) | {sum(run.faults.values())}: "
        f"{_counts(run.faults)} |",
        f"| GraphQL answers without errors | {tally.graphql_clean} |",
        f"| GraphQL errors by code | {_counts(tally.graphql_codes)} |",
        f"| REST statuses | {_counts(tally.rest_statuses)} |",
        f"| gateway's own coded 502/503/504 | {_counts(tally.gateway_errors)} |",
        f"| UPSTREAM_UNAVAILABLE from the open breaker (GraphQL + REST) | {tally.breaker_open} |",
        f"| gateway's own 500s | {tally.gateway_500} |",
        f"| malformed responses | {tally.malformed} |",
        f"| INTERNAL errors | {tally.internal} |",
        f"| latency p50 / p99 / max | {tally.percentile(0.5) * 1000:.0f} / "
        f"{tally.percentile(0.99) * 1000:.0f} / {max(tally.latencies, default=0) * 1000:.0f} ms"
        f" (limit {latency_limit * 1000:.0f} ms) |",
        f"| gateway VmRSS after warm-up / at end | {run.rss_after_warmup:.1f} / "
        f"{run.rss_at_end:.1f} MiB ({growth:+.1f} MiB) |",
        f"| ERROR lines in the gateway's log | {run.gateway_log_errors} |",
        "",
        "Gateway settings: " + ", ".join(f"{k}={v}" for k, v in GATEWAY_SETTINGS.items()),
    ]
    if run.cut_short:
        lines.append(
            f"\nThe time cap stopped the run after {tally.sent} of {run.requests} requests."
        )
    failures = tally.failures(latency_limit)
    lines.append("\n**Result: " + ("FAIL** - " + "; ".join(failures) if failures else "PASS**"))
    lines.extend(f"- {example}" for example in tally.examples)
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=5000, help="requests to send")
    parser.add_argument("--concurrency", type=int, default=50, help="requests in flight")
    parser.add_argument("--fault-rate", type=float, default=0.3, help="share of upstream faults")
    parser.add_argument("--seconds", type=float, default=240, help="hard cap on the run")
    parser.add_argument("--down-seconds", type=float, default=2, help="upstream downtime")
    parser.add_argument("--seed", type=int, default=1, help="seed of the mix and the faults")
    parser.add_argument("--log-dir", help="keep the processes' logs here (default: discarded)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    latency_limit = REQUEST_DEADLINE + LATENCY_SLACK
    with tempfile.TemporaryDirectory(prefix="polos-soak-") as scratch:
        log_dir = Path(args.log_dir or scratch)
        log_dir.mkdir(parents=True, exist_ok=True)
        # A last resort: the run itself stops sending in time (see ``soak``).
        run = asyncio.run(asyncio.wait_for(soak(args, log_dir), timeout=args.seconds + 30))
    print(summary(run, latency_limit), flush=True)
    return 1 if run.tally.failures(latency_limit) else 0


if __name__ == "__main__":
    raise SystemExit(main())
