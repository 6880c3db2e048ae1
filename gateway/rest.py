"""The REST front door: ``GET /api/v1/executions/{execution_id}``, as the orchestrator answers it.

Clients written for the orchestrator (the Polos SDKs, scripts) point at the gateway unchanged:
the same status codes, the same JSON body byte for byte, the headers a client acts on. Only
when the gateway itself gets no answer does it speak for itself: 502, or 504 on a timeout, with
a body in the orchestrator's error shape ``{"error": …, "error_type": …}``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.dependencies import LoaderDep
from gateway.errors import UpstreamAnswered, UpstreamFailure, UpstreamTimeout
from gateway.executions import parse_execution_id
from gateway.loaders import ExecutionLoader
from gateway.resilience import Overloaded
from gateway.upstream import EXECUTIONS_PATH

router = APIRouter(tags=["Executions"], redirect_slashes=False)


class ExecutionResponse(BaseModel):
    """Execution details response (the orchestrator's schema, for the OpenAPI description)."""

    assigned_to_worker: str | None = Field(description="Assigned worker ID", default=None)
    batch_id: str | None = Field(description="Batch ID", default=None)
    cancelled_at: str | None = Field(description="Cancellation timestamp (RFC3339)", default=None)
    cancelled_by: str | None = Field(description="Cancelled by (user or system)", default=None)
    completed_at: str | None = Field(description="Completion timestamp (RFC3339)", default=None)
    concurrency_key: str | None = Field(description="Concurrency key", default=None)
    created_at: str = Field(description="Creation timestamp (RFC3339)")
    deployment_id: str | None = Field(description="Deployment ID", default=None)
    error: str | None = Field(description="Error message if failed", default=None)
    id: str = Field(description="Execution ID")
    output_schema_name: str | None = Field(description="Output schema name", default=None)
    parent_execution_id: str | None = Field(description="Parent execution ID", default=None)
    payload: Any = Field(description="Input payload")
    queue_name: str | None = Field(description="Queue name", default=None)
    result: Any = Field(description="Execution result", default=None)
    retry_count: int = Field(description="Retry count")
    root_execution_id: str | None = Field(description="Root execution ID", default=None)
    run_timeout_seconds: int | None = Field(description="Timeout in seconds", default=None)
    session_id: str | None = Field(description="Session ID", default=None)
    started_at: str | None = Field(description="Start timestamp (RFC3339)", default=None)
    status: str = Field(
        description="Execution status (pending, running, completed, failed, cancelled)"
    )
    step_key: str | None = Field(description="Step key", default=None)
    user_id: str | None = Field(description="User ID", default=None)
    workflow_id: str = Field(description="Workflow ID")


def _gateway_error(failure: UpstreamFailure) -> JSONResponse:
    status = 504 if isinstance(failure, UpstreamTimeout) else 502
    return JSONResponse(
        {"error": failure.message, "error_type": failure.code.value}, status_code=status
    )


@router.head("/api/v1/executions/{execution_id}", include_in_schema=False)
@router.get(
    "/api/v1/executions/{execution_id}",
    summary="Get execution details by ID",
    operation_id="get_execution",
    response_model=ExecutionResponse,
    responses={
        400: {"description": "Invalid execution ID"},
        404: {"description": "Execution not found"},
        500: {"description": "Internal server error"},
        502: {"description": "The gateway got no usable answer from the orchestrator"},
        503: {"description": "The gateway is shedding load (RATE_LIMITED); see Retry-After"},
        504: {"description": "The orchestrator did not answer in time"},
    },
)
async def get_execution(execution_id: str, loader: LoaderDep) -> Response:
    """Get execution details by ID, through the gateway."""
    return await answer(execution_id, loader)


async def answer(execution_id: str, loader: ExecutionLoader) -> Response:
    """What the route answers for ``execution_id``; ``gateway.hot_routes`` calls it directly."""
    canonical = parse_execution_id(execution_id)
    if canonical is None:
        return Response(status_code=400)  # the orchestrator's answer: 400, empty body
    try:
        fetched = await loader.load_alone(canonical)
    except (UpstreamFailure, Overloaded) as failure:
        loader.stats.error_codes.append(failure.code.value)
        return _failure_response(failure)
    return Response(fetched.body, media_type="application/json")


def _failure_response(failure: UpstreamFailure | Overloaded) -> Response:
    if isinstance(failure, Overloaded):
        return JSONResponse(
            {"error": failure.message, "error_type": failure.code.value},
            status_code=503,
            headers={"retry-after": "1"},
        )
    if isinstance(failure, UpstreamAnswered) and failure.status >= 400:
        return Response(failure.body, status_code=failure.status, headers=dict(failure.headers))
    # A redirect or an odd success is nothing an orchestrator client could act on.
    return _gateway_error(failure)


async def answer_unrouted(request: Request, exc: Exception) -> Response:
    """404 handler: paths under the executions route answered as the orchestrator would.

    The orchestrator routes on the raw path: ``..%2Fhealth`` is one segment there, which its
    UUID parser refuses (400, empty body), while a real ``/`` or an empty segment makes a path
    it has no route for (404, empty body). Here the framework routes on the decoded path, so
    such requests end up unrouted; this puts them right. Other paths get FastAPI's 404.
    """
    raw: bytes = request.scope.get("raw_path") or request.url.path.encode()
    if not raw.startswith(EXECUTIONS_PATH.encode()):
        assert isinstance(exc, StarletteHTTPException)
        return await http_exception_handler(request, exc)
    remainder = raw.removeprefix(EXECUTIONS_PATH.encode())
    return Response(status_code=400 if remainder and b"/" not in remainder else 404)
