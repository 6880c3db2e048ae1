"""``docs/benchmarks.md``: the run's settings, tables, targets and sections, as markdown.

Every figure comes from ``Findings``; nothing in the document is written by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from bench.bursts import BURST_SIZE, RECORDING_LATENCY_MS
from bench.environment import machine
from bench.findings import (
    CONCURRENCIES,
    DIRECT,
    FLOORS,
    HIGH,
    PAIRED_ROUNDS,
    Bench,
    Findings,
    Profile,
)
from bench.load import CLIENT_CONNECTIONS
from bench.memory import MEMORY_RUNS
from bench.processes import GATEWAY_ENV, TARGET_MEANING
from bench.profiling import PROFILE_RATE, SPINE_SHARE
from bench.scenarios import ANCESTOR_LIMIT, FANOUT_SIZE, Scenario
from bench.targets import (
    Check,
    cold_overhead_ms,
    evaluate_targets,
    number,
)

TRANSPORT_ROUNDS = 5


def ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1f}"


def main_table(findings: Findings) -> list[str]:
    lines = [
        "| scenario | target | upstream calls/request c=1 | c=32 | p50 ms c=1 | p99 ms c=1 "
        "| req/s c=1 | p50 ms c=32 | p99 ms c=32 | req/s c=32 | peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in findings.rows:
        low, high = row.loads[1], row.loads[HIGH]
        target = f"{row.target} ({row.tool})" if row.target == "direct" else row.target
        target += " **⚠**" if row.flagged else ""
        rss = "—" if row.peak_rss_mib is None else f"{row.peak_rss_mib:.1f}"
        lines.append(
            f"| {row.scenario.key} | {target} | {number(row.calls[1])} "
            f"| {number(row.calls[HIGH])} | {ms(low.percentile_ms(50))} "
            f"| {ms(low.percentile_ms(99))} | {low.rps:.0f} | {ms(high.percentile_ms(50))} "
            f"| {ms(high.percentile_ms(99))} | {high.rps:.0f} | {rss} |"
        )
    return lines


def scenario_table(scenarios: Sequence[Scenario]) -> list[str]:
    lines = [
        "| scenario | what | executions touched | rounds needed | direct: what the client does |",
        "|---|---|---:|---:|---|",
    ]
    direct = {
        "A": "1 GET (hey)",
        "B": "GET the leaf, then parent and root concurrently (Python client)",
        "C": f"{FANOUT_SIZE} leaf GETs concurrently, then the 2 distinct parents/roots "
        "(Python client)",
        "D": f"{ANCESTOR_LIMIT + 1} sequential GETs up the chain (Python client)",
        "E": "1 GET (hey)",
    }
    for s in scenarios:
        lines.append(f"| {s.key} | {s.title} | {s.distinct} | {s.rounds} | {direct[s.key]} |")
    return lines


def problems_block(findings: Findings) -> list[str]:
    checked = (
        "hey sees only status codes, and GraphQL answers errors with 200; so after every gateway "
        "run at concurrency c the script sends c identical requests at once and checks each "
        "answer (no `errors`, every entry present), as it does with each warm-up."
    )
    if not findings.problems:
        return [f"Every response of every run was 2xx and every checked answer complete. {checked}"]
    lines = [
        "> **WARNING: some answers were not 2xx or not complete; rows marked ⚠ measured them.** "
        + checked,
        ">",
    ]
    lines += [f"> - {problem}" for problem in findings.problems]
    return lines


def targets_section(checks: Sequence[Check]) -> list[str]:
    verdict = {True: "yes", False: "**NO**", None: "reported"}
    lines = [
        "## Targets",
        "",
        "The targets of the performance issue, each with this run's figure; *met* is computed by "
        "`bench/run.py` from the figures above, not written by hand.",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    lines += [f"| {c.target} | {c.measured} | {verdict[c.met]} |" for c in checks]
    return lines


def throughput_section(findings: Findings) -> list[str]:
    lines = [
        "## Throughput per core",
        "",
        f"Scenario A at c={HIGH} for the run's duration, one gateway worker, the upstream "
        "answering at once (a second demo upstream with `--latency-ms 0`). *CPU-seconds* is the "
        "gateway process's user+system time during the run from `/proc/<pid>/stat`; hey and the "
        "upstream share the same cores, so req/s is below what a worker does with a core of its "
        "own, and req per CPU-second is the closer figure for sizing `--workers`.",
        "",
        "| target | req/s | gateway CPU-seconds | req per gateway CPU-second | p50 ms | p99 ms "
        "| upstream calls/request |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t in findings.throughput:
        lines.append(
            f"| {t.target} | {t.load.rps:.0f} | {t.cpu:.2f} | {t.per_cpu_second:.0f} "
            f"| {ms(t.load.percentile_ms(50))} | {ms(t.load.percentile_ms(99))} "
            f"| {number(t.calls)} |"
        )
    return lines


def request_cost_section(findings: Findings) -> list[str]:
    lines = [
        "## Where a cold request's overhead goes",
        "",
        "The cold gateway of the throughput run serves scenarios "
        f"{' and '.join(c.key for c in findings.request_costs) or '(none)'} one request at a "
        "time (c=1) against the 0 ms upstream, and the gateway process's CPU time is read "
        "around each run. With nothing queued, that CPU time is what the gateway adds to a "
        "request's latency, beside one more hop on loopback; the overhead column is the "
        "median alternating round's p50 minus the upstream's (see *Alternating rounds*; "
        "upstream at the run's latency, where every process wakes from idle for each request, "
        "so the same work takes somewhat longer). One upstream call's "
        "share is the `gateway` row of the CPU-per-call table under *The upstream client's "
        "transport*; the rest is receiving and answering the request (uvicorn, the "
        "middlewares, the loader) and, for GraphQL, parsing the body and executing the "
        "operation.",
        "",
        "| scenario | requests | CPU per request ms, serving process "
        "| overhead at p50, median alternating round | upstream calls/request |",
        "|---|---:|---:|---:|---:|",
    ]
    costs = [(cost.key, cost.key, cost) for cost in findings.request_costs]
    costs += [
        (FLOORS[cost.key], f"{cost.key} through {FLOORS[cost.key]} (the floor)", cost)
        for cost in findings.floor_costs
    ]
    for label, name, cost in costs:
        lines.append(
            f"| {name} | {cost.load.completed} | {cost.cpu_ms_per_request:.2f} "
            f"| {cold_overhead_ms(findings, label):+.1f} ms | {number(cost.calls)} |"
        )
    if findings.floor_costs:
        lines += [
            "",
            "The floor rows are `bench/floors.py`, served by uvicorn as the gateway is, "
            "and measured the same way in the same run: what a gateway on uvicorn, aiohttp and "
            "Strawberry adds on this machine before doing anything of its own (the gateway's "
            "httpx layer over aiohttp is its own). What the gateway adds above its floor is "
            "its own work.",
            "",
            "- *bare pass-through*, for E: an ASGI app that relays the GET on the gateway's own "
            "aiohttp session and sends back the upstream's status, content type and body, and "
            "does nothing else (no checks, no credentials, no cache, no metrics, no log line).",
            "- *bare Strawberry*, for A: the JSON body handed to Strawberry's `Schema.execute`, "
            "the one call every Strawberry server makes, over one root field, `execution(id)`, "
            "returning the gateway's `Execution` type (the same fields and tree resolvers), fed "
            "by a per-request aiodataloader that relays the GET on that session and parses the "
            "body into the gateway's record; Strawberry's `ParserCache` and `ValidationCache` "
            "parse and validate the document once, and orjson encodes the result. No HTTP view, "
            "middlewares, credentials, cache, single-flight, limits, error coding or metrics. "
            "Its answer to A's document is the gateway's (a test checks it).",
        ]
    return lines


def rounds_section(findings: Findings) -> list[str]:
    lines = [
        "## Alternating rounds",
        "",
        "The overhead targets compare the gateway with the upstream. Runs minutes apart "
        "compare two states of the machine as well as two targets, where the load generator, "
        "the upstream and the gateway share the cores; the rounds below show how far the same "
        f"target moves from round to round. So `bench/paired.py` runs the targets compared "
        f"turn about, {PAIRED_ROUNDS} rounds on processes started once, each target for half a "
        "run's seconds per round, in an order that rotates from round to round; each round's "
        "figures are compared within the round, and the overhead targets take the median "
        "round. At c=1: the upstream directly, one cold gateway serving A and E, and the "
        "floors (bare Strawberry serving A's request, the bare pass-through E's; see *Where a "
        f"cold request's overhead goes*). At c={HIGH}: the upstream directly and one warm "
        "gateway serving A and E. Each cell is p50 / p99 in ms.",
    ]
    for rounds in (findings.cold_rounds, findings.warm_rounds):
        if rounds is None:
            continue
        labels = list(rounds.loads)
        lines += [
            "",
            f"c={rounds.concurrency}, {rounds.seconds:g} s per target per round:",
            "",
            "| round | "
            + " | ".join(
                label if label in (DIRECT, *FLOORS.values()) else f"{rounds.target} {label}"
                for label in labels
            )
            + " |",
            "|---|" + "---:|" * len(labels),
        ]
        for index in range(len(rounds.loads[DIRECT])):
            cells = (
                f"{runs[index].percentile_ms(50):.1f} / {runs[index].percentile_ms(99):.1f}"
                for runs in rounds.loads.values()
            )
            lines.append(f"| {index + 1} | " + " | ".join(cells) + " |")
        medians = (
            f"{rounds.median_ms(label, 50):.1f} / {rounds.median_ms(label, 99):.1f}"
            for label in labels
        )
        lines.append("| median | " + " | ".join(medians) + " |")
    return lines


def memory_section(findings: Findings, seconds: float) -> list[str]:
    memory = findings.memory
    lines = ["## Memory stability", ""]
    if memory is None:
        return [*lines, "Not measured."]
    post = memory.measured
    first, second = memory.half_peaks
    return [
        *lines,
        f"A fresh warm gateway runs scenario C at c={HIGH} for {MEMORY_RUNS * seconds:g} s "
        f"({memory.load.completed} requests, {number(memory.calls)} upstream calls/request: C's "
        "fan-out is mostly running executions, re-read after the 1 s active TTL). VmRSS is "
        f"sampled every 0.25 s; the first {memory.warmup_seconds:g} s count as warm-up. "
        "RSS steps up and down as the allocator takes and gives back memory, so the verdict "
        "compares the highest sample of each half of the time after warm-up, not two single "
        "samples: a process that keeps growing raises its highest value from one half to the "
        "next.",
        "",
        "| VmRSS after warm-up | VmRSS at the end | highest, first / second half "
        "| growth of the highest | min / max after warm-up | peak (VmHWM) |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {memory.after_warmup:.1f} MiB | {memory.end:.1f} MiB "
        f"| {first:.1f} / {second:.1f} MiB | {second - first:+.1f} MiB "
        f"| {min(post, default=math.nan):.1f} / {max(post, default=math.nan):.1f} MiB "
        f"| {memory.peak:.1f} MiB |",
        "",
        "The cache itself is bounded by `POLOS_GATEWAY_CACHE_MAX_ENTRIES` and "
        "`POLOS_GATEWAY_CACHE_MAX_BYTES`; this run shows the process does not grow under a "
        "steady load once warm.",
    ]


def stage_table(stages: Sequence[tuple[str, float]]) -> list[str]:
    """Stages with their nesting (two leading spaces a level) shown as dots."""
    lines = ["| stage | share of samples |", "|---|---:|"]
    for name, share in stages:
        text = name.lstrip(" ")
        depth = (len(name) - len(text)) // 2
        lines.append(f"| {'· ' * depth}{text} | {share:.1%} |")
    return lines


def share_table(title: str, shares: Sequence[tuple[str, float]]) -> list[str]:
    lines = [f"| function ({title}) | share of samples |", "|---|---:|"]
    return lines + [f"| `{name}` | {share:.1%} |" for name, share in shares]


def profile_section(findings: Findings) -> list[str]:
    profile = findings.profile
    lines = ["## Profile", ""]
    if not isinstance(profile, Profile):
        return [*lines, f"No profile in this run: {profile}"]
    return [
        *lines,
        f"py-spy (`record --format raw --rate {PROFILE_RATE}`, idle samples excluded) on the "
        f"warm gateway while hey drives scenario A at c={HIGH} against the 0 ms upstream, in a "
        f"run of its own after the throughput run: {profile.samples} samples ({profile.summary}). "
        "py-spy pauses the process for each sample; `--nonblocking` does not, but on this "
        "2-core machine it lost about a fifth of the samples to read errors and cut two stacks "
        "in five short, which makes inclusive shares meaningless. Functions are merged across "
        "their lines. *Inclusive*: samples with the function anywhere on the stack; the "
        f"{len(profile.spine)} functions on more than {SPINE_SHARE:.0%} of stacks (the entry "
        "point, uvicorn and the event loop's runner) are left out. *Self*: samples with the "
        "function at the top of the stack, where the CPU actually was.",
        "",
        "Where the time goes, by stage (a stage is every sample with its function on the "
        "stack; indented stages are within the one above; what is left is uvicorn and "
        "httptools reading and writing the sockets, and the event loop):",
        "",
        *stage_table(profile.stages),
        "",
        *share_table("inclusive", profile.inclusive),
        "",
        *share_table("self", profile.self_share),
    ]


def transport_section(findings: Findings) -> list[str]:
    return [
        "## The upstream client's transport",
        "",
        "A GraphQL query over 100 executions becomes 100 concurrent "
        "`GET /api/v1/executions/{id}` on the gateway's one shared aiohttp session. The gateway "
        "builds each `httpx.Request` itself and hands it to httpx-aiohttp's `AiohttpTransport` "
        "(`handle_async_request`), with no `httpx.AsyncClient` in between. `bench/transport.py` "
        "measures both choices against the demo upstream in a separate process. The first table "
        "is such a round, the upstream answering after 50 ms, after one warm-up round so that "
        "connections are reused, for several client transports and pool settings (each driven "
        "through an `httpx.AsyncClient`). The second is what one upstream call made on its own "
        "costs the client's CPU, against an upstream answering at once, along three call paths: "
        "through `httpx.AsyncClient` over the aiohttp transport (how the gateway called it "
        "before), through the transport directly (how it does now), and through aiohttp alone "
        "for reference. This run "
        f"(`bench/transport.py --rounds {TRANSPORT_ROUNDS}`):",
        "",
        findings.transport,
        "",
        "httpx's own pool spends the client's core in httpcore's connection assignment, which "
        "rescans every pooled connection for every queued request; its figures vary widely from "
        "run to run, while the aiohttp transport stays near one upstream latency. The gateway "
        "uses the aiohttp transport (`c`) with "
        "`TCPConnector(limit=POLOS_GATEWAY_MAX_CONCURRENT_UPSTREAM)`; the unlimited connector "
        "(`c-unl`) has not been consistently faster across runs and would drop the cap on "
        "upstream sockets.",
        "",
        "One call at a time, `httpx.AsyncClient`'s URL merging, auth, redirect and cookie steps "
        "add CPU to every call while doing nothing for the gateway, which follows no redirects "
        "and keeps no cookies: the `client` row costs more than the `transport` row. What "
        "separates `transport` from `aiohttp` is httpx's request and response objects and the "
        "transport's translation to and from aiohttp, which the gateway keeps: httpx decodes "
        "a body sent with a content coding and names the errors, and tests inject a transport of "
        "their own. The "
        "`gateway` row is the whole upstream call as the gateway makes it, the `transport` "
        "call with the resilience, metrics and parsing around it. Rerun it "
        "alone with `.venv/bin/python bench/transport.py` "
        "(`--rounds 10 --latency-ms 50 --concurrency 100 --calls 2000 --repeats 3` by default).",
    ]


def render(
    findings: Findings,
    bench: Bench,
    scenarios: Sequence[Scenario],
    elapsed: float,
) -> str:
    """docs/benchmarks.md."""
    env_lines = [
        f"- `{target}`: "
        + (", ".join(f"`{k}={v}`" for k, v in GATEWAY_ENV[target].items()) or "defaults")
        + f" — {TARGET_MEANING[target]}"
        for target in GATEWAY_ENV
    ]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `bench/run.py`; do not edit by hand, rerun it. Compare rows of one run, "
        "not numbers across machines: the load generator, the upstream and the gateway share "
        "the machine's cores.",
        "",
        "## How to rerun",
        "",
        "```sh",
        "make bench    # installs hey (apt) and the bench extra, then runs bench/run.py",
        ".venv/bin/python bench/run.py --seconds 4 --latency-ms 5 --output-dir docs",
        ".venv/bin/python bench/run.py --skip-profile   # without py-spy",
        "```",
        "",
        "`--seconds` is the length of each timed run (default 4), `--latency-ms` the demo "
        "upstream's injected latency (default 5), `--skip-profile` skips py-spy, `--output-dir` "
        "is where `benchmarks.md` and `benchmarks.png` go (default `docs`). "
        f"This run took {elapsed / 60:.1f} minutes.",
        "",
        "## Machine",
        "",
        *[f"- {key}: {value}" for key, value in machine(findings)],
        "",
        "## Settings",
        "",
        f"- Demo upstream: `python -m gateway demo-upstream --latency-ms {bench.latency_ms:g}`, "
        "one process, one worker; a second one with `--latency-ms 0` for throughput and profile.",
        "- Rounds and single-flight: the demo app in a thread of `bench/run.py`, answering after "
        f"{RECORDING_LATENCY_MS:g} ms and noting when each execution request arrives. A cold "
        "gateway on it serves each scenario once alone (rounds: a call arriving a full latency "
        "after the first call of its round starts the next one, since only then can it depend "
        f"on that round's answers), then {BURST_SIZE} identical requests sent at once over "
        "connections opened beforehand (upstream calls: arrivals). Why so slow an upstream: "
        "issuing C's 100 upstream calls takes the gateway tens of ms of CPU; at 50-100 ms a "
        "round's last calls could leave after its first answers were back, and the last "
        "requests of a C burst sometimes reached the fetch only then, so they were not "
        "concurrent and, with nothing kept, asked again.",
        "- Gateway: `python -m gateway serve --upstream-url <upstream>`, one worker, "
        "`POLOS_GATEWAY_LOG_LEVEL=warning`, a fresh process for every (target, scenario):",
        *[f"  {line}" for line in env_lines],
        f"- `direct`: {TARGET_MEANING['direct']}.",
        f"- Load: each (scenario, target) at concurrency {' and '.join(map(str, CONCURRENCIES))}, "
        f"{bench.seconds:g} s each, closed loop, after one untimed warm-up request (for `warm` "
        "it fills the cache; for the others it only opens connections). Gateway and A/E direct "
        "rows: `hey -z <s>s -c <c> -o csv` (POST with a JSON body file for GraphQL). Direct B, C "
        "and D: this script's asyncio client on uvloop (one aiohttp session, at most "
        f"{CLIENT_CONNECTIONS} connections, like the gateway's upstream pool), timing each "
        "logical request from its first GET to its last.",
        "- Upstream calls/request: the demo's `/_demo/stats` counter after minus before a run, "
        "divided by the requests completed (hey and the client finish the requests in flight "
        "when the time is up, so the count is exact).",
        "- Latency: nearest-rank p50 and p99 of every request of the run (hey reports 0.1 ms "
        "steps); req/s: requests completed over the span from the first request's start to the "
        "last one's end; peak RSS: the gateway's `VmHWM` after both runs.",
        "",
        "## Scenarios",
        "",
        *scenario_table(scenarios),
        "",
        "## Results",
        "",
        *problems_block(findings),
        "",
        *main_table(findings),
        "",
        "hey's CSV lists only requests that got an HTTP answer; a connection error would not "
        "show there (none is expected on loopback). `direct (Python client)` rows are measured "
        "by this script's client, not by hey, and pay the client's own CPU cost on the same "
        "cores.",
        "",
        "![upstream calls per request and p50 latency per scenario and target](benchmarks.png)",
        "",
        *targets_section(evaluate_targets(findings, bench, scenarios)),
        "",
        *throughput_section(findings),
        "",
        *request_cost_section(findings),
        "",
        *rounds_section(findings),
        "",
        *memory_section(findings, bench.seconds),
        "",
        *profile_section(findings),
        "",
        *transport_section(findings),
    ]
    return "\n".join(lines) + "\n"
