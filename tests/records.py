"""Upstream ``ExecutionResponse`` bodies for tests that need exact control of every field."""

from __future__ import annotations

import json
from typing import Any

EXECUTION_ID = "6f9619ff-8b86-d011-b42d-00c04fc964ff"


def execution_fields(execution_id: str = EXECUTION_ID, **overrides: Any) -> dict[str, Any]:
    """The 24 fields of one completed top-level execution; ``overrides`` replace any."""
    fields: dict[str, Any] = {
        "id": execution_id,
        "workflow_id": "order-workflow",
        "status": "completed",
        "payload": {"order": 7},
        "result": {"ok": True},
        "error": None,
        "created_at": "2026-11-14T13:00:13.123456+00:00",
        "started_at": "2026-11-14T13:00:14.000001+00:00",
        "completed_at": "2026-11-14T13:00:15.5+00:00",
        "deployment_id": "deploy-1",
        "assigned_to_worker": "worker-1",
        "parent_execution_id": None,
        "root_execution_id": None,
        "retry_count": 0,
        "step_key": None,
        "queue_name": "default",
        "concurrency_key": None,
        "batch_id": None,
        "session_id": None,
        "user_id": None,
        "output_schema_name": None,
        "cancelled_at": None,
        "cancelled_by": None,
        "run_timeout_seconds": 300,
    }
    fields.update(overrides)
    return fields


def execution_body(execution_id: str = EXECUTION_ID, **overrides: Any) -> bytes:
    """``execution_fields`` as the upstream's JSON bytes."""
    return json.dumps(execution_fields(execution_id, **overrides)).encode()
