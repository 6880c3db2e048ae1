"""Liveness and readiness for probes and load balancers."""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.dependencies import UpstreamDep
from gateway.redis_cache import RedisCache
from gateway.resilience import BreakerState
from gateway.singleflight import SingleFlight
from gateway.upstream import UpstreamClient

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """200 while the process serves."""
    return {"status": "ok"}


# An upstream that answered this recently needs no probe: readiness stays free under load.
RECENT_ANSWER_SECONDS = 5.0
# How long a probe's answer serves the checks that follow it.
PROBE_TTL_SECONDS = 1.0


class ReadinessProbe:
    """The upstream's ``/health``, asked at most once per ``ttl`` however many check: checks
    that arrive together share one call, and its answer serves the next ``ttl`` seconds, so
    every replica's kubelet and load balancer cost an idle upstream one request a second.

    Usage::

        probe = ReadinessProbe(upstream)
        ready = await probe.upstream_answers()
    """

    def __init__(
        self,
        upstream: UpstreamClient,
        *,
        ttl: float = PROBE_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._upstream = upstream
        self._ttl = ttl
        self._clock = clock
        self._flight: SingleFlight[str, bool] = SingleFlight()
        self._answer: tuple[float, bool] | None = None

    async def upstream_answers(self) -> bool:
        if self._answer is not None and self._clock() - self._answer[0] < self._ttl:
            return self._answer[1]
        answers = await self._flight.run("probe", self._upstream.probe)
        self._answer = (self._clock(), answers)
        return answers


@router.get("/readyz", responses={503: {"description": "The upstream is not usable now."}})
async def readyz(request: Request, upstream: UpstreamDep) -> JSONResponse:
    """200 when the orchestrator answers, 503 with the reason when it does not.

    Ready means the breaker is not open and an upstream call went well in the last few
    seconds, or, failing recent traffic, a quick probe of the upstream's ``/health`` gets an
    HTTP answer. A slow or absent Redis is reported (``"redis": "degraded"``) but never fails
    readiness: the gateway answers without it.
    """
    body: dict[str, str] = {}
    shared: RedisCache | None = request.app.state.shared_cache
    if shared is not None:
        body["redis"] = "degraded" if shared.degraded else "ok"
    breaker = upstream.breaker
    if breaker.state is BreakerState.OPEN:
        reason = "the circuit breaker is open: upstream calls failed repeatedly"
        return JSONResponse({"status": "unavailable", "reason": reason, **body}, status_code=503)
    since = breaker.seconds_since_success()
    probe: ReadinessProbe = request.app.state.readiness
    if (since is not None and since < RECENT_ANSWER_SECONDS) or await probe.upstream_answers():
        return JSONResponse({"status": "ready", **body})
    return JSONResponse(
        {"status": "unavailable", "reason": "the upstream does not answer", **body},
        status_code=503,
    )
