"""The two routes that carry the traffic, answered without FastAPI's routing and dependencies.

``POST``/``GET /graphql`` and ``GET``/``HEAD /api/v1/executions/{execution_id}`` are what
clients call over and over. Through FastAPI each request also walks the router, solves the
route's dependency tree and re-wraps exceptions, which the profile showed as a sixth of a
cached GraphQL request and half of a cached REST one (docs/benchmarks.md). ``HotRoutes``, the
innermost middleware, answers exactly those method and path pairs itself, with the same code the
routes run: the GraphQL router's ``run`` with the same context, and ``rest.answer`` with the
same per-request loader. Everything else (other methods, other paths, WebSockets, a path under
the executions route that is not one segment) goes on to FastAPI unchanged, and the routes stay
registered there, so the OpenAPI description and every other answer are as before.

Requests answered here still pass every middleware outside this one (request id, access log,
body limit, tracing), and carry the matched route in ``scope["route"]`` as FastAPI sets it, so
the access log and the metrics name the same route template.
"""

from __future__ import annotations

from collections.abc import Iterable

from cross_web import HTTPException
from fastapi import Response
from fastapi.background import BackgroundTasks
from fastapi.responses import PlainTextResponse
from fastapi.routing import APIRoute
from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import rest
from gateway.dependencies import request_loader
from gateway.graphql_route import GatewayGraphQLRouter, get_context
from gateway.upstream import EXECUTIONS_PATH


def _by_method(routes: Iterable[BaseRoute], path: str) -> dict[str, APIRoute]:
    return {
        method: route
        for route in routes
        if isinstance(route, APIRoute) and route.path == path
        for method in route.methods or ()
    }


class HotRoutes:
    """ASGI middleware; add it before any other so that it is the innermost.

    Usage::

        app.add_middleware(HotRoutes, graphql=graphql_router, rest_routes=rest.router.routes)
    """

    def __init__(
        self, app: ASGIApp, *, graphql: GatewayGraphQLRouter, rest_routes: Iterable[BaseRoute]
    ) -> None:
        self.app = app
        self.graphql = graphql
        graphql_routes = [r for r in graphql.routes if isinstance(r, APIRoute)]
        paths = {route.path for route in graphql_routes}
        if len(paths) != 1:
            raise ValueError(f"the GraphQL router serves {sorted(paths)}, not one path")
        self.graphql_path = paths.pop()
        self._graphql_routes = {
            method: route
            for method, route in _by_method(graphql_routes, self.graphql_path).items()
            if method in {"GET", "POST"}
        }
        self._rest_routes = _by_method(rest_routes, EXECUTIONS_PATH + "{execution_id}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method: str = scope["method"]
            path = get_route_path(scope)
            if path == self.graphql_path:
                route = self._graphql_routes.get(method)
                if route is not None:
                    scope["route"] = route
                    await self._graphql(scope, receive, send)
                    return
            elif path.startswith(EXECUTIONS_PATH):
                # The route's `{execution_id}`: one non-empty segment of the decoded path.
                execution_id = path[len(EXECUTIONS_PATH) :]
                route = self._rest_routes.get(method)
                if route is not None and execution_id and "/" not in execution_id:
                    scope["route"] = route
                    loader = request_loader(Request(scope, receive))
                    response = await rest.answer(execution_id, loader)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _graphql(self, scope: Scope, receive: Receive, send: Send) -> None:
        """What Strawberry's FastAPI handlers do, with the context built directly; a kept
        answer before anything else (``GatewayGraphQLRouter.answer_kept``)."""
        request = Request(scope, receive)
        kept = await self.graphql.answer_kept(request)
        if kept is not None:
            await kept(scope, receive, send)
            return
        context = await get_context(request)
        # FastAPI's sub-response for a route: no status yet, no content-length; Strawberry
        # copies its status and headers into the answer.
        sub_response = Response()
        del sub_response.headers["content-length"]
        sub_response.status_code = None  # type: ignore[assignment]
        background = BackgroundTasks()
        context.request = request
        context.response = sub_response
        context.background_tasks = background
        # As Strawberry's handler does: `run` reads it before it first awaits anything that
        # could let another request in.
        self.graphql.temporal_response = sub_response  # type: ignore[attr-defined]
        try:
            response = await self.graphql.run(request, context=context, root_value=None)
        except HTTPException as refusal:
            response = PlainTextResponse(refusal.reason, status_code=refusal.status_code)
        if background.tasks and response.background is None:
            response.background = background
        await response(scope, receive, send)
