"""The benchmark's memory verdict: steady RSS that steps up and down passes, growth fails.

RSS moves by a MiB or more as the allocator takes and gives back memory; a verdict on two
single samples (the first after warm-up, the last) failed a steady process whose first sample
fell in a trough. The verdict compares the highest sample of each half after warm-up.
"""

from __future__ import annotations

from bench.findings import Findings, Memory
from bench.load import Load
from bench.memory import MEMORY_TOLERANCE_MIB
from bench.targets import check_memory

WARMUP = 32.0


def _memory(rss: list[float]) -> Memory:
    """Samples every 0.25 s from the start of the warm-up; ``rss`` after it."""
    warming = [(at / 4, 80.0) for at in range(int(WARMUP * 4))]
    measured = [(WARMUP + at / 4, value) for at, value in enumerate(rss)]
    load = Load(latencies=(0.01,), failures=0, duration=1.0)
    return Memory(tuple(warming + measured), WARMUP, rss[-1], max(rss), load, 0.0)


def _verdict(rss: list[float]) -> bool | None:
    return check_memory(Findings(memory=_memory(rss))).met


def test_steady_rss_that_steps_up_and_down_is_no_growth() -> None:
    # A trough first, a step up at the end: +3.5 MiB between those two samples alone.
    steady = [132.5] + [134.0, 136.0, 133.5, 134.5] * 16 + [136.0]

    assert steady[-1] - steady[0] > MEMORY_TOLERANCE_MIB
    assert _verdict(steady) is True


def test_rss_that_keeps_rising_is_growth() -> None:
    rising = [130.0 + index * 0.1 for index in range(64)]

    assert _verdict(rising) is False


def test_the_halves_peaks_come_from_after_the_warm_up_only() -> None:
    memory = _memory([100.0, 101.0, 102.0, 103.0])

    assert memory.after_warmup == 100.0
    assert memory.half_peaks == (101.0, 103.0)
