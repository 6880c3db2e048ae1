"""Per-request objects for FastAPI routes: settings, the caller's credentials, a fresh loader."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway.credentials import Credentials
from gateway.loaders import ExecutionLoader
from gateway.settings import Settings
from gateway.upstream import UpstreamClient


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_upstream(request: Request) -> UpstreamClient:
    upstream: UpstreamClient = request.app.state.upstream
    return upstream


SettingsDep = Annotated[Settings, Depends(get_settings)]
UpstreamDep = Annotated[UpstreamClient, Depends(get_upstream)]


async def get_credentials(request: Request, settings: SettingsDep) -> Credentials:
    return Credentials.from_request(
        request.headers,
        request.cookies,
        header_names=settings.forward_headers,
        cookie_names=settings.forward_cookies,
    )


CredentialsDep = Annotated[Credentials, Depends(get_credentials)]


async def get_loader(upstream: UpstreamDep, credentials: CredentialsDep) -> ExecutionLoader:
    """A loader for this request alone: its memo never serves another request."""
    return ExecutionLoader(upstream, credentials)


LoaderDep = Annotated[ExecutionLoader, Depends(get_loader)]


async def get_request_id(request: Request) -> str:
    request_id: str = request.state.request_id
    return request_id


RequestIdDep = Annotated[str, Depends(get_request_id)]
