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
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.servers import closed_port_url

ROOT = Path(__file__).parent.parent
READY_LINE = "Uvicorn running on"
STARTED_LINE = "Application startup complete"
START_DEADLINE = 60


def free_port() -> int:
    return int(closed_port_url().rsplit(":", 1)[1])


@dataclass
class Process:
    """A started ``python -m gateway`` and every line it has printed so far."""

    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _arrived: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def next_line(self) -> str | None:
        """The next line printed, None once the output ended; fails after START_DEADLINE."""
        line = self._arrived.get(timeout=START_DEADLINE)
        if line is not None:
            self.lines.append(line)
        return line

    def wait_for_line(self, text: str) -> str:
        """Read output up to and including the first line containing ``text``."""
        for seen in self.lines:
            if text in seen:
                return seen
        while True:
            line = self.next_line()
            assert line is not None, f"exited without printing {text!r}:\n" + "".join(self.lines)
            if text in line:
                return line


@contextmanager
def running(
    *args: str, port: int, workers: int = 1, env: dict[str, str] | None = None
) -> Iterator[list[str]]:
    """Run ``python -m gateway ARGS`` until it serves on ``port``; yield the lines it prints.

    Serving means uvicorn announced the port and every worker finished starting up. A process
    that never gets there fails the test after START_DEADLINE seconds instead of hanging it.
    """
    with started(*args, port=port, workers=workers, env=env) as process:
        yield process.lines


@contextmanager
def started(
    *args: str, port: int, workers: int = 1, env: dict[str, str] | None = None
) -> Iterator[Process]:
    """``running``, yielding the process itself; it gets SIGTERM at the end if still alive."""
    announced = f"{READY_LINE} http://127.0.0.1:{port}"

    def ready(lines: list[str]) -> bool:
        started = sum(STARTED_LINE in line for line in lines)
        return any(announced in line for line in lines) and started >= workers

    with subprocess.Popen(
        [sys.executable, "-m", "gateway", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    ) as popen:
        assert popen.stdout is not None
        process = Process(popen)

        def pump(stream: IO[str]) -> None:
            for line in stream:  # also keeps a full pipe from blocking the server's logging
                process._arrived.put(line)
            process._arrived.put(None)

        threading.Thread(target=pump, args=(popen.stdout,), daemon=True).start()
        try:
            while not ready(process.lines):
                line = process.next_line()
                assert line is not None, "exited before serving:\n" + "".join(process.lines)
            yield process
        finally:
            if popen.poll() is None:
                popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                popen.kill()
                raise
