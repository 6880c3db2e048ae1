"""Every Execution field over real HTTP, compared with what the upstream itself serves."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx
import pytest

from gateway.demo.data import DemoStore, demo_id, seed
from gateway.demo.upstream import create_demo_app
from gateway.executions import ExecutionRecord
from tests.conftest import StartGateway, error_codes, graphql
from tests.servers import Recorder, serve

ALL_FIELDS = """
  id workflowId status rawStatus isTerminal isRoot payload result error createdAt startedAt
  completedAt deploymentId assignedToWorker parentExecutionId rootExecutionId retryCount
  stepKey queueName concurrencyKey batchId sessionId userId outputSchemaName cancelledAt
  cancelledBy runTimeoutSeconds
"""
QUERY_ONE = f"query One($id: ID!) {{ execution(id: $id) {{ {ALL_FIELDS} }} }}"


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def upstream_json(upstream_url: str, execution_id: str) -> dict[str, Any]:
    response = httpx.get(f"{upstream_url}/api/v1/executions/{execution_id}")
    assert response.status_code == 200
    body: dict[str, Any] = json.loads(response.content)
    return body


def same_instant(graphql_value: str | None, upstream_value: str | None) -> bool:
    if graphql_value is None or upstream_value is None:
        return graphql_value is upstream_value
    return datetime.fromisoformat(graphql_value) == datetime.fromisoformat(upstream_value)


@pytest.mark.parametrize(
    "name",
    [
        "research",
        "research/planner/search-0/summarise/llm",
        "support/resolve/refund",
        "pipeline/load",
        "pipeline/notify",
        "pipeline/audit",
        "research/writer/cite",
    ],
)
def test_every_upstream_field_is_served_in_camel_case_with_its_upstream_value(
    gateway: httpx.Client, upstream: tuple[str, Recorder], name: str
) -> None:
    execution_id = demo_id(name)
    expected = upstream_json(upstream[0], execution_id)

    body = graphql(gateway, QUERY_ONE, {"id": execution_id})

    assert "errors" not in body
    served = body["data"]["execution"]
    for field in ExecutionRecord.model_fields:
        value, upstream_value = served[camel(field)], expected[field]
        if field.endswith("_at"):
            assert same_instant(value, upstream_value), field
        elif field == "status":
            assert served["rawStatus"] == upstream_value
        else:
            assert value == upstream_value, field


def test_timestamps_are_rfc3339_with_microseconds_and_offset(gateway: httpx.Client) -> None:
    body = graphql(gateway, QUERY_ONE, {"id": demo_id("research")})

    assert body["data"]["execution"]["createdAt"] == "2026-11-14T13:00:00.123456+00:00"


def test_large_integers_unicode_null_and_bare_strings_survive_unchanged(
    gateway: httpx.Client,
) -> None:
    leaf = graphql(gateway, QUERY_ONE, {"id": demo_id("research/planner/search-0/summarise/llm")})
    summary = graphql(gateway, QUERY_ONE, {"id": demo_id("research/planner/search-0/summarise")})
    cite = graphql(gateway, QUERY_ONE, {"id": demo_id("research/writer/cite")})

    assert leaf["data"]["execution"]["result"] == {
        "tokens": 18446744073709551621,
        "text": "Résumé ✓ — 要約 😀",
    }
    assert summary["data"]["execution"]["result"] == (
        "Durable execution keeps agent state across crashes."
    )
    assert cite["data"]["execution"]["payload"] == [1, 2.5, None, True, "x"]
    assert cite["data"]["execution"]["result"] is None


@pytest.mark.parametrize(
    ("name", "status", "terminal"),
    [
        ("support/resolve/email", "PENDING", False),
        ("support/resolve/refund/approval/notify", "QUEUED", False),
        ("support/escalate", "CLAIMED", False),
        ("support", "RUNNING", False),
        ("support/resolve/refund", "WAITING", False),
        ("pipeline/notify", "PENDING_CANCEL", False),
        ("research", "COMPLETED", True),
        ("pipeline", "FAILED", True),
        ("pipeline/load", "CANCELLED", True),
        ("pipeline/audit", "UNKNOWN", False),
    ],
)
def test_every_status_maps_to_the_enum_and_unlisted_ones_to_unknown(
    gateway: httpx.Client, name: str, status: str, terminal: bool
) -> None:
    body = graphql(
        gateway,
        "query S($id: ID!) { execution(id: $id) { status rawStatus isTerminal } }",
        {"id": demo_id(name)},
    )

    assert "errors" not in body
    execution = body["data"]["execution"]
    assert execution["status"] == status
    assert execution["isTerminal"] is terminal
    assert execution["rawStatus"] == seed().executions[demo_id(name)]["status"]


def test_an_id_in_another_uuid_spelling_finds_the_same_execution(gateway: httpx.Client) -> None:
    execution_id = demo_id("research")
    braced_upper = "{" + execution_id.upper() + "}"

    body = graphql(gateway, "query($id: ID!) { execution(id: $id) { id } }", {"id": braced_upper})

    assert body["data"]["execution"] == {"id": execution_id}


def test_node_resolves_an_execution_by_its_global_id(gateway: httpx.Client) -> None:
    body = graphql(
        gateway,
        "query($id: ID!) { node(id: $id) { __typename id ... on Execution { workflowId } } }",
        {"id": demo_id("research")},
    )

    assert body["data"]["node"] == {
        "__typename": "Execution",
        "id": demo_id("research"),
        "workflowId": "research_report",
    }


def test_executions_keeps_the_order_of_ids_with_one_entry_per_id(gateway: httpx.Client) -> None:
    ids = [demo_id("pipeline"), demo_id("research"), demo_id("pipeline"), demo_id("support")]

    body = graphql(gateway, "query($ids: [ID!]!) { executions(ids: $ids) { id } }", {"ids": ids})

    assert body["data"]["executions"] == [{"id": i} for i in ids]


def test_a_failing_entry_is_null_with_its_own_error_and_its_siblings_resolve(
    gateway: httpx.Client,
) -> None:
    ids = [demo_id("research"), "not-a-uuid", "00000000-0000-0000-0000-000000000000"]

    body = graphql(gateway, "query($ids: [ID!]!) { executions(ids: $ids) { id } }", {"ids": ids})

    assert body["data"]["executions"] == [{"id": demo_id("research")}, None, None]
    assert error_codes(body) == [("executions.1", "BAD_USER_INPUT"), ("executions.2", "NOT_FOUND")]


def test_a_payload_can_hold_every_kind_of_json_value(start_gateway: StartGateway) -> None:
    store = DemoStore()
    odd = {
        "nested": {"list": [[], {}, [None]], "deep": {"a": {"b": {"c": -0.5}}}},
        "big": -(2**70),
        "float": 1.0e-7,
        "empty": "",
        "escapes": 'quote " backslash \\ newline \n tab \t nul \u0000',
        "rtl": "مرحبا",
    }
    execution_id = store.add("odd", "odd_tool", "completed", payload=odd, result="bare string")
    with serve(create_demo_app(store=store), lifespan="off") as upstream_url:
        client = start_gateway(upstream_url)
        body = graphql(client, QUERY_ONE, {"id": execution_id})

    assert body["data"]["execution"]["payload"] == odd
    assert body["data"]["execution"]["result"] == "bare string"
