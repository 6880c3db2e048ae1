"""Bare floors: the least a gateway on uvicorn, aiohttp and Strawberry adds, for E and A.

* ``GET <path>`` is relayed as ``GET <upstream><path>`` on one aiohttp session (the gateway's
  own ``build_session``), and the upstream's status, content type and body are sent back:
  scenario E's request with nothing else done (no checks, no credentials, no cache, no
  metrics, no log line).
* ``POST /graphql`` reads the JSON body and hands it to Strawberry's ``Schema.execute``, the
  one call every Strawberry server makes, over a schema with one root field,
  ``execution(id)``, returning the gateway's ``Execution`` type: the same fields and the same
  tree resolvers, fed by a per-request aiodataloader that relays each GET (of the id in its
  canonical spelling, as the gateway sends it) on that session and parses the body into the
  gateway's record. Strawberry's ``ParserCache`` and ``ValidationCache`` parse and validate
  each document once; the result is encoded with orjson. Nothing else: no HTTP view, no
  middlewares, no credentials, no cache or single-flight, no limits, no error coding, no
  metrics. Scenario A's document, answered as the gateway answers it.

Served by uvicorn as ``polos-gateway serve`` serves the gateway (uvloop and httptools when
installed, no access log), they measure on this machine what receiving a request, one upstream
call and answering cost, and for GraphQL what Strawberry and graphql-core cost on top, before
a gateway does anything of its own. ``bench/run.py`` sets the cold gateway's overhead beside
them. A benchmark tool only: whatever the method, a path other than ``/graphql`` is relayed as a
GET of the path (no query string, no headers but one asking for the body uncompressed: the
session leaves bodies as they come, and the floors relay or parse them as they are).

Usage::

    .venv/bin/python bench/floors.py --port 8001 --upstream-url http://127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import orjson
import strawberry
import uvicorn
from aiodataloader import DataLoader
from starlette.types import Message, Receive, Scope, Send
from strawberry.extensions import ParserCache, ValidationCache

# Run as a script, Python puts bench/ on the path, not the repository root the package sits in.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.executions import FetchedExecution, decode_execution, parse_execution_id
from gateway.settings import Settings
from gateway.types import Execution
from gateway.upstream import build_session, execution_url

GRAPHQL_PATH = "/graphql"
PLAIN_BODY = {"accept-encoding": "identity"}


class Floors:
    """The ASGI app serving both floors: its lifespan opens and closes the one session."""

    def __init__(self, upstream_url: str) -> None:
        self.upstream_url = upstream_url.rstrip("/")
        self.settings = Settings(upstream_url=self.upstream_url)
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http" or self.session is None:
            return
        if scope["path"] == GRAPHQL_PATH:
            await _answer(send, 200, "application/json", await self._execute(receive))
            return
        async with self.session.get(
            self.upstream_url + scope["path"], headers=PLAIN_BODY
        ) as answer:
            body = await answer.read()
            content_type = answer.headers.get("content-type", "application/json")
            status = answer.status
        await _answer(send, status, content_type, body)

    async def _execute(self, receive: Receive) -> bytes:
        """The GraphQL request in the body, executed; its result as JSON."""
        body = b""
        while True:
            message: Message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = orjson.loads(body)
        context = FloorContext(RelayLoader(self), self.settings)
        result = await FLOOR_SCHEMA.execute(
            request["query"], variable_values=request.get("variables"), context_value=context
        )
        answer: dict[str, object] = {"data": result.data}
        if result.errors:
            answer["errors"] = [error.formatted for error in result.errors]
        return orjson.dumps(answer)

    async def fetch(self, execution_id: str) -> FetchedExecution:
        """One execution from the upstream, its body parsed into the gateway's record."""
        assert self.session is not None
        url = execution_url(self.upstream_url, execution_id)
        async with self.session.get(url, headers=PLAIN_BODY) as answer:
            body = await answer.read()
            if answer.status != 200:
                raise RuntimeError(f"the upstream answered {answer.status}")
        return decode_execution(execution_id, body)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message: Message = await receive()
            if message["type"] == "lifespan.startup":
                self.session = build_session(self.settings)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


class RelayLoader(DataLoader[str, FetchedExecution]):
    """One per request: the ids each tick asks for, relayed as concurrent GETs."""

    def __init__(self, floor: Floors) -> None:
        super().__init__()
        self.floor = floor

    async def batch_load_fn(  # type: ignore[override]
        self, keys: Sequence[str]
    ) -> list[FetchedExecution | BaseException]:
        fetches = (self.floor.fetch(key) for key in keys)
        return await asyncio.gather(*fetches, return_exceptions=True)


class FloorContext:
    """What the ``Execution`` type's resolvers read: a loader and the settings."""

    def __init__(self, loader: RelayLoader, settings: Settings) -> None:
        self.loader = loader
        self.settings = settings


@strawberry.type
class FloorQuery:
    @strawberry.field
    async def execution(
        self, info: strawberry.Info[FloorContext, None], id: strawberry.ID
    ) -> Execution | None:
        canonical = parse_execution_id(id)
        if canonical is None:
            raise ValueError(f"{id!r} is not an execution id")
        fetched = await info.context.loader.load(canonical)
        return Execution.from_record(fetched.record)


# Factories, as Strawberry asks: the caches behind them are shared by every request.
FLOOR_SCHEMA = strawberry.Schema(
    query=FloorQuery,
    extensions=[lambda: ParserCache(maxsize=256), lambda: ValidationCache(maxsize=256)],
)


async def _answer(send: Send, status: int, content_type: str, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode("latin-1")),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-url", required=True)
    args = parser.parse_args(argv)
    uvicorn.run(
        Floors(args.upstream_url),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
