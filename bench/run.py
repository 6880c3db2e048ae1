"""Benchmark the gateway against the demo upstream and rewrite ``docs/benchmarks.md`` and its chart.

Everything runs as real processes on 127.0.0.1 (free ports): the demo upstream
(``python -m gateway demo-upstream --latency-ms 5``), a second demo upstream answering at once
(``--latency-ms 0``), and a FRESH gateway (``python -m gateway serve``, one worker) for every
(target, scenario), so no run inherits another's cache, connections or memory. To count upstream
rounds exactly, the demo app also runs in a thread of this script at 250 ms, noting when each
execution request arrives.

Scenarios (ids from ``gateway.demo.data``):

* A: one completed root execution with every ``Execution`` field of ``schema.graphql``
* B: a leaf five levels down with its parent and root
* C: ``executions(ids)`` over 100 fan-out leaves, each with parent and root
* D: ``ancestors(limit: 50)`` of the tail of the 60-deep chain
* E: the REST route ``GET /api/v1/executions/{id}`` for one id

Targets:

* ``direct``: the upstream itself, doing what a REST client would (A and E: one GET, driven
  by ``hey``; B, C, D: the GETs a REST client needs, driven by a small closed-loop asyncio
  client in this script, so those rows are measured by the Python client, not by ``hey``)
* ``naive``: the gateway with batching and the shared cache off (one upstream call per field)
* ``cold``: the gateway with every cache TTL at 0 (batching and single-flight on, nothing kept)
* ``warm``: the gateway with its default settings, after one warm-up request

For each it runs ``hey`` (or the Python client) at concurrency 1 and 32 for ``--seconds`` and
reports upstream calls per request (from the demo's ``/_demo/stats``), p50/p99 latency, req/s
and the gateway's peak RSS. Then: throughput per gateway worker against the 0 ms upstream,
the cold gateway's CPU time per request of A and E one at a time (where the overhead goes),
beside the floors' (``bench/floors.py``: a bare pass-through for E, bare Strawberry for A),
alternating rounds of the targets the overhead targets compare (``bench/paired.py``),
a py-spy profile of the warm gateway, a long run that watches the gateway's memory, single-flight
bursts and upstream round counts, and ``bench/transport.py --rounds 5``. It checks each target
of the performance issue against the figures and writes everything to ``docs/benchmarks.md``
and ``docs/benchmarks.png``.

hey sees only status codes, and GraphQL reports errors inside 200 answers; so after each gateway
run at concurrency c the script sends c identical requests at once and checks every answer. The
doc warns loudly about any non-2xx or incomplete answer, about other processes taking more than
5% of the machine's CPU during the run, and about the gateway's source changing under it.

Rerun it from the repository root::

    make bench                                     # installs hey and the bench extra, then runs
    .venv/bin/python bench/run.py                  # --seconds 4 --latency-ms 5
    .venv/bin/python bench/run.py --seconds 10 --skip-profile --output-dir /tmp/bench

About five minutes at the defaults. The load generator, the upstream and the gateway share the
machine's cores: compare rows of one run, not numbers across machines.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

# Run as a script, Python puts bench/ on the path, not the repository root the package sits in.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bursts import RECORDING_LATENCY_MS, measure_rounds_and_bursts
from bench.chart import write_chart
from bench.environment import cpu_snapshot, gateway_fingerprint, gateway_revision, note_other_load
from bench.findings import PAIRED_ROUNDS, Bench, Findings, log
from bench.memory import measure_memory
from bench.paired import measure_paired
from bench.processes import ROOT, TARGETS, Processes, start_upstream
from bench.report import TRANSPORT_ROUNDS, render
from bench.scenarios import Scenario, build_scenarios
from bench.timed_runs import measure_direct, measure_fast_cold, measure_fast_warm, measure_gateway


def run_transport() -> str:
    """``bench/transport.py --rounds 5``'s printed table (or why there is none)."""
    command = [sys.executable, str(ROOT / "bench" / "transport.py"), "--rounds"]
    result = subprocess.run(  # noqa: S603
        [*command, str(TRANSPORT_ROUNDS)], capture_output=True, check=False, cwd=ROOT, timeout=600
    )
    table = result.stdout.decode(errors="replace").strip()
    if result.returncode != 0:
        table += f"\n\n**bench/transport.py exited with status {result.returncode}**"
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--seconds", type=float, default=4.0, help="length of each timed run (default 4)"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=5.0, help="demo upstream latency (default 5)"
    )
    parser.add_argument("--skip-profile", action="store_true", help="do not run py-spy")
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=ROOT / "docs",
        help="where benchmarks.md and benchmarks.png go (default docs/)",
    )
    return parser


def measure_all(bench: Bench, scenarios: Sequence[Scenario], profile: bool) -> None:
    """Every measurement, in order; the caller owns the processes."""
    findings = bench.findings
    for scenario in scenarios:
        log(f"direct {scenario.key}")
        findings.rows.append(measure_direct(bench, scenario))
    for target in ("naive", "cold", "warm"):
        for scenario in scenarios:
            log(f"{target} {scenario.key}")
            findings.rows.append(measure_gateway(bench, scenario, target))
    findings.rows.sort(key=lambda r: (r.scenario.key, TARGETS.index(r.target)))
    log(f"alternating rounds for the overhead targets ({PAIRED_ROUNDS} rounds)")
    measure_paired(bench, scenarios)
    log(f"rounds and single-flight bursts (recording upstream at {RECORDING_LATENCY_MS:g} ms)")
    measure_rounds_and_bursts(bench, scenarios)
    log("throughput per core and profile (upstream at 0 ms)")
    measure_fast_cold(bench, scenarios)
    measure_fast_warm(bench, scenarios[0], profile)
    log("memory stability")
    findings.memory = measure_memory(bench, next(s for s in scenarios if s.key == "C"))


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.seconds <= 0 or args.latency_ms < 0:
        print("--seconds must be positive and --latency-ms not negative", file=sys.stderr)
        return 2
    hey = shutil.which("hey")
    if hey is None:
        print("hey is not installed: apt-get install hey (or run `make bench`)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    scenarios = build_scenarios((ROOT / "schema.graphql").read_text())
    findings = Findings(revision=gateway_revision())
    fingerprint = gateway_fingerprint()
    cpu_before = cpu_snapshot()
    with tempfile.TemporaryDirectory(prefix="polos-bench-") as scratch:
        work = Path(scratch)
        with Processes(work) as procs:
            bench = Bench(
                seconds=args.seconds,
                latency_ms=args.latency_ms,
                hey=hey,
                procs=procs,
                upstream=start_upstream(procs, args.latency_ms),
                fast_upstream=start_upstream(procs, 0),
                work=work,
                findings=findings,
            )
            measure_all(bench, scenarios, profile=not args.skip_profile)
    log("transport (bench/transport.py)")
    findings.transport = run_transport()
    if gateway_fingerprint() != fingerprint:
        findings.problems.append("the gateway's source changed during the run: rerun it")
    note_other_load(findings, cpu_before, cpu_snapshot(), time.monotonic() - started)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    subtitle = (
        f"demo upstream answering after {args.latency_ms:g} ms; one gateway worker; "
        f"{args.seconds:g} s per run; {datetime.now(UTC):%Y-%m-%d}"
    )
    write_chart(findings, scenarios, subtitle, args.output_dir / "benchmarks.png")
    text = render(findings, bench, scenarios, time.monotonic() - started)
    (args.output_dir / "benchmarks.md").write_text(text)
    log(
        f"wrote {args.output_dir / 'benchmarks.md'} and benchmarks.png in "
        f"{time.monotonic() - started:.0f} s"
    )
    for problem in findings.problems:
        log(f"WARNING: {problem}")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        print("interrupted: every process it started has been stopped", file=sys.stderr)
        raise SystemExit(130) from None
