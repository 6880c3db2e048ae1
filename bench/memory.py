"""The memory run: the warm gateway's RSS sampled through a long run of scenario C.

The first runs count as warm-up; after them, the highest RSS of the second half against the
first's, with a small tolerance, tells whether the process keeps growing under a steady load.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench.findings import HIGH, Bench, Memory, counted, log, note_failures, warm_up
from bench.load import run_hey
from bench.processes import proc_status_mib, start_gateway
from bench.scenarios import Scenario

MEMORY_TOLERANCE_MIB = 2.0
# The memory run lasts this many --seconds, of which the first MEMORY_WARMUP_RUNS are warm-up:
# long enough for the allocator's arenas and the connection pools to reach their working size.
# The gateway collects and freezes its startup heap before serving, so it starts smaller and
# grows into that size over its first half-minute or so of load.
MEMORY_RUNS = 16
MEMORY_WARMUP_RUNS = 8


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
    memory = Memory(tuple(samples), MEMORY_WARMUP_RUNS * bench.seconds, end, peak, load, calls)
    first, second = memory.half_peaks
    log(
        f"  memory: {memory.after_warmup:.1f} MiB after warm-up, {end:.1f} MiB at the end; "
        f"highest {first:.1f} MiB in the first half after warm-up, {second:.1f} MiB in the second"
    )
    return memory
