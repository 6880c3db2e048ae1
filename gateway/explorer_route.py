"""The execution tree explorer: a static page at ``/explorer`` that speaks only GraphQL.

The page, its script, its style sheet and the vendored ``graphql-ws`` client live in
``gateway/explorer/`` and ship with the package; they are read once when the router is built.
The samples the page offers come from the ``explorer_samples`` setting, or from a provider asked
on every request when one is given (``serve --demo`` offers fresh runs of its live trees so),
served as JSON so the HTML stays static (no data is ever written into it).

Usage::

    app.include_router(create_explorer_router())                # the setting's samples
    app.include_router(create_explorer_router(demo.samples))    # asked afresh on each load

Every answer here carries a strict Content-Security-Policy: scripts, styles, fetches and the
WebSocket only from the page's own origin, no inline script, no frames. The page renders all
upstream text with ``textContent``; the policy is the second line of defence.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.resources import files

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from gateway.dependencies import settings_of

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        # 'self' covers the same-origin WebSocket (ws: or wss:) in CSP level 3.
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}

# The files the page is made of, by the name it asks for them, with their media types.
# Nothing else under /explorer/ is served.
ASSET_TYPES = {
    "explorer.js": "text/javascript; charset=utf-8",
    "explorer.css": "text/css; charset=utf-8",
    "graphql-ws.min.js": "text/javascript; charset=utf-8",
}
PAGE = "index.html"


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def _load(name: str, media_type: str) -> Asset:
    body = (files("gateway") / "explorer" / name).read_bytes()
    return Asset(body, media_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')


def _answer(request: Request, asset: Asset) -> Response:
    # no-cache: the browser revalidates each time (a 304 when unchanged), so a new version of
    # the gateway never runs with an old script.
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache", "ETag": asset.etag}
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


def create_explorer_router(
    samples: Callable[[], Mapping[str, str]] | None = None,
) -> APIRouter:
    """The routes of the explorer: the page, its assets and its samples.

    ``samples`` (label to execution id, in order) is asked on every request for them; without
    it they are the ``explorer_samples`` setting.
    """
    page = _load(PAGE, "text/html; charset=utf-8")
    assets = {name: _load(name, media_type) for name, media_type in ASSET_TYPES.items()}
    router = APIRouter(tags=["explorer"], include_in_schema=False)

    @router.get("/explorer")
    async def explorer_page(request: Request) -> Response:
        """The page; ``?id=<execution id>`` is read by its script, not here."""
        return _answer(request, page)

    @router.get("/explorer/samples.json")
    async def explorer_samples(request: Request) -> Response:
        """The samples, in their order: ``{"samples": [{"label", "id"}]}``."""
        offered = settings_of(request).explorer_samples if samples is None else samples()
        body = {"samples": [{"label": label, "id": id_} for label, id_ in offered.items()]}
        return JSONResponse(body, headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})

    @router.get("/explorer/{name}")
    async def explorer_asset(request: Request, name: str) -> Response:
        asset = assets.get(name)
        if asset is None:
            raise HTTPException(404)
        return _answer(request, asset)

    return router
