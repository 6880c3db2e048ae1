"""A Polos look-alike serving ``GET /api/v1/executions/{execution_id}`` from the seeded demo,
and ``POST /api/v1/executions/{execution_id}/cancel``.

It answers the way the orchestrator does (``docs/reference`` and the upstream notes): 400 with
an empty body for an id that is not a UUID, 404 with an empty body for an unknown one (or 500,
as today's orchestrator does, with ``unknown_status=500``), and, when an API key is set, the
orchestrator's JSON auth errors: 401 for a bad token, 400 without a project header, 403 for
another project.

Cancel answers as the orchestrator does: 200 ``{"execution_id", "status": "pending_cancel",
"cancelled_at"}`` for a queued, claimed, running, waiting or pending_cancel execution (it and its
unfinished descendants become pending_cancel, then cancelled ``cancel_confirm_seconds`` later),
400 ``CANCELLATION_ERROR`` for any other status, and the same 400, 404/500 and auth errors as a
read. The live trees and cancels follow ``gateway.demo.progress``, on ``DemoOptions.clock``.

Usage::

    polos-gateway demo-upstream --port 9000
    curl localhost:9000/api/v1/executions/<id>
    curl -X POST localhost:9000/api/v1/executions/<id>/cancel
    curl localhost:9000/_demo/stats        # execution (and cancel) requests answered so far

    polos-gateway demo-upstream --port 9000 --fault-rate 0.3 --fault-seed 7
    curl localhost:9000/_demo/stats        # ... and the faults injected, by kind

``create_faulty_demo_app`` wraps the demo in ``gateway.demo.faults.FaultInjector``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.demo.data import DemoStore, seed
from gateway.demo.faults import FaultConfig, FaultInjector
from gateway.demo.progress import Progress
from gateway.executions import parse_execution_id

DEMO_PROJECT_ID = "demo-project"


@dataclass(frozen=True)
class DemoOptions:
    """How the demo behaves; the defaults are an open demo that answers at once.

    ``clock`` (seconds since the epoch) drives the live trees and cancels; tests pass a fake
    one. ``cancel_confirm_seconds`` is how long after a cancel the worker confirms it.
    """

    api_key: str | None = None
    unknown_status: int = 404
    latency_ms: float = 0.0
    clock: Callable[[], float] = time.time
    cancel_confirm_seconds: float = 3.0


def _auth_error(message: str, status: int, error_type: str) -> JSONResponse:
    return JSONResponse({"error": message, "error_type": error_type}, status_code=status)


def _check_auth(request: Request, api_key: str) -> Response | None:
    header = request.headers.get("authorization", "")
    token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else None
    token = token or request.cookies.get("polos_auth")
    if token != api_key:
        return _auth_error("Invalid authentication token", 401, "UNAUTHORIZED")
    project = request.headers.get("x-project-id") or request.headers.get("project-id")
    if not project:
        return _auth_error("Missing project ID header", 400, "BAD_REQUEST")
    if project != DEMO_PROJECT_ID:
        return _auth_error("Access to this project is forbidden", 403, "FORBIDDEN")
    return None


def create_demo_app(
    options: DemoOptions | None = None,
    store: DemoStore | None = None,
    *,
    extra_stats: Mapping[str, Callable[[], object]] | None = None,
) -> Starlette:
    """The demo upstream as an ASGI app.

    ``extra_stats`` adds sections to ``/_demo/stats``, each computed when it is asked for
    (``create_faulty_demo_app`` adds the injected faults as ``"faults"``).
    """
    options = options or DemoOptions()
    store = store or seed()
    progress = Progress(
        store.executions,
        store.timelines,
        clock=options.clock,
        confirm_after=options.cancel_confirm_seconds,
    )

    served = {"execution_requests": 0}

    async def admit(request: Request) -> str | Response:
        """The canonical id asked for, or the answer refusing the request before any lookup."""
        if options.latency_ms:
            await asyncio.sleep(options.latency_ms / 1000)
        canonical = parse_execution_id(request.path_params["execution_id"])
        if canonical is None:
            return Response(status_code=400)
        if options.api_key is not None:
            refusal = _check_auth(request, options.api_key)
            if refusal is not None:
                return refusal
        return canonical

    async def get_execution(request: Request) -> Response:
        served["execution_requests"] += 1
        canonical = await admit(request)
        if isinstance(canonical, Response):
            return canonical
        record = progress.read(canonical)
        if record is None:
            return Response(status_code=options.unknown_status)
        # The standard library keeps integers beyond 64 bits exact.
        return Response(
            json.dumps(record, ensure_ascii=False, separators=(",", ":")),
            media_type="application/json",
        )

    async def cancel_execution(request: Request) -> Response:
        # Counted from the first cancel on: a demo nobody cancels in keeps its stats' shape.
        served["cancel_requests"] = served.get("cancel_requests", 0) + 1
        canonical = await admit(request)
        if isinstance(canonical, Response):
            return canonical
        outcome = progress.cancel(canonical)
        if outcome is None:
            return Response(status_code=options.unknown_status)
        if not outcome.accepted:
            status = outcome.record["status"]
            return JSONResponse(
                {
                    "error": f"Execution cannot be cancelled (status: {status})",
                    "error_type": "CANCELLATION_ERROR",
                },
                status_code=400,
            )
        # Like the orchestrator: what the cancel did, not the whole execution.
        return JSONResponse(
            {
                "execution_id": canonical,
                "status": "pending_cancel",
                "cancelled_at": outcome.record["cancelled_at"],
            }
        )

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def stats(_: Request) -> Response:
        """How many execution and cancel requests it has answered: what a benchmark counts."""
        sections = {name: compute() for name, compute in (extra_stats or {}).items()}
        return JSONResponse({**served, **sections})

    return Starlette(
        routes=[
            Route("/api/v1/executions/{execution_id}", get_execution),
            Route("/api/v1/executions/{execution_id}/cancel", cancel_execution, methods=["POST"]),
            Route("/health", health),
            Route("/_demo/stats", stats),
        ]
    )


def create_faulty_demo_app(
    faults: FaultConfig, options: DemoOptions | None = None, store: DemoStore | None = None
) -> FaultInjector:
    """The demo upstream behind a ``FaultInjector``; ``/_demo/stats`` adds ``"faults"``.

    ``execution_requests`` and ``cancel_requests`` count only the requests that reached the
    demo itself: a fault answered by the injector alone (malformed, wrong_shape, burst,
    rate_limited, an abandoned hang) is counted under ``faults`` instead.
    """
    # The stats route asks the injector only when called, by which time it exists.
    app = create_demo_app(options, store, extra_stats={"faults": lambda: injector.stats()})
    injector = FaultInjector(app, faults)
    return injector
