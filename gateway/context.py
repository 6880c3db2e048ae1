"""What every GraphQL resolver can reach: the request's own loader, settings and request id."""

from __future__ import annotations

from typing import TypeAlias

from strawberry.fastapi import BaseContext
from strawberry.types import Info as StrawberryInfo

from gateway.loaders import ExecutionLoader
from gateway.settings import Settings


class Context(BaseContext):
    """Built once per HTTP request, so nothing loaded here outlives that request."""

    def __init__(self, loader: ExecutionLoader, settings: Settings, request_id: str) -> None:
        super().__init__()
        self.loader = loader
        self.settings = settings
        self.request_id = request_id


Info: TypeAlias = StrawberryInfo[Context, None]
