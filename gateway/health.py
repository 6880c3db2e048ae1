"""Liveness and readiness for probes and load balancers."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.dependencies import UpstreamDep
from gateway.redis_cache import RedisCache
from gateway.resilience import BreakerState

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """200 while the process serves."""
    return {"status": "ok"}


# An upstream that answered this recently needs no probe: readiness stays free under load.
RECENT_ANSWER_SECONDS = 5.0


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
    if (since is not None and since < RECENT_ANSWER_SECONDS) or await upstream.probe():
        return JSONResponse({"status": "ready", **body})
    return JSONResponse(
        {"status": "unavailable", "reason": "the upstream does not answer", **body},
        status_code=503,
    )
