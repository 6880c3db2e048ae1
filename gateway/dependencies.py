"""Per-request objects for FastAPI routes: settings, the caller's credentials, a fresh loader.

They take an ``HTTPConnection`` rather than a ``Request`` so they serve WebSocket routes too.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from gateway.credentials import Credentials
from gateway.fetcher import ExecutionFetcher
from gateway.loaders import ExecutionLoader
from gateway.settings import Settings
from gateway.upstream import UpstreamClient


async def get_settings(connection: HTTPConnection) -> Settings:
    settings: Settings = connection.app.state.settings
    return settings


async def get_upstream(connection: HTTPConnection) -> UpstreamClient:
    upstream: UpstreamClient = connection.app.state.upstream
    return upstream


async def get_fetcher(connection: HTTPConnection) -> ExecutionFetcher:
    fetcher: ExecutionFetcher = connection.app.state.fetcher
    return fetcher


SettingsDep = Annotated[Settings, Depends(get_settings)]
UpstreamDep = Annotated[UpstreamClient, Depends(get_upstream)]
FetcherDep = Annotated[ExecutionFetcher, Depends(get_fetcher)]


async def get_credentials(connection: HTTPConnection, settings: SettingsDep) -> Credentials:
    return Credentials.from_request(
        connection.headers,
        header_names=settings.forward_headers,
        cookie_names=settings.forward_cookies,
    )


CredentialsDep = Annotated[Credentials, Depends(get_credentials)]


async def get_loader(
    fetcher: FetcherDep, credentials: CredentialsDep, settings: SettingsDep
) -> ExecutionLoader:
    """A loader for this request alone: its memo never serves another request."""
    return ExecutionLoader(
        fetcher,
        credentials,
        max_fetches=settings.max_fetches_per_request,
        deadline=asyncio.get_running_loop().time() + settings.request_deadline,
        batching=settings.batching_enabled,
    )


LoaderDep = Annotated[ExecutionLoader, Depends(get_loader)]


async def get_request_id(connection: HTTPConnection) -> str:
    request_id: str = connection.state.request_id
    return request_id


RequestIdDep = Annotated[str, Depends(get_request_id)]
