"""The audit trail (scheduler_history): the one writer of its entries, for the API and the operator alike.

An entry says who (`user`) did what (`action`: pause, resume, trigger, cancel, metadata, mark-failed, delete,
spec-change) to which job (`job_id`, `namespace`), through what (`via`: api, kubectl), with what outcome (`status`:
success, failed, denied), on which `target` (job or run id), with `details`, `error_message` and `timestamp`.
An entry written for a run or a spec generation has a `key` and is written at most once, so a writer that died
after acting and acts again on restart leaves one entry, not two (docs/mongodb.md). A mutation whose outcome is
known only after it was made (the API's) is written ahead: `begin` writes it `pending` before the change, `finish`
gives it its outcome after, so a writer that dies in between leaves a `pending` entry instead of none.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from syncjob import mongo
from syncjob.executions import utcnow

PENDING = "pending"  # written ahead of a change; its writer stopped before it could say how the change went


def write(db: Database[Any], *, job_id: str | None, namespace: str | None, action: str, status: str, user: str,
          via: str, target: str | None, details: dict[str, Any] | None = None, error_message: str | None = None,
          key: str | None = None, timestamp: dt.datetime | None = None) -> bool:
    """Write one entry; with `key`, only if no entry of that key exists. True if this call wrote it. `timestamp`:
    when it happened, for an entry written later than that (default: now)."""
    doc = {"job_id": job_id, "namespace": namespace, "action": action, "status": status, "user": user, "via": via,
           "target": target, "details": details or {}, "error_message": error_message,
           "timestamp": timestamp or utcnow()}
    coll = db[mongo.HISTORY]
    if key is None:
        coll.insert_one(doc)
        return True
    try:
        result = coll.update_one({"_id": key}, {"$setOnInsert": doc}, upsert=True)
    except DuplicateKeyError:
        return False
    return result.upserted_id is not None


def begin(db: Database[Any], *, job_id: str | None, namespace: str | None, action: str, user: str, via: str,
          target: str | None) -> str:
    """Write a `pending` entry before a change is made; returns its key for `finish`."""
    key = f"{via}/{action}/{uuid.uuid4().hex}"
    write(db, job_id=job_id, namespace=namespace, action=action, status=PENDING, user=user, via=via, target=target,
          key=key)
    return key


def finish(db: Database[Any], key: str, *, status: str, job_id: str | None, namespace: str | None,
           target: str | None, details: dict[str, Any] | None = None, error_message: str | None = None) -> bool:
    """Give a `pending` entry its outcome (once: an entry that has one keeps it). True if this call gave it."""
    result = db[mongo.HISTORY].update_one({"_id": key, "status": PENDING}, {"$set": {
        "status": status, "job_id": job_id, "namespace": namespace, "target": target, "details": details or {},
        "error_message": error_message, "finished_at": utcnow()}})
    return result.modified_count == 1
