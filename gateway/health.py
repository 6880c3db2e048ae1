"""Liveness and readiness for probes and load balancers."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.dependencies import UpstreamDep
from gateway.redis_cache import RedisCache

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """200 while the process serves."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "The upstream does not answer."}})
async def readyz(request: Request, upstream: UpstreamDep) -> JSONResponse:
    """200 when the orchestrator answers HTTP, 503 (with the reason) when it does not.

    A slow or absent Redis is reported (``"redis": "degraded"``) but never fails readiness:
    the gateway answers without it.
    """
    body: dict[str, str] = {}
    shared: RedisCache | None = request.app.state.shared_cache
    if shared is not None:
        body["redis"] = "degraded" if shared.degraded else "ok"
    if await upstream.probe():
        return JSONResponse({"status": "ready", **body})
    return JSONResponse(
        {"status": "unavailable", "reason": "the upstream does not answer", **body},
        status_code=503,
    )
