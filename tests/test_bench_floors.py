"""The benchmark's floors (bench/floors.py) do the work they stand for, no less.

The floors are what the benchmark sets the gateway's cold overhead against; a floor that
answered less (a shorter document, fewer fields, no upstream call) would flatter the stack
and blame the gateway. So each floor must answer its scenario's request as the gateway does,
with one upstream call.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.processes import Processes, start_floors
from bench.scenarios import ROOT_ID, Scenario, build_scenarios
from tests.processes import ROOT
from tests.servers import Recorder

SCENARIOS = {s.key: s for s in build_scenarios((ROOT / "schema.graphql").read_text())}


@pytest.fixture
def floor(upstream: tuple[str, Recorder], tmp_path: Path) -> Iterator[httpx.Client]:
    """The floors as the benchmark starts them: ``bench/floors.py``, a process of its own."""
    with Processes(tmp_path) as processes:
        server = start_floors(processes, upstream[0])
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield client


def _send(client: httpx.Client, scenario: Scenario) -> httpx.Response:
    """The scenario's request, as hey sends it."""
    request = scenario.gateway_request(str(client.base_url))
    headers = {"content-type": "application/json"} if request.body is not None else {}
    return client.request(request.method, request.url, content=request.body, headers=headers)


def test_bare_strawberry_answers_a_as_the_gateway_does(
    floor: httpx.Client, gateway: httpx.Client, upstream: tuple[str, Recorder]
) -> None:
    scenario = SCENARIOS["A"]
    answer = _send(floor, scenario)
    assert upstream[1].execution_ids() == [ROOT_ID]
    expected = _send(gateway, scenario)
    assert answer.status_code == expected.status_code == 200
    body = answer.json()
    assert "errors" not in body
    assert body == expected.json()
    # The whole document: every field of the type, the tree links included.
    assert {"parent", "root", "ancestors", "payload"} <= set(body["data"]["execution"])


def test_pass_through_answers_e_with_the_upstreams_body(
    floor: httpx.Client, gateway: httpx.Client, upstream: tuple[str, Recorder]
) -> None:
    answer = _send(floor, SCENARIOS["E"])
    assert upstream[1].execution_ids() == [ROOT_ID]
    direct = httpx.get(f"{upstream[0]}/api/v1/executions/{ROOT_ID}")
    assert answer.status_code == direct.status_code == 200
    assert answer.content == direct.content == _send(gateway, SCENARIOS["E"]).content
