"""The operator's side of execution truth in MongoDB (scheduler_executions and scheduler_history).

Kubernetes knows when a run ended badly (a failed pod, a deadline, a deleted Job) even when the pod could not say
so; these functions write that knowledge into the run's record without ever overwriting a verdict the pod wrote.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import Any

from pymongo import MongoClient
from pymongo.database import Database

from syncjob import mongo, names
from syncjob.executions import close_if_running, ensure_record, identity_fields, utcnow
from syncjob.model import ExecutionStatus


@lru_cache(maxsize=4)
def database(uri: str) -> Database[Any]:
    client: MongoClient[Any] = MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=5000)
    db = client.get_default_database(default="tradingagents")
    mongo.ensure_indexes(db, mongo.SCHEDULER_COLLECTIONS)
    return db


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def job_identity(job: dict[str, Any]) -> dict[str, Any]:
    meta = job["metadata"]
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    trigger = labels.get(names.LABEL_TRIGGER, "schedule")
    created = _parse_time(meta.get("creationTimestamp")) or utcnow()
    return identity_fields(
        run_id=meta["name"], job_id=labels.get(names.LABEL_SYNCJOB, ""), namespace=meta["namespace"],
        trigger=trigger, force=annotations.get(names.ANNOTATION_FORCE) == "true",
        scheduled_time=_parse_time(annotations.get(names.ANNOTATION_SCHEDULED_TIME)) or created,
        now=created,
    )


def record_job_seen(db: Database[Any], job: dict[str, Any]) -> None:
    """Every run has a record from the moment its Job exists, even if its pod never starts."""
    ensure_record(db[mongo.EXECUTIONS], job_identity(job))


def job_verdict(job: dict[str, Any], pods: list[dict[str, Any]]) -> tuple[ExecutionStatus, dict[str, Any]] | None:
    """What Kubernetes says about a finished Job; None while it runs. The pod's own record usually came first."""
    conditions = {c["type"]: c for c in (job.get("status") or {}).get("conditions") or []}
    failed = conditions.get("Failed")
    if failed and failed.get("status") == "True":
        reason = failed.get("reason") or "Failed"
        detail = failed.get("message") or ""
        for pod in pods:  # name the pod-level cause when there is one, e.g. OOMKilled
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                term = (cs.get("state") or {}).get("terminated") or {}
                if term.get("reason") in ("OOMKilled", "Error", "StartError", "ContainerCannotRun"):
                    detail = f"{detail}; container {cs['name']} {term['reason']} (exit code {term.get('exitCode')})"
                    if term.get("reason") == "OOMKilled":
                        reason = "OOMKilled"
        return ExecutionStatus.FAILED, {"reason": reason, "error_message": f"{reason}: {detail}".strip(": ")}
    complete = conditions.get("Complete")
    if complete and complete.get("status") == "True":
        return ExecutionStatus.FAILED, {
            "reason": "NoResultReported",
            "error_message": "the pod exited 0 but never recorded a result for this run",
        }
    return None


def close_from_job(db: Database[Any], job: dict[str, Any], pods: list[dict[str, Any]]) -> bool:
    verdict = job_verdict(job, pods)
    if verdict is None:
        return False
    status, fields = verdict
    return close_if_running(db[mongo.EXECUTIONS], job["metadata"]["name"], status, **fields)


def close_deleted_job(db: Database[Any], run_id: str, replaced: bool = False) -> bool:
    """A Job that disappears while its record says running ended: cancelled if asked for, else failed."""
    record = db[mongo.EXECUTIONS].find_one({"_id": run_id}, {"cancel_requested": 1, "status": 1})
    if record is None or record.get("status") != ExecutionStatus.RUNNING.value:
        return False
    if replaced:
        return close_if_running(db[mongo.EXECUTIONS], run_id, ExecutionStatus.CANCELLED, reason="Replaced",
                                error_message="replaced by a newer scheduled run (concurrencyPolicy Replace)")
    if record.get("cancel_requested"):
        return close_if_running(db[mongo.EXECUTIONS], run_id, ExecutionStatus.CANCELLED, reason="Cancelled",
                                error_message="cancelled: the Job was deleted after the grace period")
    return close_if_running(db[mongo.EXECUTIONS], run_id, ExecutionStatus.FAILED, reason="JobDeleted",
                            error_message="the Job was deleted while the run was in progress (pod deleted)")


def request_cancel(db: Database[Any], run_ids: list[str], user: str | None) -> list[str]:
    """Ask running runs to stop; returns the ids that were running."""
    now = utcnow()
    asked = []
    for run_id in run_ids:
        res = db[mongo.EXECUTIONS].update_one(
            {"_id": run_id, "status": ExecutionStatus.RUNNING.value},
            {"$set": {"cancel_requested": True, "cancel_requested_at": now, "cancel_requested_by": user,
                      "updated_at": now}},
        )
        if res.matched_count:
            asked.append(run_id)
    return asked


def cancel_overdue(db: Database[Any], run_ids: list[str], grace_seconds: int) -> list[str]:
    """Running runs whose cancel request is older than the grace period: their Jobs are to be deleted."""
    cutoff = utcnow() - dt.timedelta(seconds=grace_seconds)
    cursor = db[mongo.EXECUTIONS].find(
        {"_id": {"$in": run_ids}, "status": ExecutionStatus.RUNNING.value, "cancel_requested": True,
         "cancel_requested_at": {"$lte": cutoff}},
        {"_id": 1},
    )
    return [str(d["_id"]) for d in cursor]


def record_not_run(db: Database[Any], *, run_id: str, job_id: str, namespace: str, scheduled: dt.datetime,
                   status: ExecutionStatus, reason: str) -> bool:
    """Record a scheduled run that never started (missed or skipped). Idempotent by run id."""
    now = utcnow()
    doc = {
        **identity_fields(run_id=run_id, job_id=job_id, namespace=namespace, trigger="schedule", force=False,
                          scheduled_time=scheduled, now=now),
        "status": status.value, "reason": reason, "error_message": reason, "finished_at": now, "updated_at": now,
        "execution_time": 0, "progress": 0,
    }
    doc["started_at"] = None
    res = db[mongo.EXECUTIONS].update_one({"_id": run_id}, {"$setOnInsert": doc}, upsert=True)
    return res.upserted_id is not None


def runs_overlapping(db: Database[Any], job_id: str, namespace: str, at: dt.datetime) -> list[str]:
    """Runs of a job that were running at a given time (for telling a Forbid skip from a miss)."""
    cursor = db[mongo.EXECUTIONS].find(
        {"job_id": job_id, "namespace": namespace, "started_at": {"$lte": at},
         "$or": [{"status": ExecutionStatus.RUNNING.value}, {"finished_at": {"$gt": at}}]},
        {"_id": 1},
    )
    return [str(d["_id"]) for d in cursor]


def existing_ids(db: Database[Any], run_ids: list[str]) -> set[str]:
    if not run_ids:
        return set()
    return {str(d["_id"]) for d in db[mongo.EXECUTIONS].find({"_id": {"$in": run_ids}}, {"_id": 1})}


def last_finished(db: Database[Any], job_id: str, namespace: str) -> dict[str, Any] | None:
    return db[mongo.EXECUTIONS].find_one(
        {"job_id": job_id, "namespace": namespace,
         "status": {"$ne": ExecutionStatus.RUNNING.value}},
        sort=[("timestamp", -1)],
    )


def last_time_with_status(db: Database[Any], job_id: str, namespace: str,
                          status: ExecutionStatus) -> dt.datetime | None:
    doc = db[mongo.EXECUTIONS].find_one(
        {"job_id": job_id, "namespace": namespace, "status": status.value}, {"finished_at": 1},
        sort=[("timestamp", -1)],
    )
    return doc.get("finished_at") if doc else None


def audit(db: Database[Any], *, job_id: str, namespace: str, action: str, status: str,
          details: dict[str, Any], error_message: str | None = None) -> None:
    """Actions requested with kubectl annotations reach the same audit trail as the API's own entries.

    Kubernetes does not tell a controller who set an annotation; the user is recorded as `kubectl` and the API
    server's audit log has the name.
    """
    db[mongo.HISTORY].insert_one({
        "job_id": job_id, "target": job_id, "namespace": namespace, "action": action, "status": status,
        "user": "kubectl", "via": "kubectl", "details": details, "error_message": error_message,
        "timestamp": utcnow(),
    })
