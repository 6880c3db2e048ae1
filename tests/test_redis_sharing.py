"""Replicas sharing one Redis: what one fetched, another serves; Redis dying breaks nothing."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from gateway.demo.data import demo_id
from gateway.demo.upstream import create_demo_app
from gateway.settings import Settings
from tests.conftest import StartGateway, graphql
from tests.processes import free_port, running
from tests.redis_server import redis_server
from tests.servers import Recorder, serve

FINAL = demo_id("research")
SECRET = "shared-by-every-replica"
ONE = "query($id: ID!) { execution(id: $id) { id status } }"


@pytest.fixture
def demo_with_stats() -> Iterator[str]:
    """The demo upstream, whose /_demo/stats counts the execution requests it answered."""
    with serve(create_demo_app(), lifespan="off") as url:
        yield url


def upstream_calls(upstream_url: str) -> int:
    count: int = httpx.get(f"{upstream_url}/_demo/stats").json()["execution_requests"]
    return count


def redis_hits(exposition: str) -> float:
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == "polos_gateway_cache_hits_total" and sample.labels == {
                "backend": "redis"
            }:
                return sample.value
    return 0.0


def test_a_final_execution_fetched_by_one_replica_is_served_by_another_without_the_upstream(
    demo_with_stats: str,
) -> None:
    env = {
        "POLOS_GATEWAY_UPSTREAM_URL": demo_with_stats,
        "POLOS_GATEWAY_CACHE_KEY_SECRET": SECRET,
    }
    ports = free_port(), free_port()
    with redis_server() as (redis_url, _):
        env["POLOS_GATEWAY_REDIS_URL"] = redis_url
        with (
            running("serve", "--port", str(ports[0]), port=ports[0], env=env),
            running("serve", "--port", str(ports[1]), port=ports[1], env=env),
        ):
            first = httpx.get(f"http://127.0.0.1:{ports[0]}/api/v1/executions/{FINAL}")
            calls_after_first = upstream_calls(demo_with_stats)
            second = httpx.get(f"http://127.0.0.1:{ports[1]}/api/v1/executions/{FINAL}")
            ready = httpx.get(f"http://127.0.0.1:{ports[1]}/readyz").json()
            metrics = httpx.get(f"http://127.0.0.1:{ports[1]}/metrics").text

    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert calls_after_first == 1
    assert upstream_calls(demo_with_stats) == 1  # the second replica asked Redis, not upstream
    assert ready == {"status": "ready", "redis": "ok"}
    assert redis_hits(metrics) == 1  # what an operator sees on the second replica


def test_replicas_with_different_credentials_share_nothing_through_redis(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    with redis_server() as (redis_url, _):
        one = start_gateway(upstream[0], redis_url=redis_url, cache_key_secret=SECRET)
        other = start_gateway(upstream[0], redis_url=redis_url, cache_key_secret=SECRET)
        graphql(one, ONE, {"id": FINAL}, Authorization="Bearer alice")
        graphql(other, ONE, {"id": FINAL}, Authorization="Bearer bob")
        graphql(other, ONE, {"id": FINAL}, Authorization="Bearer alice")

    # alice's answer reached the second replica through Redis; bob had to ask for his own.
    assert upstream[1].execution_ids() == [FINAL, FINAL]


def test_killing_redis_mid_run_fails_no_request_and_readiness_says_degraded(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    running_ids = [demo_id(f"eval/runner/case-{i}") for i in range(20)]
    with redis_server() as (redis_url, redis_process):
        client = start_gateway(
            upstream[0], redis_url=redis_url, cache_key_secret=SECRET, cache_active_ttl=0
        )
        before = [client.get(f"/api/v1/executions/{i}").status_code for i in running_ids[:10]]
        redis_process.kill()
        redis_process.wait(timeout=10)
        after = [client.get(f"/api/v1/executions/{i}").status_code for i in running_ids]
        cached = client.get(f"/api/v1/executions/{FINAL}")
        ready = client.get("/readyz")

    assert before == [200] * 10
    assert after == [200] * 20
    assert cached.status_code == 200
    assert (ready.status_code, ready.json()) == (200, {"status": "ready", "redis": "degraded"})


def test_redis_without_a_shared_key_secret_is_refused_with_a_reason() -> None:
    with pytest.raises(ValidationError, match="cache_key_secret"):
        Settings(upstream_url="http://upstream:8080", redis_url="redis://127.0.0.1:6379/0")
