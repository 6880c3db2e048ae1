"""What one run measures, and the helpers every measurement shares.

``Findings`` collects rows, rounds, bursts, throughput, memory, profile and problems; ``Bench``
carries the options, tools, upstreams and scratch folder each measurement needs. The helpers
count upstream calls around a load, warm a target up and print progress.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.load import Load
from bench.processes import Processes, Server, http_call, upstream_count
from bench.scenarios import Request, Scenario, answer_problem

CONCURRENCIES = (1, 32)
HIGH = CONCURRENCIES[-1]
# The alternating rounds (bench/paired.py): how many, and the labels beside scenario keys.
PAIRED_ROUNDS = 5
DIRECT = "direct"
# The floors (bench/floors.py) by the scenario whose request they answer: the stack alone.
FLOORS = {"A": "bare Strawberry", "E": "bare pass-through"}


def log(message: str) -> None:
    """Progress on stdout, so `make bench` shows where it is."""
    print(message, flush=True)


@dataclass
class Row:
    """One (scenario, target): a load per concurrency and upstream calls per request."""

    scenario: Scenario
    target: str
    tool: str
    loads: dict[int, Load]
    calls: dict[int, float]
    peak_rss_mib: float | None = None
    flagged: bool = False  # non-2xx answers, or incomplete ones in the check after a run


@dataclass(frozen=True)
class Throughput:
    """Scenario A at concurrency 32 against the 0 ms upstream, one gateway worker."""

    target: str
    load: Load
    calls: float
    cpu: float  # gateway CPU seconds during the run

    @property
    def per_cpu_second(self) -> float:
        return self.load.completed / self.cpu if self.cpu > 0 else math.nan


@dataclass(frozen=True)
class RequestCost:
    """One cold scenario at concurrency 1 against the 0 ms upstream: the serving process's CPU
    time per request (the gateway's, or a floor's), which at c=1 (nothing queued) is what it
    adds to each request's latency, beside one more loopback hop."""

    key: str  # the scenario
    load: Load
    calls: float
    cpu: float  # the serving process's CPU seconds during the run

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.cpu / self.load.completed if self.load.completed else math.nan


@dataclass(frozen=True)
class Rounds:
    """Alternating rounds (bench/paired.py): one load per round for each label (``direct``,
    a scenario key, a floor of ``FLOORS``)."""

    target: str  # the gateway's: cold or warm
    concurrency: int
    seconds: float
    loads: dict[str, list[Load]]

    def median_ms(self, label: str, percent: float) -> float:
        return _median([load.percentile_ms(percent) for load in self.loads[label]])

    def differences_ms(self, label: str, percent: float) -> list[float]:
        """Each round's ``label`` percentile minus the upstream's, in round order; a round
        where either run completed nothing is left out (``note_failures`` reports it)."""
        differences = (
            load.percentile_ms(percent) - direct.percentile_ms(percent)
            for load, direct in zip(self.loads[label], self.loads[DIRECT], strict=True)
        )
        return [d for d in differences if not math.isnan(d)]

    def median_difference_ms(self, label: str, percent: float) -> float:
        """The median round's difference (``differences_ms``); NaN when no round counts."""
        return _median(self.differences_ms(label, percent))


def _median(values: list[float]) -> float:
    """The median of the numbers that are not NaN; NaN when there are none."""
    numbers = [v for v in values if not math.isnan(v)]
    return statistics.median(numbers) if numbers else math.nan


@dataclass(frozen=True)
class Memory:
    """The warm gateway's RSS over a long run of scenario C."""

    samples: tuple[tuple[float, float], ...]  # (seconds since start, VmRSS MiB)
    warmup_seconds: float
    end: float
    peak: float
    load: Load
    calls: float

    @property
    def measured(self) -> list[float]:
        """VmRSS from the end of the warm-up on, in order."""
        return [rss for at, rss in self.samples if at >= self.warmup_seconds]

    @property
    def after_warmup(self) -> float:
        return self.measured[0] if self.measured else math.nan

    @property
    def half_peaks(self) -> tuple[float, float]:
        """The highest VmRSS in the first and in the second half of the samples after warm-up.

        RSS steps up and down by a MiB or more as the allocator takes and gives back memory,
        so two single samples can differ by a few MiB either way in a process that holds
        steady; one that keeps growing raises its highest value from one half to the next.
        """
        measured = self.measured
        middle = len(measured) // 2
        return max(measured[:middle], default=math.nan), max(measured[middle:], default=math.nan)


@dataclass(frozen=True)
class Profile:
    """py-spy samples of the warm gateway: shares of functions, inclusive and self."""

    samples: int
    summary: str
    inclusive: list[tuple[str, float]]
    self_share: list[tuple[str, float]]
    spine: list[str]
    stages: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class Findings:
    """Everything one run measured."""

    rows: list[Row] = field(default_factory=list)
    rounds: dict[str, int] = field(default_factory=dict)  # scenario key -> upstream rounds
    bursts: dict[str, int] = field(default_factory=dict)  # scenario key -> upstream calls
    throughput: list[Throughput] = field(default_factory=list)
    request_costs: list[RequestCost] = field(default_factory=list)
    floor_costs: list[RequestCost] = field(default_factory=list)  # FLOORS, like request_costs
    cold_rounds: Rounds | None = None  # c=1: direct, cold A and E, the floors
    warm_rounds: Rounds | None = None  # c=32: direct, warm A and E
    memory: Memory | None = None
    profile: Profile | str | None = None  # a str says why there is none
    transport: str = ""
    problems: list[str] = field(default_factory=list)
    revision: str = ""  # the gateway code's commit when the run started
    others_cpu: float = 0.0  # CPU seconds other processes on the machine used during the run
    others_share: float = 0.0  # the same, as a share of the machine's capacity

    def row(self, key: str, target: str) -> Row:
        return next(r for r in self.rows if r.scenario.key == key and r.target == target)


@dataclass(frozen=True)
class Bench:
    """What every measurement needs: options, tools, the upstreams and a scratch folder."""

    seconds: float
    latency_ms: float
    hey: str
    procs: Processes
    upstream: Server
    fast_upstream: Server
    work: Path
    findings: Findings


def counted(bench: Bench, upstream: Server, run: Callable[[], Load]) -> tuple[Load, float]:
    """Run a load and count the upstream calls it caused, per completed request."""
    before = upstream_count(upstream.url)
    load = run()
    calls = upstream_count(upstream.url) - before
    return load, calls / load.completed if load.completed else math.nan


def note_failures(bench: Bench, label: str, load: Load) -> None:
    if load.failures:
        bench.findings.problems.append(f"{load.failures} non-2xx responses in {label}")
    if not load.completed:
        bench.findings.problems.append(f"no request completed in {label}")


def warm_up(bench: Bench, label: str, scenario: Scenario, request: Request) -> None:
    """One untimed request; a wrong answer is recorded as a problem."""
    status, body = http_call(request)
    problem = answer_problem(scenario, request.body is not None, status, body)
    if problem:
        bench.findings.problems.append(f"{label}: {problem}")


def report_load(label: str, load: Load, calls: float) -> None:
    log(
        f"  {label:<22} p50 {load.percentile_ms(50):7.1f} ms  p99 {load.percentile_ms(99):7.1f} ms"
        f"  {load.rps:8.1f} req/s  {calls:8.3f} upstream calls/request"
    )
