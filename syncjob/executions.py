"""The execution record (scheduler_executions): one document per run, `_id` = run id = Job name.

Two writers share a record and never overwrite each other's verdict:
- the operator creates it when it sees the run's Job (so a run whose pod never starts still has a record), closes
  it when Kubernetes says the run ended badly (failed pod, deadline, deletion), asks for cancellation, and writes
  `missed`/`skipped` records for runs the schedule should have started but did not;
- the sync pod marks itself started, reports progress and heartbeats, honours `cancel_requested`, and writes the
  final result.
Identity fields are written with `$setOnInsert` (whoever comes first creates the document) and a final status is
written only while the record is still `running` (`close_if_running`), so the first verdict wins.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pymongo.collection import Collection

from syncjob.model import ExecutionStatus


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def identity_fields(
    *,
    run_id: str,
    job_id: str,
    namespace: str,
    trigger: str,
    force: bool,
    scheduled_time: dt.datetime | None,
    job_name: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The fields that identify a run; written once, by whichever writer creates the record."""
    now = now or utcnow()
    return {
        "_id": run_id,
        "job_id": job_id,
        "job_name": job_name or job_id,
        "namespace": namespace,
        "trigger": trigger,
        "is_manual": trigger == "manual",
        "force": force,
        "scheduled_time": scheduled_time,
        "timestamp": now,
        "started_at": now,
    }


def ensure_record(coll: Collection[Any], identity: dict[str, Any], **set_fields: Any) -> None:
    """Create the record as `running` if it does not exist; `set_fields` are written either way."""
    insert = {k: v for k, v in identity.items() if k != "_id" and k not in set_fields}
    insert.setdefault("status", ExecutionStatus.RUNNING.value)
    insert.setdefault("progress", 0)
    update: dict[str, Any] = {"$setOnInsert": insert}
    if set_fields:
        update["$set"] = set_fields
    coll.update_one({"_id": identity["_id"]}, update, upsert=True)


def close_if_running(coll: Collection[Any], run_id: str, status: ExecutionStatus, **fields: Any) -> bool:
    """Give a running record its final status; a record that already has one keeps it. True if this call closed it."""
    if not status.finished:
        raise ValueError("close_if_running needs a final status")
    now = utcnow()
    record = coll.find_one({"_id": run_id, "status": ExecutionStatus.RUNNING.value}, {"started_at": 1})
    if record is None:
        return False
    started = record.get("started_at")
    if started is not None and started.tzinfo is None:
        started = started.replace(tzinfo=dt.UTC)
    values: dict[str, Any] = {"status": status.value, "finished_at": now, "updated_at": now, **fields}
    if started is not None and "execution_time" not in fields:
        values["execution_time"] = int((now - started).total_seconds() * 1000)
    result = coll.update_one({"_id": run_id, "status": ExecutionStatus.RUNNING.value}, {"$set": values})
    return result.modified_count == 1
