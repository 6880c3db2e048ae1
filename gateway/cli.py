"""The ``polos-gateway`` command.

Usage::

    polos-gateway serve [--host 127.0.0.1] [--port 8000] [--upstream-url URL] [--demo] [--workers N]
    polos-gateway export-schema > schema.graphql
    polos-gateway demo-upstream [--port 9000] [--api-key KEY] [--unknown-status 500]

Every ``serve`` option is also a ``POLOS_GATEWAY_*`` variable; an option given here wins.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

import uvicorn
from pydantic import ValidationError

from gateway.access_log import configure_logging
from gateway.app import create_app, freeze_startup_heap
from gateway.demo.data import SAMPLES
from gateway.demo.faults import ALL_KINDS, FaultConfig, parse_kinds
from gateway.demo.upstream import (
    Demo,
    DemoOptions,
    create_demo_app,
    create_faulty_demo_app,
    demo_app,
)
from gateway.graphiql import SAMPLE_QUERY
from gateway.metrics import MULTIPROC_DIR_VARIABLE
from gateway.schema import build_schema
from gateway.settings import Settings


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening socket; port 0 picks a free one.

    Connections made before the server's loop starts wait in the backlog, so nobody has to
    poll for the server to come up.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _start_demo_in_thread() -> tuple[str, Demo]:
    """Serve the demo upstream on a free loopback port in a daemon thread; return its URL
    and the demo itself, whose fresh live runs the explorer can offer."""
    sock = listening_socket("127.0.0.1", 0)
    demo = Demo()
    # No log config of its own: the gateway's server configures logging for the process.
    config = uvicorn.Config(demo_app(demo), log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    return f"http://127.0.0.1:{sock.getsockname()[1]}", demo


def _print_demo_banner(gateway_url: str, upstream_url: str, *, fresh_samples: bool) -> None:
    samples = SAMPLES
    lines = [
        f"Demo upstream (a Polos look-alike) at {upstream_url}",
        f"GraphiQL at {gateway_url}/graphql - sample execution ids:",
        *(f"  {execution_id}  {label}" for label, execution_id in samples.items()),
        'GraphiQL opens on this query; paste it anywhere with variables {"id": "<an id>"}:',
        SAMPLE_QUERY,
        f"REST, as the orchestrator serves it: {gateway_url}/api/v1/executions/<id>",
    ]
    if fresh_samples:
        lines.append(f"Explorer at {gateway_url}/explorer - each load offers unstarted live runs")
    print("\n".join(lines), flush=True)


def own_origins(host: str, port: int) -> list[str]:
    """The origins a browser gives the gateway's own pages (the explorer, GraphiQL) when it
    serves on ``host:port``: ``--demo`` allows them for CORS unless origins are configured."""
    if host in {"127.0.0.1", "localhost", "0.0.0.0", "::", "::1"}:  # noqa: S104 - compared, not bound
        return [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]
    return [f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"]


def _exit_after_stopping(signum: int, frame: FrameType | None) -> NoReturn:
    """SIGTERM is the ordinary way to stop the gateway: exit 0 once it has stopped.

    uvicorn handles SIGTERM itself while it serves (stop accepting, let in-flight requests
    finish for ``shutdown_timeout`` seconds, run the lifespan's shutdown), then restores this
    handler and raises the signal again; without it the process would die of the signal.
    """
    raise SystemExit(0)


def _serve(args: argparse.Namespace) -> int:
    overrides = {
        name: value
        for name, value in (
            ("host", args.host),
            ("port", args.port),
            ("workers", args.workers),
            ("upstream_url", args.upstream_url),
        )
        if value is not None
    }
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        # Without the offending values: a URL may carry a password.
        problems = (
            f"  {'.'.join(str(p) for p in error['loc']) or 'settings'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        print("polos-gateway: invalid settings:\n" + "\n".join(problems), file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    live_samples: Callable[[], Mapping[str, str]] | None = None
    if args.demo or settings.upstream_url is None:
        if not args.demo:
            logging.getLogger("gateway").warning(
                "no upstream configured (POLOS_GATEWAY_UPSTREAM_URL): serving the DEMO data"
            )
        upstream_url, demo = _start_demo_in_thread()
        # The explorer lists the demo's samples unless samples of its own were configured: with
        # one process, asked afresh on each load (new runs of the live trees); workers are other
        # processes, where the demo's state is out of reach, so they list the seeded ids.
        if not settings.explorer_samples and settings.workers == 1:
            live_samples = demo.samples
        samples = settings.explorer_samples or dict(SAMPLES)
        settings = settings.model_copy(
            update={"upstream_url": upstream_url, "explorer_samples": samples}
        )
        if not settings.cors_origins:
            origins = own_origins(settings.host, settings.port)
            settings = settings.model_copy(update={"cors_origins": origins})
        _print_demo_banner(
            f"http://{settings.host}:{settings.port}",
            upstream_url,
            fresh_samples=live_samples is not None,
        )
    if settings.workers == 1:
        signal.signal(signal.SIGTERM, _exit_after_stopping)
        app = create_app(settings, samples=live_samples)
        freeze_startup_heap()
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            access_log=False,  # the gateway writes its own line per request
            # A WebSocket message carries a document as a POST body does: the same bound.
            ws_max_size=settings.max_request_bytes,
            # Typed int, but uvicorn hands it to asyncio.wait_for, which takes any seconds.
            timeout_graceful_shutdown=settings.shutdown_timeout,  # type: ignore[arg-type]
        )
        return 0
    # Worker processes import the app by name and read their settings from the environment.
    os.environ["POLOS_GATEWAY_UPSTREAM_URL"] = settings.upstream_base
    os.environ["POLOS_GATEWAY_EXPLORER_SAMPLES"] = json.dumps(settings.explorer_samples)
    os.environ["POLOS_GATEWAY_CORS_ORIGINS"] = ",".join(settings.cors_origins)
    # Workers must see the metrics directory before they import prometheus-client.
    own_metrics_dir = None
    given_dir = os.environ.get(MULTIPROC_DIR_VARIABLE)
    if not given_dir:
        own_metrics_dir = tempfile.mkdtemp(prefix="polos-gateway-metrics-")
        os.environ[MULTIPROC_DIR_VARIABLE] = own_metrics_dir
    else:
        # prometheus-client wants the directory emptied between runs: files left by an
        # earlier run (a kept volume, a restarted container) would be added to every count.
        Path(given_dir).mkdir(parents=True, exist_ok=True)
        for stale in Path(given_dir).glob("*.db"):
            stale.unlink(missing_ok=True)
    try:
        uvicorn.run(
            "gateway.app:app_from_environment",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level,
            access_log=False,
            ws_max_size=settings.max_request_bytes,
            timeout_graceful_shutdown=settings.shutdown_timeout,  # type: ignore[arg-type]
        )
    finally:
        if own_metrics_dir is not None:
            shutil.rmtree(own_metrics_dir, ignore_errors=True)
    return 0


def _demo_upstream(args: argparse.Namespace) -> int:
    options = DemoOptions(
        api_key=args.api_key, unknown_status=args.unknown_status, latency_ms=args.latency_ms
    )
    try:
        faults = FaultConfig(
            rate=args.fault_rate,
            seed=args.fault_seed,
            kinds=parse_kinds(args.fault_kinds),
            hang_seconds=args.hang_seconds,
        )
    except ValueError as exc:
        print(f"polos-gateway demo-upstream: {exc}", file=sys.stderr)
        return 2
    print(f"Demo upstream at http://{args.host}:{args.port}", flush=True)
    for label, execution_id in SAMPLES.items():
        print(f"  {execution_id}  {label}", flush=True)
    if faults.rate == 0:
        uvicorn.run(create_demo_app(options), host=args.host, port=args.port, access_log=False)
        return 0
    kinds = ",".join(faults.kinds)
    print(f"Injecting faults into {faults.rate:.0%} of answers: {kinds}", flush=True)
    uvicorn.run(
        create_faulty_demo_app(faults, options),
        host=args.host,
        port=args.port,
        access_log=False,
        # A hung request must not hold up a stop for its whole hang.
        timeout_graceful_shutdown=1,
    )
    return 0


def _export_schema(_: argparse.Namespace) -> int:
    sys.stdout.write(build_schema().as_str() + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="polos-gateway", description="A GraphQL gateway for the Polos orchestrator."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the gateway")
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.add_argument("--upstream-url", help="base URL of the Polos orchestrator")
    serve.add_argument(
        "--demo", action="store_true", help="serve the embedded demo upstream and use it"
    )
    serve.add_argument("--workers", type=int, help="worker processes (default 1)")
    serve.set_defaults(run=_serve)

    schema = commands.add_parser("export-schema", help="print the GraphQL schema (SDL)")
    schema.set_defaults(run=_export_schema)

    demo = commands.add_parser("demo-upstream", help="serve only the demo upstream")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=9000)
    demo.add_argument("--api-key", help="require this Bearer token and X-Project-ID demo-project")
    demo.add_argument(
        "--unknown-status",
        type=int,
        choices=(404, 500),
        default=404,
        help="status for an unknown id: 404 per the spec, 500 as today's orchestrator",
    )
    demo.add_argument("--latency-ms", type=float, default=0.0, help="delay every answer")
    demo.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        help="share of execution answers to spoil, 0..1 (default 0: no faults)",
    )
    demo.add_argument("--fault-seed", type=int, help="seed for reproducible faults")
    demo.add_argument(
        "--fault-kinds",
        default="all",
        help=f"comma-separated fault kinds (default all: {','.join(ALL_KINDS)})",
    )
    demo.add_argument(
        "--hang-seconds", type=float, default=30.0, help="how long a hang fault holds a request"
    )
    demo.set_defaults(run=_demo_upstream)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``polos-gateway`` console script."""
    args = build_parser().parse_args(argv)
    status: int = args.run(args)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
