"""Repeated documents: parsed, validated and priced once, with the same answers every time.

The schema keeps each document it has parsed (``gateway.schema.DocumentCache``), with its
validation errors and its cost per set of variables. These tests count the parses, validations
and cost estimates, and check that what is kept never answers for a request it does not fit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from graphql import parse

from gateway import schema as schema_module
from gateway.demo.data import demo_id
from gateway.schema import DocumentCache
from tests.conftest import StartGateway, graphql
from tests.servers import Recorder

LEAVES = [demo_id(f"eval/runner/case-{index}") for index in range(10)]
EXECUTIONS = "query Many($ids: [ID!]!) { executions(ids: $ids) { id } }"


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often the schema parsed, validated and priced a document."""
    counted: Counter[str] = Counter()

    def counting(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            counted[name] += 1
            return function(*args, **kwargs)

        return wrapper

    for name in ("parse", "validate_document", "estimate_fetches"):
        monkeypatch.setattr(schema_module, name, counting(name, getattr(schema_module, name)))
    return counted


def test_a_repeated_document_is_parsed_validated_and_priced_once(
    start_gateway: StartGateway, upstream: tuple[str, Recorder], calls: Counter[str]
) -> None:
    client = start_gateway(upstream[0], cache_enabled=False)

    bodies = [graphql(client, EXECUTIONS, {"ids": LEAVES[:2]}) for _ in range(3)]

    assert all("errors" not in body for body in bodies)
    assert [entry["id"] for entry in bodies[-1]["data"]["executions"]] == LEAVES[:2]
    assert calls == {"parse": 1, "validate_document": 1, "estimate_fetches": 1}


def test_the_cost_is_kept_per_set_of_variables(
    start_gateway: StartGateway, upstream: tuple[str, Recorder], calls: Counter[str]
) -> None:
    client = start_gateway(upstream[0], cache_enabled=False, max_query_cost=5)

    cheap = graphql(client, EXECUTIONS, {"ids": LEAVES[:5]})
    dear = graphql(client, EXECUTIONS, {"ids": LEAVES[:6]})
    cheap_again = graphql(client, EXECUTIONS, {"ids": LEAVES[:5]})
    dear_again = graphql(client, EXECUTIONS, {"ids": LEAVES[:6]})

    assert "errors" not in cheap
    assert "errors" not in cheap_again
    for body in (dear, dear_again):
        assert body["data"] is None
        assert body["errors"][0]["extensions"] == {
            "code": "QUERY_TOO_COMPLEX",
            "cost": 6,
            "limit": 5,
        }
    assert calls == {"parse": 1, "validate_document": 1, "estimate_fetches": 2}


def test_an_invalid_document_is_refused_the_same_way_every_time_validated_once(
    start_gateway: StartGateway, upstream: tuple[str, Recorder], calls: Counter[str]
) -> None:
    client = start_gateway(upstream[0], cache_enabled=False)
    query = '{ execution(id: "x") { nope } }'

    bodies = [graphql(client, query) for _ in range(3)]

    assert bodies[0] == bodies[1] == bodies[2]
    assert bodies[0]["data"] is None
    assert [error["extensions"]["code"] for error in bodies[0]["errors"]] == ["BAD_USER_INPUT"]
    assert calls == {"parse": 1, "validate_document": 1}
    assert upstream[1].execution_ids() == []


def test_a_document_that_does_not_parse_is_not_kept_and_always_gets_its_syntax_error(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(upstream[0], cache_enabled=False)

    bodies = [graphql(client, "{ execution(id: ") for _ in range(2)]

    for body in bodies:
        assert body["data"] is None
        assert body["errors"][0]["message"].startswith("Syntax Error")
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_the_document_cache_keeps_at_most_its_size_dropping_the_least_recently_used() -> None:
    documents = DocumentCache(maxsize=2)
    first = documents.put("{ a }", parse("{ a }"))
    documents.put("{ b }", parse("{ b }"))

    assert documents.get("{ a }") is first  # now the most recently used
    documents.put("{ c }", parse("{ c }"))

    assert len(documents) == 2
    assert documents.get("{ b }") is None
    assert documents.get("{ a }") is first
