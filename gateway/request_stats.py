"""What one request did, for its access-log line: filled in as the request passes through.

The access log middleware puts a fresh ``RequestStats`` in the ASGI scope's state; the
loader built for the request is handed it (``dependencies.request_loader``) and passes it to
the fetcher, and the GraphQL schema adds the operation name and the error codes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
