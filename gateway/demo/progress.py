"""How the demo's executions change over time: live trees that run, and cancels that land.

Every record the demo serves is a pure function of the clock and the cancels asked for so far,
worked out when the record is served: nothing runs in the background, so a test moves a fake
clock instead of sleeping.

A live execution follows its ``Timeline``, in seconds from the first time any execution of its
tree is read (so a tree opened minutes after the demo started still moves), on the wall clock
(so the timings a UI shows are real)::

    0        queued           created_at
    2        claimed          started_at, assigned_to_worker (the first start; retries keep it)
    3        running          (a retry goes back to queued with retry_count + 1)
    40       completed        completed_at, and result (or error, when it ends failed)

A cancel at ``t`` of an execution in a ``CANCELLABLE`` status::

    t                   it and its descendants not final at t: pending_cancel,
                        cancelled_at = t, cancelled_by = "manual"; a live one stops its timeline
    t + confirm_after   the worker confirms: cancelled, completed_at = t + confirm_after

A final execution (``FINAL``) never changes again: the clock the statuses follow never goes
back, and neither a timeline nor a cancel touches an execution once it is final.

Usage::

    progress = Progress(store.executions, store.timelines, clock=time.time, confirm_after=3.0)
    progress.read(execution_id)    # the record as of now, None if unknown
    progress.cancel(execution_id)  # a CancelOutcome, None if unknown
    progress.started(root_id)      # whether that tree's clock runs (it was read or cancelled)
    progress.settled(ids, moment)  # whether all of ``ids`` were final by ``moment``
    progress.forget(ids)           # drop what it knows of executions removed from the store

A ``Progress`` is not thread-safe: whoever shares it between threads holds one lock around
each call, and around any change to the mappings it reads (``gateway.demo.upstream.Demo``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

FINAL = frozenset({"completed", "failed", "cancelled"})
CANCELLABLE = frozenset({"queued", "claimed", "running", "waiting", "pending_cancel"})
_NOT_STARTED = frozenset({"pending", "queued"})

Record = dict[str, Any]


@dataclass(frozen=True)
class Change:
    """From ``at`` seconds after its tree's clock starts, an execution is in ``status``."""

    at: float
    status: str
    retry_count: int = 0


@dataclass(frozen=True)
class Timeline:
    """The status changes of one live execution, from 0 to a final status."""

    changes: tuple[Change, ...]

    def __post_init__(self) -> None:
        times = [change.at for change in self.changes]
        if not times or times[0] != 0 or times != sorted(times):
            raise ValueError(f"a timeline starts at 0 and runs forward, got {times}")
        if self.changes[-1].status not in FINAL:
            raise ValueError(f"a timeline ends final, not {self.changes[-1].status!r}")

    def view(self, record: Record, started: float, elapsed: float) -> Record:
        """``record`` (the execution as it ends) as it stands ``elapsed`` seconds in."""
        current = next(c for c in reversed(self.changes) if c.at <= elapsed)
        began = next(
            (c.at for c in self.changes if c.at <= elapsed and c.status not in _NOT_STARTED),
            None,
        )
        done = current.status in FINAL
        return {
            **record,
            "status": current.status,
            "retry_count": current.retry_count,
            "created_at": timestamp(started),
            "started_at": None if began is None else timestamp(started + began),
            "assigned_to_worker": None if began is None else record["assigned_to_worker"],
            "completed_at": timestamp(started + current.at) if done else None,
            "result": record["result"] if done else None,
            "error": record["error"] if done else None,
        }


def timestamp(seconds: float) -> str:
    """Seconds since the epoch as the orchestrator writes them: microseconds and an offset."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class CancelOutcome:
    """What a cancel did: ``accepted`` or not, and the execution as it stands afterwards."""

    accepted: bool
    record: Record


class Progress:
    """The demo's executions as of the clock, with the cancels asked for so far."""

    def __init__(
        self,
        executions: Mapping[str, Record],
        timelines: Mapping[str, Timeline],
        *,
        clock: Callable[[], float],
        confirm_after: float,
    ) -> None:
        self._executions = executions
        self._timelines = timelines
        self._clock = clock
        self._confirm_after = confirm_after
        self._latest = float("-inf")
        self._tree_started: dict[str, float] = {}
        self._cancelled: dict[str, float] = {}

    def read(self, execution_id: str) -> Record | None:
        """The execution as of now; reading a live one starts its tree's clock."""
        if execution_id not in self._executions:
            return None
        return self._view(execution_id, self.now())

    def cancel(self, execution_id: str) -> CancelOutcome | None:
        """Cancel the execution and its unfinished descendants, if its status allows it."""
        if execution_id not in self._executions:
            return None
        now = self.now()
        current = self._view(execution_id, now)
        if current["status"] not in CANCELLABLE:
            return CancelOutcome(accepted=False, record=current)
        for affected in self._descendants(execution_id):
            if self._view(affected, now)["status"] not in FINAL:
                self._cancelled[affected] = now
        self._cancelled[execution_id] = now
        return CancelOutcome(accepted=True, record=self._view(execution_id, now))

    def now(self) -> float:
        """The clock, never earlier than any time it gave before."""
        # A wall clock can step back; the statuses must not, or a final one could change.
        self._latest = max(self._latest, self._clock())
        return self._latest

    def started(self, tree_id: str) -> bool:
        """Whether the live tree rooted at ``tree_id`` runs: one of its executions was read or
        cancelled (a cancel reads it first)."""
        return tree_id in self._tree_started

    def settled(self, execution_ids: Collection[str], moment: float) -> bool:
        """Whether every one of ``execution_ids`` was final by ``moment`` (no later than now).

        A live execution whose tree has not started is not final, and asking does not start it.
        A cancel asked for after ``moment`` makes its execution count as not final then: the
        answer may be late, never early, which is what deciding to drop a run needs.
        """
        for execution_id in execution_ids:
            record = self._executions[execution_id]
            if execution_id in self._timelines:
                started = self._tree_started.get(record["root_execution_id"] or execution_id)
                if started is None or started > moment:
                    return False
            if self._view(execution_id, moment)["status"] not in FINAL:
                return False
        return True

    def forget(self, execution_ids: Iterable[str]) -> None:
        """Drop the starts and cancels of executions the store no longer holds."""
        for execution_id in execution_ids:
            self._tree_started.pop(execution_id, None)
            self._cancelled.pop(execution_id, None)

    def _view(self, execution_id: str, now: float) -> Record:
        record = self._executions[execution_id]
        cancelled = self._cancelled.get(execution_id)
        timeline = self._timelines.get(execution_id)
        if timeline is not None:
            tree = record["root_execution_id"] or execution_id
            started = self._tree_started.setdefault(tree, now)
            # A cancel stops the timeline where it stood.
            until = now if cancelled is None else cancelled
            record = timeline.view(record, started, until - started)
        if cancelled is None:
            return record
        confirmed = now >= cancelled + self._confirm_after
        return {
            **record,
            "status": "cancelled" if confirmed else "pending_cancel",
            "cancelled_at": timestamp(cancelled),
            "cancelled_by": "manual",
            "completed_at": timestamp(cancelled + self._confirm_after) if confirmed else None,
        }

    def _descendants(self, execution_id: str) -> set[str]:
        """Every execution below ``execution_id`` by parent links; a loop ends the walk."""
        children: dict[str, list[str]] = {}
        for child_id, child in self._executions.items():
            if child["parent_execution_id"] is not None:
                children.setdefault(child["parent_execution_id"], []).append(child_id)
        found: set[str] = set()
        waiting = [execution_id]
        while waiting:
            for child_id in children.get(waiting.pop(), ()):
                if child_id not in found and child_id != execution_id:
                    found.add(child_id)
                    waiting.append(child_id)
        return found
