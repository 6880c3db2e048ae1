"""The gateway's command as real processes: started, awaited without sleeps, stopped."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from tests.servers import closed_port_url

ROOT = Path(__file__).parent.parent
READY_LINE = "Uvicorn running on"
STARTED_LINE = "Application startup complete"
START_DEADLINE = 60


def free_port() -> int:
    return int(closed_port_url().rsplit(":", 1)[1])


@contextmanager
def running(
    *args: str, port: int, workers: int = 1, env: dict[str, str] | None = None
) -> Iterator[list[str]]:
    """Run ``python -m gateway ARGS`` until it serves on ``port``; yield the lines it prints.

    Serving means uvicorn announced the port and every worker finished starting up. A process
    that never gets there fails the test after START_DEADLINE seconds instead of hanging it.
    """
    announced = f"{READY_LINE} http://127.0.0.1:{port}"
    lines: list[str] = []
    arrived: queue.Queue[str | None] = queue.Queue()

    def ready() -> bool:
        started = sum(STARTED_LINE in line for line in lines)
        return any(announced in line for line in lines) and started >= workers

    def pump(stream: IO[str]) -> None:
        for line in stream:  # also keeps a full pipe from blocking the server's logging
            arrived.put(line)
        arrived.put(None)

    with subprocess.Popen(
        [sys.executable, "-m", "gateway", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    ) as process:
        assert process.stdout is not None
        threading.Thread(target=pump, args=(process.stdout,), daemon=True).start()
        try:
            while not ready():
                line = arrived.get(timeout=START_DEADLINE)
                assert line is not None, "exited before serving:\n" + "".join(lines)
                lines.append(line)
            yield lines
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                raise
