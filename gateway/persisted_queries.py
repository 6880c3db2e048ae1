"""Automatic persisted queries (APQ), as Apollo Client's ``createPersistedQueryLink`` speaks it.

A client first sends only the SHA-256 of its document, in
``extensions.persistedQuery = {"version": 1, "sha256Hash": "<64 hex digits>"}``, over POST or
over GET (``?extensions=...&variables=...&operationName=...``, which a CDN can cache):

- a known hash runs the stored document, exactly as if the client had sent it;
- an unknown hash is answered 200 with
  ``{"errors": [{"message": "PersistedQueryNotFound",
  "extensions": {"code": "BAD_USER_INPUT"}}]}`` and ``Cache-Control`` that keeps
  caches from holding on to the miss; the client then POSTs the document together with its
  hash, which is checked (a mismatch is 400 ``BAD_USER_INPUT`` and nothing runs), stored, and
  run.

With ``persisted_queries_enabled`` off, any request with the extension is answered
``PersistedQueryNotSupported``, on which Apollo Client stops hashing and sends whole documents.

Apollo Client and urql recognise both answers by their message; the code is the contract's
``BAD_USER_INPUT`` (the request names a document the gateway cannot run), not Apollo Server's
``PERSISTED_QUERY_NOT_FOUND``, so a client handling the contract's codes handles these too.

Documents are neither secret nor per-credential (the hash names the document, and running one
still takes the caller's own credentials), so one store serves every client: an LRU bounded by
entries and bytes in each process and, with ``POLOS_GATEWAY_REDIS_URL``, Redis behind it with a
TTL, so a document registered on one replica is found on the others; Redis too keeps at most
``max_entries`` documents (the oldest registered go first), so nobody can fill it. Redis only
helps: every command has a short timeout and a breaker of its own, and while Redis fails the
store works from memory. A document over ``max_document_bytes`` is run (and refused by the query
limits) but never stored. A document that does not parse is stored like any other: its hash
pins it, running it again gives the same syntax error, and the bounds cap what anyone can
store, parseable or not; checking would cost a second parse of every registration.

Usage::

    async with open_persisted_queries(settings) as store:
        await store.resolve(request_data)   # fills in request_data.query, or raises
                                            # PersistedQueryError with the answer to send
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from strawberry.http import GraphQLRequestData

from gateway.errors import ErrorCode
from gateway.metrics import PERSISTED_QUERIES
from gateway.redis_cache import connect_redis
from gateway.resilience import CircuitBreaker, Permit
from gateway.settings import Settings

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

VERSION = 1
NOT_FOUND = "PersistedQueryNotFound"
NOT_SUPPORTED = "PersistedQueryNotSupported"
_CODE = ErrorCode.BAD_USER_INPUT.value
# A miss must not be cached by a CDN in front of GET: the document is registered a moment
# later, and a cached miss would send every client through the slow path again.
_UNCACHEABLE = {"Cache-Control": "private, no-cache, must-revalidate"}
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
# Runs in Redis, atomically: an index of the documents by registration time (Redis's own
# clock, the same for every replica) loses the members whose documents expired, gains this
# one, and the oldest beyond the bound are dropped with their documents.
# KEYS[1] index; ARGV: hash, TTL in ms, bound, document key prefix.
_BOUND = """
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - tonumber(ARGV[2]))
redis.call('ZADD', KEYS[1], now_ms, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3])
if excess > 0 then
  local oldest = redis.call('ZPOPMIN', KEYS[1], excess)
  for i = 1, #oldest, 2 do
    redis.call('DEL', ARGV[4] .. oldest[i])
  end
end
return 0
"""


class PersistedQueryError(Exception):
    """What to answer instead of running anything: a status and one coded GraphQL error."""

    def __init__(
        self, status: int, message: str, code: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}

    @property
    def body(self) -> dict[str, Any]:
        return {"errors": [{"message": self.message, "extensions": {"code": self.code}}]}


def document_hash(document: str) -> str:
    """The APQ name of ``document``: SHA-256 of its UTF-8 bytes, in lowercase hex."""
    return hashlib.sha256(document.encode()).hexdigest()


def _requested_hash(extension: object) -> str:
    """The hash named by an ``extensions.persistedQuery`` value; refuses a malformed one."""
    if not isinstance(extension, dict):
        raise _bad_input("`extensions.persistedQuery` must be an object.")
    version = extension.get("version")
    # bool is an int in Python, but `true` is not version 1.
    if isinstance(version, bool) or version != VERSION:
        raise _bad_input(
            f"Unsupported persisted query version {str(version)[:20]!r}; "
            f"only version {VERSION} is supported."
        )
    sha256_hash = extension.get("sha256Hash")
    if not isinstance(sha256_hash, str) or not _SHA256_HEX.fullmatch(sha256_hash):
        raise _bad_input(
            "`extensions.persistedQuery.sha256Hash` must be the SHA-256 of the document "
            "as 64 hexadecimal digits."
        )
    return sha256_hash.lower()


def _bad_input(message: str) -> PersistedQueryError:
    return PersistedQueryError(400, message, ErrorCode.BAD_USER_INPUT.value)


class PersistedQueries:
    """The documents clients registered, by hash: memory first, Redis behind it."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        max_entries: int = 1000,
        max_bytes: int = 8 * 2**20,
        max_document_bytes: int = 20_000,
        redis: Redis | None = None,
        redis_ttl: float = 86400.0,
        namespace: str = "polos-gateway-apq",
    ) -> None:
        self.enabled = enabled
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_document_bytes = max_document_bytes
        self._documents: OrderedDict[str, str] = OrderedDict()
        self.bytes = 0
        self._redis = redis
        self._redis_ttl_ms = int(redis_ttl * 1000)
        self._namespace = namespace
        self.breaker = CircuitBreaker(threshold=3, cooldown=5.0)

    async def resolve(self, data: GraphQLRequestData) -> None:
        """Apply the APQ protocol to one request: fill in ``data.query`` from the store, or
        register the document it carries. Raises ``PersistedQueryError`` when the answer is
        not the document's result. A request without the extension is left as it is."""
        extension = (data.extensions or {}).get("persistedQuery")
        if extension is None:
            return
        if not self.enabled:
            raise PersistedQueryError(200, NOT_SUPPORTED, _CODE, _UNCACHEABLE)
        sha256_hash = _requested_hash(extension)
        if data.query is None:
            document = await self.get(sha256_hash)
            if document is None:
                PERSISTED_QUERIES.labels("miss").inc()
                raise PersistedQueryError(200, NOT_FOUND, _CODE, _UNCACHEABLE)
            PERSISTED_QUERIES.labels("hit").inc()
            data.query = document
            return
        if document_hash(data.query) != sha256_hash:
            raise _bad_input(
                "The document does not match `extensions.persistedQuery.sha256Hash`: the hash "
                "must be the SHA-256 of the `query` exactly as sent. Nothing was run."
            )
        if await self.put(sha256_hash, data.query):
            PERSISTED_QUERIES.labels("registered").inc()

    async def get(self, sha256_hash: str) -> str | None:
        document = self._documents.get(sha256_hash)
        if document is not None:
            self._documents.move_to_end(sha256_hash)
            return document
        document = await self._redis_get(sha256_hash)
        if document is not None:
            self._remember(sha256_hash, document)
        return document

    async def put(self, sha256_hash: str, document: str) -> bool:
        """Keep ``document`` under its hash; True when it was new and kept somewhere."""
        if sha256_hash in self._documents:
            self._documents.move_to_end(sha256_hash)
            return False
        if len(document.encode()) > self.max_document_bytes:
            return False
        remembered = self._remember(sha256_hash, document)
        # Awaited: once the registering request is answered, every replica finds the document.
        shared = await self._redis_put(sha256_hash, document)
        return remembered or shared

    def _remember(self, sha256_hash: str, document: str) -> bool:
        size = len(document.encode())
        if size > self.max_bytes or self.max_entries == 0:
            return False
        self._documents[sha256_hash] = document
        self.bytes += size
        while len(self._documents) > self.max_entries or self.bytes > self.max_bytes:
            _, evicted = self._documents.popitem(last=False)
            self.bytes -= len(evicted.encode())
        return True

    def _key(self, sha256_hash: str) -> str:
        return f"{self._namespace}:{sha256_hash}"

    async def _redis_get(self, sha256_hash: str) -> str | None:
        if self._redis is None:
            return None
        permit = self.breaker.allow()
        if permit is None:
            return None
        try:
            raw = await self._redis.get(self._key(sha256_hash))
        except Exception as exc:
            self._failed("get", exc, permit)
            return None
        self.breaker.record_success(permit)
        if not isinstance(raw, bytes):
            return None
        try:
            document: str | None = raw.decode()
        except UnicodeDecodeError:
            document = None
        # Whatever is under the key, only the document with this hash is ever run for it.
        if document is None or document_hash(document) != sha256_hash:
            logger.warning("a persisted query in redis does not match its hash; ignored")
            return None
        return document

    async def _redis_put(self, sha256_hash: str, document: str) -> bool:
        """True when this call stored the document in Redis."""
        if self._redis is None or self._redis_ttl_ms <= 0:
            return False
        permit = self.breaker.allow()
        if permit is None:
            return False
        try:
            # NX: another replica may have stored the same document first; it is the same.
            stored = await self._redis.set(
                self._key(sha256_hash), document.encode(), px=self._redis_ttl_ms, nx=True
            )
            if stored:
                await self._bound_redis(self._redis, sha256_hash)
        except Exception as exc:
            self._failed("set", exc, permit)
            return False
        self.breaker.record_success(permit)
        return bool(stored)

    async def _bound_redis(self, redis: Redis, sha256_hash: str) -> None:
        """Keep Redis to ``max_entries`` documents too, whoever registers them (see
        ``_BOUND``); one script, so that replicas registering at once trim only once."""
        await redis.eval(
            _BOUND,
            1,
            f"{self._namespace}-index",
            sha256_hash,
            self._redis_ttl_ms,
            self.max_entries,
            f"{self._namespace}:",
        )

    def _failed(self, operation: str, exc: Exception, permit: Permit) -> None:
        self.breaker.record_failure(permit)
        logger.warning(
            "redis %s of a persisted query failed (%s); using memory only",
            operation,
            type(exc).__name__,
        )

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


@asynccontextmanager
async def open_persisted_queries(settings: Settings) -> AsyncIterator[PersistedQueries]:
    """The store ``settings`` describe, with Redis when ``redis_url`` is set; closed after."""
    redis = None
    if (
        settings.redis_url is not None
        and settings.persisted_queries_enabled
        and settings.persisted_queries_ttl > 0
    ):
        redis = connect_redis(str(settings.redis_url), settings.redis_timeout)
    store = PersistedQueries(
        enabled=settings.persisted_queries_enabled,
        max_entries=settings.persisted_queries_max_entries,
        max_bytes=settings.persisted_queries_max_bytes,
        max_document_bytes=settings.max_document_bytes,
        redis=redis,
        redis_ttl=settings.persisted_queries_ttl,
    )
    try:
        yield store
    finally:
        await store.aclose()
