"""Identical requests sent at once: every answer checked, rounds and single-flight measured.

After each gateway run the same request goes out concurrently and every answer is checked,
since hey sees only status codes. On a cold gateway over ``RecordingUpstream`` (the demo app in
a thread, noting arrival times) each scenario's upstream rounds and the cost of a burst are
counted exactly.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import Counter
from collections.abc import Sequence
from types import TracebackType

import uvicorn
import uvloop
from starlette.types import Receive, Scope, Send

from bench.findings import Bench, log, warm_up
from bench.load import _at_once
from bench.processes import Server, start_gateway
from bench.scenarios import Request, Scenario, answer_problem
from gateway.cli import listening_socket
from gateway.demo.upstream import DemoOptions, create_demo_app

BURST_SIZE = 32

# Rounds and single-flight bursts are measured with the upstream this slow: issuing C's 100
# upstream calls takes the gateway tens of ms of CPU, so at 50-100 ms a round's last calls could
# go out after its first answers were back, and the last of 32 requests sent at once could reach
# the fetch too late to share it.
RECORDING_LATENCY_MS = 250.0


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
