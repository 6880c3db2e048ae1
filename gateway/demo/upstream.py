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

Each live tree runs once: a final execution never changes again. So that a demo left open
keeps something to watch, ``Demo.samples()`` offers one run of each live sample until that run
has started (one of its executions was read or cancelled), and from then on a fresh run under
new ids (``gateway.demo.data.run_name``). Run 0, the seeded one, is always
kept; a later run is dropped ``keep_finished_seconds`` after it finished, or sooner, oldest
finished first, when a template holds ``max_runs``: its ids then answer as unknown ids do. The
app serves from its own thread in ``serve --demo`` while the gateway asks for samples in
another; one lock guards the store and its progress::

    demo = Demo(DemoOptions())
    app = demo_app(demo)       # serve it
    demo.samples()             # SAMPLES, each live one replaced by the run on offer
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.demo.data import LIVE_TEMPLATES, SAMPLES, DemoStore, demo_id, seed
from gateway.demo.faults import FaultConfig, FaultInjector
from gateway.demo.progress import CancelOutcome, Progress, Record
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


@dataclass(frozen=True)
class _Run:
    """One run of a live template: its root's id and every id of its tree."""

    root_id: str
    execution_ids: tuple[str, ...] = field(repr=False)


class Demo:
    """The demo's executions as they stand, and the fresh runs of its live trees, thread-safe.

    ``keep_finished_seconds`` is how long a finished run (other than run 0) is kept;
    ``max_runs`` bounds the runs kept per live template, run 0 included.
    """

    def __init__(
        self,
        options: DemoOptions | None = None,
        store: DemoStore | None = None,
        *,
        keep_finished_seconds: float = 1800.0,
        max_runs: int = 50,
    ) -> None:
        if max_runs < 2:
            raise ValueError(f"max_runs keeps run 0 and at least one fresh run, not {max_runs}")
        self.options = options or DemoOptions()
        self._store = store or seed()
        self._progress = Progress(
            self._store.executions,
            self._store.timelines,
            clock=self.options.clock,
            confirm_after=self.options.cancel_confirm_seconds,
        )
        self._keep_finished = keep_finished_seconds
        self._max_runs = max_runs
        self._lock = threading.Lock()
        # The runs of each live template the store holds, oldest first; the last is on offer.
        self._runs: dict[str, list[_Run]] = {}
        self._next_run: dict[str, int] = {}
        for template in LIVE_TEMPLATES:
            root_id = demo_id(template)
            if root_id in self._store.executions:  # a store of a test's own may lack it
                self._runs[template] = [_Run(root_id, self._store.tree(root_id))]
                self._next_run[template] = 1

    def read(self, execution_id: str) -> Record | None:
        """The execution as of now, None if unknown (``Progress.read``)."""
        with self._lock:
            return self._progress.read(execution_id)

    def cancel(self, execution_id: str) -> CancelOutcome | None:
        """Cancel the execution and its unfinished descendants (``Progress.cancel``)."""
        with self._lock:
            return self._progress.cancel(execution_id)

    def samples(self) -> dict[str, str]:
        """``SAMPLES`` in order, each live one the run on offer, started or not; see the module.

        Asking is what creates a fresh run, so a page that lists the samples gets one nobody
        has opened yet, and a demo nobody looks at holds run 0 alone.
        """
        with self._lock:
            now = self._progress.now()
            offered = {
                demo_id(template): self._offer(template, now).root_id for template in self._runs
            }
        return {
            label: offered.get(execution_id, execution_id)
            for label, execution_id in SAMPLES.items()
        }

    def _offer(self, template: str, now: float) -> _Run:
        """The run of ``template`` to offer, creating one if the last has started."""
        runs = self._runs[template]
        expired = now - self._keep_finished
        self._drop(template, [run for run in runs[1:] if self._finished_by(run, expired)])
        if not self._progress.started(runs[-1].root_id):
            return runs[-1]
        if len(runs) >= self._max_runs:
            finished = [run for run in runs[1:] if self._finished_by(run, now)]
            if not finished:
                # Every run kept is still going: offer the newest again rather than grow, and
                # never take a tree from under someone watching it.
                return runs[-1]
            self._drop(template, finished[: len(runs) - self._max_runs + 1])
        # Numbers are never reused: the gateway may still cache a dropped run's final records.
        number = self._next_run[template]
        self._next_run[template] = number + 1
        root_id = self._store.add_run(template, number)
        runs.append(_Run(root_id, self._store.tree(root_id)))
        return runs[-1]

    def _finished_by(self, run: _Run, moment: float) -> bool:
        return self._progress.settled(run.execution_ids, moment)

    def _drop(self, template: str, dropped: list[_Run]) -> None:
        for run in dropped:
            self._runs[template].remove(run)
            self._store.remove(run.execution_ids)
            self._progress.forget(run.execution_ids)


def create_demo_app(
    options: DemoOptions | None = None,
    store: DemoStore | None = None,
    *,
    extra_stats: Mapping[str, Callable[[], object]] | None = None,
) -> Starlette:
    """The demo upstream as an ASGI app (``demo_app`` of a ``Demo`` of its own).

    ``extra_stats`` adds sections to ``/_demo/stats``, each computed when it is asked for
    (``create_faulty_demo_app`` adds the injected faults as ``"faults"``).
    """
    return demo_app(Demo(options, store), extra_stats=extra_stats)


def demo_app(
    demo: Demo, *, extra_stats: Mapping[str, Callable[[], object]] | None = None
) -> Starlette:
    """The ASGI app serving ``demo``, which the caller keeps to ask for its samples."""
    options = demo.options
    served = {"execution_requests": 0, "cancel_requests": 0}

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
        record = demo.read(canonical)
        if record is None:
            return Response(status_code=options.unknown_status)
        # The standard library keeps integers beyond 64 bits exact.
        return Response(
            json.dumps(record, ensure_ascii=False, separators=(",", ":")),
            media_type="application/json",
        )

    async def cancel_execution(request: Request) -> Response:
        served["cancel_requests"] += 1
        canonical = await admit(request)
        if isinstance(canonical, Response):
            return canonical
        outcome = demo.cancel(canonical)
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
