"""Real JavaScript clients against a real gateway process: what a frontend will actually run.

``tests/js/client-check.mjs`` drives Apollo Client (HTTP, persisted queries, GraphQLWsLink over
graphql-ws) and urql against ``polos-gateway serve --demo`` and prints one JSON line of what it
saw; these tests assert on that line. Node is part of the suite: without it they fail.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.demo.data import demo_id
from tests.processes import ROOT, free_port, running

JS = ROOT / "tests" / "js"
# The same stamp `make test` keeps: node_modules matches the committed lock file.
STAMP = JS / "node_modules" / ".installed"
NPM_CI_DEADLINE = 600
# The check's own deadline for a subscription, and the process's beyond it.
SUBSCRIPTION_DEADLINE = 120
CHECK_DEADLINE = SUBSCRIPTION_DEADLINE + 60

LEAF = demo_id("research/planner/search-0/summarise/llm")
# Live demo executions; a live tree's clock starts when one of its executions is first read.
# Queued, claimed at 4 s, running at 5 s, completed at 10 s:
LIVE_STEP = demo_id("live/agent/plan")
LIVE_STEP_TIMELINE = ["QUEUED", "CLAIMED", "RUNNING", "COMPLETED"]
# Queued, then running for about ten minutes: there to be cancelled.
LONG_JOB = demo_id("live/backfill")
API_KEY = "sk_js_client_check"
CREDENTIALS = (
    "--header",
    f"Authorization: Bearer {API_KEY}",
    "--header",
    "X-Project-ID: demo-project",
)


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed: `make os-packages` installs it"
    return path


def _installed(stamp: Path) -> bool:
    if not stamp.exists():
        return False
    inputs = (JS / "package-lock.json", JS / "package.json")
    return stamp.stat().st_mtime >= max(path.stat().st_mtime for path in inputs)


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with tests/js's packages installed from the lock file."""
    node = _tool("node")
    if not _installed(STAMP):
        subprocess.run(
            [_tool("npm"), "ci", "--prefix", str(JS), "--no-audit", "--no-fund"],
            check=True,
            timeout=NPM_CI_DEADLINE,
            cwd=JS,
        )
        STAMP.touch()
    return node


@pytest.fixture(scope="module")
def gateway_url() -> Iterator[str]:
    """A ``polos-gateway serve --demo`` process for this module's tests.

    Shared, so each test uses what no other one touches: its own persisted documents, its own
    live tree (whose clock starts when the test first reads it).
    """
    port = free_port()
    with running("serve", "--demo", "--port", str(port), port=port):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def secured_gateway_url() -> Iterator[str]:
    """A gateway process in front of a demo upstream process that wants ``API_KEY``."""
    upstream_port = free_port()
    with running(
        "demo-upstream", "--port", str(upstream_port), "--api-key", API_KEY, port=upstream_port
    ):
        port = free_port()
        upstream_url = f"http://127.0.0.1:{upstream_port}"
        with running("serve", "--upstream-url", upstream_url, "--port", str(port), port=port):
            yield f"http://127.0.0.1:{port}"


def client_check(node: str, gateway_url: str, *args: str) -> dict[str, Any]:
    """Run the JS check; it must exit 0 and print exactly one JSON line."""
    done = subprocess.run(
        [node, str(JS / "client-check.mjs"), gateway_url, *args],
        capture_output=True,
        text=True,
        timeout=CHECK_DEADLINE,
        cwd=JS,
    )
    lines = done.stdout.splitlines()
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert len(lines) == 1, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(lines[0])
    return report


def test_apollo_walks_a_tree_and_reads_a_list_with_per_entry_errors(
    node: str, gateway_url: str
) -> None:
    report = client_check(node, gateway_url, "--parts", "query", "--leaf", LEAF)
    query = report["query"]

    assert query["tree"] == {
        "id": LEAF,
        "workflowId": "llm_call",
        "status": "COMPLETED",
        "isRoot": False,
        "parent": demo_id("research/planner/search-0/summarise"),
        "root": demo_id("research"),
        "ancestors": [
            demo_id("research/planner/search-0/summarise"),
            demo_id("research/planner/search-0"),
            demo_id("research/planner"),
            demo_id("research"),
        ],
        "ancestorWorkflows": ["summarise_page", "web_search", "planner_agent", "research_report"],
    }
    # One entry per id, in order; the two that fail are null, each with its own error.
    assert query["list"] == {
        "entries": [LEAF, None, None],
        "errors": [
            {"path": "executions.1", "code": "NOT_FOUND"},
            {"path": "executions.2", "code": "BAD_USER_INPUT"},
        ],
    }
    # Two requests (the tree, the list); the tree asked again came from Apollo's cache.
    assert query["requests"] == 2
    assert query["cachedAgain"] is True


def _wire(requests: list[dict[str, Any]]) -> list[tuple[str, str, list[str], bool]]:
    """Each request as (method, what it carried, its error codes, whether data came back)."""
    return [
        (
            request["method"],
            "query+hash" if request["withQuery"] else "hash" if request["withHash"] else "query",
            request["codes"],
            request["hasData"],
        )
        for request in requests
    ]


MISS = ["BAD_USER_INPUT"]


def test_persisted_queries_from_apollo_and_urql_over_post_and_get(
    node: str, gateway_url: str
) -> None:
    report = client_check(node, gateway_url, "--parts", "apq", "--leaf", LEAF)
    apq = report["apq"]

    # Apollo over POST: the hash alone is unknown, so it sends the query with it; a second
    # client's hash alone then suffices.
    post = apq["post"]
    assert _wire(post["first"]) == [("POST", "hash", MISS, False), ("POST", "query+hash", [], True)]
    assert _wire(post["second"]) == [("POST", "hash", [], True)]
    assert post["hashMatchesQuery"] is True
    assert post["sameAnswer"] is True

    # useGETForHashedQueries: hashes go as GET (a CDN can cache them), the query itself as POST.
    get = apq["get"]
    assert _wire(get["first"]) == [("GET", "hash", MISS, False), ("POST", "query+hash", [], True)]
    assert _wire(get["second"]) == [("GET", "hash", [], True)]
    assert get["sameAnswer"] is True
    assert get["hashMatchesQuery"] is True  # Web Crypto's hash, as a browser page makes it
    # The miss must not be cached on the way, or the query could never be registered.
    miss_cache_control = get["first"][0]["cacheControl"] or ""
    assert "no-cache" in miss_cache_control or "no-store" in miss_cache_control

    # urql's persistedExchange, GET preferred: the query goes by GET too, it is short.
    urql = apq["urql"]
    assert _wire(urql["first"]) == [("GET", "hash", MISS, False), ("GET", "query+hash", [], True)]
    assert _wire(urql["second"]) == [("GET", "hash", [], True)]
    assert urql["sameAnswer"] is True

    # The gateway's side: both hashes run without any client library; an unknown one does not.
    assert [(raw["method"], raw["id"], raw["codes"]) for raw in apq["raw"]] == [
        ("POST", LEAF, []),
        ("GET", LEAF, []),
        ("POST", None, MISS),
    ]
    assert apq["raw"][2]["messages"] == ["PersistedQueryNotFound"]
    # And its counters: three clients missed once each, plus the raw unknown hash; three
    # documents registered; three second clients and two raw requests hit.
    assert apq["metrics"] == {
        'polos_gateway_persisted_queries_total{outcome="miss"}': 4,
        'polos_gateway_persisted_queries_total{outcome="registered"}': 3,
        'polos_gateway_persisted_queries_total{outcome="hit"}': 5,
    }


def _in_order(statuses: list[str], timeline: list[str]) -> bool:
    """Whether ``statuses`` go forward through ``timeline``, each change seen at most once."""
    positions = [timeline.index(status) for status in statuses]
    return positions == sorted(set(positions))


def test_a_subscription_follows_a_live_execution_until_its_final_status(
    node: str, gateway_url: str
) -> None:
    report = client_check(
        node,
        gateway_url,
        *("--parts", "subscription", "--live", LIVE_STEP),
        *("--timeout", str(SUBSCRIPTION_DEADLINE)),
    )
    watched = report["subscription"]

    assert watched["errors"] == []
    assert watched["timedOut"] is False
    assert watched["completed"] is True
    assert watched["ids"] == [LIVE_STEP]
    # The execution as it was when the subscription started (its tree's clock started with
    # it), then one event per change, forward only, ending with the final status.
    statuses = watched["statuses"]
    assert statuses[0] == "QUEUED"
    assert statuses[-1] == "COMPLETED"
    assert len(watched["distinctStatuses"]) >= 2
    assert _in_order(statuses, LIVE_STEP_TIMELINE), statuses
    assert watched["last"] == {
        "id": LIVE_STEP,
        "status": "COMPLETED",
        "isTerminal": True,
        "started": True,
        "completed": True,
    }
    # One WebSocket, no failure on it, and nothing over HTTP.
    assert watched["protocol"] == ["connected"]
    assert watched["httpRequests"] == 0


def test_cancel_from_a_live_page_and_again_once_it_is_final(node: str, gateway_url: str) -> None:
    report = client_check(
        node,
        gateway_url,
        *("--parts", "cancel", "--cancel", LONG_JOB),
        *("--timeout", str(SUBSCRIPTION_DEADLINE)),
    )
    cancel = report["cancel"]

    # The mutation answers at once with the cancel requested, not yet confirmed.
    assert cancel["mutation"] == {"status": "PENDING_CANCEL", "cancelledBy": "manual", "errors": []}
    # The subscription sees it through: requested, then confirmed by the worker, then done.
    assert cancel["errors"] == []
    assert cancel["completed"] is True
    assert cancel["statuses"][0] == "QUEUED"
    assert cancel["statuses"][-2:] == ["PENDING_CANCEL", "CANCELLED"]
    assert cancel["last"]["isTerminal"] is True
    # A final execution cannot be cancelled: null, with the error on that field alone.
    assert cancel["again"] == {
        "data": None,
        "errors": [{"path": "cancelExecution", "code": "BAD_USER_INPUT"}],
    }


def test_credentials_travel_in_headers_and_in_connection_init(
    node: str, secured_gateway_url: str
) -> None:
    # With the credentials: HTTP requests carry them as headers; the WebSocket, which Node's
    # client opens without them, carries them in connection_init.
    report = client_check(
        node,
        secured_gateway_url,
        *("--parts", "query,apq,subscription", "--leaf", LEAF, "--live", LEAF),
        *CREDENTIALS,
    )

    assert report["query"]["tree"]["root"] == demo_id("research")
    assert report["query"]["list"]["entries"] == [LEAF, None, None]
    assert _wire(report["apq"]["get"]["second"]) == [("GET", "hash", [], True)]
    assert [raw["id"] for raw in report["apq"]["raw"]] == [LEAF, LEAF, None]
    # A final execution: one event, then the subscription completes.
    watched = report["subscription"]
    assert (watched["statuses"], watched["completed"], watched["errors"]) == (
        ["COMPLETED"],
        True,
        [],
    )

    # Without them the orchestrator refuses, and the subscription ends with that error.
    anonymous = client_check(
        node, secured_gateway_url, *("--parts", "subscription", "--live", LEAF)
    )["subscription"]
    assert (anonymous["events"], anonymous["errors"]) == (0, ["UNAUTHENTICATED"])
    assert anonymous["timedOut"] is False
