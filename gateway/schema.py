"""The GraphQL front door: the ``Query`` root and the schema with its error coding and limits.

Every error leaves with ``extensions.code``. Expected failures (``GatewayError``) carry their
own; errors graphql-core raises about the document or its variables are ``BAD_USER_INPUT``;
anything else is a bug, logged with its stack and shown to the client only as ``INTERNAL``
with the request id to quote. What a query may ask for is capped by ``gateway.limits``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncGenerator, Callable, Iterator

import strawberry
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext
from strawberry.types.execution import ExecutionResult

from gateway.context import Context, Info
from gateway.errors import BadUserInput, ErrorCode, GatewayError
from gateway.executions import parse_execution_id
from gateway.limits import QueryLimits, limit_rules
from gateway.metrics import GRAPHQL_OPERATIONS, OPERATION_NAMES
from gateway.settings import Settings
from gateway.subscriptions import TooManySubscriptions, WatchEnded
from gateway.types import Execution, Node, as_list_items

logger = logging.getLogger(__name__)


def _canonical_id(raw: str) -> str:
    canonical = parse_execution_id(raw)
    if canonical is None:
        raise BadUserInput(f"{raw[:80]!r} is not an execution id; execution ids are UUIDs.")
    return canonical


async def _load(info: Info, raw_id: str) -> Execution:
    fetched = await info.context.loader.load(_canonical_id(raw_id))
    return Execution.from_record(fetched.record)


async def _load_or_error(info: Info, raw_id: str) -> Execution | GatewayError:
    try:
        return await _load(info, raw_id)
    except GatewayError as failure:
        return failure


@strawberry.type
class Query:
    @strawberry.field(description="One execution by id; null with an error if it cannot be read.")
    async def execution(self, info: Info, id: strawberry.ID) -> Execution | None:
        return await _load(info, id)

    @strawberry.field(
        description="Executions by id, in the order asked, one entry per id; an entry is null "
        "(with its own error) where that execution could not be read. Null as a whole only "
        "when more ids are asked for than the configured cap."
    )
    async def executions(
        self, info: Info, ids: list[strawberry.ID]
    ) -> list[Execution | None] | None:
        cap = info.context.settings.max_ids_per_query
        if len(ids) > cap:
            raise BadUserInput(f"executions(ids) takes at most {cap} ids; got {len(ids)}.")
        # gather starts every load in the same tick, so they all land in one loader batch.
        results = await asyncio.gather(*(_load_or_error(info, raw_id) for raw_id in ids))
        return as_list_items(list(results))

    @strawberry.field(description="Any object by its global id (Relay). Executions use their UUID.")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        return await _load(info, id)


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Cancel an execution and, with it, its unfinished children. Returns the "
        "execution as it is afterwards (PENDING_CANCEL until its worker confirms, then "
        "CANCELLED). Sent once and never retried: if it times out, read the execution before "
        "trying again. A final execution cannot be cancelled (BAD_USER_INPUT)."
    )
    async def cancel_execution(self, info: Info, id: strawberry.ID) -> Execution | None:
        execution_id = _canonical_id(id)
        context = info.context
        services = context.services
        await services.upstream.cancel_execution(execution_id, context.credentials)
        await services.fetcher.forget(execution_id, context.credentials)
        services.watch.nudge(execution_id)
        try:
            # Fresh from the upstream: a cached or in-flight read may predate the cancel.
            fetched = await services.upstream.fetch_execution(execution_id, context.credentials)
        except GatewayError as failure:
            failure.reword(f"The cancel was accepted, but reading it back failed: {failure}")
            raise
        return Execution.from_record(fetched.record)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="The execution now, then each time it changes; completes after a final "
        "status. Ends with an error (NOT_FOUND, UNAUTHENTICATED, FORBIDDEN, or the upstream "
        "failure that persisted) when it can no longer be read. Subscribers watching the same "
        "execution with the same credentials share one upstream poller."
    )
    async def execution_updated(
        self, info: Info, id: strawberry.ID
    ) -> AsyncGenerator[Execution, None]:
        execution_id = _canonical_id(id)
        context = info.context
        cap = context.settings.max_subscriptions_per_connection
        if context.subscriptions >= cap:
            raise TooManySubscriptions(
                f"This connection already holds {cap} subscriptions, the most one may "
                "(POLOS_GATEWAY_MAX_SUBSCRIPTIONS_PER_CONNECTION)."
            )
        context.subscriptions += 1
        try:
            async for event in context.services.watch.watch(execution_id, context.credentials):
                if event.error is not None:
                    # Every subscriber raises its own copy: the event is shared between them.
                    raise WatchEnded(event.error)
                assert event.execution is not None
                # The fields under this event load with a loader (and a deadline) of their own.
                context.renew_loader()
                yield Execution.from_record(event.execution.record)
        finally:
            context.subscriptions -= 1


class ErrorCodes(SchemaExtension):
    """Gives every error a code and masks the ones nobody expected; over a WebSocket, each
    result as it is sent."""

    def on_operation(self) -> Iterator[None]:
        yield
        self._code(self.execution_context.result)

    def on_stream_result(self, result: object) -> Iterator[None]:
        self._code(result)
        yield

    def _code(self, result: object) -> None:
        if isinstance(result, GraphQLExecutionResult | ExecutionResult) and result.errors:
            result.errors = [self._coded(error) for error in result.errors]

    def _coded(self, error: GraphQLError) -> GraphQLError:
        if (error.extensions or {}).get("code"):
            return error  # coded already: by the upstream failure, or by an earlier pass
        original = error.original_error
        if original is None or isinstance(original, GraphQLError):
            # Parse, validation and variable errors: the document is what needs fixing.
            error.extensions = {**(error.extensions or {}), "code": ErrorCode.BAD_USER_INPUT.value}
            return error
        if isinstance(original, GatewayError):
            return error
        context = self.execution_context.context
        request_id = context.request_id if isinstance(context, Context) else "unknown"
        logger.error(
            "unexpected error resolving %s (request %s)",
            ".".join(str(part) for part in error.path or ()),
            request_id,
            exc_info=original,
        )
        return GraphQLError(
            f"Internal error; quote request id {request_id} when reporting it.",
            nodes=error.nodes,
            path=error.path,
            extensions={"code": ErrorCode.INTERNAL.value},
        )


class OperationStats(SchemaExtension):
    """Counts the operation by name and outcome, and notes both for the access log.

    Listed before ``ErrorCodes``, so it sees the errors after they got their codes.
    """

    def on_operation(self) -> Iterator[None]:
        yield
        context = self.execution_context
        result = context.result
        codes = [
            str((error.extensions or {}).get("code", ErrorCode.INTERNAL.value))
            for error in (result.errors or [] if result is not None else [])
        ]
        name = context.operation_name
        GRAPHQL_OPERATIONS.labels(OPERATION_NAMES.label(name), codes[0] if codes else "ok").inc()
        if isinstance(context.context, Context):
            stats = context.context.loader.stats
            stats.operation_name = None if name is None else name[: OPERATION_NAMES.length]
            stats.error_codes.extend(codes)


class DocumentCache(ParserCache):
    """Strawberry's parser cache, except that a document that fails to parse is left to
    Strawberry's own parse step, whose error goes through ``ErrorCodes`` like any other."""

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        try:
            context.graphql_document = self.cached_parse_document(
                context.query, **context.parse_options
            )
        except GraphQLError:
            context.graphql_document = None
        yield


# graphql-core appends every suggestion to its message as " Did you mean …?".
_SUGGESTION = re.compile(r"\s*Did you mean .*$", re.DOTALL)


class GatewaySchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """``ErrorCodes`` already logged what deserves logging; expected errors stay quiet."""

    @staticmethod
    def remove_field_suggestion(error: GraphQLError) -> None:
        """With suggestions off, drop every "Did you mean", not only the field names Strawberry
        drops: argument, type and enum value suggestions spell out the schema just as well."""
        error.message = _SUGGESTION.sub("", error.message)


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    """The gateway's schema with the limits of ``settings`` (None: the defaults).

    ``polos-gateway export-schema`` prints it as SDL; the limits do not change the SDL.
    """
    # None: the declared defaults, not the environment.
    limits = settings if settings is not None else Settings.model_construct()
    rules = limit_rules(limits)
    extensions: list[type[SchemaExtension] | Callable[[], SchemaExtension]] = [
        OperationStats,
        ErrorCodes,
        # Before the parser cache: an oversized document is refused unparsed.
        lambda: QueryLimits(limits),
        lambda: MaxTokensLimiter(max_token_count=limits.max_tokens),
        lambda: AddValidationRules(rules),
        # Dashboards send the same few documents over and over: parse and validate each once.
        lambda: DocumentCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
    ]
    if not limits.introspection_enabled:
        extensions.append(DisableIntrospection)
    return GatewaySchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[Execution],
        extensions=extensions,
        config=StrawberryConfig(disable_field_suggestions=not limits.field_suggestions_enabled),
    )
