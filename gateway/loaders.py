"""Batching: one ``ExecutionLoader`` per incoming request, never shared between requests.

Every ``load`` made in one tick of the event loop becomes one batch; repeated ids are fetched
once; the batch fans out concurrently (the upstream client caps how many calls are in flight);
and each id gets its own value or its own exception, so one failure never fails its siblings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiodataloader import DataLoader

from gateway.credentials import Credentials
from gateway.executions import FetchedExecution
from gateway.upstream import UpstreamClient


class ExecutionLoader(DataLoader[str, FetchedExecution]):
    """Loads executions by canonical id with one caller's credentials.

    Usage::

        loader = ExecutionLoader(upstream, credentials)
        fetched = await loader.load(execution_id)
    """

    def __init__(self, upstream: UpstreamClient, credentials: Credentials) -> None:
        super().__init__()
        self._upstream = upstream
        self._credentials = credentials
        self.batch_sizes: list[int] = []  # one entry per upstream round

    async def batch_load_fn(  # type: ignore[override]
        self, keys: Sequence[str]
    ) -> list[FetchedExecution | BaseException]:
        self.batch_sizes.append(len(keys))
        return await asyncio.gather(
            *(self._upstream.fetch_execution(key, self._credentials) for key in keys),
            return_exceptions=True,
        )
