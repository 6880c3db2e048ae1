"""The performance issue's targets, each checked against one run's figures.

A ``Check`` pairs a target with the figure measured for it and whether it is met (or only
reported); ``evaluate_targets`` lists them all for the document.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from bench.bursts import BURST_SIZE, RECORDING_LATENCY_MS
from bench.findings import CONCURRENCIES, DIRECT, FLOORS, HIGH, Bench, Findings, Profile
from bench.memory import MEMORY_TOLERANCE_MIB
from bench.scenarios import Scenario

OVERHEAD_BUDGET_MS = 1.0


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


def cold_overhead_ms(findings: Findings, label: str) -> float:
    """What ``label`` (a scenario's cold gateway, or a floor) adds at p50, c=1, over
    the upstream alone, in the median alternating round; NaN without rounds."""
    rounds = findings.cold_rounds
    return math.nan if rounds is None else rounds.median_difference_ms(label, 50)


def _spread(values: Sequence[float]) -> str:
    return f"{min(values):+.1f} to {max(values):+.1f} ms" if values else "none"


def check_cold_overhead(findings: Findings, key: str) -> Check:
    """Met by the median alternating round; the Results' single runs are shown beside it."""
    target = f"Overhead: cold ({key}) adds under {OVERHEAD_BUDGET_MS:g} ms at p50 over the upstream"
    rounds = findings.cold_rounds
    if rounds is None:
        return Check(target, "not measured (no alternating rounds)", False)
    cold, direct = findings.row(key, "cold").loads[1], findings.row(key, "direct").loads[1]
    each, floor = rounds.differences_ms(key, 50), rounds.differences_ms(FLOORS[key], 50)
    added = cold_overhead_ms(findings, key)
    notes = [
        f"{FLOORS[key]} alone, the floor, adds {cold_overhead_ms(findings, FLOORS[key]):+.1f} ms "
        f"({_spread(floor)})"
    ]
    cost = next((c for c in findings.request_costs if c.key == key), None)
    if cost is not None:
        notes.insert(0, f"the gateway's CPU per such request: {cost.cpu_ms_per_request:.2f} ms")
    return Check(
        target,
        f"c=1, median of {len(each)} alternating rounds: {added:+.1f} ms (rounds "
        f"{_spread(each)}; the Results' single runs: cold {cold.percentile_ms(50):.1f} ms, "
        f"direct {direct.percentile_ms(50):.1f} ms) ({'; '.join(notes)}; see *Where a cold "
        "request's overhead goes*)",
        added < OVERHEAD_BUDGET_MS,
    )


def check_warm_faster(findings: Findings, key: str, concurrency: int) -> Check:
    """At the rounds' concurrency, met when the median of the rounds' warm-minus-upstream
    differences is below zero at p50 and at p99; at another, by the Results' single runs."""
    target = f"Overhead: warm ({key}) faster than the upstream at p50 and p99 (c={concurrency})"
    warm = findings.row(key, "warm").loads[concurrency]
    direct = findings.row(key, "direct").loads[concurrency]
    single = (
        f"p50 {warm.percentile_ms(50):.1f} vs {direct.percentile_ms(50):.1f} ms; "
        f"p99 {warm.percentile_ms(99):.1f} vs {direct.percentile_ms(99):.1f} ms"
    )
    rounds = findings.warm_rounds
    if rounds is None or rounds.concurrency != concurrency:
        faster = warm.percentile_ms(50) < direct.percentile_ms(50)
        return Check(target, single, faster and warm.percentile_ms(99) < direct.percentile_ms(99))
    counted = len(rounds.differences_ms(key, 50))
    median50, median99 = rounds.median_difference_ms(key, 50), rounds.median_difference_ms(key, 99)
    won = sum(
        mine.percentile_ms(50) < theirs.percentile_ms(50)
        and mine.percentile_ms(99) < theirs.percentile_ms(99)
        for mine, theirs in zip(rounds.loads[key], rounds.loads[DIRECT], strict=True)
    )
    return Check(
        target,
        f"median of {counted} alternating rounds, warm minus upstream: p50 {median50:+.1f} ms, "
        f"p99 {median99:+.1f} ms (warm {rounds.median_ms(key, 50):.1f} / "
        f"{rounds.median_ms(key, 99):.1f} ms, upstream {rounds.median_ms(DIRECT, 50):.1f} / "
        f"{rounds.median_ms(DIRECT, 99):.1f} ms); faster at both in {won} of {counted} rounds "
        f"(the Results' single runs: {single})",
        median50 < 0 and median99 < 0,
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
    first, second = memory.half_peaks
    growth = second - first
    return Check(
        target,
        f"warm (C), c={HIGH}: highest VmRSS {first:.1f} MiB in the first half after warm-up, "
        f"{second:.1f} MiB in the second ({growth:+.1f} MiB; tolerance "
        f"{MEMORY_TOLERANCE_MIB:g} MiB); {memory.after_warmup:.1f} MiB after warm-up, "
        f"{memory.end:.1f} MiB at the end",
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
