"""The processes a run starts: demo upstreams and fresh gateways on free loopback ports.

``Processes`` owns every process started and stops them all when its block ends; the gateway
targets (naive, cold, warm) are the settings each gateway starts with. Also the small HTTP and
/proc readings the measurements take of those processes: upstream call counts, RSS, CPU time.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from bench.scenarios import Request

ROOT = Path(__file__).resolve().parent.parent

STARTUP_TIMEOUT = 60.0

TARGETS = ("direct", "naive", "cold", "warm")
GATEWAY_ENV: dict[str, dict[str, str]] = {
    "naive": {"POLOS_GATEWAY_BATCHING_ENABLED": "false", "POLOS_GATEWAY_CACHE_ENABLED": "false"},
    "cold": {
        "POLOS_GATEWAY_CACHE_FINAL_TTL": "0",
        "POLOS_GATEWAY_CACHE_ACTIVE_TTL": "0",
        "POLOS_GATEWAY_CACHE_NOT_FOUND_TTL": "0",
    },
    "warm": {},
}
TARGET_MEANING = {
    "direct": "the demo upstream called directly over REST, doing what a REST client would",
    "naive": "the gateway with batching and the shared cache off: one upstream call per field",
    "cold": "the gateway with every cache TTL at 0: batching and single-flight on, nothing kept",
    "warm": "the gateway with its default settings, after one warm-up request",
}


@dataclass(frozen=True)
class Server:
    """A process serving HTTP at ``url``."""

    url: str
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid


class Processes:
    """Every process the benchmark starts; leaving the ``with`` block stops those still running."""

    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self._started: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for process in reversed(self._started):
            self.stop(process)

    def start(
        self, name: str, command: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``command`` with stdout discarded and stderr in ``<logs>/<name>.log``."""
        with (self._logs / f"{name}.log").open("wb") as stderr:
            # Commands are built here from our own interpreter, tools found on PATH and numbers.
            process = subprocess.Popen(  # noqa: S603
                command, stdout=subprocess.DEVNULL, stderr=stderr, env=env, cwd=ROOT
            )
        self._started.append(process)
        return process

    def log_tail(self, name: str) -> str:
        path = self._logs / f"{name}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    @staticmethod
    def stop(process: subprocess.Popen[bytes]) -> None:
        """Stop one process we started, killing it if it does not exit in time."""
        if process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_call(request: Request, timeout: float = 60.0) -> tuple[int, bytes]:
    """Send one request on a fresh connection; return (status, body)."""
    parts = urlsplit(request.url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout)
    try:
        headers = {"Content-Type": "application/json"} if request.body is not None else {}
        connection.request(request.method, request.target, body=request.body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_until_serving(procs: Processes, name: str, server: Server, path: str) -> None:
    """Poll ``path`` until it answers 200 (a benchmark may poll); fail if the process dies."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{name} exited at start:\n{procs.log_tail(name)}")
        try:
            if http_call(Request("GET", server.url + path), timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not serve {path} within {STARTUP_TIMEOUT:g} s")


def start_upstream(procs: Processes, latency_ms: float) -> Server:
    """A demo upstream process answering after ``latency_ms``."""
    port = free_port()
    name = f"upstream-{latency_ms:g}ms"
    command = [sys.executable, "-m", "gateway", "demo-upstream", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--latency-ms", f"{latency_ms:g}"]
    server = Server(f"http://127.0.0.1:{port}", procs.start(name, command))
    wait_until_serving(procs, name, server, "/health")
    return server


def start_gateway(procs: Processes, name: str, upstream: str, target: str) -> Server:
    """A fresh one-worker gateway on ``upstream`` with the settings of ``target``."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("POLOS_GATEWAY_")}
    env.update({"POLOS_GATEWAY_LOG_LEVEL": "warning", **GATEWAY_ENV[target]})
    command = [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--upstream-url", upstream]
    server = Server(f"http://127.0.0.1:{port}", procs.start(name, command, env))
    wait_until_serving(procs, name, server, "/healthz")
    return server


def start_floors(procs: Processes, upstream: str) -> Server:
    """The floors (bench/floors.py: a bare pass-through, bare Strawberry) in front of
    ``upstream``, one process serving both."""
    port = free_port()
    name = f"floors-{port}"
    command = [sys.executable, str(ROOT / "bench" / "floors.py"), "--port", str(port)]
    command += ["--upstream-url", upstream]
    server = Server(f"http://127.0.0.1:{port}", procs.start(name, command))
    wait_until_serving(procs, name, server, "/health")
    return server


def upstream_count(upstream: str) -> int:
    """Execution requests the demo upstream has answered so far."""
    status, body = http_call(Request("GET", f"{upstream}/_demo/stats"))
    if status != 200:
        raise RuntimeError(f"/_demo/stats answered {status}")
    count: int = json.loads(body)["execution_requests"]
    return count


def proc_status_mib(pid: int, key: str) -> float:
    """``VmHWM`` or ``VmRSS`` of a process from /proc, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no {key}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
