"""The fault-injecting demo upstream, and the gateway's coded answer to each fault it injects.

Each gateway test spoils every execution answer (``rate=1``) with one kind of fault, or only
the first few (``limit``), so its outcome is exact; the tests speak real HTTP to real servers.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from gateway.demo.data import demo_id
from gateway.demo.faults import ALL_KINDS, FaultConfig, FaultInjector, FaultKind, parse_kinds
from gateway.demo.upstream import create_faulty_demo_app
from gateway.resilience import BreakerState, CircuitBreaker
from tests.conftest import StartGateway, error_codes, graphql
from tests.processes import ROOT, free_port, running
from tests.servers import serve

ID = demo_id("research")
LEAF = demo_id("research/planner/search-0/summarise/llm")
ONE = "query($id: ID!) { execution(id: $id) { id } }"
MANY = "query($ids: [ID!]!) { executions(ids: $ids) { id } }"
# One request's retries must not open the breaker and hide the attempts being counted.
NO_BREAKER: dict[str, Any] = {"breaker_failure_threshold": 1000}

StartFaulty = Callable[..., tuple[str, FaultInjector]]


@pytest.fixture
def faulty() -> Iterator[StartFaulty]:
    """Start the demo upstream behind a ``FaultInjector`` built from keyword arguments."""
    with ExitStack() as stack:

        def start(**config: Any) -> tuple[str, FaultInjector]:
            injector = create_faulty_demo_app(FaultConfig(**config))
            url = stack.enter_context(serve(injector, lifespan="off"))
            stack.callback(injector.release)  # runs before its server stops
            return url, injector

        yield start


def stats(url: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{url}/_demo/stats").json()
    return body


def spoiled(url: str) -> dict[str, int]:
    """The faults the upstream injected, without the kinds it did not."""
    return {kind: count for kind, count in stats(url)["faults"].items() if count}


# --- the injector on its own --------------------------------------------------------------


def test_without_a_rate_every_request_reaches_the_demo_untouched(faulty: StartFaulty) -> None:
    url, _ = faulty()

    answers = [httpx.get(f"{url}/api/v1/executions/{ID}") for _ in range(5)]

    assert {answer.json()["id"] for answer in answers} == {ID}
    assert stats(url) == {
        "execution_requests": 5,
        "cancel_requests": 0,
        "faults": dict.fromkeys(ALL_KINDS, 0),
    }


def test_the_same_seed_spoils_the_same_requests_in_the_same_ways(faulty: StartFaulty) -> None:
    kinds = (FaultKind.MALFORMED, FaultKind.WRONG_SHAPE, FaultKind.RATE_LIMITED, FaultKind.BURST)

    def run(seed: int) -> list[tuple[int, bytes]]:
        url, _ = faulty(rate=0.5, seed=seed, kinds=kinds, burst_length=2)
        with httpx.Client(base_url=url) as client:
            answers = [client.get(f"/api/v1/executions/{ID}") for _ in range(40)]
        return [(answer.status_code, answer.content[:20]) for answer in answers]

    first, again, other = run(7), run(7), run(8)

    assert first == again
    assert first != other
    assert {status for status, _ in first} > {200}


def test_only_execution_requests_are_spoiled_and_the_stats_count_them_by_kind(
    faulty: StartFaulty,
) -> None:
    url, _ = faulty(rate=1, kinds=(FaultKind.WRONG_SHAPE,))

    answers = [httpx.get(f"{url}/api/v1/executions/{ID}") for _ in range(3)]
    health = httpx.get(f"{url}/health")

    assert [answer.json() for answer in answers] == [[{"id": ID}]] * 3
    assert health.json() == {"status": "ok"}
    assert stats(url)["execution_requests"] == 0  # the injector answered them all itself
    assert spoiled(url) == {"wrong_shape": 3}


def test_a_burst_spoils_the_request_that_starts_it_and_the_next_ones(
    faulty: StartFaulty,
) -> None:
    url, _ = faulty(rate=1, kinds=(FaultKind.BURST,), burst_length=3, limit=1)

    statuses = [httpx.get(f"{url}/api/v1/executions/{ID}").status_code for _ in range(4)]

    assert statuses[3] == 200
    assert set(statuses[:3]) <= {500, 502, 503}
    assert spoiled(url) == {"burst": 3}


def test_release_lets_a_held_request_answer_at_once(faulty: StartFaulty) -> None:
    url, injector = faulty(rate=1, kinds=(FaultKind.HANG,), hang_seconds=600)
    answers: list[httpx.Response] = []
    client = threading.Thread(
        target=lambda: answers.append(httpx.get(f"{url}/api/v1/executions/{ID}", timeout=60))
    )
    client.start()

    assert injector.wait_until_holding(1)
    injector.release()
    client.join()

    assert answers[0].json()["id"] == ID
    assert spoiled(url) == {"hang": 1}


def test_fault_kinds_are_read_from_a_comma_list() -> None:
    assert parse_kinds("all") == parse_kinds("") == ALL_KINDS
    assert parse_kinds("hang, reset") == (FaultKind.HANG, FaultKind.RESET)
    with pytest.raises(ValueError, match="known: hang"):
        parse_kinds("hang,explode")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"rate": 1.5}, "between 0 and 1"),
        ({"rate": -0.1}, "between 0 and 1"),
        ({"kinds": ()}, "at least one fault kind"),
        ({"burst_length": 0}, "burst_length"),
        ({"hang_seconds": -1}, "must not be negative"),
    ],
)
def test_a_fault_config_out_of_range_is_refused(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultConfig(**config)


# --- the gateway's answer to each fault ----------------------------------------------------


def test_a_body_that_is_not_json_is_upstream_error_on_both_front_doors(
    faulty: StartFaulty, start_gateway: StartGateway
) -> None:
    url, _ = faulty(rate=1, kinds=(FaultKind.MALFORMED,))
    client = start_gateway(url, cache_enabled=False)

    body = graphql(client, ONE, {"id": ID})
    rest = client.get(f"/api/v1/executions/{ID}")

    assert body["data"] == {"execution": None}
    assert error_codes(body) == [("execution", "UPSTREAM_ERROR")]
    assert body["errors"][0]["extensions"]["upstreamStatus"] == 200
    assert rest.status_code == 502
    assert rest.json()["error_type"] == "UPSTREAM_ERROR"
    assert spoiled(url) == {"malformed": 2}  # not retried: it would come again


def test_json_that_is_not_an_execution_is_upstream_error(
    faulty: StartFaulty, start_gateway: StartGateway
) -> None:
    url, _ = faulty(rate=1, kinds=(FaultKind.WRONG_SHAPE,))
    client = start_gateway(url, cache_enabled=False)

    body = graphql(client, ONE, {"id": ID})

    assert error_codes(body) == [("execution", "UPSTREAM_ERROR")]
    assert spoiled(url) == {"wrong_shape": 1}


@pytest.mark.parametrize("kind", [FaultKind.RESET, FaultKind.TRUNCATED])
def test_a_connection_dropped_on_every_attempt_is_upstream_unavailable_after_the_attempt_cap(
    faulty: StartFaulty, start_gateway: StartGateway, kind: FaultKind
) -> None:
    url, _ = faulty(rate=1, kinds=(kind,))
    client = start_gateway(url, cache_enabled=False, retry_attempts=3, **NO_BREAKER)

    body = graphql(client, ONE, {"id": ID})
    rest = client.get(f"/api/v1/executions/{ID}")

    assert error_codes(body) == [("execution", "UPSTREAM_UNAVAILABLE")]
    assert rest.status_code == 502
    assert rest.json()["error_type"] == "UPSTREAM_UNAVAILABLE"
    assert spoiled(url) == {kind.value: 6}  # three attempts per request


@pytest.mark.parametrize("kind", [FaultKind.RESET, FaultKind.TRUNCATED])
def test_a_connection_dropped_once_is_retried_into_the_data(
    faulty: StartFaulty, start_gateway: StartGateway, kind: FaultKind
) -> None:
    url, _ = faulty(rate=1, kinds=(kind,), limit=1)
    client = start_gateway(url, cache_enabled=False)

    body = graphql(client, ONE, {"id": ID})

    assert body == {"data": {"execution": {"id": ID}}}
    assert spoiled(url) == {kind.value: 1}
    assert stats(url)["execution_requests"] == 2


def test_a_burst_of_503_shorter_than_the_retry_cap_is_retried_into_the_data(
    faulty: StartFaulty, start_gateway: StartGateway
) -> None:
    url, _ = faulty(
        rate=1, kinds=(FaultKind.BURST,), burst_length=2, burst_statuses=(503,), limit=1
    )
    client = start_gateway(url, cache_enabled=False, retry_attempts=3)

    body = graphql(client, ONE, {"id": ID})

    assert body == {"data": {"execution": {"id": ID}}}
    assert spoiled(url) == {"burst": 2}


def test_a_burst_of_500_is_not_retried_and_rest_relays_it_with_its_empty_body(
    faulty: StartFaulty, start_gateway: StartGateway
) -> None:
    url, _ = faulty(
        rate=1, kinds=(FaultKind.BURST,), burst_length=2, burst_statuses=(500,), limit=1
    )
    client = start_gateway(url, cache_enabled=False)

    body = graphql(client, ONE, {"id": ID})
    rest = client.get(f"/api/v1/executions/{ID}")

    assert error_codes(body) == [("execution", "UPSTREAM_ERROR")]
    assert body["errors"][0]["extensions"]["upstreamStatus"] == 500
    assert (rest.status_code, rest.content) == (500, b"")
    assert spoiled(url) == {"burst": 2}


def test_a_429_with_retry_after_0_is_waited_out_and_retried_into_the_data(
    faulty: StartFaulty, start_gateway: StartGateway
) -> None:
    url, _ = faulty(rate=1, kinds=(FaultKind.RATE_LIMITED,), retry_after=(0,), limit=1)
    client = start_gateway(url, cache_enabled=False)

    body = graphql(client, ONE, {"id": ID})

    assert body == {"data": {"execution": {"id": ID}}}
    assert spoiled(url) == {"rate_limited": 1}


def test_429_on_every_attempt_is_rate_limited_and_rest_relays_its_retry_after(
    faulty: StartFaulty, start_gateway: StartGateway
) -> None:
    url, _ = faulty(rate=1, kinds=(FaultKind.RATE_LIMITED,), retry_after=(0,))
    client = start_gateway(url, cache_enabled=False, retry_attempts=2)

    body = graphql(client, ONE, {"id": ID})
    rest = client.get(f"/api/v1/executions/{ID}")

    assert error_codes(body) == [("execution", "RATE_LIMITED")]
    assert (rest.status_code, rest.headers["retry-after"], rest.content) == (429, "0", b"")
    assert spoiled(url) == {"rate_limited": 4}


def test_a_hang_beyond_the_upstream_timeout_is_upstream_timeout_and_rest_answers_504(
    faulty: StartFaulty, start_gateway: StartGateway
) -> None:
    url, _ = faulty(rate=1, kinds=(FaultKind.HANG,), hang_seconds=600)
    timeouts = {"connect_timeout": 0.2, "read_timeout": 0.2, "upstream_timeout": 0.3}
    client = start_gateway(url, cache_enabled=False, **timeouts)

    body = graphql(client, ONE, {"id": ID})
    rest = client.get(f"/api/v1/executions/{ID}")

    assert error_codes(body) == [("execution", "UPSTREAM_TIMEOUT")]
    assert rest.status_code == 504
    assert rest.json()["error_type"] == "UPSTREAM_TIMEOUT"
    assert spoiled(url) == {"hang": 2}  # a timeout is not retried: its time is spent


def test_a_slow_answer_within_the_timeout_is_the_data(
    faulty: StartFaulty, start_gateway: StartGateway
) -> None:
    url, _ = faulty(rate=1, kinds=(FaultKind.SLOW,), slow_ms=50)
    client = start_gateway(url, cache_enabled=False)

    body = graphql(
        client, "query($id: ID!) { execution(id: $id) { id root { id } } }", {"id": LEAF}
    )

    assert body == {"data": {"execution": {"id": LEAF, "root": {"id": ID}}}}
    assert spoiled(url) == {"slow": 2}


def test_siblings_still_resolve_when_some_executions_fail(
    faulty: StartFaulty, start_gateway: StartGateway
) -> None:
    ids = [demo_id(f"eval/runner/case-{index}") for index in range(6)]
    url, _ = faulty(rate=1, kinds=(FaultKind.MALFORMED,), limit=2)
    client = start_gateway(url, cache_enabled=False)

    body = graphql(client, MANY, {"ids": ids})

    entries = body["data"]["executions"]
    failed = [index for index, entry in enumerate(entries) if entry is None]
    # Which two arrive first at the upstream is the network's choice; how many is not.
    assert len(failed) == 2
    assert [entry["id"] for entry in entries if entry] == [
        execution_id for index, execution_id in enumerate(ids) if index not in failed
    ]
    assert error_codes(body) == [(f"executions.{index}", "UPSTREAM_ERROR") for index in failed]


# --- the command -------------------------------------------------------------------------


def test_demo_upstream_injects_the_faults_it_is_told_and_reports_them_in_its_stats() -> None:
    port = free_port()
    args = ("--fault-rate", "1", "--fault-kinds", "malformed", "--fault-seed", "3")
    with running("demo-upstream", "--port", str(port), *args, port=port) as lines:
        base = f"http://127.0.0.1:{port}"
        answer = httpx.get(f"{base}/api/v1/executions/{ID}")
        counted = httpx.get(f"{base}/_demo/stats").json()

    assert "Injecting faults into 100% of answers: malformed" in "".join(lines)
    assert answer.status_code == 200
    assert not answer.text.startswith("{")
    assert counted["faults"]["malformed"] == 1


def test_demo_upstream_refuses_an_unknown_fault_kind() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "gateway", "demo-upstream", "--fault-kinds", "meteor"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )

    assert finished.returncode == 2
    assert "unknown fault kind" in finished.stderr


# --- found while reading the soak's figures ------------------------------------------------


def test_a_success_of_a_call_started_before_the_breaker_opened_does_not_close_it() -> None:
    now = [100.0]
    breaker = CircuitBreaker(threshold=1, cooldown=5, clock=lambda: now[0])
    call_a = breaker.allow()
    call_b = breaker.allow()  # concurrently
    assert call_a is not None
    assert call_b is not None

    breaker.record_failure(call_a)  # A fails: the breaker opens
    breaker.record_success(call_b)  # B, started while it was closed, succeeds afterwards

    assert breaker.state is BreakerState.OPEN
