"""What one request did, for its access-log line: filled in as the request passes through.

The access log middleware puts a fresh ``RequestStats`` in the ASGI scope's state; the
loader built for the request is handed it (``dependencies.request_loader``) and passes it to
the fetcher, and the GraphQL schema adds the operation name and the error codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.metrics import GRAPHQL_OPERATIONS, OPERATION_NAMES

SCOPE_KEY = "request_stats"


@dataclass(slots=True)
class RequestStats:
    """Usage::

    stats = RequestStats()
    stats.upstream_calls += 1
    """

    operation_name: str | None = None
    upstream_calls: int = 0  # fetches this request sent upstream (joined ones not counted)
    cache_hits: int = 0
    error_codes: list[str] = field(default_factory=list)


def count_operation(
    stats: RequestStats | None,
    name: str | None,
    codes: Sequence[str],
    *,
    label: str | None = None,
) -> None:
    """One GraphQL request, whether its operation ran, was answered from a kept answer or was
    refused unrun: counted by operation (``label`` instead of the cleaned ``name`` when given)
    and outcome (``ok`` or the first code), and noted on the request's access-log line."""
    GRAPHQL_OPERATIONS.labels(
        label or OPERATION_NAMES.label(name), codes[0] if codes else "ok"
    ).inc()
    if stats is not None:
        if name is not None:
            stats.operation_name = name[: OPERATION_NAMES.length]
        stats.error_codes.extend(codes)
