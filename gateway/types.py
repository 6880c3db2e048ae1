"""The GraphQL types: ``Execution`` with every upstream field, its tree links, and ``Node``."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, cast

import strawberry
from strawberry.scalars import JSON

from gateway.context import Info
from gateway.errors import BadUserInput, GatewayError
from gateway.executions import ExecutionRecord
from gateway.tree import ancestors_of, parent_of, root_of


@strawberry.enum(
    description="Where an execution is in its life. Unlisted upstream values: UNKNOWN."
)
class ExecutionStatus(Enum):
    PENDING = "pending"
    QUEUED = "queued"
    CLAIMED = "claimed"
    RUNNING = "running"
    WAITING = "waiting"
    PENDING_CANCEL = "pending_cancel"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @classmethod
    def from_raw(cls, raw: str) -> ExecutionStatus:
        try:
            return cls(raw.lower())
        except ValueError:
            return cls.UNKNOWN


@strawberry.interface(description="An object with a global id (Relay). Executions use their UUID.")
class Node:
    id: strawberry.ID


def as_list_items(values: list[Execution | GatewayError]) -> list[Execution | None]:
    """Let each failed item of a list field carry its own error.

    graphql-core raises an item that is an exception as that item's error, located at its
    index, and leaves the item null; the other items keep their data.
    """
    return cast("list[Execution | None]", values)


@strawberry.type(description="One execution of a workflow, agent or tool, and its place in a tree.")
class Execution(Node):
    id: strawberry.ID = strawberry.field(description="The execution's UUID.")
    workflow_id: str = strawberry.field(description="The workflow, agent or tool that ran.")
    status: ExecutionStatus = strawberry.field(description="The status, UNKNOWN if unlisted.")
    raw_status: str = strawberry.field(description="The status string as the upstream sent it.")
    is_terminal: bool = strawberry.field(
        description="True once completed, failed or cancelled; such an execution never changes."
    )
    is_root: bool = strawberry.field(description="True for a top-level execution.")
    payload: JSON | None = strawberry.field(description="The input payload, any JSON value.")
    result: JSON | None = strawberry.field(description="The result, any JSON value.")
    error: str | None = strawberry.field(description="The error message if it failed.")
    created_at: datetime = strawberry.field(description="When it was created.")
    started_at: datetime | None = strawberry.field(description="When it started.")
    completed_at: datetime | None = strawberry.field(description="When it completed.")
    deployment_id: str | None = strawberry.field(description="The deployment it ran in.")
    assigned_to_worker: str | None = strawberry.field(description="The worker it was given to.")
    parent_execution_id: strawberry.ID | None = strawberry.field(
        description="The execution that started it; null for a top-level execution."
    )
    root_execution_id: strawberry.ID | None = strawberry.field(
        description="The top-level execution of its tree; null for a top-level execution."
    )
    retry_count: int = strawberry.field(description="How many times it was retried.")
    step_key: str | None = strawberry.field(description="The step key within its parent.")
    queue_name: str | None = strawberry.field(description="The queue it ran on.")
    concurrency_key: str | None = strawberry.field(description="Its concurrency key.")
    batch_id: str | None = strawberry.field(description="The batch it belongs to.")
    session_id: str | None = strawberry.field(description="The session it belongs to.")
    user_id: str | None = strawberry.field(description="The user it ran for.")
    output_schema_name: str | None = strawberry.field(description="Its output schema's name.")
    cancelled_at: datetime | None = strawberry.field(description="When it was cancelled.")
    cancelled_by: str | None = strawberry.field(
        description="Who cancelled it (for example manual)."
    )
    run_timeout_seconds: int | None = strawberry.field(description="Its timeout in seconds.")

    record: strawberry.Private[ExecutionRecord]

    @classmethod
    def from_record(cls, record: ExecutionRecord) -> Execution:
        fields: dict[str, Any] = {name: getattr(record, name) for name in _COPIED_FIELDS}
        return cls(
            record=record,
            id=strawberry.ID(record.id),
            status=ExecutionStatus.from_raw(record.status),
            raw_status=record.status,
            is_terminal=record.is_terminal,
            is_root=record.is_root,
            **fields,
        )

    @strawberry.field(description="The execution that started this one; null when top-level.")
    async def parent(self, info: Info) -> Execution | None:
        parent = await parent_of(info.context.loader, self.record)
        return None if parent is None else Execution.from_record(parent)

    @strawberry.field(
        description="The top-level execution of this tree: itself when top-level, else the "
        "execution named by rootExecutionId, else found by walking parents."
    )
    async def root(self, info: Info) -> Execution | None:
        root = await root_of(info.context.loader, self.record, info.context.settings.max_ancestors)
        return self if root is self.record else Execution.from_record(root)

    @strawberry.field(
        description="Parent first, root last, at most `limit` of them. If the walk breaks (a "
        "loop, a missing or failing ancestor) the list ends with a null carrying that error; "
        "a `limit` outside 0..the configured cap makes the whole field null with "
        "BAD_USER_INPUT. A null `limit` means 50."
    )
    async def ancestors(self, info: Info, limit: int | None = 50) -> list[Execution | None] | None:
        cap = info.context.settings.max_ancestors
        limit = 50 if limit is None else limit
        if not 0 <= limit <= cap:
            raise BadUserInput(f"ancestors(limit) must be between 0 and {cap}; got {limit}.")
        chain, failure = await ancestors_of(info.context.loader, self.record, limit)
        items: list[Execution | GatewayError] = [Execution.from_record(r) for r in chain]
        if failure is not None:
            items.append(failure)
        return as_list_items(items)


_COPIED_FIELDS = tuple(
    name for name in ExecutionRecord.model_fields if name not in {"id", "status"}
)
