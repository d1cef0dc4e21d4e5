"""Queries over scheduler_executions: pages, per-job stats, the three record mutations' checks, and the running
runs of a SyncJob (concurrencyPolicy Forbid). Reads only: every write goes through `syncjob.executions`.

Every query takes its values from validated parameters (ids matched against a strict pattern, statuses against the
enum), never a dict from the request, and each is served by an index of `syncjob.mongo.SCHEDULER_COLLECTIONS`:

    page by job         {job_id: $in, namespace: $in, [status], [is_manual]} sort timestamp desc
                                                                                    → (job_id, timestamp)
    page by status      {status} sort timestamp desc                                → (status, timestamp)
    page by is_manual   {is_manual: $in} sort timestamp desc                        → (is_manual, timestamp)
    page by namespaces  {namespace: $in} sort timestamp desc (a caller's scope)     → (namespace, timestamp)
    stats               $match job_id, $group status                                → (job_id, status, execution_time)
    percentiles         {job_id, status: success, execution_time >= 0} sort/skip   → (job_id, status, execution_time)
    last execution      {job_id} sort timestamp desc limit 1                        → (job_id, timestamp)
    running runs        {job_id: $in, namespace, status: running}                   → (job_id, timestamp)
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from bson import ObjectId
from fastapi import HTTPException
from pymongo.collection import Collection
from pymongo.database import Database

from syncjob import mongo
from syncjob.model import ExecutionStatus
from syncjob.runs import split_run_id
from syncjob_api import models
from syncjob_api.core.timefmt import from_incumbent, render, utcnow

TzFor = Callable[[str | None, str | None], ZoneInfo]
_OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")
_TIME_FIELDS = ("scheduled_time", "started_at", "finished_at", "timestamp", "heartbeat_at", "updated_at")


def collection(db: Database[dict[str, Any]]) -> Collection[dict[str, Any]]:
    return db[mongo.EXECUTIONS]


def id_query(execution_id: str) -> dict[str, Any]:
    """Run ids are strings; the incumbent's records have ObjectIds, found by their hex form."""
    if _OBJECT_ID.match(execution_id):
        return {"_id": {"$in": [execution_id, ObjectId(execution_id)]}}
    return {"_id": execution_id}


def build_query(job_ids: list[str] | None, namespaces: dict[str, Any] | None,
                status: models.ExecutionStatusFilter | None, is_manual: bool | None) -> dict[str, Any]:
    """`namespaces` is the filter on `namespace` (a caller's scope, `access.Scope.query`, or a job's namespaces)."""
    query: dict[str, Any] = dict(namespaces or {})
    if job_ids:
        query["job_id"] = job_ids[0] if len(job_ids) == 1 else {"$in": list(job_ids)}
    if status is not None:
        query["status"] = status.value
    if is_manual is True:
        query["is_manual"] = True
    elif is_manual is False:
        query["is_manual"] = {"$in": [False, None]}  # the incumbent's records may lack the field
    return query


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def is_incumbent(doc: dict[str, Any]) -> bool:
    """A record the incumbent wrote: an ObjectId, no schema version (its times are naive UTC+8)."""
    return "schema_version" not in doc and not isinstance(doc.get("_id"), str)


def _time(doc: dict[str, Any], name: str) -> Any:
    value = doc.get(name)
    return from_incumbent(value) if is_incumbent(doc) else value


def _elapsed(doc: dict[str, Any]) -> float | None:
    """Seconds a running run has been running so far (its record has no duration yet)."""
    start = _time(doc, "started_at") or _time(doc, "timestamp")
    if not isinstance(start, dt.datetime):
        return None
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.UTC)
    return round(max(0.0, (utcnow() - start).total_seconds()), 3)


def _return_value(value: Any) -> tuple[str | None, Any]:
    """(return_value as the incumbent's string, the structured result): the incumbent stored `str(result)`."""
    if value is None or isinstance(value, str):
        return value, None
    result = _jsonable(value)
    return json.dumps(result, ensure_ascii=False, sort_keys=True), result


def to_public(doc: dict[str, Any], tz: ZoneInfo) -> models.ExecutionPublic:
    run_id = str(doc.get("_id"))
    status = _opt_str(doc.get("status"))
    duration = _num(doc.get("execution_time"))
    if status == ExecutionStatus.RUNNING.value:
        duration = _elapsed(doc)
    return_value, result = _return_value(doc.get("return_value"))
    data: dict[str, Any] = {
        "id": run_id, "legacy_id": run_id,
        "job_id": _opt_str(doc.get("job_id")), "job_name": _opt_str(doc.get("job_name")),
        "namespace": _opt_str(doc.get("namespace")), "status": status,
        "trigger": _opt_str(doc.get("trigger")),
        "is_manual": doc.get("is_manual") if isinstance(doc.get("is_manual"), bool) else None,
        "force": doc.get("force") if isinstance(doc.get("force"), bool) else None,
        "execution_time": duration, "progress": _num(doc.get("progress")),
        "progress_message": _opt_str(doc.get("progress_message")), "current_item": _jsonable(doc.get("current_item")),
        "total_items": _int(doc.get("total_items")), "processed_items": _int(doc.get("processed_items")),
        "source_used": _opt_str(doc.get("source_used")), "source_attempts": _jsonable(doc.get("source_attempts")),
        "return_value": return_value, "result": result, "error_message": _opt_str(doc.get("error_message")),
        "traceback": _opt_str(doc.get("traceback")),
        "cancel_requested": doc.get("cancel_requested") if isinstance(doc.get("cancel_requested"), bool) else None,
        "reason": _opt_str(doc.get("reason")),
        "gaps": _jsonable(doc.get("gaps")),
    }
    for name in _TIME_FIELDS:
        data[name] = render(_time(doc, name), tz)
    return models.ExecutionPublic(**data)


def _jsonable(value: Any) -> Any:
    """Free-form fields (return_value, source_attempts) as JSON: BSON-only types become strings."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def page(db: Database[dict[str, Any]], query: dict[str, Any], limit: int, offset: int,
         tz_for: TzFor) -> models.ExecutionPage:
    coll = collection(db)
    docs = list(coll.find(query).sort("timestamp", -1).skip(offset).limit(limit))
    total = coll.count_documents(query)
    items = [to_public(d, tz_for(_opt_str(d.get("job_id")), _opt_str(d.get("namespace")))) for d in docs]
    return models.ExecutionPage(items=items, total=total, limit=limit, offset=offset)


def stats(db: Database[dict[str, Any]], job_ids: list[str], namespaces: dict[str, Any] | None,
          tz: ZoneInfo) -> models.ExecutionStats:
    coll = collection(db)
    match = build_query(job_ids, namespaces, None, None)
    counts: dict[str, int] = {}
    avg_success = 0.0
    timed_success = 0
    with_gaps = 0
    for group in coll.aggregate([
        {"$match": match},
        {"$group": {"_id": "$status", "count": {"$sum": 1}, "avg": {"$avg": "$execution_time"},
                    "timed": {"$sum": {"$cond": [{"$gte": ["$execution_time", 0]}, 1, 0]}},
                    "gaps": {"$sum": {"$cond": [{"$gt": [{"$ifNull": ["$gaps.symbols_with_gaps", 0]}, 0]}, 1, 0]}}}},
    ]):
        status = str(group["_id"])
        counts[status] = counts.get(status, 0) + int(group["count"])
        with_gaps += int(group.get("gaps") or 0)
        if status == ExecutionStatus.SUCCESS.value:
            avg_success = round(float(group.get("avg") or 0.0), 2)  # the incumbent rounds to 2 places
            timed_success = int(group.get("timed") or 0)
    p50 = _percentile(coll, match, timed_success, 0.50)
    p95 = _percentile(coll, match, timed_success, 0.95)
    last = coll.find_one(match, {"status": 1, "timestamp": 1, "execution_time": 1, "schema_version": 1},
                         sort=[("timestamp", -1)])
    c = {s.value: counts.get(s.value, 0) for s in ExecutionStatus}
    judged = c["success"] + c["failed"] + c["missed"]
    return models.ExecutionStats(
        total=sum(counts.values()), success=c["success"], failed=c["failed"], missed=c["missed"],
        cancelled=c["cancelled"], skipped=c["skipped"], running=c["running"], avg_execution_time=avg_success,
        p50_execution_time=p50, p95_execution_time=p95,
        success_rate=round(c["success"] / judged, 4) if judged else None, with_gaps=with_gaps,
        last_execution=None if last is None else models.LastExecutionBrief(
            run_id=str(last["_id"]), status=_opt_str(last.get("status")),
            timestamp=render(_time(last, "timestamp"), tz), execution_time=_num(last.get("execution_time")),
        ),
    )


def _percentile(coll: Collection[dict[str, Any]], match: dict[str, Any], count: int, q: float) -> float | None:
    """Nearest-rank percentile of successful runs' durations: one index walk (sort + skip), no full fetch."""
    if count <= 0:
        return None
    rank = max(0, math.ceil(q * count) - 1)
    query = {**match, "status": ExecutionStatus.SUCCESS.value, "execution_time": {"$gte": 0}}
    docs = list(coll.find(query, {"_id": 0, "execution_time": 1}).sort("execution_time", 1).skip(rank).limit(1))
    return _num(docs[0]["execution_time"]) if docs else None


def find(db: Database[dict[str, Any]], execution_id: str) -> dict[str, Any]:
    doc = collection(db).find_one(id_query(execution_id))
    if doc is None:
        raise HTTPException(404, f"Execution {execution_id} not found")
    return doc


def require_running(doc: dict[str, Any], execution_id: str, action: str) -> None:
    """409 unless the record is running, saying with what status a finished run ended."""
    status = doc.get("status")
    if status == ExecutionStatus.RUNNING.value:
        return
    if status in {s.value for s in ExecutionStatus}:
        raise HTTPException(409, f"Cannot {action} execution {execution_id}: the run had already finished, "
                                 f"with status {status}")
    raise HTTPException(409, f"Cannot {action} execution {execution_id}: it is {status}, not running")


def k8s_job_name(doc: dict[str, Any]) -> str | None:
    """The name of a record's Job: stored since schema 2, else the second half of a run id."""
    stored = doc.get("k8s_job")
    if isinstance(stored, str) and stored:
        return stored
    parts = split_run_id(doc["_id"]) if isinstance(doc.get("_id"), str) else None
    return parts[1] if parts else None


def running_runs(db: Database[dict[str, Any]], namespace: str, job_ids: list[str]) -> list[str]:
    """Ids of a SyncJob's records that are running now (at most a few; oldest first)."""
    query = {**build_query(job_ids, {"namespace": namespace}, None, None), "status": ExecutionStatus.RUNNING.value}
    return [str(d["_id"]) for d in collection(db).find(query, {"_id": 1}).sort("timestamp", 1).limit(20)]
