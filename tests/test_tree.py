"""Walking execution trees: parent, root and ancestors, including the broken links."""

from __future__ import annotations

import httpx
import pytest

from gateway.demo.data import CHAIN_DEPTH, DemoStore, demo_id
from gateway.demo.upstream import create_demo_app
from tests.conftest import AUTH_HEADERS, StartGateway, error_codes, graphql
from tests.servers import Recorder, serve

TREE = """
query Tree($id: ID!, $limit: Int! = 50) {
  execution(id: $id) {
    id isRoot
    parent { id }
    root { id }
    ancestors(limit: $limit) { id }
  }
}
"""


def ids(*names: str) -> list[dict[str, str]]:
    return [{"id": demo_id(name)} for name in names]


def test_a_leaf_gets_its_parent_root_and_whole_ancestor_chain_in_one_query(
    gateway: httpx.Client,
) -> None:
    leaf = "research/planner/search-0/summarise/llm"

    body = graphql(gateway, TREE, {"id": demo_id(leaf)})

    assert "errors" not in body
    assert body["data"]["execution"] == {
        "id": demo_id(leaf),
        "isRoot": False,
        "parent": {"id": demo_id("research/planner/search-0/summarise")},
        "root": {"id": demo_id("research")},
        "ancestors": ids(
            "research/planner/search-0/summarise",
            "research/planner/search-0",
            "research/planner",
            "research",
        ),
    }


def test_a_top_level_execution_is_its_own_root_without_another_upstream_call(
    gateway: httpx.Client, upstream: tuple[str, Recorder]
) -> None:
    body = graphql(gateway, TREE, {"id": demo_id("research")})

    assert body["data"]["execution"] == {
        "id": demo_id("research"),
        "isRoot": True,
        "parent": None,
        "root": {"id": demo_id("research")},
        "ancestors": [],
    }
    assert upstream[1].execution_ids() == [demo_id("research")]


def test_ancestors_stop_at_the_limit_parent_first(gateway: httpx.Client) -> None:
    tail = CHAIN_DEPTH - 1

    body = graphql(gateway, TREE, {"id": demo_id(f"chain/{tail}"), "limit": 3})

    assert body["data"]["execution"]["ancestors"] == ids(
        f"chain/{tail - 1}", f"chain/{tail - 2}", f"chain/{tail - 3}"
    )


def test_ancestors_default_to_fifty_and_end_at_the_root_when_it_is_nearer(
    gateway: httpx.Client,
) -> None:
    tail = CHAIN_DEPTH - 1
    default = graphql(gateway, TREE, {"id": demo_id(f"chain/{tail}")})
    whole = graphql(gateway, TREE, {"id": demo_id(f"chain/{tail}"), "limit": 100})

    assert len(default["data"]["execution"]["ancestors"]) == 50
    chain = whole["data"]["execution"]["ancestors"]
    assert chain == ids(*(f"chain/{level}" for level in range(tail - 1, -1, -1)))
    assert chain[-1] == whole["data"]["execution"]["root"]


def test_a_limit_of_zero_gives_no_ancestors_and_costs_nothing(
    gateway: httpx.Client, upstream: tuple[str, Recorder]
) -> None:
    body = graphql(
        gateway,
        "query($id: ID!) { execution(id: $id) { ancestors(limit: 0) { id } } }",
        {"id": demo_id("chain/10")},
    )

    assert body["data"]["execution"]["ancestors"] == []
    assert upstream[1].execution_ids() == [demo_id("chain/10")]


@pytest.mark.parametrize("limit", [-1, 101, 10_000])
def test_a_limit_outside_the_cap_is_refused_and_the_execution_still_resolves(
    gateway: httpx.Client, limit: int
) -> None:
    body = graphql(gateway, TREE, {"id": demo_id("chain/5"), "limit": limit})

    assert body["data"]["execution"]["id"] == demo_id("chain/5")
    assert body["data"]["execution"]["root"] == {"id": demo_id("chain/0")}
    assert error_codes(body) == [("execution.ancestors", "BAD_USER_INPUT")]
    assert "between 0 and 100" in body["errors"][0]["message"]


def test_a_parent_loop_ends_in_cycle_detected_and_keeps_what_resolved(
    gateway: httpx.Client,
) -> None:
    body = graphql(gateway, TREE, {"id": demo_id("loop/a")})

    execution = body["data"]["execution"]
    assert execution["parent"] == {"id": demo_id("loop/b")}
    assert execution["root"] is None
    assert execution["ancestors"] == [{"id": demo_id("loop/b")}, None]
    assert error_codes(body) == [
        ("execution.ancestors.1", "CYCLE_DETECTED"),
        ("execution.root", "CYCLE_DETECTED"),
    ]


def test_an_execution_naming_itself_as_parent_is_a_cycle_not_a_hang(
    gateway: httpx.Client, upstream: tuple[str, Recorder]
) -> None:
    body = graphql(gateway, TREE, {"id": demo_id("loop/self")})

    execution = body["data"]["execution"]
    assert (execution["parent"], execution["root"], execution["ancestors"]) == (None, None, [None])
    assert error_codes(body) == [
        ("execution.ancestors.0", "CYCLE_DETECTED"),
        ("execution.parent", "CYCLE_DETECTED"),
        ("execution.root", "CYCLE_DETECTED"),
    ]
    assert upstream[1].execution_ids() == [demo_id("loop/self")]


def test_a_deleted_parent_and_root_give_null_with_not_found_for_those_fields_only(
    gateway: httpx.Client,
) -> None:
    body = graphql(gateway, TREE, {"id": demo_id("orphan/child")})

    execution = body["data"]["execution"]
    assert execution["id"] == demo_id("orphan/child")
    assert (execution["parent"], execution["root"], execution["ancestors"]) == (None, None, [None])
    assert error_codes(body) == [
        ("execution.ancestors.0", "NOT_FOUND"),
        ("execution.parent", "NOT_FOUND"),
        ("execution.root", "NOT_FOUND"),
    ]


def test_with_todays_orchestrator_a_deleted_parent_is_an_upstream_error_with_its_status(
    start_gateway: StartGateway, secured_upstream: tuple[str, Recorder]
) -> None:
    client = start_gateway(secured_upstream[0])

    body = graphql(client, TREE, {"id": demo_id("orphan/child")}, **AUTH_HEADERS)

    assert body["data"]["execution"]["parent"] is None
    parent_error = next(e for e in body["errors"] if e["path"] == ["execution", "parent"])
    assert parent_error["extensions"] == {"code": "UPSTREAM_ERROR", "upstreamStatus": 500}


def _chain_without_root_links(depth: int) -> tuple[DemoStore, str]:
    store = DemoStore()
    store.add("n/0", "step", "completed", payload={})
    for level in range(1, depth):
        store.add(f"n/{level}", "step", "completed", parent=f"n/{level - 1}", payload={})
    for record in store.executions.values():
        record["root_execution_id"] = None
    return store, demo_id(f"n/{depth - 1}")


def test_without_a_root_link_the_root_is_found_by_walking_parents(
    start_gateway: StartGateway,
) -> None:
    store, leaf = _chain_without_root_links(6)
    with serve(create_demo_app(store=store), lifespan="off") as upstream_url:
        body = graphql(start_gateway(upstream_url), TREE, {"id": leaf})

    assert "errors" not in body
    assert body["data"]["execution"]["root"] == {"id": demo_id("n/0")}


def test_a_root_further_up_than_the_cap_is_refused_as_too_complex(
    start_gateway: StartGateway,
) -> None:
    store, leaf = _chain_without_root_links(6)
    with serve(create_demo_app(store=store), lifespan="off") as upstream_url:
        client = start_gateway(upstream_url, max_ancestors=3)
        body = graphql(
            client, "query($id: ID!) { execution(id: $id) { root { id } } }", {"id": leaf}
        )

    assert body["data"]["execution"] == {"root": None}
    assert error_codes(body) == [("execution.root", "QUERY_TOO_COMPLEX")]
    assert "more than 3 levels" in body["errors"][0]["message"]


def test_a_parent_link_that_is_not_an_id_is_an_upstream_error(
    start_gateway: StartGateway,
) -> None:
    store = DemoStore()
    child = store.add("child", "tool", "completed", payload={})
    store.executions[child]["parent_execution_id"] = "../../admin"
    with serve(create_demo_app(store=store), lifespan="off") as upstream_url:
        body = graphql(start_gateway(upstream_url), TREE, {"id": child})

    assert body["data"]["execution"]["parent"] is None
    assert ("execution.parent", "UPSTREAM_ERROR") in error_codes(body)
