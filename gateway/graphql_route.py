"""GraphQL over HTTP at ``/graphql``: Strawberry's FastAPI router with our context and encoder."""

from __future__ import annotations

import json

import orjson
from fastapi.routing import APIWebSocketRoute
from strawberry.fastapi import GraphQLRouter

from gateway.context import Context
from gateway.dependencies import LoaderDep, RequestIdDep, SettingsDep
from gateway.schema import build_schema


async def get_context(
    loader: LoaderDep, settings: SettingsDep, request_id: RequestIdDep
) -> Context:
    return Context(loader=loader, settings=settings, request_id=request_id)


class GatewayGraphQLRouter(GraphQLRouter[Context, None]):
    def encode_json(self, data: object) -> bytes:
        try:
            return orjson.dumps(data)
        except TypeError:
            # orjson stops at 64-bit integers; payloads may hold larger ones, kept exact.
            return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def create_graphql_router() -> GatewayGraphQLRouter:
    router = GatewayGraphQLRouter(build_schema(), path="/graphql", context_getter=get_context)
    # The schema has no subscriptions yet: without the WebSocket route an upgrade is refused
    # (403) before it is accepted.
    router.routes = [r for r in router.routes if not isinstance(r, APIWebSocketRoute)]
    return router
