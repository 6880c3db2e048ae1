"""Alternating rounds for the overhead targets: the targets compared, run turn about.

Where the load generator, the upstream and the gateway share a machine's cores, one run
minutes after another compares two states of the machine as much as two targets. So the
overhead targets also get rounds: each round runs every target compared for a short while,
one after the other (the order rotates from round to round), on processes started once, and
each round's figures are compared within the round. The verdict is the median round; the
spread over the rounds is reported beside it.

* At c=1, upstream at the run's latency: the upstream directly, the cold gateway (A and E)
  and the floors (``bench/floors.py``): the bare pass-through with E's request, bare
  Strawberry with A's.
* At c=32: the upstream directly and the warm gateway (A and E).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bench.findings import (
    DIRECT,
    FLOORS,
    HIGH,
    PAIRED_ROUNDS,
    Bench,
    Rounds,
    log,
    note_failures,
    warm_up,
)
from bench.load import Load, run_hey
from bench.processes import start_floors, start_gateway
from bench.scenarios import ROOT_ID, Request, Scenario


def run_rounds(
    bench: Bench,
    target: str,
    requests: Mapping[str, tuple[Scenario | None, Request]],
    concurrency: int,
) -> Rounds:
    """``PAIRED_ROUNDS`` rounds of every request in turn, each for half the run's seconds."""
    seconds = bench.seconds / 2
    for label, (scenario, request) in requests.items():
        if scenario is not None:
            warm_up(bench, f"rounds c={concurrency} {label}", scenario, request)
    loads: dict[str, list[Load]] = {label: [] for label in requests}
    labels = list(requests)
    for number in range(PAIRED_ROUNDS):
        # Rotated, so that no target always runs first or always follows the same one.
        shift = number % len(labels)
        for label in labels[shift:] + labels[:shift]:
            request = requests[label][1]
            load = run_hey(bench.hey, request, concurrency, seconds, bench.work)
            note_failures(bench, f"rounds c={concurrency} {label} round {number + 1}", load)
            loads[label].append(load)
        log(
            f"  round {number + 1}/{PAIRED_ROUNDS} c={concurrency}: "
            + ", ".join(
                f"{label} p50 {loads[label][-1].percentile_ms(50):.1f} ms" for label in loads
            )
        )
    return Rounds(target, concurrency, seconds, loads)


def measure_paired(bench: Bench, scenarios: Sequence[Scenario]) -> None:
    """The cold rounds at c=1 and the warm rounds at c=32, for A and E."""
    by_key = {s.key: s for s in scenarios}
    compared = [by_key[key] for key in FLOORS]
    direct: tuple[Scenario | None, Request] = (
        None,
        Request("GET", f"{bench.upstream.url}/api/v1/executions/{ROOT_ID}"),
    )
    cold = start_gateway(bench.procs, "gateway-cold-rounds", bench.upstream.url, "cold")
    floor = start_floors(bench.procs, bench.upstream.url)
    try:
        requests: dict[str, tuple[Scenario | None, Request]] = {DIRECT: direct}
        requests |= {s.key: (s, s.gateway_request(cold.url)) for s in compared}
        requests |= {FLOORS[s.key]: (s, s.gateway_request(floor.url)) for s in compared}
        bench.findings.cold_rounds = run_rounds(bench, "cold", requests, 1)
    finally:
        bench.procs.stop(floor.process)
        bench.procs.stop(cold.process)
    warm = start_gateway(bench.procs, "gateway-warm-rounds", bench.upstream.url, "warm")
    try:
        requests = {DIRECT: direct}
        requests |= {s.key: (s, s.gateway_request(warm.url)) for s in compared}
        bench.findings.warm_rounds = run_rounds(bench, "warm", requests, HIGH)
    finally:
        bench.procs.stop(warm.process)
