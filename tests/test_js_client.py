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


@pytest.fixture
def gateway_url() -> Iterator[str]:
    """A fresh ``polos-gateway serve --demo`` process: nothing persisted, demo trees anew."""
    port = free_port()
    with running("serve", "--demo", "--port", str(port), port=port):
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
