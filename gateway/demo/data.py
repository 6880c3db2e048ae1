"""The demo's executions: seeded, deterministic trees that look like a real Polos project.

Ids are UUIDv5 of a readable name, so they are the same on every start. The trees cover every
status the orchestrator writes (and one it might add later), fan-out, a long chain, payloads of
every JSON kind, and the broken links a real database can hold: a loop and a deleted parent.
The live trees (``live/...``) follow a timeline instead (``gateway.demo.progress``): they run
from queued to a final status from the first time one of their executions is read.

Each live tree is a template (``LIVE_TEMPLATES``) the store can build again as a fresh run under
new ids: run 0 is the seeded one (``live/agent``, ids as in ``SAMPLES``), run ``n`` is named
``live/agent~n`` with its children below that prefix (``live/agent~n/plan``)::

    store = seed()
    root_id = store.add_run("live/agent", 1)   # demo_id("live/agent~1")
    store.remove(store.tree(root_id))          # its ids are unknown again
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.demo.progress import Change, Timeline

_NAMESPACE = uuid.UUID("5f1d2c1e-6a1b-4c39-9a43-7d0f1c2b9e10")
_EPOCH = datetime(2026, 11, 14, 13, 0, 0, 123456, tzinfo=UTC)
CHAIN_DEPTH = 60
FANOUT_LEAVES = 120
LONG_JOB_SECONDS = 610.0
BACKFILL_BATCHES = 4


def demo_id(name: str) -> str:
    """The stable id of the demo execution called ``name``."""
    return str(uuid.uuid5(_NAMESPACE, name))


def _timestamp(seconds: float) -> str:
    return (_EPOCH + timedelta(seconds=seconds)).isoformat()


@dataclass
class DemoStore:
    """Executions by id, as the orchestrator would serialise them; live ones with a timeline."""

    executions: dict[str, dict[str, Any]] = field(default_factory=dict)
    timelines: dict[str, Timeline] = field(default_factory=dict)

    def add(
        self,
        name: str,
        workflow_id: str,
        status: str,
        *,
        parent: str | None = None,
        at: float = 0.0,
        payload: Any = None,
        result: Any = None,
        **extra: Any,
    ) -> str:
        """Add an execution under ``parent`` (a name), copying the root link as Polos does."""
        execution_id = demo_id(name)
        parent_record = self.executions[demo_id(parent)] if parent else None
        root_id = None
        if parent_record is not None:
            root_id = parent_record["root_execution_id"] or parent_record["id"]
        started = status not in {"pending", "queued"}
        finished = status in {"completed", "failed", "cancelled"}
        self.executions[execution_id] = {
            "id": execution_id,
            "workflow_id": workflow_id,
            "status": status,
            "payload": payload,
            "result": result if status == "completed" else None,
            "error": extra.pop("error", None),
            "created_at": _timestamp(at),
            "started_at": _timestamp(at + 0.25) if started else None,
            "completed_at": _timestamp(at + 3.5) if finished else None,
            "deployment_id": "deploy-2026-11-14",
            "assigned_to_worker": "worker-eu-1" if started else None,
            "parent_execution_id": parent_record["id"] if parent_record else None,
            "root_execution_id": root_id,
            "retry_count": extra.pop("retry_count", 0),
            "step_key": extra.pop("step_key", None),
            "queue_name": extra.pop("queue_name", "default"),
            "concurrency_key": extra.pop("concurrency_key", None),
            "batch_id": extra.pop("batch_id", None),
            "session_id": extra.pop("session_id", None),
            "user_id": extra.pop("user_id", None),
            "output_schema_name": extra.pop("output_schema_name", None),
            "cancelled_at": _timestamp(at + 2)
            if status in {"cancelled", "pending_cancel"}
            else None,
            "cancelled_by": "manual" if status in {"cancelled", "pending_cancel"} else None,
            "run_timeout_seconds": extra.pop("run_timeout_seconds", 600),
        }
        if extra:
            raise TypeError(f"unknown execution fields: {sorted(extra)}")
        return execution_id

    def add_live(self, name: str, workflow_id: str, *changes: Change, **fields: Any) -> str:
        """Add an execution that goes through ``changes``; ``fields`` describe how it ends."""
        execution_id = self.add(name, workflow_id, changes[-1].status, **fields)
        self.timelines[execution_id] = Timeline(changes)
        return execution_id

    def add_run(self, template: str, run: int) -> str:
        """Build run ``run`` of the live tree ``template``; the id of its root."""
        root_name = run_name(template, run)
        LIVE_TEMPLATES[template](self, root_name)
        return demo_id(root_name)

    def tree(self, root_id: str) -> tuple[str, ...]:
        """The ids of the tree rooted at ``root_id``, the root first (if the store holds it)."""
        # Every execution below a root carries its id, as the orchestrator writes it.
        below = (
            i for i, record in self.executions.items() if record["root_execution_id"] == root_id
        )
        return (root_id, *below) if root_id in self.executions else tuple(below)

    def remove(self, execution_ids: Iterable[str]) -> None:
        """Forget these executions: from now on they are unknown ids."""
        for execution_id in execution_ids:
            self.executions.pop(execution_id, None)
            self.timelines.pop(execution_id, None)


def run_name(template: str, run: int) -> str:
    """The name of the root of run ``run`` of a live tree; run 0 is the template's own name."""
    return template if run == 0 else f"{template}~{run}"


def _research_report(store: DemoStore) -> None:
    """Completed: a workflow, two agents, fanned-out tools, a sub-workflow, five levels deep."""
    store.add(
        "research",
        "research_report",
        "completed",
        at=0,
        payload={"topic": "durable execution for AI agents", "depth": 3, "languages": ["en", "de"]},
        result={"report_url": "s3://reports/8f3a.md", "words": 4182, "score": 0.93},
        user_id="user_ada",
        session_id="sess-7781",
        output_schema_name="ResearchReport",
    )
    store.add(
        "research/planner",
        "planner_agent",
        "completed",
        parent="research",
        at=1,
        payload={"goal": "find 3 sources"},
        result=["arxiv", "blog", "docs"],
        step_key="plan",
    )
    for index, query in enumerate(["temporal workflows", "durable agents", "sagas"]):
        search = f"research/planner/search-{index}"
        store.add(
            search,
            "web_search",
            "completed",
            parent="research/planner",
            at=2 + index,
            payload={"query": query, "max_results": 5},
            result={"hits": 5 - index},
            step_key=f"search_{index}",
            concurrency_key="web_search",
        )
        store.add(
            f"{search}/summarise",
            "summarise_page",
            "completed",
            parent=search,
            at=3 + index,
            payload={"url": f"https://example.org/{index}"},
            result="Durable execution keeps agent state across crashes.",
        )
        store.add(
            f"{search}/summarise/llm",
            "llm_call",
            "completed",
            parent=f"{search}/summarise",
            at=3.5 + index,
            payload={"model": "gpt-4.1", "messages": 2},
            result={"tokens": 18446744073709551621, "text": "Résumé ✓ — 要約 😀"},
        )
    store.add(
        "research/writer",
        "writer_agent",
        "completed",
        parent="research",
        at=8,
        payload={"sections": ["intro", "body", "outro"]},
        result=True,
        step_key="write",
    )
    for section in ("intro", "body"):
        store.add(
            f"research/writer/{section}",
            "draft_section",
            "completed",
            parent="research/writer",
            at=9,
            payload=section,
            result=len(section) * 1000,
        )
    store.add(
        "research/writer/cite",
        "cite_sources",
        "completed",
        parent="research/writer",
        at=12,
        payload=[1, 2.5, None, True, "x"],
        result=None,
        retry_count=2,
    )


def _support_triage(store: DemoStore) -> None:
    """Running: agents in every in-flight status, a human approval waiting four levels down."""
    store.add(
        "support",
        "customer_support_triage",
        "running",
        at=100,
        payload={"ticket": 48213, "channel": "email", "customer": {"tier": "gold"}},
        user_id="user_grace",
        session_id="sess-9912",
        batch_id="batch-nov-14",
    )
    store.add(
        "support/classify",
        "classifier_agent",
        "completed",
        parent="support",
        at=101,
        payload={"text": "Where is my order?"},
        result={"intent": "order_status"},
    )
    store.add(
        "support/resolve",
        "resolver_agent",
        "running",
        parent="support",
        at=102,
        payload={"intent": "order_status"},
    )
    store.add(
        "support/resolve/lookup",
        "lookup_order",
        "completed",
        parent="support/resolve",
        at=103,
        payload={"order": "A-1009"},
        result={"state": "lost in transit"},
    )
    store.add(
        "support/resolve/refund",
        "issue_refund",
        "waiting",
        parent="support/resolve",
        at=104,
        payload={"amount_cents": 129900, "currency": "EUR"},
    )
    store.add(
        "support/resolve/refund/approval",
        "approval_flow",
        "waiting",
        parent="support/resolve/refund",
        at=105,
        payload={"approver": "manager"},
    )
    store.add(
        "support/resolve/refund/approval/notify",
        "notify_manager",
        "queued",
        parent="support/resolve/refund/approval",
        at=106,
        payload={"via": "slack"},
        queue_name="notifications",
    )
    store.add(
        "support/resolve/email",
        "send_email",
        "pending",
        parent="support/resolve",
        at=107,
        payload={"template": "refund_pending"},
    )
    store.add(
        "support/escalate",
        "escalation_agent",
        "claimed",
        parent="support",
        at=108,
        payload={"reason": "gold customer"},
    )


def _data_pipeline(store: DemoStore) -> None:
    """Failed: a failing step, a cancelled one, one being cancelled, one in a future status."""
    store.add(
        "pipeline",
        "nightly_data_pipeline",
        "failed",
        at=200,
        payload={"date": "2026-11-13"},
        error="step transform failed: 3 invalid rows",
    )
    store.add(
        "pipeline/extract",
        "extract",
        "completed",
        parent="pipeline",
        at=201,
        payload={"source": "postgres"},
        result={"rows": 120000},
    )
    store.add(
        "pipeline/transform",
        "transform",
        "failed",
        parent="pipeline",
        at=202,
        payload={"rules": 14},
        error="3 rows failed validation",
        retry_count=3,
    )
    store.add(
        "pipeline/transform/validate",
        "validate_rows",
        "failed",
        parent="pipeline/transform",
        at=203,
        payload={"schema": "orders_v2"},
        error="row 88121: amount must be positive",
    )
    store.add(
        "pipeline/load",
        "load",
        "cancelled",
        parent="pipeline",
        at=204,
        payload={"target": "warehouse"},
    )
    store.add(
        "pipeline/notify",
        "notify",
        "pending_cancel",
        parent="pipeline",
        at=205,
        payload={"channel": "#data"},
    )
    store.add(
        "pipeline/audit",
        "audit_trail",
        "paused",
        parent="pipeline",
        at=206,
        payload={"note": "a status this gateway does not know yet"},
    )


def _fanout(store: DemoStore) -> None:
    """Running: one agent fanning out to many tool calls (the batching showcase)."""
    store.add("eval", "nightly_eval", "running", at=300, payload={"suite": "regression"})
    store.add(
        "eval/runner",
        "eval_runner_agent",
        "running",
        parent="eval",
        at=301,
        payload={"cases": FANOUT_LEAVES},
    )
    statuses = ("completed", "completed", "failed", "running", "queued")
    for index in range(FANOUT_LEAVES):
        status = statuses[index % len(statuses)]
        store.add(
            f"eval/runner/case-{index}",
            "eval_case",
            status,
            parent="eval/runner",
            at=302 + index / 10,
            payload={"case": index},
            result={"passed": index % 7 != 0},
            error="assertion failed" if status == "failed" else None,
            step_key=f"case_{index}",
        )


def _chain(store: DemoStore) -> None:
    """Completed: a planner that called itself, CHAIN_DEPTH levels deep."""
    store.add(
        "chain/0",
        "recursive_planner",
        "completed",
        at=400,
        payload={"level": 0},
        result={"level": 0},
    )
    for level in range(1, CHAIN_DEPTH):
        store.add(
            f"chain/{level}",
            "recursive_planner",
            "completed",
            parent=f"chain/{level - 1}",
            at=400 + level,
            payload={"level": level},
            result={"level": level},
        )


def _broken_links(store: DemoStore) -> None:
    """What a real database can hold: a loop, a self-parent, a parent deleted by retention."""
    loop_a, loop_b = demo_id("loop/a"), demo_id("loop/b")
    store.add("loop/a", "looping_agent", "completed", at=500, payload={"side": "a"}, result=1)
    store.add("loop/b", "looping_agent", "completed", at=501, payload={"side": "b"}, result=2)
    store.executions[loop_a]["parent_execution_id"] = loop_b
    store.executions[loop_b]["parent_execution_id"] = loop_a
    store.add("loop/self", "self_referencing_tool", "completed", at=502, payload={}, result={})
    self_id = demo_id("loop/self")
    store.executions[self_id]["parent_execution_id"] = self_id
    store.executions[self_id]["root_execution_id"] = self_id

    store.add("orphan/root", "archived_workflow", "completed", at=600, payload={}, result={})
    store.add(
        "orphan/parent",
        "archived_agent",
        "completed",
        parent="orphan/root",
        at=601,
        payload={},
        result={},
    )
    store.add(
        "orphan/child",
        "surviving_tool",
        "completed",
        parent="orphan/parent",
        at=602,
        payload={"kept": True},
        result={"note": "my parent and root were deleted"},
    )
    # Retention deleted the parent and the root; the child still names them.
    del store.executions[demo_id("orphan/root")]
    del store.executions[demo_id("orphan/parent")]


def _live_agent_run(store: DemoStore, root: str) -> None:
    """Live, completed at 40 s: a planner, a search that retries once, a writer that waits."""
    store.add_live(
        root,
        "trip_planner_agent",
        Change(0, "queued"),
        Change(2, "claimed"),
        Change(3, "running"),
        Change(40, "completed"),
        payload={"request": "3 days in Lisbon in May", "budget_eur": 1200},
        result={"itinerary_url": "s3://trips/lisbon.md", "days": 3},
        user_id="user_linus",
        session_id="sess-live-1",
    )
    store.add_live(
        f"{root}/plan",
        "planner_agent",
        Change(0, "queued"),
        Change(4, "claimed"),
        Change(5, "running"),
        Change(10, "completed"),
        parent=root,
        payload={"goal": "flights, then an itinerary"},
        result=["search_flights", "write_itinerary"],
        step_key="plan",
    )
    store.add_live(
        f"{root}/flights",
        "search_flights",
        Change(0, "queued"),
        Change(10, "claimed"),
        Change(11, "running"),
        Change(15, "queued", retry_count=1),  # the first attempt timed out
        Change(17, "claimed", retry_count=1),
        Change(18, "running", retry_count=1),
        Change(24, "completed", retry_count=1),
        parent=root,
        payload={"from": "BER", "to": "LIS", "month": 5},
        result={"cheapest_eur": 142, "options": 9},
        step_key="search_flights",
        concurrency_key="flight_api",
    )
    store.add_live(
        f"{root}/itinerary",
        "writer_agent",
        Change(0, "queued"),
        Change(24, "claimed"),
        Change(25, "running"),
        Change(27, "waiting"),  # on its LLM call
        Change(35, "running"),
        Change(38, "completed"),
        parent=root,
        payload={"days": 3},
        result="Day 1: Alfama and the castle ...",
        step_key="write_itinerary",
    )
    store.add_live(
        f"{root}/itinerary/llm",
        "llm_call",
        Change(0, "queued"),
        Change(27, "claimed"),
        Change(28, "running"),
        Change(34, "completed"),
        parent=f"{root}/itinerary",
        payload={"model": "gpt-4.1", "messages": 3},
        result={"tokens": 1840},
    )


def _live_failing_import(store: DemoStore, root: str) -> None:
    """Live, failed at 31 s: its parse step fails all three attempts."""
    store.add_live(
        root,
        "invoice_import",
        Change(0, "queued"),
        Change(2, "claimed"),
        Change(3, "running"),
        Change(31, "failed"),
        payload={"mailbox": "invoices@example.org"},
        error="step parse_invoices failed after 3 attempts",
    )
    store.add_live(
        f"{root}/fetch",
        "fetch_invoices",
        Change(0, "queued"),
        Change(4, "claimed"),
        Change(5, "running"),
        Change(10, "completed"),
        parent=root,
        payload={"since": "2026-11-01"},
        result={"invoices": 214},
    )
    store.add_live(
        f"{root}/parse",
        "parse_invoices",
        Change(0, "queued"),
        Change(10, "claimed"),
        Change(11, "running"),
        Change(15, "queued", retry_count=1),
        Change(17, "claimed", retry_count=1),
        Change(18, "running", retry_count=1),
        Change(22, "queued", retry_count=2),
        Change(24, "claimed", retry_count=2),
        Change(25, "running", retry_count=2),
        Change(29, "failed", retry_count=2),
        parent=root,
        payload={"invoices": 214},
        error="invoice INV-2291: the total does not match its lines",
    )


def _live_long_job(store: DemoStore, root: str) -> None:
    """Live, completed at LONG_JOB_SECONDS unless cancelled (what it is for): batch after batch."""
    store.add_live(
        root,
        "embedding_backfill",
        Change(0, "queued"),
        Change(2, "claimed"),
        Change(3, "running"),
        Change(LONG_JOB_SECONDS, "completed"),
        payload={"collection": "support_articles", "model": "text-embedding-3-small"},
        result={"documents": 50000},
        run_timeout_seconds=3600,
    )
    store.add_live(
        f"{root}/count",
        "count_documents",
        Change(0, "queued"),
        Change(3, "claimed"),
        Change(4, "running"),
        Change(8, "completed"),
        parent=root,
        payload={"collection": "support_articles"},
        result={"documents": 50000},
    )
    batch_seconds = (LONG_JOB_SECONDS - 10) / BACKFILL_BATCHES
    for index in range(BACKFILL_BATCHES):
        claimed = 8 + index * batch_seconds
        store.add_live(
            f"{root}/batch-{index}",
            "embed_batch",
            Change(0, "queued"),
            Change(claimed, "claimed"),
            Change(claimed + 1, "running"),
            Change(claimed + batch_seconds, "completed"),
            parent=root,
            payload={"batch": index, "size": 50000 // BACKFILL_BATCHES},
            result={"embedded": 50000 // BACKFILL_BATCHES},
            step_key=f"batch_{index}",
            queue_name="embeddings",
        )


# The live trees by the name of their run 0's root; each builds a run under the root it is given.
LIVE_TEMPLATES: dict[str, Callable[[DemoStore, str], None]] = {
    "live/agent": _live_agent_run,
    "live/import": _live_failing_import,
    "live/backfill": _live_long_job,
}

# The ids `serve --demo` prints, with what each shows; a live tree starts when first read.
SAMPLES = {
    "a completed research tree (root)": demo_id("research"),
    "a leaf five levels down": demo_id("research/planner/search-0/summarise/llm"),
    "a running support tree, waiting on approval": demo_id(
        "support/resolve/refund/approval/notify"
    ),
    "a failed pipeline step": demo_id("pipeline/transform/validate"),
    f"the end of a {CHAIN_DEPTH}-deep chain": demo_id(f"chain/{CHAIN_DEPTH - 1}"),
    "a parent loop": demo_id("loop/a"),
    "an execution whose parent was deleted": demo_id("orphan/child"),
    "a live agent run: queued -> running -> completed over ~40 s (watch it)": demo_id("live/agent"),
    "a live import: a step retries, then it all fails after ~30 s": demo_id("live/import"),
    "a long-running job (~10 min) to cancel": demo_id("live/backfill"),
}


def seed() -> DemoStore:
    """A fresh store with every demo tree (``SAMPLES`` names the interesting ids)."""
    store = DemoStore()
    for build in (
        _research_report,
        _support_triage,
        _data_pipeline,
        _fanout,
        _chain,
        _broken_links,
    ):
        build(store)
    for template in LIVE_TEMPLATES:
        store.add_run(template, 0)
    return store
