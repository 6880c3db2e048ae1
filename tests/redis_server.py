"""A real ``redis-server`` on a free loopback port, started and stopped by the tests."""

from __future__ import annotations

import queue
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from tests.servers import closed_port_url

READY = "Ready to accept connections"
START_DEADLINE = 30


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


@contextmanager
def redis_server(port: int | None = None) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Start ``redis-server`` without persistence; yield its URL once it accepts connections.

    ``make test`` installs redis-server when it is missing; without it this fails loudly.
    """
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed (make test installs it)"
    port = port or int(closed_port_url().rsplit(":", 1)[1])
    command = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        assert process.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
        try:
            while True:
                line = lines.get(timeout=START_DEADLINE)
                assert line is not None, "redis-server exited before it was ready"
                if READY in line:
                    break
            yield f"redis://127.0.0.1:{port}/0", process
        finally:
            process.kill()
            process.wait(timeout=10)
