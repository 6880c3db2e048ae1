"""What a run ran on and alongside: the machine, the gateway's code, other processes' CPU.

The doc names the gateway's commit, warns if its source changed during the run, and warns if
other processes took more than a small share of the machine while it measured.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from bench.findings import Findings
from bench.processes import ROOT

OTHER_LOAD_LIMIT = 0.05  # share of the machine other processes may use before the doc warns


@dataclass(frozen=True)
class CpuSnapshot:
    """Machine-wide busy CPU seconds, and those of this script and its finished children."""

    busy: float
    ours: float


def cpu_snapshot() -> CpuSnapshot:
    """From /proc/stat (user, nice, system, idle, iowait, irq, softirq, steal) and os.times()."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    own = os.times()
    return CpuSnapshot(busy, own.user + own.system + own.children_user + own.children_system)


def gateway_revision() -> str:
    """The commit the gateway code was measured at, and whether gateway/ had changes on top."""
    git = shutil.which("git")
    if git is None:
        return "unknown (no git)"
    # Read-only queries of the repository this script sits in.
    head = subprocess.run(  # noqa: S603
        [git, "rev-parse", "--short", "HEAD"], capture_output=True, check=False, cwd=ROOT
    )
    dirty = subprocess.run(  # noqa: S603
        [git, "status", "--porcelain", "--", "gateway"], capture_output=True, check=False, cwd=ROOT
    )
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    changes = " with uncommitted changes in gateway/" if dirty.stdout.strip() else ""
    return f"commit {head.stdout.decode().strip()}{changes}"


def gateway_fingerprint() -> str:
    """A hash of the gateway's source, to notice it changing under a run."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def machine(findings: Findings) -> list[tuple[str, str]]:
    """What the run ran on, from /proc and the interpreter."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    meminfo = Path("/proc/meminfo").read_text()
    total = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.MULTILINE)
    return [
        ("cores", str(os.cpu_count())),
        ("CPU", model.group(1).strip() if model else platform.processor() or "unknown"),
        ("memory", f"{int(total.group(1)) / 2**20:.1f} GiB" if total else "unknown"),
        ("OS", f"{platform.system()} {platform.release()} {platform.machine()}"),
        ("Python", platform.python_version()),
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("gateway code", findings.revision),
        (
            "other load",
            f"{findings.others_cpu:.0f} CPU-seconds used by processes other than the benchmark's "
            f"during the run ({findings.others_share:.1%} of the machine)",
        ),
        (
            "packages",
            ", ".join(
                f"{name} {version(name)}"
                for name in ("strawberry-graphql", "fastapi", "uvicorn", "aiohttp", "uvloop")
            ),
        ),
    ]


def note_other_load(
    findings: Findings, before: CpuSnapshot, after: CpuSnapshot, elapsed: float
) -> None:
    """How much CPU the rest of the machine took while we measured; warn when it is much."""
    others = max(0.0, (after.busy - before.busy) - (after.ours - before.ours))
    findings.others_cpu = others
    findings.others_share = others / (elapsed * (os.cpu_count() or 1))
    if findings.others_share > OTHER_LOAD_LIMIT:
        findings.problems.append(
            f"other processes used {others:.0f} CPU-seconds during the run "
            f"({findings.others_share:.0%} of the machine): the timings are disturbed, rerun it "
            "on a quiet machine"
        )
