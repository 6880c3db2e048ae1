"""``X-Request-ID`` on every response: the client's own when usable, a new one otherwise."""

from __future__ import annotations

import random
import re

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
# Anything else (too long, spaces, control characters) would make logs ambiguous.
_USABLE = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


class RequestIdMiddleware:
    """Stores the id in ``request.state.request_id`` and echoes it in the response headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"}:
            await self.app(scope, receive, send)
            return
        request_id = _incoming(scope) or _new_id()
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)


def _new_id() -> str:
    """32 random hex digits, as many as a UUID's.

    An id names a request in the logs; it is no secret (a client may send its own), so it
    comes from the process's seeded generator rather than the operating system's: the
    system call for those bytes was among the top costs of a cached answer in the
    benchmark's profile. Each process seeds its own generator (a forked child reseeds).
    """
    return f"{random.getrandbits(128):032x}"


def _incoming(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == HEADER.encode():
            text = value.decode("latin-1")
            return text if _USABLE.fullmatch(text) else None
    return None
