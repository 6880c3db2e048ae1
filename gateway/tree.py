"""Walking an execution tree upwards: parent, root and ancestors, bounded and cycle-safe.

The orchestrator links a child to its parent and to the top-level execution of its tree. Rows
can be deleted by retention jobs and a faulty upstream could send a loop, so every walk keeps
the ids it has seen and stops at a limit: a loop ends in ``CycleDetected``, never a hang.
"""

from __future__ import annotations

from gateway.errors import CycleDetected, GatewayError, QueryTooComplex, UpstreamMalformed
from gateway.executions import ExecutionRecord, parse_execution_id
from gateway.loaders import ExecutionLoader


def _linked_id(record: ExecutionRecord, kind: str, raw: str) -> str:
    canonical = parse_execution_id(raw)
    if canonical is None:
        raise UpstreamMalformed(record.id, f"its {kind} id {raw!r} is not an execution id")
    return canonical


async def parent_of(loader: ExecutionLoader, record: ExecutionRecord) -> ExecutionRecord | None:
    """The parent execution, or None for a top-level one."""
    if record.parent_execution_id is None:
        return None
    parent_id = _linked_id(record, "parent", record.parent_execution_id)
    if parent_id == record.id:
        raise CycleDetected(f"Execution {record.id} names itself as its parent.")
    return (await loader.load(parent_id)).record


async def root_of(
    loader: ExecutionLoader, record: ExecutionRecord, max_levels: int
) -> ExecutionRecord:
    """The top-level execution of ``record``'s tree (itself when it is top-level).

    Uses ``root_execution_id`` when the upstream sent it, else walks up the parents, at most
    ``max_levels`` of them.
    """
    if record.is_root:
        return record
    if record.root_execution_id is not None:
        root_id = _linked_id(record, "root", record.root_execution_id)
        if root_id == record.id:
            raise CycleDetected(
                f"Execution {record.id} names itself as its root but also has a parent."
            )
        return (await loader.load(root_id)).record
    chain, failure = await ancestors_of(loader, record, max_levels)
    if failure is not None:
        raise failure
    if not chain or not chain[-1].is_root:
        raise QueryTooComplex(
            f"The root of execution {record.id} is more than {max_levels} levels up; "
            "use ancestors to walk the chain in parts."
        )
    return chain[-1]


async def ancestors_of(
    loader: ExecutionLoader, record: ExecutionRecord, limit: int
) -> tuple[list[ExecutionRecord], GatewayError | None]:
    """Up to ``limit`` ancestors, parent first, and the error that cut the walk short, if any.

    The ancestors found before a failure are kept: the caller returns them beside the error.
    """
    found: list[ExecutionRecord] = []
    seen = {record.id}
    current = record
    try:
        while len(found) < limit and current.parent_execution_id is not None:
            parent_id = _linked_id(current, "parent", current.parent_execution_id)
            if parent_id in seen:
                raise CycleDetected(
                    f"The parent chain of execution {record.id} loops back to "
                    f"execution {parent_id}."
                )
            seen.add(parent_id)
            current = (await loader.load(parent_id)).record
            found.append(current)
    except GatewayError as failure:
        return found, failure
    return found, None
