"""The execution record (scheduler_executions): one document per run, and the only code that writes one.

Three writers share a record: the operator (it sees the Job first and knows how Kubernetes ended it), the sync pod
(it knows what it synced) and the API (an admin's mark-failed, cancel request and delete). Each goes through this
module, which holds the record's state machine:

    (none) ──► running ──► success    pod
       │          ├──────► skipped    pod (outside trading hours; concurrencyPolicy Forbid)
       │          ├──────► failed     pod (its last attempt), operator (the Job failed, vanished or went silent),
       │          │                   api (mark-failed)
       │          └──────► cancelled  pod, operator: only when a cancel was requested for the run (or Replace
       │                              took its place)
       └─────────► missed | skipped | failed     operator (a run that never started, a refused request)

A final status never changes again. Every transition is a conditional update that names the state it expects
(`status: running`), so two writers racing for the verdict cannot both win, and the first verdict stands. A
success is written only while no cancel was requested (`cancel_requested` is set by the same conditional update
that checks `running`), so a cancel the API acknowledged can never end as a silent success.

Each pod of a Job is an attempt (a Job with `backoffLimit: N` has up to N+1): the record lists them in `attempts`
(number, pod, times, outcome, reason, error, source attempts) and its verdict is the last attempt's.
A record an admin deleted leaves a tombstone, so no writer recreates it while its Job still exists.
Field meanings: docs/mongodb.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from syncjob import mongo
from syncjob.model import ExecutionStatus

S = ExecutionStatus
SCHEMA_VERSION = 2  # 2: `_id` is `<namespace>.<job>` and execution_time is in seconds (docs/mongodb.md)


class Writer(StrEnum):
    POD = "pod"
    OPERATOR = "operator"
    API = "api"


# (from, to) -> who may make that transition; None is "no record yet".
TRANSITIONS: dict[tuple[ExecutionStatus | None, ExecutionStatus], frozenset[Writer]] = {
    (None, S.RUNNING): frozenset({Writer.POD, Writer.OPERATOR}),
    (None, S.MISSED): frozenset({Writer.OPERATOR}),
    (None, S.SKIPPED): frozenset({Writer.OPERATOR}),
    (None, S.FAILED): frozenset({Writer.OPERATOR}),
    (S.RUNNING, S.SUCCESS): frozenset({Writer.POD}),
    (S.RUNNING, S.SKIPPED): frozenset({Writer.POD}),
    (S.RUNNING, S.FAILED): frozenset({Writer.POD, Writer.OPERATOR, Writer.API}),
    (S.RUNNING, S.CANCELLED): frozenset({Writer.POD, Writer.OPERATOR}),
}


class TransitionRefused(ValueError):
    """A writer asked for a transition the state machine does not allow it."""


def check(current: ExecutionStatus | None, new: ExecutionStatus, writer: Writer) -> None:
    if writer not in TRANSITIONS.get((current, new), frozenset()):
        raise TransitionRefused(f"{writer.value} may not move a record from {current.value if current else 'none'} "
                                f"to {new.value}")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: Any) -> dt.datetime | None:
    if not isinstance(value, dt.datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def execution_seconds(started: Any, finished: dt.datetime) -> float | None:
    """A run's wall time in seconds (the incumbent's unit), from the moment its Job existed to its verdict."""
    start = _aware(started)
    return None if start is None else round(max(0.0, (finished - start).total_seconds()), 3)


def identity(*, run_id: str, job_id: str, namespace: str, job: str, trigger: str, force: bool,
             scheduled_time: dt.datetime | None, created: dt.datetime | None = None) -> dict[str, Any]:
    """The fields that identify a run; written once, by whichever writer creates the record.

    `created` is when the run began to exist (its Job's creation time); it is the start of `execution_time`.
    """
    created = created or utcnow()
    return {
        "_id": run_id, "job_id": job_id, "job_name": job_id, "namespace": namespace, "k8s_job": job,
        "trigger": trigger, "is_manual": trigger == "manual", "force": force, "scheduled_time": scheduled_time,
        "timestamp": created, "started_at": created, "schema_version": SCHEMA_VERSION,
    }


def _coll(db: Database[Any]) -> Any:
    return db[mongo.EXECUTIONS]


def deleted(db: Database[Any], run_id: str) -> bool:
    return db[mongo.EXECUTION_TOMBSTONES].find_one({"_id": run_id}, {"_id": 1}) is not None


def open_run(db: Database[Any], ident: dict[str, Any], writer: Writer, **set_fields: Any) -> dict[str, Any] | None:
    """Create the record as `running` if it does not exist (`set_fields` are written while it runs) and return it
    as stored, whatever its status; None when an admin deleted it (its Job outlived the record)."""
    check(None, S.RUNNING, writer)
    run_id = ident["_id"]
    if deleted(db, run_id):
        return None
    insert = {k: v for k, v in ident.items() if k != "_id" and k not in set_fields}
    insert.update(status=S.RUNNING.value, progress=0)
    with contextlib.suppress(DuplicateKeyError):  # two writers inserting at once: the other one created it
        _coll(db).update_one({"_id": run_id}, {"$setOnInsert": insert}, upsert=True)
    if set_fields:
        _coll(db).update_one({"_id": run_id, "status": S.RUNNING.value}, {"$set": set_fields})
    record: dict[str, Any] | None = _coll(db).find_one({"_id": run_id})
    return record


def record_not_run(db: Database[Any], ident: dict[str, Any], status: ExecutionStatus, reason: str,
                   message: str, writer: Writer = Writer.OPERATOR, **fields: Any) -> bool:
    """A run that never started (missed, skipped, a refused request): created final. Idempotent by run id; True
    if this call created it."""
    check(None, status, writer)
    if deleted(db, ident["_id"]):
        return False
    now = utcnow()
    doc = {**{k: v for k, v in ident.items() if k != "_id"}, "status": status.value, "reason": reason,
           "error_message": message, "finished_at": now, "updated_at": now, "execution_time": 0.0, "progress": 0,
           "started_at": None, **fields}
    try:
        res = _coll(db).update_one({"_id": ident["_id"]}, {"$setOnInsert": doc}, upsert=True)
    except DuplicateKeyError:
        return False
    return res.upserted_id is not None


def close(db: Database[Any], run_id: str, status: ExecutionStatus, writer: Writer, *,
          reason: str | None = None, unless_cancel_requested: bool = False, attempt: AttemptEnd | None = None,
          **fields: Any) -> bool:
    """Give a running record its verdict, with the deciding attempt's entry in the same write. True if this call
    closed it; False if it was not running (another writer's verdict stands) or, with `unless_cancel_requested`, a
    cancel was requested meanwhile."""
    check(S.RUNNING, status, writer)
    now = utcnow()
    query: dict[str, Any] = {"_id": run_id, "status": S.RUNNING.value}
    if unless_cancel_requested:
        query["cancel_requested"] = {"$ne": True}
    record = _coll(db).find_one(query, {"started_at": 1})
    if record is None:
        return False
    values: dict[str, Any] = {"status": status.value, "finished_at": now, "updated_at": now,
                              "closed_by": writer.value, **fields}
    if reason is not None:
        values["reason"] = reason
    if "execution_time" not in fields:
        values["execution_time"] = execution_seconds(record.get("started_at"), now)
    if attempt is not None and attempt.number >= 1:
        values.update(attempt.values())
    result = _coll(db).update_one(query, {"$set": values})
    if result.modified_count != 1:
        return False
    release_slot(db, run_id)
    return True


def update_running(db: Database[Any], run_id: str, fields: dict[str, Any]) -> dict[str, Any] | None:
    """Progress and heartbeat of a running run; returns the record's status and cancel flag as they now are (the
    writer learns of a cancel request or of another writer's verdict this way), None if it is gone."""
    coll = _coll(db)
    projection = {"status": 1, "cancel_requested": 1, "cancel_reason": 1}
    record: dict[str, Any] | None = coll.find_one_and_update(
        {"_id": run_id, "status": S.RUNNING.value}, {"$set": fields}, projection=projection,
        return_document=ReturnDocument.AFTER)
    if record is None:
        record = coll.find_one({"_id": run_id}, projection)
    return record


def read_flags(db: Database[Any], run_id: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = _coll(db).find_one(
        {"_id": run_id}, {"status": 1, "cancel_requested": 1, "cancel_reason": 1})
    return found


def request_cancel(db: Database[Any], run_ids: Iterable[str], user: str | None,
                   reason: str = "Cancelled") -> list[str]:
    """Ask running runs to stop; returns the ids that were running. The flag is what makes a stop a cancel."""
    now = utcnow()
    asked = []
    for rid in run_ids:
        # The first request stands: who asked, when (the grace period counts from it) and why.
        _coll(db).update_one(
            {"_id": rid, "status": S.RUNNING.value, "cancel_requested": {"$ne": True}},
            {"$set": {"cancel_requested": True, "cancel_requested_at": now, "cancel_requested_by": user,
                      "cancel_reason": reason, "updated_at": now}},
        )
        if _coll(db).find_one({"_id": rid, "status": S.RUNNING.value, "cancel_requested": True}, {"_id": 1}):
            asked.append(rid)
    return asked


def cancelled_verdict(record: dict[str, Any] | None) -> tuple[str, str]:
    """(reason, message) of a cancelled run, from what its cancel request said."""
    reason = str((record or {}).get("cancel_reason") or "Cancelled")
    if reason == "Replaced":
        return reason, "replaced by a newer run (concurrencyPolicy Replace)"
    by = (record or {}).get("cancel_requested_by")
    return reason, f"cancelled{f' by {by}' if by else ''}"


# -- attempts -------------------------------------------------------------------------------------------------

def begin_attempt(db: Database[Any], run_id: str, pod: str) -> int:
    """A pod starts working on a running run; returns its attempt number (1 for the first pod), 0 if the record
    is not running. The entry carries its number from the start (a conditional update on the count it read)."""
    coll = _coll(db)
    while True:
        record = coll.find_one({"_id": run_id, "status": S.RUNNING.value}, {"attempt": 1})
        if record is None:
            return 0
        seen = record.get("attempt")
        number = int(seen or 0) + 1
        now = utcnow()
        result = coll.update_one(
            {"_id": run_id, "status": S.RUNNING.value, "attempt": seen},
            {"$push": {"attempts": {"number": number, "pod": pod, "started_at": now}},
             "$set": {"attempt": number, "heartbeat_at": now, "updated_at": now, "pod_started_at": now,
                      "progress": 0, "processed_items": 0, "progress_message": None, "current_item": None}})
        if result.modified_count == 1:
            return number


@dataclass(frozen=True)
class AttemptEnd:
    """What one attempt came to (`outcome`: success, skipped, failed, terminated, cancelled)."""

    number: int
    outcome: str
    reason: str | None = None
    error_message: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    def values(self) -> dict[str, Any]:
        """The `$set` of its entry in `attempts`."""
        prefix = f"attempts.{self.number - 1}."
        return {prefix + "number": self.number, prefix + "finished_at": utcnow(), prefix + "outcome": self.outcome,
                prefix + "reason": self.reason, prefix + "error_message": self.error_message,
                **{prefix + k: v for k, v in self.fields.items()}}


def end_attempt(db: Database[Any], run_id: str, number: int, outcome: str, *, reason: str | None = None,
                error_message: str | None = None, **fields: Any) -> None:
    """What one attempt came to, in its entry, while the run goes on (the last attempt's comes with the verdict:
    `close(attempt=...)`, so that a final record is complete the moment it is final)."""
    if number < 1:
        return
    _coll(db).update_one({"_id": run_id}, {"$set": AttemptEnd(number, outcome, reason, error_message,
                                                              fields).values()})


# -- deletion -------------------------------------------------------------------------------------------------

def delete_finished(db: Database[Any], run_id: Any, user: str) -> bool:
    """An admin deletes a finished record; its tombstone keeps every writer from recreating it."""
    tombstones = db[mongo.EXECUTION_TOMBSTONES]
    created = False
    if isinstance(run_id, str):
        with contextlib.suppress(DuplicateKeyError):
            created = tombstones.update_one(
                {"_id": run_id}, {"$setOnInsert": {"deleted_at": utcnow(), "deleted_by": user}},
                upsert=True).upserted_id is not None
    result = _coll(db).delete_one({"_id": run_id, "status": {"$ne": S.RUNNING.value}})
    # Nothing deleted by this call (the record was running): take back only a tombstone this call made, and only
    # while the record is still there (another delete that came first keeps its own tombstone).
    if result.deleted_count == 0 and created and _coll(db).find_one({"_id": run_id}, {"_id": 1}) is not None:
        tombstones.delete_one({"_id": run_id})
    return bool(result.deleted_count == 1)


# -- concurrencyPolicy Forbid ---------------------------------------------------------------------------------

def claim_slot(db: Database[Any], namespace: str, job_id: str, run_id: str) -> str | None:
    """Take the one right to sync of a SyncJob under Forbid; None if taken, else the run that holds it.

    A slot whose holder's record is no longer running is free. Retries of the same run keep the slot.
    """
    slots = db[mongo.RUN_SLOTS]
    key = f"{namespace}/{job_id}"
    for _ in range(5):
        try:
            slots.update_one({"_id": key, "run_id": {"$in": [None, run_id]}},
                             {"$set": {"run_id": run_id, "since": utcnow()}}, upsert=True)
            return None
        except DuplicateKeyError:
            pass
        slot = slots.find_one({"_id": key}) or {}
        holder = slot.get("run_id")
        if holder is None:
            continue
        holder_record = _coll(db).find_one({"_id": holder}, {"status": 1})
        if holder_record is not None and holder_record.get("status") == S.RUNNING.value:
            return str(holder)
        slots.update_one({"_id": key, "run_id": holder}, {"$set": {"run_id": None}})  # a stale holder
    return None


def release_slot(db: Database[Any], run_id: str) -> None:
    db[mongo.RUN_SLOTS].update_many({"run_id": run_id}, {"$set": {"run_id": None}})
