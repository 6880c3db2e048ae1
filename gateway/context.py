"""What every GraphQL resolver can reach: a loader, the caller's credentials, the settings,
the request id, and the process-wide services the mutation and the subscription use."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeAlias

from strawberry.fastapi import BaseContext
from strawberry.types import Info as StrawberryInfo

from gateway.credentials import Credentials
from gateway.fetcher import ExecutionFetcher
from gateway.loaders import ExecutionLoader
from gateway.settings import Settings
from gateway.subscriptions import ExecutionWatch
from gateway.upstream import UpstreamClient


@dataclass(frozen=True, slots=True)
class Services:
    """The process's upstream client, fetcher (cache) and execution watch."""

    upstream: UpstreamClient
    fetcher: ExecutionFetcher
    watch: ExecutionWatch


# The loader of the operation running in this task, for contexts that outlive one operation.
_operation_loader: ContextVar[tuple[Context, ExecutionLoader] | None] = ContextVar(
    "operation_loader", default=None
)


class Context(BaseContext):
    """Built once per HTTP request, with that request's loader; or once per WebSocket
    connection, with a factory: then each operation (Strawberry runs each in a task of its
    own) gets a loader of its own, and a subscription renews it for every event, so nothing
    loaded outlives the operation or event it was loaded for, and deadlines start afresh.
    """

    def __init__(
        self,
        loader: ExecutionLoader | Callable[[Credentials], ExecutionLoader],
        settings: Settings,
        request_id: str,
        *,
        credentials: Credentials | None = None,
        services: Services | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.request_id = request_id
        self.credentials = credentials if credentials is not None else Credentials()
        self._services = services
        self._loader = loader if isinstance(loader, ExecutionLoader) else None
        self._new_loader = None if isinstance(loader, ExecutionLoader) else loader
        self.subscriptions = 0  # held open on this connection
        self.initialised = False  # a WebSocket's connection_init was taken
        self.ran_query = False  # the operation that ran was a query (not a mutation)
        self.operation_name: str | None = None  # of the operation that ran, as it names itself

    @property
    def loader(self) -> ExecutionLoader:
        if self._loader is not None:
            return self._loader
        current = _operation_loader.get()
        if current is not None and current[0] is self:
            return current[1]
        return self.renew_loader()

    def renew_loader(self) -> ExecutionLoader:
        """A fresh loader for what runs next in this task; the same one when per request."""
        if self._new_loader is None:
            return self.loader
        loader = self._new_loader(self.credentials)
        _operation_loader.set((self, loader))
        return loader

    @property
    def services(self) -> Services:
        if self._services is None:
            raise RuntimeError("this context was built without the gateway's services")
        return self._services


Info: TypeAlias = StrawberryInfo[Context, None]
