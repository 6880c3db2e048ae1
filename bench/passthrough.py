"""A bare pass-through proxy: the least any gateway built on uvicorn and aiohttp adds.

``GET <path>`` is relayed as ``GET <upstream><path>`` on one aiohttp session (the gateway's own
``build_session``), and the upstream's status, content type and body are sent back. Nothing
else happens: no checks, no credentials, no cache, no metrics, no log line. Served by uvicorn
as ``polos-gateway serve`` serves the gateway (uvloop and httptools when installed, no access
log), it measures what receiving a request, one upstream call and answering cost on this
machine before a gateway does anything of its own. ``bench/run.py`` sets the cold gateway's
REST overhead beside it. A benchmark tool only: whatever the method, it sends a GET of the
path (no query string, no headers) to the upstream.

Usage::

    .venv/bin/python bench/passthrough.py --port 8001 --upstream-url http://127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import uvicorn
from starlette.types import Message, Receive, Scope, Send

# Run as a script, Python puts bench/ on the path, not the repository root the package sits in.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.settings import Settings
from gateway.upstream import build_session


class PassThrough:
    """The ASGI app: its lifespan opens and closes the one session."""

    def __init__(self, upstream_url: str) -> None:
        self.upstream_url = upstream_url.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http" or self.session is None:
            return
        async with self.session.get(self.upstream_url + scope["path"]) as answer:
            body = await answer.read()
            content_type = answer.headers.get("content-type", "application/json")
            status = answer.status
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

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message: Message = await receive()
            if message["type"] == "lifespan.startup":
                self.session = build_session(Settings(upstream_url=self.upstream_url))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-url", required=True)
    args = parser.parse_args(argv)
    uvicorn.run(
        PassThrough(args.upstream_url),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
