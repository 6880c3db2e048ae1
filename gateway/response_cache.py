"""Whole answers to queries that read only final executions, kept for the same caller.

A completed, failed or cancelled execution never changes, so a query whose every execution
was final gets the same answer every time it is asked with the same credentials: a dashboard
polling a finished tree. Such an answer is kept whole and given again without parsing,
validating or executing anything, which is most of what a cached request costs.

What is kept, and for whom:

* only a query's answer (never a mutation's), only when it has no errors, only when it read
  executions (an answer that asked the upstream nothing proved no credentials), and only when
  every execution it read was final (``ExecutionLoader.only_final``);
* under the credential fingerprint of the caller (the execution cache's), the document, the
  operation name and the variables: another caller, another document or other variables is
  another entry;
* for ``cache_final_ttl``, in a bounded LRU of its own (``response_cache_max_entries``,
  ``response_cache_max_bytes``); nothing with the cache switched off.

An answer is kept as the bytes it was sent as (``{"data": …}``, encoded once), so a hit is
sent again as it is, without decoding or encoding anything.

Usage::

    responses = ResponseCache.from_settings(settings)
    key = responses.key(fingerprint, query, operation_name, variables)
    kept = await responses.get(key)        # None: run the query, then, if it qualifies,
    await responses.put(key, KeptAnswer(operation_name, encoded_answer))
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.cache import CachedAnswer, CacheKey, MemoryCache
from gateway.settings import Settings


class ResponseCache:
    def __init__(self, store: MemoryCache, ttl: float) -> None:
        self._store = store
        self._ttl = ttl

    @classmethod
    def from_settings(cls, settings: Settings) -> ResponseCache | None:
        """The cache ``settings`` describe, or None when nothing would be kept."""
        if (
            not settings.cache_enabled
            or settings.cache_final_ttl <= 0
            or settings.response_cache_max_entries == 0
        ):
            return None
        store = MemoryCache(
            max_entries=settings.response_cache_max_entries,
            max_bytes=settings.response_cache_max_bytes,
            backend="response",
        )
        return cls(store, settings.cache_final_ttl)

    @staticmethod
    def key(
        fingerprint: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, Any] | None,
    ) -> CacheKey:
        try:
            encoded = orjson.dumps(variables, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            encoded = repr(variables).encode()  # beyond orjson (huge integers): still exact
        request = hashlib.sha256()
        # JSON keeps a missing operation name (null) apart from an empty one ("").
        for part in (query.encode(), orjson.dumps(operation_name), encoded):
            request.update(len(part).to_bytes(8, "big"))
            request.update(part)
        return CacheKey(fingerprint, request.hexdigest())

    async def get(self, key: CacheKey) -> KeptAnswer | None:
        kept = await self._store.get(key)
        if kept is None:
            return None
        # An operation name is a GraphQL name ([_A-Za-z][_0-9A-Za-z]*): never empty, never
        # holding a newline, so an empty first line is no name.
        name, _, body = kept.body.partition(b"\n")
        return KeptAnswer(name.decode() or None, body)

    async def put(self, key: CacheKey, answer: KeptAnswer) -> None:
        envelope = (answer.operation_name or "").encode() + b"\n" + answer.body
        await self._store.put(key, CachedAnswer(200, envelope), self._ttl)


@dataclass(frozen=True, slots=True)
class KeptAnswer:
    """A query's answer as it was sent, and the name its operation ran under (for metrics
    and the log)."""

    operation_name: str | None
    body: bytes  # the encoded ``{"data": …}``

    @property
    def data(self) -> dict[str, Any]:
        """The answer's data, decoded again; exact for integers of any size."""
        data: dict[str, Any] = json.loads(self.body)["data"]
        return data
