"""The GraphQL front door: the ``Query`` root and the schema with its error coding and limits.

Every error leaves with ``extensions.code``. Expected failures (``GatewayError``) carry their
own; errors graphql-core raises about the document or its variables are ``BAD_USER_INPUT``;
anything else is a bug, logged with its stack and shown to the client only as ``INTERNAL``
with the request id to quote. What a query may ask for is capped by ``gateway.limits``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import strawberry
from graphql import ASTValidationRule, DocumentNode, GraphQLError, parse
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import DEFAULT_ALLOWED_OPERATION_TYPES, validate_document
from strawberry.types import ExecutionContext
from strawberry.types.execution import ExecutionResult
from strawberry.types.graphql import OperationType

from gateway.context import Context, Info
from gateway.errors import BadUserInput, ErrorCode, GatewayError
from gateway.executions import parse_execution_id
from gateway.limits import QueryLimits, estimate_fetches, limit_rules
from gateway.request_stats import count_operation
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
            events = context.services.watch.watch(execution_id, context.credentials)
            # Closed here, at once, when the subscriber leaves: it releases the poller.
            async with contextlib.aclosing(events):
                async for event in events:
                    if event.error is not None:
                        # Each subscriber raises its own copy: the event is shared by all.
                        raise WatchEnded(event.error)
                    assert event.execution is not None
                    # The fields under this event load with a loader (and deadline) of their own.
                    context.renew_loader()
                    yield Execution.from_record(event.execution.record)
        finally:
            context.subscriptions -= 1


@dataclass(slots=True)
class _Document:
    """A parsed document, its validation errors once known and its costs by variables."""

    document: DocumentNode
    rules: tuple[type[ASTValidationRule], ...] | None = None
    errors: list[GraphQLError] | None = None
    costs: dict[tuple[str | None, bytes], int] = field(default_factory=dict)


# Costs kept per document: one per distinct (operation, variables) seen, up to this many.
_COSTS_PER_DOCUMENT = 64


class DocumentCache:
    """Documents by their text, parsed and validated once: a bounded LRU.

    Dashboards send the same few documents over and over. Parsing depends only on the text (the
    parse options are the schema's own), validation on the document and the rules (kept with
    the errors and compared on every use), and the cost on those and the variables. Keyed on
    the text rather than on the parsed document, whose hash walks the whole tree.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._documents: OrderedDict[str, _Document] = OrderedDict()

    def __len__(self) -> int:
        return len(self._documents)

    def get(self, query: str) -> _Document | None:
        entry = self._documents.get(query)
        if entry is not None:
            self._documents.move_to_end(query)
        return entry

    def put(self, query: str, document: DocumentNode) -> _Document:
        entry = self._documents[query] = _Document(document)
        while len(self._documents) > self.maxsize:
            self._documents.popitem(last=False)
        return entry


def _variables_key(variables: dict[str, Any] | None) -> bytes | None:
    """A digest of the variables' values, None when they are not plain JSON to orjson."""
    try:
        encoded = orjson.dumps(variables, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return None  # integers beyond 64 bits: priced every time
    return hashlib.blake2b(encoded, digest_size=16).digest()


class GatewayExtension(SchemaExtension):
    """Everything the gateway adds to an operation, as one extension (each one costs a set of
    hooks on every request):

    - documents parsed, validated and priced once (``DocumentCache``);
    - the limits of ``gateway.limits``: size before parsing, tokens while parsing, depth and
      aliases while validating, cost before executing;
    - every error leaves with a code, and the unexpected ones are logged and masked;
    - the operation is counted by name and outcome, and both are noted for the access log.
    """

    def __init__(
        self,
        limits: QueryLimits,
        documents: DocumentCache,
        rules: tuple[type[ASTValidationRule], ...],
    ) -> None:
        self.limits = limits
        self.documents = documents
        self.rules = rules
        self._entry: _Document | None = None

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        context.parse_options["max_tokens"] = self.limits.settings.max_tokens
        context.validation_rules = context.validation_rules + self.rules
        yield
        result = context.result
        if isinstance(result, GraphQLExecutionResult | ExecutionResult) and result.errors:
            # The token limit's wording first, so that its error is coded as a limit.
            result.errors = [self._coded(self.limits.reword(error)) for error in result.errors]
        self._count()

    def on_stream_result(self, result: object) -> Iterator[None]:
        """Over a WebSocket, each result is coded as it is sent."""
        if isinstance(result, GraphQLExecutionResult | ExecutionResult) and result.errors:
            result.errors = [self._coded(error) for error in result.errors]
        yield

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        query = context.query
        self.limits.check_size(query)
        if query:
            entry = self.documents.get(query)
            if entry is None:
                try:
                    document = parse(query, **context.parse_options)
                except GraphQLError:
                    # Left to Strawberry's own parse step, whose error is coded like any other.
                    document = None
                entry = None if document is None else self.documents.put(query, document)
            if entry is not None:
                context.graphql_document = entry.document
                self._entry = entry
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        entry = self._entry
        if entry is not None and context.graphql_document is entry.document:
            rules = context.validation_rules
            if entry.rules != rules:
                entry.errors = validate_document(context.schema._schema, entry.document, rules)
                entry.rules = rules
            context.pre_execution_errors = entry.errors
        yield

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and context.result is None:
            refusal = self.limits.cost_refusal(self._cost(document))
            if refusal is not None:
                # A result set before execution is returned instead of executing.
                context.result = refusal
        yield

    def _cost(self, document: DocumentNode) -> int:
        context = self.execution_context
        entry = self._entry
        variables = _variables_key(context.variables) if entry is not None else None
        key = (context.operation_name, variables or b"")
        if entry is not None and variables is not None and key in entry.costs:
            return entry.costs[key]
        cost = estimate_fetches(
            context.schema._schema,
            document,
            context.operation_name,
            context.variables,
            self.limits.settings,
        )
        if entry is not None and variables is not None:
            if len(entry.costs) >= _COSTS_PER_DOCUMENT:
                entry.costs.clear()
            entry.costs[key] = cost
        return cost

    def _coded(self, error: GraphQLError) -> GraphQLError:
        """Gives the error a code; masks (and logs) one nobody expected."""
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

    def _count(self) -> None:
        """Counts the operation by name and outcome, and notes both for the access log."""
        context = self.execution_context
        result = context.result
        codes = [
            str((error.extensions or {}).get("code", ErrorCode.INTERNAL.value))
            for error in (result.errors or [] if result is not None else [])
        ]
        name = context.operation_name
        gateway = context.context if isinstance(context.context, Context) else None
        count_operation(None if gateway is None else gateway.loader.stats, name, codes)
        if gateway is not None and context.graphql_document is not None:
            gateway.ran_query = context.operation_type is OperationType.QUERY
            gateway.operation_name = name


# graphql-core appends every suggestion to its message as " Did you mean …?".
_SUGGESTION = re.compile(r"\s*Did you mean .*$", re.DOTALL)


class GatewaySchema(strawberry.Schema):
    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        """One result for one request: HTTP's way (a WebSocket streams instead), which has
        no way to deliver a subscription's events, so a subscription is refused here."""
        allowed = set(allowed_operation_types or DEFAULT_ALLOWED_OPERATION_TYPES)
        return await super().execute(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            allowed - {OperationType.SUBSCRIPTION},
            operation_extensions,
        )

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
    rules: tuple[type[ASTValidationRule], ...] = tuple(limit_rules(limits))
    if not limits.introspection_enabled:
        rules += (NoSchemaIntrospectionCustomRule,)
    checks = QueryLimits(limits)
    documents = DocumentCache(maxsize=256)
    extensions: list[type[SchemaExtension] | Callable[[], SchemaExtension]] = [
        lambda: GatewayExtension(checks, documents, rules),
    ]
    return GatewaySchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[Execution],
        extensions=extensions,
        config=StrawberryConfig(disable_field_suggestions=not limits.field_suggestions_enabled),
    )
