"""``docs/benchmarks.png``: upstream calls per request and p50 latency per scenario and target.

Two log-scale bar charts at concurrency 1; matplotlib is imported only when the chart is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.findings import Findings, Row
from bench.processes import TARGETS
from bench.scenarios import Scenario
from bench.targets import number


def calls_at_1(row: Row) -> float:
    return row.calls[1]


def p50_at_1(row: Row) -> float:
    return row.loads[1].percentile_ms(50)


def write_chart(
    findings: Findings, scenarios: Sequence[Scenario], subtitle: str, path: Path
) -> None:
    """Two log-scale bar charts: upstream calls per request and p50 at c=1, per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(14, 5.5))
    panels: tuple[tuple[Any, str, Callable[[Row], float]], ...] = (
        (axes[0], "upstream calls per request (c=1, log scale)", calls_at_1),
        (axes[1], "p50 latency at c=1, ms (log scale)", p50_at_1),
    )
    width = 0.2
    for axis, title, value in panels:
        values = [[value(findings.row(s.key, t)) for s in scenarios] for t in TARGETS]
        positive = [v for row in values for v in row if v > 0]
        floor = min(positive, default=1.0) / 3
        for index, (target, row) in enumerate(zip(TARGETS, values, strict=True)):
            xs = [x + (index - (len(TARGETS) - 1) / 2) * width for x in range(len(scenarios))]
            legend = "direct (B, C, D: Python client)" if target == "direct" else target
            axis.bar(xs, [v if v > 0 else math.nan for v in row], width, label=legend)
            for x, v in zip(xs, row, strict=True):
                label = number(v) if "calls" in title else f"{v:.1f}"
                axis.annotate(
                    label,
                    (x, max(v, floor)),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    rotation=90,
                )
        axis.set_yscale("log")
        axis.set_ylim(floor, max(positive, default=1.0) * 8)
        axis.set_xticks(range(len(scenarios)), [s.label for s in scenarios])
        axis.tick_params(axis="x", labelsize=8)
        axis.set_title(title)
        axis.legend(fontsize=8, loc="upper left")
    figure.suptitle(subtitle, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
