"""The five scenarios (A-E) the benchmark measures, and what a complete answer to each is.

Each scenario is a GraphQL query (or the REST route) over the demo's ids, with the executions and
upstream rounds it needs, and the work a REST client would do for it directly (the plans the
Python client runs). ``answer_problem`` tells why an answer is not the full, error-free one.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from gateway.demo.data import CHAIN_DEPTH, demo_id

ANCESTOR_LIMIT = 50
FANOUT_SIZE = 100

ROOT_ID = demo_id("research")
LEAF_ID = demo_id("research/planner/search-0/summarise/llm")
FANOUT_IDS = tuple(demo_id(f"eval/runner/case-{index}") for index in range(FANOUT_SIZE))
CHAIN_TAIL_ID = demo_id(f"chain/{CHAIN_DEPTH - 1}")


@dataclass(frozen=True)
class Request:
    """One HTTP request as hey, the bursts and the warm-ups send it."""

    method: str
    url: str
    body: bytes | None = None

    @property
    def target(self) -> str:
        """The path and query, what goes on the request line."""
        parts = urlsplit(self.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")


class ClientFailure(Exception):
    """A GET of the direct plan answered with a non-2xx status."""


Plan = Callable[[aiohttp.ClientSession, str], Awaitable[None]]


async def _get(session: aiohttp.ClientSession, base: str, execution_id: str) -> dict[str, Any]:
    async with session.get(f"{base}/api/v1/executions/{execution_id}") as response:
        body = await response.read()
        if not 200 <= response.status < 300:
            raise ClientFailure(f"GET {execution_id}: {response.status}")
        record: dict[str, Any] = orjson.loads(body)
        return record


async def leaf_with_parent_and_root(session: aiohttp.ClientSession, base: str) -> None:
    """B as a REST client does it: the leaf, then its parent and root together."""
    leaf = await _get(session, base, LEAF_ID)
    linked = (leaf["parent_execution_id"], leaf["root_execution_id"])
    await asyncio.gather(*(_get(session, base, execution_id) for execution_id in linked))


async def leaves_with_parents_and_roots(session: aiohttp.ClientSession, base: str) -> None:
    """C as a REST client does it: 100 leaves at once, then their distinct parents and roots."""
    leaves = await asyncio.gather(*(_get(session, base, leaf) for leaf in FANOUT_IDS))
    linked = {
        execution_id
        for leaf in leaves
        for execution_id in (leaf["parent_execution_id"], leaf["root_execution_id"])
        if execution_id
    }
    await asyncio.gather(*(_get(session, base, execution_id) for execution_id in sorted(linked)))


async def ancestors_walk(session: aiohttp.ClientSession, base: str) -> None:
    """D as a REST client does it: the tail, then one GET per level up, one after another."""
    current = await _get(session, base, CHAIN_TAIL_ID)
    for _ in range(ANCESTOR_LIMIT):
        parent = current["parent_execution_id"]
        if parent is None:
            return
        current = await _get(session, base, parent)


@dataclass(frozen=True)
class Scenario:
    """One thing a client asks for, as GraphQL (or REST) and as the direct REST work."""

    key: str
    title: str
    label: str  # short, for the chart
    distinct: int  # executions the query touches
    rounds: int  # sequential upstream rounds it needs at least
    all_final: bool  # every execution it touches is completed, failed or cancelled
    query: str | None  # the GraphQL document; None: the REST route
    variables: dict[str, Any]
    plan: Plan | None  # the direct work for the Python client; None: one GET, driven by hey

    def gateway_request(self, base: str) -> Request:
        """What a client sends the gateway for this scenario."""
        if self.query is None:
            return Request("GET", f"{base}/api/v1/executions/{ROOT_ID}")
        body = orjson.dumps({"query": self.query, "variables": self.variables})
        return Request("POST", f"{base}/graphql", body)


def execution_selection(schema_text: str) -> str:
    """Every field of ``type Execution`` in the SDL; linked executions as ``{ id status }``."""
    block = re.search(r"^type Execution\b[^{]*\{(.*?)^\}", schema_text, re.MULTILINE | re.DOTALL)
    if block is None:
        raise RuntimeError("schema.graphql has no `type Execution`")
    body = re.sub(r'"""(.*?)"""', "", block.group(1), flags=re.DOTALL)
    fields = re.findall(r"^\s+(\w+)(?:\([^)]*\))?\s*:\s*\[?(\w+)", body, re.MULTILINE)
    parts = [f"{name} {{ id status }}" if kind == "Execution" else name for name, kind in fields]
    return " ".join(parts)


def build_scenarios(schema_text: str) -> tuple[Scenario, ...]:
    """The five scenarios of the issue, with the demo's ids."""
    linked = "id status parent { id status } root { id status }"
    every_field = execution_selection(schema_text)
    return (
        Scenario(
            key="A",
            title="one completed root execution, every field",
            label="A: one execution,\nevery field",
            distinct=1,
            rounds=1,
            all_final=True,
            query=f"query A($id: ID!) {{ execution(id: $id) {{ {every_field} }} }}",
            variables={"id": ROOT_ID},
            plan=None,
        ),
        Scenario(
            key="B",
            title="a leaf with parent and root",
            label="B: a leaf with\nparent and root",
            distinct=3,
            rounds=2,
            all_final=True,
            query=f"query B($id: ID!) {{ execution(id: $id) {{ {linked} }} }}",
            variables={"id": LEAF_ID},
            plan=leaf_with_parent_and_root,
        ),
        Scenario(
            key="C",
            title=f"`executions(ids)` over {FANOUT_SIZE} leaves with parent and root",
            label=f"C: {FANOUT_SIZE} leaves with\nparent and root",
            distinct=FANOUT_SIZE + 2,
            rounds=2,
            all_final=False,
            query=f"query C($ids: [ID!]!) {{ executions(ids: $ids) {{ {linked} }} }}",
            variables={"ids": list(FANOUT_IDS)},
            plan=leaves_with_parents_and_roots,
        ),
        Scenario(
            key="D",
            title=f"`ancestors(limit: {ANCESTOR_LIMIT})` of the {CHAIN_DEPTH}-deep chain's tail",
            label=f"D: {ANCESTOR_LIMIT} ancestors\nup a chain",
            distinct=ANCESTOR_LIMIT + 1,
            rounds=ANCESTOR_LIMIT + 1,
            all_final=True,
            query=f"query D($id: ID!) {{ execution(id: $id) {{ id status "
            f"ancestors(limit: {ANCESTOR_LIMIT}) {{ id status }} }} }}",
            variables={"id": CHAIN_TAIL_ID},
            plan=ancestors_walk,
        ),
        Scenario(
            key="E",
            title="the REST route for one id",
            label="E: REST route,\none id",
            distinct=1,
            rounds=1,
            all_final=True,
            query=None,
            variables={},
            plan=None,
        ),
    )


def answer_problem(scenario: Scenario, graphql: bool, status: int, body: bytes) -> str | None:
    """Why an answer is not the full, error-free one the scenario asks for; None if it is."""
    if not 200 <= status < 300:
        return f"status {status}"
    document = json.loads(body)
    if not graphql:
        return None if document.get("id") == ROOT_ID else "REST body is not the execution"
    if document.get("errors"):
        error = document["errors"][0]
        code = (error.get("extensions") or {}).get("code", "no code")
        return f"GraphQL error {code}: {str(error.get('message'))[:90]}"
    data = document.get("data") or {}
    answer = data.get("executions") if scenario.key == "C" else data.get("execution")
    if not answer:
        return "no data"
    if scenario.key == "C" and (len(answer) != FANOUT_SIZE or not all(answer)):
        return "executions(ids) is missing entries"
    if scenario.key == "D" and len(answer.get("ancestors") or []) != ANCESTOR_LIMIT:
        return "ancestors is short"
    return None
