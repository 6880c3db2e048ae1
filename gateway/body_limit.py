"""A cap on the size of every HTTP request body, before any route sees it.

A declared ``Content-Length`` over the cap is refused at once, unread; a body without one
(``Transfer-Encoding: chunked``) is counted as it arrives and refused as soon as it passes
the cap. Either way the answer is 413 in the orchestrator's error shape, and nothing of the
request reaches a route, so nothing reaches the upstream.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import ErrorCode


class BodySizeLimit:
    """Reads at most ``max_bytes`` of a request body, then hands the body to the app.

    The body is read before the app runs (it is small by definition), so a refusal never
    races a route that already began its work.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send, f"is {declared} bytes")
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # the client went away; the app sees that as it would have
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(scope, receive, send, f"is more than {self.max_bytes} bytes")
                return
            if not message.get("more_body", False):
                break

        buffered = iter(messages)

        async def replay() -> Message:
            message = next(buffered, None)
            return message if message is not None else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, size: str) -> None:
        response = JSONResponse(
            {
                "error": f"The request body {size}; the limit is {self.max_bytes} bytes "
                "(POLOS_GATEWAY_MAX_REQUEST_BYTES).",
                "error_type": ErrorCode.QUERY_TOO_COMPLEX.value,
            },
            status_code=413,
            # The rest of the body is never read: do not keep the connection for it.
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length before the app runs
    return None
