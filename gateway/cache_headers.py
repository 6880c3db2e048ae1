"""What a GET answer tells the caches between the gateway and its client.

An answer depends on the credentials that asked for it. ``GET /graphql`` exists so that a CDN
can cache persisted queries, and the REST route is a GET too: a shared cache that stored one
caller's executions could serve them to another. So every GET (and HEAD) answer names the
credential headers in ``Vary``, and one asked for with credentials is ``Cache-Control:
private`` (only the caller's own browser may keep it) unless the route chose something at
least as strict. Answers asked for without credentials are left to the cache's own rules.

Usage::

    app.add_middleware(CredentialCaching, header_names=settings.forward_headers,
                       cookie_names=settings.forward_cookies)
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.credentials import Credentials

# Varies the answer without saying who is asking.
_NOT_IDENTITY = frozenset({"traceparent"})
# Directives that already keep an answer out of shared caches.
_STRICT = re.compile(r"\b(private|no-store)\b", re.IGNORECASE)


class CredentialCaching:
    """ASGI middleware: ``Vary`` on the credential headers and ``private`` when they were sent."""

    def __init__(
        self, app: ASGIApp, *, header_names: Iterable[str], cookie_names: Iterable[str]
    ) -> None:
        self.app = app
        self._header_names = sorted(set(header_names) - _NOT_IDENTITY)
        self._cookie_names = sorted(cookie_names)
        varies = [*self._header_names, *(["cookie"] if self._cookie_names else [])]
        self._vary = ", ".join(varies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in {"GET", "HEAD"}:
            await self.app(scope, receive, send)
            return
        credentials = Credentials.from_raw_headers(
            scope["headers"], header_names=self._header_names, cookie_names=self._cookie_names
        )

        async def send_with_caching(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if self._vary:
                    headers.add_vary_header(self._vary)
                chosen = headers.get("cache-control", "")
                if credentials.headers and not _STRICT.search(chosen):
                    headers["cache-control"] = "private"
            await send(message)

        await self.app(scope, receive, send_with_caching)
