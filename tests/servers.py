"""Real servers on loopback for the tests: uvicorn in a thread, on a port picked by the OS.

``serve(app)`` binds and listens before the server thread starts, so a client can connect at
once (the connection waits in the backlog): no polling, no sleeps.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.cli import listening_socket


@contextmanager
def serve(app: ASGIApp, *, lifespan: str = "on") -> Iterator[str]:
    """Serve ``app`` over real HTTP on 127.0.0.1 for the duration of the block."""
    sock = listening_socket("127.0.0.1", 0)
    config = uvicorn.Config(app, log_level="warning", lifespan=lifespan)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def closed_port_url() -> str:
    """A loopback URL where nothing listens: connecting to it is refused."""
    sock = listening_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    raw_path: bytes
    query_string: bytes
    headers: dict[str, str]


@dataclass
class Recorder:
    """ASGI middleware that remembers every HTTP request reaching the wrapped app."""

    app: ASGIApp
    requests: list[SeenRequest] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.requests.append(
                SeenRequest(
                    method=scope["method"],
                    path=scope["path"],
                    raw_path=scope.get("raw_path", b""),
                    query_string=scope.get("query_string", b""),
                    headers={k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
                )
            )
        await self.app(scope, receive, send)

    def execution_ids(self) -> list[str]:
        """The ids asked for under ``/api/v1/executions/``, in arrival order."""
        prefix = "/api/v1/executions/"
        return [r.path.removeprefix(prefix) for r in self.requests if r.path.startswith(prefix)]

    def clear(self) -> None:
        self.requests.clear()


Handler = Callable[[Request], Awaitable[Response]]


class Holds:
    """Requests kept waiting until ``release``, counted as they arrive: how a test knows a
    request reached the upstream without looking at a clock. Thread-safe, as the server runs
    in a thread of its own; after ``release`` nothing waits any more."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self.held = 0
        self._released = False
        self._waiting: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def wait(self) -> None:
        """In a request handler: wait here until ``release``."""
        released = asyncio.Event()
        with self._arrived:
            if self._released:
                return
            self._waiting.append((asyncio.get_running_loop(), released))
            self.held += 1
            self._arrived.notify_all()
        await released.wait()

    def wait_held(self, count: int = 1, timeout: float = 30) -> None:
        """Block until ``count`` held requests have arrived, or fail after ``timeout``."""
        with self._arrived:
            arrived = self._arrived.wait_for(lambda: self.held >= count, timeout=timeout)
        assert arrived, f"{self.held} of {count} held requests arrived"

    def release(self) -> None:
        """Let every held request finish (a server waits for them when it stops)."""
        with self._lock:
            self._released = True
            for loop, released in self._waiting:
                loop.call_soon_threadsafe(released.set)


class ScriptedUpstream:
    """An upstream whose answer for each execution id the test decides.

    Ids without a script get 404. ``hang`` and ``hold`` keep a request until ``release``
    (which the fixtures call before the server stops): an upstream that never answers.
    """

    def __init__(self) -> None:
        self.scripts: dict[str, Handler] = {}
        self.holds = Holds()
        self.app = Recorder(
            Starlette(routes=[Route("/api/v1/executions/{execution_id}", self._answer)])
        )

    def answer(self, execution_id: str, status: int, body: bytes = b"", **headers: str) -> None:
        async def handler(_: Request) -> Response:
            return Response(body, status_code=status, headers=headers)

        self.scripts[execution_id] = handler

    def hang(self, execution_id: str) -> None:
        """Never answer until ``release`` (then 599): an upstream that does not respond."""
        self._hold_until_release(execution_id, lambda: Response(status_code=599))

    def hold(self, execution_id: str, body: bytes) -> None:
        """Answer 200 with ``body`` once ``release`` is called; ``wait_held`` sees it arrive."""
        self._hold_until_release(
            execution_id, lambda: Response(body, media_type="application/json")
        )

    def _hold_until_release(self, execution_id: str, reply: Callable[[], Response]) -> None:
        async def handler(_: Request) -> Response:
            await self.holds.wait()
            return reply()

        self.scripts[execution_id] = handler

    def wait_held(self, count: int = 1, timeout: float = 30) -> None:
        self.holds.wait_held(count, timeout)

    def release(self) -> None:
        self.holds.release()

    async def _answer(self, request: Request) -> Response:
        handler = self.scripts.get(request.path_params["execution_id"])
        if handler is None:
            return Response(status_code=404)
        return await handler(request)
