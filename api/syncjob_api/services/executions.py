"""Queries over scheduler_executions: pages, per-job stats, and the three record mutations' checks.

Every query takes its values from validated parameters (ids matched against a strict pattern, statuses against the
enum), never a dict from the request, and each is served by an index of `syncjob.mongo.SCHEDULER_COLLECTIONS`:

    page by job         {job_id: $in, [status], [is_manual]} sort timestamp desc   → (job_id, timestamp)
    page by status      {status} sort timestamp desc                                → (status, timestamp)
    page by is_manual   {is_manual: $in} sort timestamp desc                        → (is_manual, timestamp)
    stats               $match job_id, $group status                                → (job_id, status, execution_time)
    percentiles         {job_id, status: success, execution_time >= 0} sort/skip   → (job_id, status, execution_time)
    last execution      {job_id} sort timestamp desc limit 1                        → (job_id, timestamp)
"""

from __future__ import annotations

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
from syncjob_api import models
from syncjob_api.core.timefmt import render

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


def build_query(job_ids: list[str] | None, namespace: str | None, status: models.ExecutionStatusFilter | None,
                is_manual: bool | None) -> dict[str, Any]:
    query: dict[str, Any] = {}
    if job_ids:
        query["job_id"] = job_ids[0] if len(job_ids) == 1 else {"$in": list(job_ids)}
    if namespace:
        query["namespace"] = namespace
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


def to_public(doc: dict[str, Any], tz: ZoneInfo) -> models.ExecutionPublic:
    run_id = str(doc.get("_id"))
    data: dict[str, Any] = {
        "id": run_id, "legacy_id": run_id,
        "job_id": _opt_str(doc.get("job_id")), "job_name": _opt_str(doc.get("job_name")),
        "namespace": _opt_str(doc.get("namespace")), "status": _opt_str(doc.get("status")),
        "trigger": _opt_str(doc.get("trigger")),
        "is_manual": doc.get("is_manual") if isinstance(doc.get("is_manual"), bool) else None,
        "force": doc.get("force") if isinstance(doc.get("force"), bool) else None,
        "execution_time": _num(doc.get("execution_time")), "progress": _num(doc.get("progress")),
        "progress_message": _opt_str(doc.get("progress_message")), "current_item": _jsonable(doc.get("current_item")),
        "total_items": _int(doc.get("total_items")), "processed_items": _int(doc.get("processed_items")),
        "source_used": _opt_str(doc.get("source_used")), "source_attempts": _jsonable(doc.get("source_attempts")),
        "return_value": _jsonable(doc.get("return_value")), "error_message": _opt_str(doc.get("error_message")),
        "traceback": _opt_str(doc.get("traceback")),
        "cancel_requested": doc.get("cancel_requested") if isinstance(doc.get("cancel_requested"), bool) else None,
        "reason": _opt_str(doc.get("reason")),
        "gaps": _jsonable(doc.get("gaps")),
    }
    for name in _TIME_FIELDS:
        data[name] = render(doc.get(name), tz)
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


def stats(db: Database[dict[str, Any]], job_ids: list[str], namespace: str | None,
          tz: ZoneInfo) -> models.ExecutionStats:
    coll = collection(db)
    match = build_query(job_ids, namespace, None, None)
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
            avg_success = round(float(group.get("avg") or 0.0), 2)
            timed_success = int(group.get("timed") or 0)
    p50 = _percentile(coll, match, timed_success, 0.50)
    p95 = _percentile(coll, match, timed_success, 0.95)
    last = coll.find_one(match, {"status": 1, "timestamp": 1, "execution_time": 1}, sort=[("timestamp", -1)])
    c = {s.value: counts.get(s.value, 0) for s in ExecutionStatus}
    judged = c["success"] + c["failed"] + c["missed"]
    return models.ExecutionStats(
        total=sum(counts.values()), success=c["success"], failed=c["failed"], missed=c["missed"],
        cancelled=c["cancelled"], skipped=c["skipped"], running=c["running"], avg_execution_time=avg_success,
        p50_execution_time=p50, p95_execution_time=p95,
        success_rate=round(c["success"] / judged, 4) if judged else None, with_gaps=with_gaps,
        last_execution=None if last is None else models.LastExecutionBrief(
            run_id=str(last["_id"]), status=_opt_str(last.get("status")),
            timestamp=render(last.get("timestamp"), tz), execution_time=_num(last.get("execution_time")),
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
    if doc.get("status") != ExecutionStatus.RUNNING.value:
        raise HTTPException(409, f"Cannot {action} execution {execution_id}: it is {doc.get('status')}, not running")
