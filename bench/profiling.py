"""A py-spy profile of the warm gateway under load, reduced to shares of functions and stages.

py-spy records raw collapsed stacks while hey drives warm A; the stacks become inclusive and
self shares per function (the spine every stack shares left out) and shares per request stage.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.findings import HIGH, Bench, Profile
from bench.load import hey_command
from bench.processes import Server
from bench.scenarios import Request

PROFILE_RATE = 200
PROFILE_TOP = 12
SPINE_SHARE = 0.99
# Where a warm GraphQL request's time goes: a stage is every sample with its function on the
# stack (functions do not recurse, so each sample counts once per stage; stages nest).
PROFILE_STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("the app, after uvicorn parsed the request (middlewares, routes)", ("FastAPI.__call__ (",)),
    (
        "  a kept answer, looked for before Strawberry's view",
        ("GatewayGraphQLRouter.answer_kept (",),
    ),
    ("  the GraphQL operation (Strawberry's `Schema.execute`)", ("Schema.execute (",)),
    ("    graphql-core resolving and completing the fields", ("Schema._execute_operation (",)),
    ("    parse, validation and limits (cached documents)", ("Schema._prepare_operation_async (",)),
    ("  reading and checking the JSON body", ("GatewayGraphQLRouter.parse_http_body (",)),
    ("  the request's context: credentials and loader", ("get_context (gateway/",)),
    ("  sending the answer through the middlewares", ("Response.__call__ (",)),
    (
        "the loader: batches and fetches (cache lookups, cached bodies parsed)",
        ("ExecutionLoader.batch_load_fn (", "ExecutionFetcher.fetch ("),
    ),
)


def find_py_spy() -> str | None:
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return shutil.which("py-spy", path=search)


def run_profile(bench: Bench, server: Server, request: Request) -> Profile | str:
    """py-spy on the gateway while hey drives warm A at c=32; a str says why it failed."""
    py_spy = find_py_spy()
    if py_spy is None:
        return "py-spy is not installed (`pip install -e '.[bench]'`)"
    seconds = max(1, round(bench.seconds))
    output = bench.work / "profile.txt"
    load = hey_command(bench.hey, request, HIGH, seconds + 2, bench.work)
    hey = bench.procs.start("hey-profile", load)
    try:
        time.sleep(0.5)
        command = [py_spy, "record", "--format", "raw", "--duration", str(seconds)]
        command += ["--rate", str(PROFILE_RATE), "--pid", str(server.pid)]
        # Not --nonblocking: on a busy 2-core machine it read a fifth of the samples with errors
        # and cut two stacks in five short, which leaves inclusive shares meaningless.
        command += ["--output", str(output)]
        result = subprocess.run(  # noqa: S603
            command, capture_output=True, check=False, timeout=seconds + 60
        )
    finally:
        bench.procs.stop(hey)
    messages = (result.stdout + result.stderr).decode(errors="replace")
    if result.returncode != 0 or not output.exists():
        return f"py-spy failed (exit {result.returncode}): {messages.strip()[-600:]}"
    summary = re.search(r"Samples: \d+ Errors: \d+", messages)
    return parse_profile(output.read_text(), summary.group(0) if summary else "")


def frame_function(frame: str) -> str:
    """``name (file.py:12)`` -> ``name (file.py)``: one entry per function, whatever the line."""
    return re.sub(r":\d+\)$", ")", frame.strip())


def parse_profile(text: str, summary: str) -> Profile:
    """Collapsed stacks (``frame;frame;... count``) -> top functions by inclusive and self share."""
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    staged: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [frame_function(frame) for frame in stack.split(";")]
        total += int(count)
        leaf[frames[-1]] += int(count)
        for name in set(frames):
            inclusive[name] += int(count)
        for stage, functions in PROFILE_STAGES:
            if any(frame.startswith(functions) for frame in frames):
                staged[stage] += int(count)
    if total == 0:
        return Profile(0, summary, [], [], [])
    spine = [name for name, count in inclusive.most_common() if count / total >= SPINE_SHARE]
    top = [(name, count / total) for name, count in inclusive.most_common() if name not in spine]
    own = [(name, count / total) for name, count in leaf.most_common(PROFILE_TOP)]
    stages = [(stage, staged[stage] / total) for stage, _ in PROFILE_STAGES]
    return Profile(total, summary, top[:PROFILE_TOP], own, spine, stages)
