"""Fault injection for the demo upstream: the ways a real orchestrator (or the network) fails.

``FaultInjector`` is ASGI middleware. For a share (``rate``) of execution requests
(``/api/v1/executions/...``, reads and cancels alike; every other path passes untouched) it
draws one fault from ``kinds`` with a seeded random generator, so a run is reproducible. A
fault that drops the connection after the demo answered (``reset``, ``truncated``) leaves a
cancel done though its answer is lost, as a real network can:

======================  ======================================================================
``hang``                hold the request ``hang_seconds``, then answer; ends early when the
                        client goes away or ``release()`` is called (tests call it before
                        their server stops)
``reset``               send the response start with a ``Content-Length``, then drop the
                        connection without a body
``truncated``           send the headers and half the real body, then drop the connection
``malformed``           200 with a body that is not JSON
``wrong_shape``         200 with valid JSON that is not an execution (a list)
``burst``               this and the next ``burst_length - 1`` execution requests answer 500,
                        502 or 503 (``burst_statuses``) with an empty body
``rate_limited``        429 with ``Retry-After`` drawn from ``retry_after`` (0 or 1 seconds)
``slow``                answer correctly after ``slow_ms``
======================  ======================================================================

``counts`` holds how many answers each kind spoiled (every answer of a burst counts);
``limit`` stops drawing new faults after that many, which makes one-fault tests exact.

Usage (``create_faulty_demo_app`` also shows ``counts`` in ``/_demo/stats``)::

    app = FaultInjector(create_demo_app(), FaultConfig(rate=0.3, seed=7))
    ...
    app.release()  # before an in-process server stops: let every held request go

``polos-gateway demo-upstream --fault-rate 0.3`` serves it; that process stops within a second
(uvicorn's graceful-shutdown timeout) even with requests held.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from asyncio import FIRST_COMPLETED
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from starlette.types import ASGIApp, Message, Receive, Scope, Send

EXECUTIONS_PREFIX = "/api/v1/executions/"


class FaultKind(StrEnum):
    HANG = "hang"
    RESET = "reset"
    TRUNCATED = "truncated"
    MALFORMED = "malformed"
    WRONG_SHAPE = "wrong_shape"
    BURST = "burst"
    RATE_LIMITED = "rate_limited"
    SLOW = "slow"


ALL_KINDS: tuple[FaultKind, ...] = tuple(FaultKind)


def parse_kinds(text: str) -> tuple[FaultKind, ...]:
    """``"hang,reset"`` as kinds; ``"all"`` or an empty string is every kind."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names or names == ["all"]:
        return ALL_KINDS
    try:
        return tuple(FaultKind(name) for name in names)
    except ValueError:
        known = ", ".join(ALL_KINDS)
        raise ValueError(f"unknown fault kind in {text!r}; known: {known}") from None


@dataclass(frozen=True)
class FaultConfig:
    """What to inject and how often; the defaults inject nothing."""

    rate: float = 0.0
    kinds: tuple[FaultKind, ...] = ALL_KINDS
    seed: int | None = None
    hang_seconds: float = 30.0
    slow_ms: float = 300.0
    burst_length: int = 5
    burst_statuses: tuple[int, ...] = (500, 502, 503)
    retry_after: tuple[int, ...] = (0, 1)
    limit: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.rate <= 1:
            raise ValueError(f"fault rate must be between 0 and 1, got {self.rate}")
        if not self.kinds:
            raise ValueError("at least one fault kind is needed")
        if self.burst_length < 1 or not self.burst_statuses or not self.retry_after:
            raise ValueError("burst_length, burst_statuses and retry_after must not be empty")
        if self.hang_seconds < 0 or self.slow_ms < 0:
            raise ValueError("hang_seconds and slow_ms must not be negative")


class InjectedFault(Exception):
    """Raised after a partial response so the server drops the connection."""


def _empty(status: int, headers: Iterable[tuple[str, str]] = ()) -> list[Message]:
    raw = [(b"content-length", b"0"), *((k.encode(), v.encode()) for k, v in headers)]
    return [
        {"type": "http.response.start", "status": status, "headers": raw},
        {"type": "http.response.body", "body": b""},
    ]


def _json_200(body: bytes) -> list[Message]:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return [
        {"type": "http.response.start", "status": 200, "headers": headers},
        {"type": "http.response.body", "body": body},
    ]


class FaultInjector:
    """ASGI middleware that spoils a seeded share of the wrapped app's execution answers."""

    def __init__(self, app: ASGIApp, config: FaultConfig) -> None:
        self.app = app
        self.config = config
        self.counts: dict[str, int] = {kind.value: 0 for kind in ALL_KINDS}
        self._random = random.Random(config.seed)  # noqa: S311 - reproducible, not secret
        self._drawn = 0
        self._burst_left = 0
        self._lock = threading.Lock()  # release() and the waiters come from other threads
        self._released = False
        self._held: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._holding = threading.Condition(self._lock)

    def stats(self) -> dict[str, int]:
        """The counts by kind, for ``/_demo/stats``."""
        return dict(self.counts)

    def release(self) -> None:
        """End every hang now and hang no more (call it before the server stops)."""
        with self._lock:
            self._released = True
            for loop, released in self._held:
                loop.call_soon_threadsafe(released.set)

    def wait_until_holding(self, count: int = 1, timeout: float = 30.0) -> bool:
        """Block until ``count`` requests are held by ``hang`` (for tests); False on timeout."""
        with self._holding:
            return self._holding.wait_for(lambda: len(self._held) >= count, timeout)

    def _draw(self) -> FaultKind | None:
        if self._burst_left:
            self._burst_left -= 1
            return FaultKind.BURST
        limit = self.config.limit
        if limit is not None and self._drawn >= limit:
            return None
        if self.config.rate == 0 or self._random.random() >= self.config.rate:
            return None
        self._drawn += 1
        kind = self._random.choice(self.config.kinds)
        if kind is FaultKind.BURST:
            self._burst_left = self.config.burst_length - 1
        return kind

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(EXECUTIONS_PREFIX):
            await self.app(scope, receive, send)
            return
        kind = self._draw()
        if kind is None:
            await self.app(scope, receive, send)
            return
        self.counts[kind.value] += 1
        if kind is FaultKind.HANG:
            await self._hang(scope, receive, send)
        elif kind is FaultKind.SLOW:
            await asyncio.sleep(self.config.slow_ms / 1000)
            await self.app(scope, receive, send)
        elif kind in (FaultKind.RESET, FaultKind.TRUNCATED):
            start, body = await self._capture(scope, receive)
            await send(start)
            if kind is FaultKind.TRUNCATED:
                half = body[: len(body) // 2]
                await send({"type": "http.response.body", "body": half, "more_body": True})
            raise InjectedFault(f"injected {kind}")  # the server drops the connection
        else:
            for message in self._canned(kind, scope):
                await send(message)

    def _canned(self, kind: FaultKind, scope: Scope) -> list[Message]:
        """The whole answer of a fault that needs nothing from the wrapped app."""
        if kind is FaultKind.MALFORMED:
            return _json_200(b"<html><body>502 Bad Gateway</body></html>")
        if kind is FaultKind.WRONG_SHAPE:
            # The id alone, for a cancel too (``<id>/cancel``).
            execution_id = scope["path"].removeprefix(EXECUTIONS_PREFIX).split("/")[0]
            return _json_200(json.dumps([{"id": execution_id}]).encode())
        if kind is FaultKind.BURST:
            return _empty(self._random.choice(self.config.burst_statuses))
        if kind is FaultKind.RATE_LIMITED:
            wait = self._random.choice(self.config.retry_after)
            return _empty(429, [("retry-after", str(wait))])
        raise AssertionError(f"{kind} is not a canned fault")

    async def _capture(self, scope: Scope, receive: Receive) -> tuple[Message, bytes]:
        """The wrapped app's answer: its start message (Content-Length set) and its body."""
        start: Message = {}
        chunks: list[bytes] = []

        async def keep(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, keep)
        body = b"".join(chunks)
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(max(len(body), 1)).encode()))
        return {**start, "headers": headers}, body

    async def _hang(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hold the request, then answer it as usual unless the client went away meanwhile."""
        released = asyncio.Event()
        with self._lock:
            if not self._released:
                self._held.append((asyncio.get_running_loop(), released))
                self._holding.notify_all()
            else:
                released.set()
        received: list[Message] = []

        async def until_disconnect() -> None:
            while (message := await receive())["type"] != "http.disconnect":
                received.append(message)

        gone = asyncio.ensure_future(until_disconnect())
        woken = asyncio.ensure_future(released.wait())
        try:
            done, _ = await asyncio.wait(
                {gone, woken}, timeout=self.config.hang_seconds, return_when=FIRST_COMPLETED
            )
        finally:
            gone.cancel()
            woken.cancel()
            with self._lock:
                self._held = [held for held in self._held if held[1] is not released]
        if gone in done:
            return  # nobody is waiting for the answer any more

        async def replay() -> Message:
            return received.pop(0) if received else await receive()

        await self.app(scope, replay, send)
