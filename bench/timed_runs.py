"""The timed runs: each (scenario, target) at concurrency 1 and 32, and throughput per core.

``direct`` runs against the upstream itself; ``naive``, ``cold`` and ``warm`` each get a fresh
gateway. Throughput runs scenario A against the 0 ms upstream and reads the gateway's CPU time;
so do the request-cost runs of cold A and E, one request at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import uvloop

from bench.bursts import at_once
from bench.findings import (
    CONCURRENCIES,
    FLOORS,
    HIGH,
    Bench,
    RequestCost,
    Row,
    Throughput,
    counted,
    note_failures,
    report_load,
    warm_up,
)
from bench.load import Load, _client_once, run_client_load, run_hey
from bench.processes import Server, cpu_seconds, proc_status_mib, start_floors, start_gateway
from bench.profiling import run_profile
from bench.scenarios import ROOT_ID, Request, Scenario


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


def measure_fast_cold(bench: Bench, scenarios: Sequence[Scenario]) -> None:
    """Against the 0 ms upstream: cold A's throughput, then the CPU per request of cold A
    and E, and of the same requests through their floors (``FLOORS``)."""
    upstream = bench.fast_upstream
    server = start_gateway(bench.procs, "gateway-cold-fast", upstream.url, "cold")
    try:
        bench.findings.throughput.append(throughput(bench, server, scenarios[0], "cold"))
        for scenario in scenarios:
            if scenario.key in COST_SCENARIOS:
                bench.findings.request_costs.append(request_cost(bench, server, scenario))
    finally:
        bench.procs.stop(server.process)
    # The floors under those costs, measured alike.
    floor = start_floors(bench.procs, upstream.url)
    try:
        for scenario in scenarios:
            if scenario.key in COST_SCENARIOS:
                label = f"request cost {FLOORS[scenario.key]} {scenario.key}"
                timed = _cpu_timed(bench, floor, scenario, 1, label)
                bench.findings.floor_costs.append(RequestCost(scenario.key, *timed))
    finally:
        bench.procs.stop(floor.process)


# The scenarios whose cold overhead the issue bounds, where their time goes: each has a floor.
COST_SCENARIOS = tuple(FLOORS)


def request_cost(bench: Bench, server: Server, scenario: Scenario) -> RequestCost:
    """One cold scenario at c=1 against the 0 ms upstream, with the gateway's CPU time."""
    load, calls, cpu = _cpu_timed(bench, server, scenario, 1, f"request cost cold {scenario.key}")
    return RequestCost(scenario.key, load, calls, cpu)


def throughput(bench: Bench, server: Server, scenario: Scenario, target: str) -> Throughput:
    """Scenario A at c=32 on one worker, with the gateway's CPU time."""
    label = f"throughput {target} {scenario.key}"
    load, calls, cpu = _cpu_timed(bench, server, scenario, HIGH, label)
    at_once(bench, label, scenario, server, scenario.gateway_request(server.url), HIGH)
    return Throughput(target, load, calls, cpu)


def _cpu_timed(
    bench: Bench, server: Server, scenario: Scenario, concurrency: int, label: str
) -> tuple[Load, float, float]:
    """hey against the 0 ms upstream after a warm-up: the load, upstream calls per request and
    the gateway process's CPU seconds (from /proc) around it."""
    request = scenario.gateway_request(server.url)
    warm_up(bench, label, scenario, request)
    cpu_before = cpu_seconds(server.pid)
    load, calls = counted(
        bench,
        bench.fast_upstream,
        lambda: run_hey(bench.hey, request, concurrency, bench.seconds, bench.work),
    )
    cpu = cpu_seconds(server.pid) - cpu_before
    note_failures(bench, label, load)
    report_load(label, load, calls)
    return load, calls, cpu


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
