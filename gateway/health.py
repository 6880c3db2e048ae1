"""Liveness and readiness for probes and load balancers."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from gateway.dependencies import UpstreamDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """200 while the process serves."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "The upstream does not answer."}})
async def readyz(upstream: UpstreamDep) -> JSONResponse:
    """200 when the orchestrator answers HTTP, 503 (with the reason) when it does not."""
    if await upstream.probe():
        return JSONResponse({"status": "ready"})
    return JSONResponse(
        {"status": "unavailable", "reason": "the upstream does not answer"}, status_code=503
    )
