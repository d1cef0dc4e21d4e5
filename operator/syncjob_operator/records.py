"""The operator's side of execution truth in MongoDB, through the one record writer (`syncjob.executions`).

Kubernetes knows how a run ended when the pod could not say so (a deadline, an eviction, a deleted pod or Job, a
retry budget spent); these functions turn what a Job and its pods say into the record's verdict, and never
overwrite a verdict the pod wrote. Only a run a cancel was requested for (or that Replace took the place of) is
`cancelled`.
"""

from __future__ import annotations

import datetime as dt
import threading
from functools import lru_cache
from typing import Any

from pymongo.database import Database

from syncjob import audit as audit_trail
from syncjob import executions, migrations, mongo, names
from syncjob.executions import Writer
from syncjob.model import ExecutionStatus
from syncjob.runs import run_id

# Pod conditions that say Kubernetes itself took the pod away (KEP-3329 disruption reasons).
DISRUPTION_CONDITION = "DisruptionTarget"


_connecting = threading.Lock()


@lru_cache(maxsize=4)
def _connect(uri: str) -> Database[Any]:
    return mongo.connect(uri, app="syncjob-operator")


def database(uri: str) -> Database[Any]:
    """The operator's database: one client per URI for the whole process, made without waiting for MongoDB (a
    pass that needs it while it is down fails and is repeated). Indexes: `prepare`."""
    with _connecting:
        return _connect(uri)


_prepared: set[str] = set()


def prepare(uri: str) -> None:
    """Indexes and the migration of older records; the operator retries this at start-up until MongoDB answers."""
    db = database(uri)
    mongo.ensure_indexes(db, mongo.SCHEDULER_COLLECTIONS)
    migrations.migrate(db)
    _prepared.add(uri)


def prepared(uri: str) -> bool:
    """Whether `prepare` has finished in this process (tests that build a Reconciler directly prepare first)."""
    return uri in _prepared


def parse_time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def job_run_id(job: dict[str, Any]) -> str:
    meta = job["metadata"]
    return run_id(meta["namespace"], meta["name"])


def job_identity(job: dict[str, Any]) -> dict[str, Any]:
    meta = job["metadata"]
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    trigger = labels.get(names.LABEL_TRIGGER, "schedule")
    created = parse_time(meta.get("creationTimestamp")) or executions.utcnow()
    return executions.identity(
        run_id=job_run_id(job), job_id=labels.get(names.LABEL_SYNCJOB, ""), namespace=meta["namespace"],
        job=meta["name"], trigger=trigger, force=annotations.get(names.ANNOTATION_FORCE) == "true",
        scheduled_time=parse_time(annotations.get(names.ANNOTATION_SCHEDULED_TIME)) or created, created=created,
    )


def record_job_seen(db: Database[Any], job: dict[str, Any]) -> dict[str, Any] | None:
    """Every run has a record from the moment its Job exists, even if its pod never starts (None: deleted)."""
    return executions.open_run(db, job_identity(job), Writer.OPERATOR)


def _last_attempt(record: dict[str, Any] | None) -> dict[str, Any]:
    attempts = (record or {}).get("attempts") or []
    return dict(attempts[-1]) if attempts else {}


def job_verdict(job: dict[str, Any], pods: list[dict[str, Any]],
                record: dict[str, Any] | None = None) -> tuple[ExecutionStatus, dict[str, Any]] | None:
    """What Kubernetes says about a finished Job; None while it runs. The pod's own verdict usually came first.

    The reason is the most specific one Kubernetes gives: a pod's disruption (eviction, preemption, taint, pod
    garbage collection) or OOMKilled over the Job's own (DeadlineExceeded, BackoffLimitExceeded); the last
    attempt's own account (what the pod wrote before it was stopped) is kept in the message.
    """
    conditions = {c.get("type"): c for c in (job.get("status") or {}).get("conditions") or []}
    failed = conditions.get("Failed")
    last = _last_attempt(record)
    if failed and failed.get("status") == "True":
        reason = failed.get("reason") or "Failed"
        details = [failed.get("message") or ""]
        for pod in pods:
            for cond in (pod.get("status") or {}).get("conditions") or []:
                if cond.get("type") == DISRUPTION_CONDITION and cond.get("status") == "True" and \
                        reason != "DeadlineExceeded":
                    reason = cond.get("reason") or reason
                    details.append(f"pod {pod['metadata']['name']}: {cond.get('message') or cond.get('reason')}")
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                term = (cs.get("state") or {}).get("terminated") or {}
                if term.get("reason") in ("OOMKilled", "Error", "StartError", "ContainerCannotRun"):
                    details.append(f"container {cs['name']} {term['reason']} (exit code {term.get('exitCode')})")
                    if term.get("reason") == "OOMKilled" and reason != "DeadlineExceeded":
                        reason = "OOMKilled"
        if last.get("error_message"):
            details.append(f"attempt {last.get('number') or len((record or {}).get('attempts') or [])}: "
                           f"{last['error_message']}")
        detail = "; ".join(d for d in details if d)
        fields: dict[str, Any] = {"error_message": f"{reason}: {detail}" if detail else reason}
        if last.get("traceback"):
            fields["traceback"] = last["traceback"]
        return ExecutionStatus.FAILED, {"reason": reason, **fields}
    complete = conditions.get("Complete")
    if complete and complete.get("status") == "True":
        return ExecutionStatus.FAILED, {
            "reason": "NoResultReported",
            "error_message": "the pod exited 0 but never recorded a result for this run",
        }
    return None


def close_from_job(db: Database[Any], job: dict[str, Any], pods: list[dict[str, Any]]) -> bool:
    rid = job_run_id(job)
    record = db[mongo.EXECUTIONS].find_one({"_id": rid}, {"status": 1, "attempts": 1})
    if record is None or record.get("status") != ExecutionStatus.RUNNING.value:
        return False
    verdict = job_verdict(job, pods, record)
    if verdict is None:
        return False
    status, fields = verdict
    reason = fields.pop("reason")
    return executions.close(db, rid, status, Writer.OPERATOR, reason=reason, **fields)


def close_deleted_job(db: Database[Any], rid: str, replaced: bool = False) -> bool:
    """A Job that disappears while its record says running ended: cancelled if a cancel was asked for it (or a
    newer run replaced it), else failed."""
    record = db[mongo.EXECUTIONS].find_one({"_id": rid}, {"cancel_requested": 1, "cancel_reason": 1,
                                                          "cancel_requested_by": 1, "status": 1, "attempts": 1})
    if record is None or record.get("status") != ExecutionStatus.RUNNING.value:
        return False
    if record.get("cancel_requested"):
        reason, message = executions.cancelled_verdict(record)
        return executions.close(db, rid, ExecutionStatus.CANCELLED, Writer.OPERATOR, reason=reason,
                                error_message=f"{message}: the Job was deleted")
    if replaced:
        return executions.close(db, rid, ExecutionStatus.CANCELLED, Writer.OPERATOR, reason="Replaced",
                                error_message="replaced by a newer scheduled run (concurrencyPolicy Replace)")
    last = _last_attempt(record)
    detail = f"; attempt {last.get('number')}: {last['error_message']}" if last.get("error_message") else ""
    return executions.close(db, rid, ExecutionStatus.FAILED, Writer.OPERATOR, reason="JobDeleted",
                            error_message=f"the Job was deleted while the run was in progress{detail}")


def close_lost(db: Database[Any], rid: str, heartbeat: dt.datetime | None, silent_seconds: float) -> bool:
    """A running record whose pod is gone and whose heartbeat stopped: nothing is left to report its end."""
    seen = heartbeat.isoformat() if heartbeat else "never"
    return executions.close(db, rid, ExecutionStatus.FAILED, Writer.OPERATOR, reason="LostHeartbeat",
                            error_message=f"no heartbeat for {silent_seconds:.0f}s (last {seen}) and the run's "
                                          "pod is gone")


def request_cancel(db: Database[Any], run_ids: list[str], user: str | None, reason: str = "Cancelled") -> list[str]:
    return executions.request_cancel(db, run_ids, user, reason)


def cancel_overdue(db: Database[Any], run_ids: list[str], grace_seconds: int) -> list[str]:
    """Running runs whose cancel request is older than the grace period: their Jobs are to be deleted."""
    cutoff = executions.utcnow() - dt.timedelta(seconds=grace_seconds)
    cursor = db[mongo.EXECUTIONS].find(
        {"_id": {"$in": run_ids}, "status": ExecutionStatus.RUNNING.value, "cancel_requested": True,
         "cancel_requested_at": {"$lte": cutoff}},
        {"_id": 1},
    )
    return [str(d["_id"]) for d in cursor]


def record_not_run(db: Database[Any], *, rid: str, job: str, job_id: str, namespace: str, scheduled: dt.datetime,
                   status: ExecutionStatus, reason: str, message: str, trigger: str = "schedule",
                   force: bool = False, **fields: Any) -> bool:
    """Record a run that never started (missed, skipped, refused). Idempotent by run id."""
    ident = executions.identity(run_id=rid, job_id=job_id, namespace=namespace, job=job, trigger=trigger,
                                force=force, scheduled_time=scheduled)
    return executions.record_not_run(db, ident, status, reason, message, Writer.OPERATOR, **fields)


def running_records(db: Database[Any], job_id: str, namespace: str) -> list[dict[str, Any]]:
    return list(db[mongo.EXECUTIONS].find(
        {"job_id": job_id, "namespace": namespace, "status": ExecutionStatus.RUNNING.value},
        {"_id": 1, "k8s_job": 1, "timestamp": 1, "heartbeat_at": 1, "started_at": 1, "trigger": 1}))


def running_records_outside(db: Database[Any], live: set[tuple[str, str]], namespaces: list[str],
                            older_than: float = 60.0) -> list[dict[str, Any]]:
    """Running records (of ours: with a namespace) whose (namespace, SyncJob) is not among `live`."""
    query: dict[str, Any] = {"status": ExecutionStatus.RUNNING.value, "namespace": {"$type": "string"},
                             "timestamp": {"$lt": executions.utcnow() - dt.timedelta(seconds=older_than)}}
    if namespaces:
        query["namespace"] = {"$in": list(namespaces)}
    found = db[mongo.EXECUTIONS].find(query, {"_id": 1, "namespace": 1, "job_id": 1, "k8s_job": 1})
    return [d for d in found if (d.get("namespace"), d.get("job_id")) not in live]


def runs_overlapping(db: Database[Any], job_id: str, namespace: str, at: dt.datetime) -> list[str]:
    """Runs of a job that were running at a given time (for telling a Forbid skip from a miss)."""
    cursor = db[mongo.EXECUTIONS].find(
        {"job_id": job_id, "namespace": namespace, "started_at": {"$lte": at},
         "$or": [{"status": ExecutionStatus.RUNNING.value}, {"finished_at": {"$gt": at}}]},
        {"_id": 1},
    )
    return [str(d["_id"]) for d in cursor]


def existing_ids(db: Database[Any], run_ids: list[str]) -> set[str]:
    """Run ids that have a record, or had one an admin deleted."""
    if not run_ids:
        return set()
    found = {str(d["_id"]) for d in db[mongo.EXECUTIONS].find({"_id": {"$in": run_ids}}, {"_id": 1})}
    found |= {str(d["_id"]) for d in db[mongo.EXECUTION_TOMBSTONES].find({"_id": {"$in": run_ids}}, {"_id": 1})}
    return found


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
          details: dict[str, Any], key: str, user: str = "kubectl", error_message: str | None = None,
          timestamp: dt.datetime | None = None) -> bool:
    """Actions requested with kubectl annotations reach the same audit trail as the API's own entries, once each
    (keyed by the run or token, so an operator that died after acting and acts again writes no second entry).

    Kubernetes does not tell a controller who set an annotation; unless the API said who, the user is recorded
    as `kubectl` and the API server's audit log has the name.
    """
    return audit_trail.write(db, job_id=job_id, namespace=namespace, action=action, status=status, user=user,
                             via="kubectl", target=job_id, details=details, error_message=error_message, key=key,
                             timestamp=timestamp)
