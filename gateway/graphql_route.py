"""GraphQL at ``/graphql``, over HTTP and WebSocket: Strawberry's FastAPI router with our
context, encoder and refusals.

What HTTP takes, besides what Strawberry checks:

- ``POST`` only with ``Content-Type: application/json``. Form and text bodies (and none) are
  what a web page may send to another origin without a CORS preflight, with the visitor's
  cookies: they are refused with 415 and never executed, so a page cannot make a visitor's
  browser run operations here.
- ``GET`` runs queries only (Strawberry refuses other operations); a mutation is 405 with
  ``Allow: POST``, as GraphQL over HTTP asks.
- One operation per request: a JSON array (a batch) is refused.
- Automatic persisted queries (``gateway.persisted_queries``): a document's hash in
  ``extensions.persistedQuery`` stands for the document, over POST and GET alike.
- ``GET`` with ``Accept: text/html`` and no operation is GraphiQL, opened on an example
  (``gateway.graphiql``), which no other site may frame.
- Subscriptions only over the WebSocket; the answer of a query that read only final
  executions is kept whole for the same caller (``gateway.response_cache``).

The WebSocket speaks ``graphql-transport-ws`` and the legacy ``graphql-ws``. Only the gateway's
own origin and the CORS origins may open one; credentials come from the upgrade request (its
cookie only where ``_ambient_cookies_allowed`` says) or from ``connection_init``.

Every refusal of the request itself is a JSON body in GraphQL's error shape,
``{"errors": [{"message": ..., "extensions": {"code": "BAD_USER_INPUT"}}]}``, where
Strawberry alone would answer in plain text.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import overload

import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException, parse_content_type
from fastapi import Request, Response, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.fastapi import GraphQLRouter
from strawberry.http import GraphQLRequestData
from strawberry.http.base import BaseRequestProtocol
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.http.websocket_origin import is_same_origin, normalize_origin
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types import ExecutionResult, SubscriptionExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UNSET, UnsetType

from gateway.context import Context
from gateway.credentials import Credentials
from gateway.dependencies import new_loader, request_credentials, request_id_of, settings_of
from gateway.errors import ErrorCode
from gateway.graphiql import graphiql_page
from gateway.loaders import ExecutionLoader
from gateway.persisted_queries import PersistedQueries, PersistedQueryError
from gateway.request_stats import SCOPE_KEY, RequestStats, count_operation
from gateway.response_cache import KeptAnswer, ResponseCache
from gateway.schema import build_schema
from gateway.settings import Settings

JSON_MEDIA_TYPE = "application/json"
NOT_FRAMED = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}
# What an Accept header names to ask for a streamed answer (multipart/mixed,
# text/event-stream). This router offers no HTTP streams today, so Strawberry answers such a
# query plainly; a kept answer still leaves any mention to the view, should that change.
_STREAM_MEDIA_TYPES = ("multipart/", "text/event-stream")
# The request's body and its parse, for `parse_json` to give again. Only those very bytes
# get it (an identity check), so a value seen by later code in the same context, another
# request's body or a WebSocket message never does.
_parsed_body: ContextVar[tuple[bytes, object] | None] = ContextVar("parsed_body", default=None)
# Where a request notes the kept answer it looked for in vain (its ASGI scope's state).
_MISSED_ANSWER = "gateway.missed_answer"


def _media_type(content_type: str | None) -> str:
    media_type, _ = parse_content_type(content_type or "")
    return media_type


def _count_kept(stats: RequestStats | None, kept: KeptAnswer) -> None:
    """A request answered with a kept answer counts as its operation, and as a cache hit."""
    count_operation(stats, kept.operation_name, ())
    if stats is not None:
        stats.cache_hits += 1


async def get_context(connection: HTTPConnection) -> Context:
    """An HTTP request's context, with its loader; a WebSocket's, with a loader factory.

    A WebSocket's credentials are its upgrade request's until ``connection_init`` names
    others (``GatewayGraphQLRouter.on_ws_connect``).
    """
    if isinstance(connection, WebSocket):
        credentials = request_credentials(
            connection, ambient_cookies=_ambient_cookies_allowed(connection)
        )
        loader: ExecutionLoader | Callable[[Credentials], ExecutionLoader] = functools.partial(
            new_loader, connection
        )
    else:
        credentials = request_credentials(connection)
        loader = new_loader(connection, credentials)
    return Context(
        loader,
        settings_of(connection),
        request_id_of(connection),
        credentials=credentials,
        services=connection.app.state.services,
    )


def _ambient_cookies_allowed(websocket: WebSocket) -> bool:
    """May the cookies a browser attached to this upgrade act for its page?

    A browser sends its cookies with any upgrade, and no CORS check guards a WebSocket: a
    page on another origin could act as its visitor. The cookie counts only from the
    gateway's own pages, from clients that are not browsers (no ``Origin``), and from origins
    that CORS lets send credentials; other pages may still send credentials of their own in
    ``connection_init``.
    """
    origin = websocket.headers.get("origin")
    if origin is None or is_same_origin(origin, websocket.headers.get("host")):
        return True
    if websocket.headers.get("sec-fetch-site") == "same-origin":
        # Set by the browser, never by a page: the gateway's own page behind a proxy that
        # rewrites Host (nginx's default), where Origin and Host no longer match.
        return True
    settings = settings_of(websocket)
    return settings.cors_allow_credentials and normalize_origin(origin) in settings.cors_origins


class TextFrameAdapter(ASGIWebSocketAdapter):
    """Sends every message as a text frame, as both WebSocket protocols require; Strawberry
    would send our encoder's bytes as binary frames, which clients reject."""

    async def send_json(self, message: Mapping[str, object]) -> None:
        encoded = self.view.encode_json(message)
        text = encoded.decode() if isinstance(encoded, bytes) else encoded
        try:
            await self.ws.send_text(text)
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc


class GatewayGraphQLRouter(GraphQLRouter[Context, None]):
    websocket_adapter_class = TextFrameAdapter

    def encode_json(self, data: object) -> bytes:
        try:
            return orjson.dumps(data)
        except TypeError:
            # orjson stops at 64-bit integers; payloads may hold larger ones, kept exact.
            return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        if request.method == "POST":
            media_type = _media_type(request.content_type)
            if media_type != JSON_MEDIA_TYPE:
                raise HTTPException(
                    415,
                    f"POST /graphql takes Content-Type: {JSON_MEDIA_TYPE} (got "
                    f"{media_type or 'none'}); form and text bodies are refused so that no web "
                    "page can send operations with its visitors' credentials.",
                )
            # Strawberry reads the same body again below, and parses it through `parse_json`,
            # which gives it this parse rather than a second one.
            raw = await request.get_body()
            body = self.parse_json(raw)
            _parsed_body.set((raw, body))
            if isinstance(body, list):
                raise HTTPException(
                    400, "Batched operations are not accepted: send one operation per request."
                )
            if not isinstance(body, dict):
                raise HTTPException(
                    400, "The request body must be a JSON object with a `query` member."
                )
        return await super().parse_http_body(request)

    def parse_json(self, data: str | bytes) -> object:
        parsed = _parsed_body.get()
        if parsed is not None and parsed[0] is data:
            return parsed[1]  # this request's body, parsed once already
        return super().parse_json(data)

    async def answer_kept(self, request: Request) -> Response | None:
        """A kept answer (``gateway.response_cache``) to a plain POST, before Strawberry's
        view; None when there is none, or when the request is anything but plain.

        Finding a kept answer costs little next to building the context and walking the
        view around it (parsing the request twice over, negotiating, building the result),
        which the benchmark's profile of warm A showed as a large share of the request. The
        answer is the one ``execute_operation`` would give, byte for byte
        (``test_a_kept_answer_is_the_first_answer_byte_for_byte_headers_included``). It
        qualifies only when nothing the view checks could come out otherwise: a JSON object
        POSTed as exactly ``application/json``, with a string ``query``, object or null
        ``variables``, no ``extensions`` (persisted queries resolve in the view) and no
        ``Accept`` that could ask for a stream; a kept answer exists only for a query that
        ran without errors with the same credentials, document, operation name and
        variables. Everything else goes to the view unchanged, where ``execute_operation``
        does not ask again for an answer found missing here.
        """
        responses: ResponseCache | None = request.app.state.responses
        headers = request.headers
        if (
            responses is None
            or request.method != "POST"
            or _media_type(headers.get("content-type")) != JSON_MEDIA_TYPE
            or any(kind in headers.get("accept", "").lower() for kind in _STREAM_MEDIA_TYPES)
        ):
            return None
        raw = await request.body()
        try:
            body = self.parse_json(raw)
        except (HTTPException, ValueError):
            return None  # not JSON: the view refuses it with its own answer
        _parsed_body.set((raw, body))
        if not isinstance(body, dict) or body.get("extensions") is not None:
            return None
        query, variables = body.get("query"), body.get("variables")
        if not isinstance(query, str) or not isinstance(variables, dict | None):
            return None
        credentials = request_credentials(request)
        fingerprint = request.app.state.fetcher.fingerprint(credentials)
        key = responses.key(fingerprint, query, body.get("operationName"), variables)
        kept = await responses.get(key)
        state = request.scope.setdefault("state", {})
        if kept is None:
            state[_MISSED_ANSWER] = key
            return None
        _count_kept(state.get(SCOPE_KEY), kept)
        return Response(kept.body, media_type=JSON_MEDIA_TYPE)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """``connection_init``'s payload may carry the credentials a browser cannot put on
        an upgrade request, under the same names as the HTTP headers and cookie."""
        params = context.connection_params
        websocket = context.request
        if isinstance(params, dict) and params and isinstance(websocket, WebSocket):
            if context.initialised:
                # The legacy protocol takes a second connection_init; the credentials of
                # the subscriptions already running must not change under them.
                return await super().on_ws_connect(context)
            context.credentials = request_credentials(
                websocket, params, ambient_cookies=_ambient_cookies_allowed(websocket)
            )
        context.initialised = True
        return await super().on_ws_connect(context)

    def should_render_graphql_ide(self, request: BaseRequestProtocol) -> bool:
        # A GET naming a persisted query has no `query` either, and Apollo Client sends it
        # with `Accept: */*`: it asks for a result, not for GraphiQL.
        return (
            super().should_render_graphql_ide(request)
            and request.query_params.get("extensions") is None
        )

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        # GraphiQL fills its editor from the address (?query=…): framed by another site, a
        # visitor could be steered into running a mutation with their cookie.
        return HTMLResponse(graphiql_page(), headers=NOT_FRAMED)

    async def execute_operation(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        context: Context,
        root_value: None,
        sub_response: Response,
    ) -> ExecutionResult | list[ExecutionResult] | SubscriptionExecutionResult:
        if not isinstance(request_data, GraphQLRequestData):
            return await super().execute_operation(
                request, request_adapter, request_data, context, root_value, sub_response
            )
        store: PersistedQueries = request.app.state.persisted_queries
        await store.resolve(request_data)
        if request_data.protocol != "http":
            # Streamed HTTP (multipart, server-sent events): subscriptions have the
            # WebSocket, where the caps and the origin check apply.
            raise HTTPException(400, SUBSCRIPTIONS_OVER_WEBSOCKET)
        responses: ResponseCache | None = request.app.state.responses
        if responses is None or request_data.query is None:
            return await super().execute_operation(
                request, request_adapter, request_data, context, root_value, sub_response
            )
        key = responses.key(
            context.services.fetcher.fingerprint(context.credentials),
            request_data.query,
            request_data.operation_name,
            request_data.variables,
        )
        # `answer_kept` may have looked for this very answer already: ask once per request.
        missed = request.scope.get("state", {}).get(_MISSED_ANSWER)
        kept = None if key == missed else await responses.get(key)
        if kept is not None:
            _count_kept(context.loader.stats, kept)
            return ExecutionResult(data=kept.data, errors=None)
        result = await super().execute_operation(
            request, request_adapter, request_data, context, root_value, sub_response
        )
        if (
            isinstance(result, ExecutionResult)
            and not result.errors
            and result.data is not None
            and context.ran_query
            and context.loader.fetches > 0
            and context.loader.only_final
        ):
            # Encoded as the view is about to send it, so a hit is sent again as it is.
            answer = self.encode_json(await self.process_result(request, result))
            await responses.put(key, KeptAnswer(context.operation_name, answer))
        return result

    @overload
    async def run(
        self, request: Request, context: Context = UNSET, root_value: None = UNSET
    ) -> Response: ...

    @overload
    async def run(
        self, request: WebSocket, context: Context = UNSET, root_value: None = UNSET
    ) -> WebSocket: ...

    async def run(
        self, request: Request | WebSocket, context: Context = UNSET, root_value: None = UNSET
    ) -> Response | WebSocket:
        if isinstance(request, WebSocket):
            return await super().run(request, context, root_value)
        try:
            return await super().run(request, context, root_value)
        except HTTPException as refusal:
            _count_unrun(request, ErrorCode.BAD_USER_INPUT.value)
            return _refusal_response(refusal)
        except PersistedQueryError as answer:
            _count_unrun(request, answer.code)
            return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)


# The operation label of requests answered before any operation ran; operation names are
# made of [A-Za-z0-9_] only, so no client can send this one.
UNRUN_OPERATION = "(not run)"


def _count_unrun(request: Request, code: str) -> None:
    """A request answered without running an operation still counts, with its code, in the
    operations metric and on its access-log line."""
    stats = request.scope.get("state", {}).get(SCOPE_KEY)
    count_operation(
        stats if isinstance(stats, RequestStats) else None, None, (code,), label=UNRUN_OPERATION
    )


SUBSCRIPTIONS_OVER_WEBSOCKET = (
    "Subscriptions are served over a WebSocket at /graphql (graphql-transport-ws), not over "
    "HTTP requests."
)


def _refusal_response(refusal: HTTPException) -> Response:
    """Strawberry's refusal of a request, as a GraphQL error body instead of plain text."""
    status, headers, reason = refusal.status_code, {}, refusal.reason
    refused = refusal.__cause__
    if isinstance(refused, InvalidOperationTypeError):
        if refused.operation_type is OperationType.SUBSCRIPTION:
            reason = SUBSCRIPTIONS_OVER_WEBSOCKET
        else:
            # An operation the method may not run (a mutation over GET).
            status, headers = 405, {"Allow": "POST"}
    body = {"errors": [{"message": reason, "extensions": {"code": ErrorCode.BAD_USER_INPUT}}]}
    return JSONResponse(body, status_code=status, headers=headers)


def create_graphql_router(settings: Settings) -> GatewayGraphQLRouter:
    return GatewayGraphQLRouter(
        build_schema(settings),
        path="/graphql",
        context_getter=get_context,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
        # Browsers send cookies with a cross-site upgrade and no CORS guards a WebSocket:
        # only the gateway's own origin and the CORS origins may open one (else 403).
        allowed_origins=settings.cors_origins,
        # Strawberry's cap counts every operation in flight on a connection and refuses
        # without a code; ours (subscriptions only, RATE_LIMITED) comes first.
        max_subscriptions_per_connection=2 * settings.max_subscriptions_per_connection,
    )
