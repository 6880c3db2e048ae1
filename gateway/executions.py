"""What the orchestrator says an execution is, and what an execution id may look like.

``ExecutionRecord`` mirrors the upstream ``ExecutionResponse`` (24 fields, snake_case) and is
the only shape the rest of the gateway reads. ``parse_execution_id`` accepts exactly the
forms the orchestrator's UUID parser accepts and returns the canonical one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

FINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})

# The orchestrator parses ids with Rust's `uuid` crate: hyphenated, simple (32 hex digits),
# braced and URN forms, hex digits in any case. Anything else is answered 400 before any lookup.
_UUID_FORMS = re.compile(
    r"(?-i:urn:uuid:)?"  # the crate wants this prefix in lower case
    r"(?P<hyphenated>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
    r"|\{(?P<braced>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\}"
    r"|(?P<simple>[0-9a-f]{32})",
    re.IGNORECASE,
)


def parse_execution_id(raw: str) -> str | None:
    """The canonical lower-case hyphenated form of ``raw``, or None if it is not a UUID.

    >>> parse_execution_id("{6F9619FF-8B86-D011-B42D-00C04FC964FF}")
    '6f9619ff-8b86-d011-b42d-00c04fc964ff'
    >>> parse_execution_id("../health") is None
    True
    """
    match = _UUID_FORMS.fullmatch(raw)
    if match is None:
        return None
    hex_digits = (match["hyphenated"] or match["braced"] or match["simple"]).replace("-", "")
    hex_digits = hex_digits.lower()
    return "-".join(
        (hex_digits[:8], hex_digits[8:12], hex_digits[12:16], hex_digits[16:20], hex_digits[20:])
    )


class ExecutionRecord(BaseModel):
    """One execution as the orchestrator returns it; unknown extra fields are ignored."""

    # Strict: a wrong JSON type is a lying upstream, not something to coerce ("3" for 3).
    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    id: str
    workflow_id: str
    status: str
    payload: Any
    result: Any = None
    error: str | None = None
    created_at: AwareDatetime
    started_at: AwareDatetime | None = None
    completed_at: AwareDatetime | None = None
    deployment_id: str | None = None
    assigned_to_worker: str | None = None
    parent_execution_id: str | None = None
    root_execution_id: str | None = None
    retry_count: int
    step_key: str | None = None
    queue_name: str | None = None
    concurrency_key: str | None = None
    batch_id: str | None = None
    session_id: str | None = None
    user_id: str | None = None
    output_schema_name: str | None = None
    cancelled_at: AwareDatetime | None = None
    cancelled_by: str | None = None
    run_timeout_seconds: int | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status.lower() in FINAL_STATUSES

    @property
    def is_root(self) -> bool:
        return self.parent_execution_id is None


@dataclass(frozen=True, slots=True)
class FetchedExecution:
    """A parsed execution together with the exact bytes the orchestrator sent for it.

    The REST route relays ``body`` unchanged, so clients see the upstream's own JSON (key
    order, number formatting) rather than our re-encoding of it.
    """

    record: ExecutionRecord
    body: bytes


class NotAnExecution(ValueError):
    """The bytes are not an ``ExecutionResponse`` for the id that was asked for."""


def decode_execution(execution_id: str, body: bytes) -> FetchedExecution:
    """Parse an upstream 200 body, insisting that it describes ``execution_id``, which must
    be canonical (``parse_execution_id``'s form)."""
    try:
        record = ExecutionRecord.model_validate_json(body)
    except ValidationError as exc:
        problems = sorted({_describe(error) for error in exc.errors(include_url=False)})
        raise NotAnExecution("; ".join(problems[:3])) from None
    if record.id != execution_id:
        if parse_execution_id(record.id) != execution_id:
            raise NotAnExecution("it describes a different execution")
        # Same UUID in another spelling; the rest of the gateway compares canonical ids.
        record = record.model_copy(update={"id": execution_id})
    return FetchedExecution(record=record, body=body)


def _describe(error: Any) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()))
    if error.get("type") == "json_invalid":
        return "not JSON"
    if error.get("type") == "model_type":
        return "not a JSON object"
    return f"{location or 'body'}: {error.get('msg', 'invalid')}".lower()
