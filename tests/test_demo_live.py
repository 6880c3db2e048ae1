"""The demo upstream's live trees, their fresh runs and its cancel endpoint, over real HTTP on
loopback.

Every demo here runs on a fake clock the test moves: the statuses are worked out when a record
is served, so no test sleeps or measures time. A live tree's clock starts at its first read;
the tests read at ``START`` first, so an offset is also the tree's elapsed time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from gateway.demo.data import LIVE_TEMPLATES, LONG_JOB_SECONDS, SAMPLES, demo_id, run_name
from gateway.demo.faults import FaultConfig, FaultKind
from gateway.demo.upstream import (
    Demo,
    DemoOptions,
    create_demo_app,
    create_faulty_demo_app,
    demo_app,
)
from tests.conftest import API_KEY, AUTH_HEADERS
from tests.servers import serve

# A whole second, so a timestamp written without its microseconds would show.
START = 1_800_000_000.0
RFC3339_MICROS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00")
SUPPORT_UNFINISHED = (
    "support",
    "support/resolve",
    "support/resolve/refund",
    "support/resolve/refund/approval",
    "support/resolve/refund/approval/notify",
    "support/resolve/email",
    "support/escalate",
)
SUPPORT_FINISHED = ("support/classify", "support/resolve/lookup")
AGENT_TREE = (
    "live/agent",
    "live/agent/plan",
    "live/agent/flights",
    "live/agent/itinerary",
    "live/agent/itinerary/llm",
)
BACKFILL_BATCHES = tuple(f"live/backfill/batch-{index}" for index in range(4))
# The label of each live sample, by its template.
LIVE_LABELS = {
    template: next(label for label, id_ in SAMPLES.items() if id_ == demo_id(template))
    for template in LIVE_TEMPLATES
}


class FakeClock:
    """Seconds since the epoch that move only when the test says so."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def set(self, offset: float) -> None:
        """Move to ``offset`` seconds after ``START``."""
        self.now = START + offset


def at(offset: float) -> str:
    """The orchestrator's timestamp ``offset`` seconds after ``START``."""
    return datetime.fromtimestamp(START + offset, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


StartDemo = Callable[..., httpx.Client]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def start_demo(clock: FakeClock) -> Iterator[StartDemo]:
    """Start a demo upstream on ``clock`` (faulty when given ``faults``); returns a client."""
    with ExitStack() as stack:

        def start(faults: FaultConfig | None = None, **options: Any) -> httpx.Client:
            demo_options = DemoOptions(clock=clock, **options)
            if faults is None:
                url = stack.enter_context(serve(create_demo_app(demo_options), lifespan="off"))
            else:
                injector = create_faulty_demo_app(faults, demo_options)
                url = stack.enter_context(serve(injector, lifespan="off"))
                stack.callback(injector.release)  # runs before its server stops
            return stack.enter_context(httpx.Client(base_url=url, timeout=30))

        yield start


@pytest.fixture
def demo(start_demo: StartDemo) -> httpx.Client:
    """An open demo upstream on the fake clock."""
    return start_demo()


StartRuns = Callable[..., tuple[Demo, httpx.Client]]


@pytest.fixture
def start_runs(clock: FakeClock) -> Iterator[StartRuns]:
    """Start a ``Demo`` on ``clock`` (its keyword arguments given); returns it and a client."""
    with ExitStack() as stack:

        def start(**limits: Any) -> tuple[Demo, httpx.Client]:
            runs = Demo(DemoOptions(clock=clock), **limits)
            url = stack.enter_context(serve(demo_app(runs), lifespan="off"))
            return runs, stack.enter_context(httpx.Client(base_url=url, timeout=30))

        yield start


def read(client: httpx.Client, name: str, **headers: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/executions/{demo_id(name)}", headers=headers)
    assert response.status_code == 200, response.text
    record: dict[str, Any] = response.json()
    return record


def status(client: httpx.Client, name: str) -> str:
    value: str = read(client, name)["status"]
    return value


def cancel(client: httpx.Client, name: str, **headers: str) -> httpx.Response:
    return client.post(f"/api/v1/executions/{demo_id(name)}/cancel", headers=headers)


def cancel_state(record: dict[str, Any]) -> tuple[Any, ...]:
    return (
        record["status"],
        record["cancelled_at"],
        record["cancelled_by"],
        record["completed_at"],
    )


# --- live trees ---------------------------------------------------------------------------


def test_a_live_agent_run_goes_from_queued_through_running_to_completed(
    demo: httpx.Client, clock: FakeClock
) -> None:
    queued = read(demo, "live/agent")
    clock.set(2)
    claimed = read(demo, "live/agent")
    clock.set(39.5)
    running = read(demo, "live/agent")
    clock.set(40)
    completed = read(demo, "live/agent")

    assert queued["status"] == "queued"
    assert queued["created_at"] == at(0)
    assert (queued["started_at"], queued["assigned_to_worker"], queued["result"]) == (None,) * 3
    assert claimed["status"] == "claimed"
    assert (claimed["started_at"], claimed["assigned_to_worker"]) == (at(2), "worker-eu-1")
    assert (running["status"], running["started_at"], running["completed_at"]) == (
        "running",
        at(2),
        None,
    )
    assert (completed["status"], completed["completed_at"]) == ("completed", at(40))
    assert completed["result"] == {"itinerary_url": "s3://trips/lisbon.md", "days": 3}
    assert completed["created_at"] == at(0)
    for stamp in ("created_at", "started_at", "completed_at"):
        assert RFC3339_MICROS.fullmatch(completed[stamp])


def test_the_children_of_a_live_agent_run_claim_run_wait_and_complete_in_turn(
    demo: httpx.Client, clock: FakeClock
) -> None:
    expected = [
        (0, {"live/agent/plan": "queued", "live/agent/itinerary": "queued"}),
        (4, {"live/agent/plan": "claimed", "live/agent/flights": "queued"}),
        (5, {"live/agent/plan": "running"}),
        (10, {"live/agent/plan": "completed", "live/agent/flights": "claimed"}),
        (26, {"live/agent/itinerary": "running", "live/agent/itinerary/llm": "queued"}),
        (27, {"live/agent/itinerary": "waiting", "live/agent/itinerary/llm": "claimed"}),
        (34, {"live/agent/itinerary": "waiting", "live/agent/itinerary/llm": "completed"}),
        (35, {"live/agent/itinerary": "running"}),
        (38, {"live/agent/itinerary": "completed", "live/agent": "running"}),
    ]
    seen: list[tuple[int, dict[str, str]]] = []
    read(demo, "live/agent")  # starts the tree's clock
    for offset, statuses in expected:
        clock.set(offset)
        seen.append((offset, {name: status(demo, name) for name in statuses}))

    assert seen == expected


def test_a_tool_that_fails_an_attempt_is_retried_with_a_rising_retry_count(
    demo: httpx.Client, clock: FakeClock
) -> None:
    read(demo, "live/agent")
    attempts = []
    for offset in (11, 15, 17, 18, 24):
        clock.set(offset)
        record = read(demo, "live/agent/flights")
        attempts.append((record["status"], record["retry_count"], record["started_at"]))

    assert attempts == [
        ("running", 0, at(10)),
        ("queued", 1, at(10)),  # the first attempt failed; the first start stays
        ("claimed", 1, at(10)),
        ("running", 1, at(10)),
        ("completed", 1, at(10)),
    ]


def test_a_live_import_retries_its_parse_step_twice_and_ends_failed(
    demo: httpx.Client, clock: FakeClock
) -> None:
    read(demo, "live/import")
    clock.set(25)
    third_attempt = read(demo, "live/import/parse")
    clock.set(30)
    parse = read(demo, "live/import/parse")
    root_before = read(demo, "live/import")
    clock.set(31)
    root = read(demo, "live/import")

    assert (third_attempt["status"], third_attempt["retry_count"]) == ("running", 2)
    assert (parse["status"], parse["retry_count"], parse["completed_at"]) == ("failed", 2, at(29))
    assert parse["error"] == "invoice INV-2291: the total does not match its lines"
    assert (root_before["status"], root_before["error"]) == ("running", None)
    assert (root["status"], root["completed_at"], root["result"]) == ("failed", at(31), None)
    assert root["error"] == "step parse_invoices failed after 3 attempts"
    assert status(demo, "live/import/fetch") == "completed"


def test_each_live_tree_starts_its_clock_when_one_of_its_executions_is_first_read(
    demo: httpx.Client, clock: FakeClock
) -> None:
    clock.set(1000)  # the demo has been up for a while, unread
    plan_first_read = read(demo, "live/agent/plan")
    clock.set(1004)
    plan = read(demo, "live/agent/plan")
    root = read(demo, "live/agent")
    import_first_read = read(demo, "live/import")
    clock.set(1006)
    import_later = read(demo, "live/import")

    assert (plan_first_read["status"], plan_first_read["created_at"]) == ("queued", at(1000))
    assert plan["status"] == "claimed"
    assert (root["status"], root["created_at"], root["started_at"]) == (
        "running",
        at(1000),
        at(1002),
    )
    assert (import_first_read["status"], import_first_read["created_at"]) == ("queued", at(1004))
    assert import_later["status"] == "claimed"


@pytest.mark.parametrize("name", ["live/agent", "live/import", "live/backfill"])
def test_every_live_sample_changes_status_within_three_seconds_of_its_first_read(
    demo: httpx.Client, clock: FakeClock, name: str
) -> None:
    clock.set(500)
    first = status(demo, name)
    clock.set(503)

    assert demo_id(name) in SAMPLES.values()
    assert (first, status(demo, name)) == ("queued", "running")


# --- fresh runs ---------------------------------------------------------------------------


def run_id(template: str, run: int, below: str = "") -> str:
    return demo_id(run_name(template, run) + below)


def read_id(client: httpx.Client, execution_id: str) -> httpx.Response:
    return client.get(f"/api/v1/executions/{execution_id}")


def test_the_samples_offer_the_seeded_runs_for_as_long_as_nobody_opens_them(
    start_runs: StartRuns, clock: FakeClock
) -> None:
    runs, client = start_runs()

    first = runs.samples()
    read(client, "research")  # not a live tree: starts nothing
    clock.set(3600)

    assert first == SAMPLES
    assert list(first) == list(SAMPLES)
    assert runs.samples() == SAMPLES


def test_once_the_offered_run_was_read_the_samples_offer_a_fresh_one_that_has_not_started(
    start_runs: StartRuns, clock: FakeClock
) -> None:
    runs, client = start_runs()
    read(client, "live/agent")
    clock.set(5)
    offered = runs.samples()
    again = runs.samples()  # the fresh run is unread, so it is still the one on offer
    clock.set(20)
    fresh = read_id(client, offered[LIVE_LABELS["live/agent"]]).json()
    fresh_plan = read_id(client, run_id("live/agent", 1, "/plan")).json()
    seeded = read(client, "live/agent")
    clock.set(40)
    seeded_later, fresh_later = read(client, "live/agent"), read_id(client, fresh["id"]).json()

    assert offered[LIVE_LABELS["live/agent"]] == run_id("live/agent", 1) != demo_id("live/agent")
    assert again == offered
    assert {label: offered[label] for label in SAMPLES if label != LIVE_LABELS["live/agent"]} == {
        label: id_ for label, id_ in SAMPLES.items() if label != LIVE_LABELS["live/agent"]
    }
    assert (fresh["workflow_id"], fresh["status"], fresh["created_at"]) == (
        "trip_planner_agent",
        "queued",
        at(20),
    )
    assert (fresh["started_at"], fresh["parent_execution_id"]) == (None, None)
    assert (fresh_plan["parent_execution_id"], fresh_plan["root_execution_id"]) == (
        fresh["id"],
    ) * 2
    assert (seeded["status"], seeded["created_at"]) == ("running", at(0))
    assert (seeded_later["status"], seeded_later["completed_at"]) == ("completed", at(40))
    assert fresh_later["status"] == "running"
    assert runs.samples()[LIVE_LABELS["live/agent"]] == run_id("live/agent", 2)


def test_the_seeded_runs_keep_their_ids_and_samples_whatever_runs_follow(
    start_runs: StartRuns, clock: FakeClock
) -> None:
    printed = dict(SAMPLES)
    runs, client = start_runs()
    for template in LIVE_TEMPLATES:
        read(client, template)
    offered = runs.samples()
    clock.set(3600)
    runs.samples()

    assert printed == SAMPLES
    # The ids printed and documented before fresh runs existed.
    assert [SAMPLES[LIVE_LABELS[template]] for template in LIVE_TEMPLATES] == [
        "e9eb2b5c-7134-5f58-a6e1-55bb2052518a",
        "603eb812-f332-506e-86dc-eb9b448b52ca",
        "13c54841-322d-567f-9948-80c4c83ddbd4",
    ]
    assert list(offered) == list(SAMPLES)
    assert [offered[LIVE_LABELS[template]] for template in LIVE_TEMPLATES] == [
        run_id(template, 1) for template in LIVE_TEMPLATES
    ]
    assert {name: status(client, name) for name in AGENT_TREE} == dict.fromkeys(
        AGENT_TREE, "completed"
    )
    assert status(client, "live/backfill/batch-3") == "completed"


def test_a_finished_run_is_dropped_after_the_retention_and_then_answers_404(
    start_runs: StartRuns, clock: FakeClock
) -> None:
    runs, client = start_runs(keep_finished_seconds=600)
    read(client, "live/agent")
    first_fresh = runs.samples()[LIVE_LABELS["live/agent"]]
    read_id(client, first_fresh)  # starts it at 0: it completes at 40
    fresh_tree = [run_id("live/agent", 1, below) for below in ("", "/plan", "/itinerary/llm")]
    clock.set(639)
    runs.samples()
    kept = [read_id(client, execution_id).status_code for execution_id in fresh_tree]
    clock.set(641)
    runs.samples()
    dropped = [read_id(client, execution_id) for execution_id in fresh_tree]
    cancel_of_dropped = client.post(f"/api/v1/executions/{first_fresh}/cancel")

    assert kept == [200, 200, 200]
    assert [(answer.status_code, answer.content) for answer in dropped] == [(404, b"")] * 3
    assert cancel_of_dropped.status_code == 404
    assert status(client, "live/agent") == "completed"  # run 0 is never dropped
    assert read_id(client, run_id("live/agent", 2)).json()["status"] == "queued"


def test_the_runs_kept_per_template_stay_within_the_cap_dropping_the_oldest_finished(
    start_runs: StartRuns, clock: FakeClock
) -> None:
    runs, client = start_runs(max_runs=3)
    offered = []
    for step in range(6):
        clock.set(step * 100)  # each run offered is read, and finished by the next step
        offered.append(runs.samples()[LIVE_LABELS["live/agent"]])
        read_id(client, offered[-1])
    kept = [read_id(client, execution_id).status_code for execution_id in offered]

    assert offered == [run_id("live/agent", run) for run in range(6)]
    assert kept == [200, 404, 404, 404, 200, 200]


def test_at_the_cap_with_every_kept_run_still_going_the_newest_is_offered_again(
    start_runs: StartRuns, clock: FakeClock
) -> None:
    runs, client = start_runs(max_runs=2)
    label = LIVE_LABELS["live/backfill"]
    read(client, "live/backfill")
    fresh = runs.samples()[label]
    read_id(client, fresh)
    clock.set(60)
    while_running = runs.samples()[label]
    clock.set(LONG_JOB_SECONDS)
    once_finished = runs.samples()[label]

    assert while_running == fresh == run_id("live/backfill", 1)
    assert once_finished == run_id("live/backfill", 2)
    assert read_id(client, fresh).status_code == 404
    assert status(client, "live/backfill") == "completed"


def test_a_cancel_of_the_offered_run_counts_as_starting_it(
    start_runs: StartRuns, clock: FakeClock
) -> None:
    runs, client = start_runs()
    answer = cancel(client, "live/backfill")
    clock.set(1)
    offered = runs.samples()

    assert answer.status_code == 200
    assert offered[LIVE_LABELS["live/backfill"]] == run_id("live/backfill", 1)
    assert offered[LIVE_LABELS["live/agent"]] == demo_id("live/agent")
    assert status(client, "live/backfill") == "pending_cancel"


def test_a_demo_keeps_at_least_one_fresh_run_besides_the_seeded_one() -> None:
    with pytest.raises(ValueError, match="max_runs"):
        Demo(max_runs=1)


# --- cancel -------------------------------------------------------------------------------


def test_cancelling_a_running_tree_cancels_it_and_its_unfinished_descendants_only(
    demo: httpx.Client, clock: FakeClock
) -> None:
    clock.set(100)
    finished_before = {name: read(demo, name) for name in SUPPORT_FINISHED}
    answer = cancel(demo, "support")
    clock.set(102.5)
    pending = {name: cancel_state(read(demo, name)) for name in SUPPORT_UNFINISHED}
    clock.set(103)
    confirmed = {name: cancel_state(read(demo, name)) for name in SUPPORT_UNFINISHED}

    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {
        "execution_id": demo_id("support"),
        "status": "pending_cancel",
        "cancelled_at": at(100),
    }
    assert pending == dict.fromkeys(SUPPORT_UNFINISHED, ("pending_cancel", at(100), "manual", None))
    assert confirmed == dict.fromkeys(SUPPORT_UNFINISHED, ("cancelled", at(100), "manual", at(103)))
    assert {name: read(demo, name) for name in SUPPORT_FINISHED} == finished_before


def test_cancelling_an_execution_leaves_its_ancestors_and_siblings_alone(
    demo: httpx.Client, clock: FakeClock
) -> None:
    answer = cancel(demo, "support/resolve/refund")
    clock.set(3)
    below = [status(demo, f"support/resolve/refund{rest}") for rest in ("", "/approval")]
    around = [status(demo, name) for name in ("support", "support/resolve", "support/escalate")]

    assert answer.status_code == 200
    assert below == ["cancelled", "cancelled"]
    assert around == ["running", "running", "claimed"]


def test_cancelling_the_long_job_stops_its_timeline_and_spares_its_finished_step(
    demo: httpx.Client, clock: FakeClock
) -> None:
    read(demo, "live/backfill")
    clock.set(60)
    count = read(demo, "live/backfill/count")
    before = [status(demo, name) for name in ("live/backfill", *BACKFILL_BATCHES)]
    answer = cancel(demo, "live/backfill")
    clock.set(62)
    pending = [cancel_state(read(demo, n)) for n in ("live/backfill", *BACKFILL_BATCHES)]
    clock.set(63)
    confirmed = {n: read(demo, n) for n in ("live/backfill", *BACKFILL_BATCHES)}
    clock.set(10_000)  # long after the job would have completed

    assert before == ["running", "running", "queued", "queued", "queued"]
    assert answer.json() == {
        "execution_id": demo_id("live/backfill"),
        "status": "pending_cancel",
        "cancelled_at": at(60),
    }
    assert pending == [("pending_cancel", at(60), "manual", None)] * 5
    assert [cancel_state(r) for r in confirmed.values()] == [
        ("cancelled", at(60), "manual", at(63))
    ] * 5
    assert confirmed["live/backfill/batch-0"]["started_at"] == at(8)
    assert confirmed["live/backfill/batch-1"]["started_at"] is None
    assert {n: read(demo, n) for n in confirmed} == confirmed
    assert read(demo, "live/backfill/count") == count
    assert count["status"] == "completed"


def test_cancelling_a_live_tree_spares_its_step_that_already_failed(
    demo: httpx.Client, clock: FakeClock
) -> None:
    read(demo, "live/import")
    clock.set(30)
    failed_step = read(demo, "live/import/parse")
    answer = cancel(demo, "live/import")
    clock.set(40)

    assert answer.status_code == 200
    assert read(demo, "live/import/parse") == failed_step
    assert status(demo, "live/import") == "cancelled"  # never reaches its own failure at 31


@pytest.mark.parametrize(
    ("name", "current"),
    [
        ("research", "completed"),
        ("pipeline", "failed"),
        ("pipeline/load", "cancelled"),
        ("support/resolve/email", "pending"),
        ("pipeline/audit", "paused"),
    ],
)
def test_an_execution_in_a_status_that_cannot_be_cancelled_answers_a_cancellation_error(
    demo: httpx.Client, clock: FakeClock, name: str, current: str
) -> None:
    before = read(demo, name)
    answer = cancel(demo, name)
    clock.set(3600)

    assert answer.status_code == 400
    assert answer.json() == {
        "error": f"Execution cannot be cancelled (status: {current})",
        "error_type": "CANCELLATION_ERROR",
    }
    assert read(demo, name) == before


def test_a_cancel_of_an_id_that_is_not_a_uuid_is_400_with_an_empty_body(
    demo: httpx.Client,
) -> None:
    answer = demo.post("/api/v1/executions/not-a-uuid/cancel")

    assert (answer.status_code, answer.content) == (400, b"")


@pytest.mark.parametrize("unknown_status", [404, 500])
def test_a_cancel_of_an_unknown_id_answers_the_unknown_status_with_an_empty_body(
    start_demo: StartDemo, unknown_status: int
) -> None:
    client = start_demo(unknown_status=unknown_status)

    answer = cancel(client, "no such execution")

    assert (answer.status_code, answer.content) == (unknown_status, b"")


@pytest.mark.parametrize(
    ("headers", "expected", "error_type"),
    [
        ({}, 401, "UNAUTHORIZED"),
        ({"Authorization": "Bearer sk_wrong", "X-Project-ID": "demo-project"}, 401, "UNAUTHORIZED"),
        ({"Authorization": f"Bearer {API_KEY}"}, 400, "BAD_REQUEST"),
        ({"Authorization": f"Bearer {API_KEY}", "X-Project-ID": "elsewhere"}, 403, "FORBIDDEN"),
    ],
)
def test_a_cancel_without_the_right_credentials_is_refused_like_a_read_and_changes_nothing(
    start_demo: StartDemo, headers: dict[str, str], expected: int, error_type: str
) -> None:
    client = start_demo(api_key=API_KEY)

    answer = cancel(client, "support", **headers)
    read_answer = client.get(f"/api/v1/executions/{demo_id('support')}", headers=headers)

    assert answer.status_code == read_answer.status_code == expected
    assert answer.json()["error_type"] == read_answer.json()["error_type"] == error_type
    assert read(client, "support", **AUTH_HEADERS)["status"] == "running"


def test_a_cancel_with_the_api_key_or_the_cookie_is_accepted(start_demo: StartDemo) -> None:
    client = start_demo(api_key=API_KEY)
    cookie = {"Cookie": f"polos_auth={API_KEY}", "Project-ID": "demo-project"}

    by_key = cancel(client, "support/escalate", **AUTH_HEADERS)
    by_cookie = cancel(client, "support/resolve", **cookie)

    assert (by_key.status_code, by_cookie.status_code) == (200, 200)
    assert read(client, "support/escalate", **AUTH_HEADERS)["status"] == "pending_cancel"


def test_a_cancelled_execution_stays_cancelled_forever(
    demo: httpx.Client, clock: FakeClock
) -> None:
    cancel(demo, "support/escalate")
    clock.set(3)
    cancelled = read(demo, "support/escalate")
    clock.set(365 * 24 * 3600)
    again = cancel(demo, "support/escalate")
    clock.set(1)  # a wall clock stepping back must not undo it either

    assert cancel_state(cancelled) == ("cancelled", at(0), "manual", at(3))
    assert again.status_code == 400
    assert again.json()["error"] == "Execution cannot be cancelled (status: cancelled)"
    assert read(demo, "support/escalate") == cancelled


def test_a_pending_cancel_can_be_cancelled_again_and_restarts_the_confirmation(
    demo: httpx.Client, clock: FakeClock
) -> None:
    cancel(demo, "support/escalate")
    clock.set(2)
    again = cancel(demo, "support/escalate")
    clock.set(4)
    pending = read(demo, "support/escalate")
    clock.set(5)

    assert again.json() == {
        "execution_id": demo_id("support/escalate"),
        "status": "pending_cancel",
        "cancelled_at": at(2),
    }
    assert cancel_state(pending) == ("pending_cancel", at(2), "manual", None)
    assert status(demo, "support/escalate") == "cancelled"


def test_a_finished_live_tree_never_changes_again(demo: httpx.Client, clock: FakeClock) -> None:
    read(demo, "live/agent")
    clock.set(40)
    finished = {name: read(demo, name) for name in AGENT_TREE}
    clock.set(10 * 365 * 24 * 3600)
    refused = cancel(demo, "live/agent")
    clock.set(20)  # and a clock stepping back does not reopen it

    assert {record["status"] for record in finished.values()} == {"completed"}
    assert refused.status_code == 400
    assert {name: read(demo, name) for name in AGENT_TREE} == finished


def test_the_demo_stats_count_cancel_requests_apart_from_execution_requests(
    demo: httpx.Client,
) -> None:
    read(demo, "support")
    read(demo, "live/agent")
    cancel(demo, "support")
    cancel(demo, "research")  # refused, still counted
    demo.post("/api/v1/executions/not-a-uuid/cancel")

    assert demo.get("/_demo/stats").json() == {"execution_requests": 2, "cancel_requests": 3}


# --- cancel behind the fault injector -----------------------------------------------------


def _answer_of(client: httpx.Client) -> tuple[int, object] | None:
    """A cancel's status and body (decoded when JSON), or None when the connection dropped."""
    try:
        answer = cancel(client, "support")
    except httpx.RemoteProtocolError:
        return None
    try:
        return answer.status_code, answer.json()
    except ValueError:
        return answer.status_code, answer.content


CANCELLED = {"execution_id": demo_id("support"), "status": "pending_cancel", "cancelled_at": at(0)}


@pytest.mark.parametrize(
    ("kind", "expected", "demo_answered"),
    [
        (FaultKind.RESET, None, True),
        (FaultKind.TRUNCATED, None, True),
        (FaultKind.HANG, (200, CANCELLED), True),
        (FaultKind.SLOW, (200, CANCELLED), True),
        (FaultKind.MALFORMED, (200, b"<html><body>502 Bad Gateway</body></html>"), False),
        (FaultKind.WRONG_SHAPE, (200, [{"id": demo_id("support")}]), False),
        (FaultKind.BURST, (503, b""), False),
        (FaultKind.RATE_LIMITED, (429, b""), False),
    ],
)
def test_a_spoiled_cancel_takes_effect_exactly_when_the_demo_itself_answered_it(
    start_demo: StartDemo,
    kind: FaultKind,
    expected: tuple[int, object] | None,
    demo_answered: bool,
) -> None:
    faults = FaultConfig(
        rate=1,
        kinds=(kind,),
        limit=1,
        burst_length=1,
        burst_statuses=(503,),
        hang_seconds=0,
        slow_ms=0,
    )
    client = start_demo(faults)

    answer = _answer_of(client)
    stats = client.get("/_demo/stats").json()

    assert answer == expected
    assert stats["faults"][kind] == 1
    assert stats.get("cancel_requests", 0) == int(demo_answered)
    assert status(client, "support") == ("pending_cancel" if demo_answered else "running")
