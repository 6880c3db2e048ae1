"""Limits on what one GraphQL document may ask for, each checked before any upstream call.

Every refusal is ``QUERY_TOO_COMPLEX``, with a message naming the limit, its value and its
setting, and the figures in ``extensions``:

- document size in UTF-8 bytes, before parsing (``QueryLimits.check_size``);
- tokens, while parsing (graphql-core's ``max_tokens``; ``QueryLimits.reword`` words its
  error);
- depth and aliases, while validating (``limit_rules``);
- upstream fetches (the cost), after validation with the variables known and before
  execution (``estimate_fetches``, ``QueryLimits.cost_refusal``).

``gateway.schema``'s one extension runs each check at its step.

Depth and aliases are our own validation rules rather than Strawberry's ``QueryDepthLimiter``
and ``MaxAliasesLimiter``: those expand a fragment again at every spread, so fragments that
each spread the next one twice double their work per fragment (20 of them took seconds of a
blocked event loop, 60 would take centuries), and the depth limiter raises ``KeyError`` (an
internal error) on a spread of an unknown fragment. Here every fragment is measured once, so
each check is linear in the size of the document.

The cost is an upper bound on the executions a query may fetch: ``execution`` and ``node``
one each, ``executions(ids)`` one per id; within an execution ``parent`` and ``root`` one
each and ``ancestors(limit)`` ``limit`` of them (50 when left out or null), ``cancelExecution``
two (the cancel and the read after it), ``executionUpdated`` one per event; a selection under
a field counts once per execution that field gives. A list over its own cap
(``max_ids_per_query``, ``max_ancestors``) costs nothing: its resolver refuses it, with that
cap in the message, without fetching. The loader's de-duplication usually fetches fewer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSyntaxError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    get_named_type,
    get_operation_ast,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql.execution.values import VariableValues, get_argument_values, get_variable_values

from gateway.errors import QueryTooComplex
from gateway.settings import Settings

ANCESTORS_DEFAULT_LIMIT = 50
"""What ``ancestors`` walks when ``limit`` is left out or null (see ``types.Execution``)."""

_TOKEN_LIMIT_MESSAGE = re.compile(r"Document contains more than \d+ tokens")


def limit_error(message: str, nodes: Any = None, **extensions: int) -> GraphQLError:
    """A located GraphQL error coded ``QUERY_TOO_COMPLEX``, with the figures in ``extensions``."""
    failure = QueryTooComplex(message)
    return GraphQLError(
        message, nodes, original_error=failure, extensions={**failure.extensions, **extensions}
    )


class _Measure:
    """Depth and aliases of a document's selections, each fragment measured once."""

    def __init__(self, document: DocumentNode) -> None:
        self._fragments = {
            definition.name.value: definition
            for definition in document.definitions
            if isinstance(definition, FragmentDefinitionNode)
        }
        self._depths: dict[str, int] = {}
        self._aliases: dict[str, int] = {}

    def depth(self, selection_set: SelectionSetNode | None) -> int:
        """How many selection sets deep the deepest field is; a leaf field is 0.

        Introspection fields (``__schema``, ``__type``, ``__typename``) count as leaves:
        GraphiQL's own introspection query is deeper than any query of executions.
        """
        deepest = 0
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                if selection.name.value.startswith("__") or selection.selection_set is None:
                    continue
                deepest = max(deepest, 1 + self.depth(selection.selection_set))
            elif isinstance(selection, InlineFragmentNode):
                deepest = max(deepest, self.depth(selection.selection_set))
            elif isinstance(selection, FragmentSpreadNode):
                deepest = max(deepest, self._of_fragment(selection, self._depths, self.depth))
        return deepest

    def aliases(self, selection_set: SelectionSetNode | None) -> int:
        """Aliased fields, a fragment's counted at every spread of it."""
        count = 0
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                count += (selection.alias is not None) + self.aliases(selection.selection_set)
            elif isinstance(selection, InlineFragmentNode):
                count += self.aliases(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                count += self._of_fragment(selection, self._aliases, self.aliases)
        return count

    def _of_fragment(
        self,
        spread: FragmentSpreadNode,
        memo: dict[str, int],
        measure: Callable[[SelectionSetNode | None], int],
    ) -> int:
        name = spread.name.value
        fragment = self._fragments.get(name)
        if fragment is None:
            return 0  # graphql-core's KnownFragmentNames reports it
        if name not in memo:
            memo[name] = 0  # a cycle adds nothing; graphql-core's NoFragmentCycles reports it
            memo[name] = measure(fragment.selection_set)
        return memo[name]


def _operations(document: DocumentNode) -> Iterator[OperationDefinitionNode]:
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            yield definition


def limit_rules(settings: Settings) -> list[type[ASTValidationRule]]:
    """The depth and alias limits as graphql-core validation rules.

    Build them once per schema: Strawberry's ``ValidationCache`` keys on the rule classes.
    """
    max_depth = settings.max_query_depth
    max_aliases = settings.max_aliases

    class DepthLimit(ValidationRule):
        def enter_document(self, node: DocumentNode, *_: object) -> None:
            measure = _Measure(node)
            for operation in _operations(node):
                depth = measure.depth(operation.selection_set)
                if depth > max_depth:
                    name = operation.name.value if operation.name else "anonymous"
                    self.report_error(
                        limit_error(
                            f"Operation '{name}' nests fields {depth} levels deep; the limit "
                            f"is {max_depth} (POLOS_GATEWAY_MAX_QUERY_DEPTH). To walk up a "
                            "tree, ask for `ancestors(limit: N)`, which returns the whole "
                            "chain of parents at one level, instead of nesting `parent`.",
                            operation,
                            depth=depth,
                            limit=max_depth,
                        )
                    )

    class AliasLimit(ValidationRule):
        def enter_document(self, node: DocumentNode, *_: object) -> None:
            measure = _Measure(node)
            count = sum(measure.aliases(op.selection_set) for op in _operations(node))
            if count > max_aliases:
                self.report_error(
                    limit_error(
                        f"This document has {count} aliased fields; the limit is "
                        f"{max_aliases} (POLOS_GATEWAY_MAX_ALIASES). To read many executions "
                        "at once, ask for `executions(ids: [...])` instead of aliasing "
                        "`execution`.",
                        aliases=count,
                        limit=max_aliases,
                    )
                )

    return [DepthLimit, AliasLimit]


class QueryLimits:
    """The checks of one schema's limits; the schema's one extension calls them at each step.

    ``check_size`` refuses a document over the size limit before parsing, ``cost_refusal`` a
    query over the cost limit before execution, and ``reword`` words the token limit's parse
    error as the other limits are.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def check_size(self, query: str | None) -> None:
        size = len(query.encode()) if query else 0
        limit = self.settings.max_document_bytes
        if size > limit:
            # Strawberry turns an error raised while parsing into the operation's only error.
            raise limit_error(
                f"This document is {size} bytes; the limit is {limit} bytes "
                "(POLOS_GATEWAY_MAX_DOCUMENT_BYTES). Pass long lists of ids as variables "
                "rather than writing them into the document.",
                bytes=size,
                limit=limit,
            )

    def cost_refusal(self, cost: int) -> GraphQLExecutionResult | None:
        """The result to return instead of executing a query of ``cost``, if it is too dear."""
        limit = self.settings.max_query_cost
        if cost <= limit:
            return None
        return GraphQLExecutionResult(
            data=None,
            errors=[
                limit_error(
                    f"This query may cause {cost} upstream fetches; the limit is "
                    f"{limit}. Ask for fewer ids, a smaller `ancestors(limit)`, or "
                    "fewer `parent`, `root` and `ancestors` under a list "
                    "(POLOS_GATEWAY_MAX_QUERY_COST).",
                    cost=cost,
                    limit=limit,
                )
            ],
        )

    def reword(self, error: GraphQLError) -> GraphQLError:
        if not (
            isinstance(error, GraphQLSyntaxError) and _TOKEN_LIMIT_MESSAGE.search(error.message)
        ):
            return error
        limit = self.settings.max_tokens
        return limit_error(
            f"This document has more than {limit} tokens; the limit is {limit} "
            "(POLOS_GATEWAY_MAX_TOKENS). Pass long lists of ids as variables rather than "
            "writing them into the document.",
            limit=limit,
        )


def estimate_fetches(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    settings: Settings,
) -> int:
    """The most upstream fetches the operation ``operation_name`` may cause (module doc).

    0 when graphql-core will refuse the operation itself before running any resolver: no
    such operation, or variables that do not fit their types.
    """
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return 0
    root = schema.get_root_type(operation.operation)
    coerced = get_variable_values(
        schema, operation.variable_definitions or (), {**(variables or {})}
    )
    if root is None or isinstance(coerced, list):
        return 0
    return _Cost(schema, document, coerced, settings).of(operation.selection_set, root)


class _Cost:
    """Fetches per execution a selection set applies to; each fragment priced once."""

    def __init__(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        variables: VariableValues,
        settings: Settings,
    ) -> None:
        self._schema = schema
        self._variables = variables
        self._settings = settings
        self._fragments = {
            definition.name.value: definition
            for definition in document.definitions
            if isinstance(definition, FragmentDefinitionNode)
        }
        self._priced: dict[str, int] = {}

    def of(self, selection_set: SelectionSetNode | None, parent: GraphQLNamedType | None) -> int:
        total = 0
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                total += self._field(selection, parent)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                scope = self._schema.get_type(condition.name.value) if condition else parent
                total += self.of(selection.selection_set, scope)
            elif isinstance(selection, FragmentSpreadNode):
                total += self._fragment(selection.name.value)
        return total

    def _fragment(self, name: str) -> int:
        fragment = self._fragments.get(name)
        if fragment is None:
            return 0
        if name not in self._priced:
            self._priced[name] = 0  # a cycle adds nothing (validation refuses it anyway)
            scope = self._schema.get_type(fragment.type_condition.name.value)
            self._priced[name] = self.of(fragment.selection_set, scope)
        return self._priced[name]

    def _field(self, node: FieldNode, parent: GraphQLNamedType | None) -> int:
        if not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return 0
        definition = parent.fields.get(node.name.value)
        if definition is None:
            return 0
        try:
            arguments = get_argument_values(definition, node, self._variables)
        except GraphQLError:
            return 0  # the field fails with this error before its resolver runs
        fetches, gives = self._price(parent.name, node.name.value, arguments)
        if node.selection_set is None or gives == 0:
            return fetches
        return fetches + gives * self.of(node.selection_set, get_named_type(definition.type))

    def _price(self, type_name: str, field_name: str, arguments: dict[str, Any]) -> tuple[int, int]:
        """(upstream fetches one such field may cause, executions it gives its selection).

        A list over its cap costs nothing: its resolver refuses it (``BAD_USER_INPUT``, the
        cap in the message) without fetching, which says more than a cost would.
        """
        match type_name, field_name:
            case (
                ("Query", "execution" | "node")
                | ("Execution", "parent" | "root")
                | ("Subscription", "executionUpdated")
            ):
                return 1, 1
            case "Mutation", "cancelExecution":
                return 2, 1  # the cancel, then the execution as it is afterwards
            case "Query", "executions":
                ids = arguments.get("ids")
                count = len(ids) if isinstance(ids, list) else 1
                count = count if count <= self._settings.max_ids_per_query else 0
                return count, count
            case "Execution", "ancestors":
                limit = arguments.get("limit")
                count = ANCESTORS_DEFAULT_LIMIT if limit is None else int(limit)
                count = count if 0 <= count <= self._settings.max_ancestors else 0
                return count, count
        return 0, 1
