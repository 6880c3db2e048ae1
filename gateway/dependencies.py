"""Per-request objects for the front doors: the caller's credentials and a fresh loader.

Each is one flat function of the connection, so a request pays for one dependency rather
than a tree of them (FastAPI's dependency solving showed in the profile). They take an
``HTTPConnection`` rather than a ``Request`` so they serve WebSocket routes too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection

from gateway.credentials import Credentials
from gateway.fetcher import ExecutionFetcher
from gateway.loaders import ExecutionLoader
from gateway.request_stats import SCOPE_KEY
from gateway.settings import Settings
from gateway.upstream import UpstreamClient


def settings_of(connection: HTTPConnection) -> Settings:
    settings: Settings = connection.app.state.settings
    return settings


async def get_upstream(connection: HTTPConnection) -> UpstreamClient:
    upstream: UpstreamClient = connection.app.state.upstream
    return upstream


UpstreamDep = Annotated[UpstreamClient, Depends(get_upstream)]


def request_credentials(
    connection: HTTPConnection,
    overrides: Mapping[str, str] | None = None,
    *,
    ambient_cookies: bool = True,
) -> Credentials:
    """The credentials this request forwards; ``overrides`` (a WebSocket's ``connection_init``
    payload) replace headers of the same names and may carry the cookie by its name.
    ``ambient_cookies=False`` ignores the cookies the browser attached by itself."""
    settings = settings_of(connection)
    if not overrides and ambient_cookies:
        return Credentials.from_raw_headers(
            connection.scope["headers"],
            header_names=settings.forward_headers,
            cookie_names=settings.forward_cookies,
        )
    headers = MutableHeaders(
        raw=[
            (name, value)
            for name, value in connection.scope["headers"]
            if ambient_cookies or name != b"cookie"
        ]
    )
    for name, value in (overrides or {}).items():
        if not isinstance(name, str) or not isinstance(value, str):
            continue  # a client's JSON: anything but text is not a credential
        if name.lower() in settings.forward_headers:
            headers[name] = value
        elif name in settings.forward_cookies:
            headers["cookie"] = f"{name}={value}"
    return Credentials.from_request(
        headers, header_names=settings.forward_headers, cookie_names=settings.forward_cookies
    )


def new_loader(connection: HTTPConnection, credentials: Credentials) -> ExecutionLoader:
    """A loader of its own, for one request (or one WebSocket operation or event): its memo
    serves nothing else, and its deadline starts now."""
    settings = settings_of(connection)
    fetcher: ExecutionFetcher = connection.app.state.fetcher
    return ExecutionLoader(
        fetcher,
        credentials,
        max_fetches=settings.max_fetches_per_request,
        deadline=asyncio.get_running_loop().time() + settings.request_deadline,
        batching=settings.batching_enabled,
        # The access log middleware's record of this request (absent on a WebSocket).
        stats=connection.scope.get("state", {}).get(SCOPE_KEY),
    )


def request_loader(connection: HTTPConnection) -> ExecutionLoader:
    """A loader for this request alone, with its credentials."""
    return new_loader(connection, request_credentials(connection))


async def get_loader(connection: HTTPConnection) -> ExecutionLoader:
    return request_loader(connection)


LoaderDep = Annotated[ExecutionLoader, Depends(get_loader)]


def request_id_of(connection: HTTPConnection) -> str:
    request_id: str = connection.state.request_id
    return request_id
