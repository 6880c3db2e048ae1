"""A bounded soak: bench/soak.py's load and checks against an in-process faulty upstream.

1500 requests at concurrency 50 against the demo upstream spoiling 30 % of its answers; halfway
through the upstream goes down (its server stops, its port refuses) and comes back on the same
port. Every answer must keep the contract (``bench.soak.Tally``): no 500 of the gateway's own,
nothing malformed, no ``INTERNAL``, and every request answered. Latency is measured by
``bench/soak.py``, not asserted here.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace

import pytest
import uvicorn

from bench.soak import GATEWAY_SETTINGS, Tally, run_load
from gateway.app import create_app
from gateway.cli import listening_socket
from gateway.demo.faults import FaultConfig, FaultInjector
from gateway.demo.upstream import create_faulty_demo_app
from gateway.settings import Settings
from tests.servers import serve

REQUESTS = 1500
CONCURRENCY = 50
FAULTS = FaultConfig(rate=0.3, seed=11)


class RestartableUpstream:
    """The faulty demo upstream on one port, served in a thread, that can stop and start again."""

    def __init__(self, config: FaultConfig) -> None:
        self._config = config
        self._sock = listening_socket("127.0.0.1", 0)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.lifetimes: list[FaultInjector] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._sock.fileno() == -1:  # closed by stop(): listen on the same port again
            self._sock = listening_socket("127.0.0.1", self.port)
        seed = (self._config.seed or 0) + len(self.lifetimes)
        injector = create_faulty_demo_app(replace(self._config, seed=seed))
        self.lifetimes.append(injector)
        config = uvicorn.Config(injector, log_level="critical", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Go down: let held requests go, stop serving and close the port (it refuses)."""
        assert self._server is not None
        assert self._thread is not None
        self.lifetimes[-1].release()
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self._sock.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def faults(self) -> Counter[str]:
        return sum((Counter(injector.stats()) for injector in self.lifetimes), Counter())


@pytest.fixture
def faulty_upstream() -> Iterator[RestartableUpstream]:
    upstream = RestartableUpstream(FAULTS)
    upstream.start()
    try:
        yield upstream
    finally:
        upstream.stop()


def test_a_faulty_upstream_that_goes_down_and_comes_back_gets_only_coded_answers(
    faulty_upstream: RestartableUpstream,
) -> None:
    settings = Settings.model_validate({**GATEWAY_SETTINGS, "upstream_url": faulty_upstream.url})
    restarts: list[asyncio.Task[None]] = []

    async def soak(base_url: str) -> Tally:
        def go_down_and_come_back() -> None:
            restarts.append(asyncio.create_task(asyncio.to_thread(faulty_upstream.restart)))

        loop = asyncio.get_running_loop()
        tally = await run_load(
            base_url,
            requests=REQUESTS,
            concurrency=CONCURRENCY,
            seed_value=3,
            hooks={REQUESTS // 2: go_down_and_come_back},
            stop_at=loop.time() + 120,  # a bound for a broken gateway, not a timing claim
        )
        await asyncio.gather(*restarts)
        return tally

    with serve(create_app(settings)) as base_url:
        tally = asyncio.run(soak(base_url))

    no_latency_limit = float("inf")  # timing is bench/soak.py's to report, not a test's
    assert tally.failures(no_latency_limit) == [], tally.examples
    assert (tally.sent, tally.answered, tally.unanswered) == (REQUESTS, REQUESTS, 0)
    assert tally.gateway_500 == tally.malformed == tally.internal == 0
    assert len(faulty_upstream.lifetimes) == 2
    assert sum(faulty_upstream.faults().values()) > 0
