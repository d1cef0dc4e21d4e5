"""What the web dashboard reads beyond the seed's endpoints: one page of the job table with each job's recent runs,
a job's schedule ahead and duration series, one run's whole record, and the rows of the live run feed.

Reads only (every write stays with the REST endpoints and `syncjob.executions`). Each query is served by an index of
`syncjob.mongo.SCHEDULER_COLLECTIONS`:

    7 days of a job  {job_id, timestamp >= 7 days ago} per page job  → (job_id, timestamp); also its strip
    last 20 runs     {job_id} sort timestamp desc limit 40           → (job_id, timestamp), only for a job with
                                                                       fewer than 20 runs in those 7 days
    running rows     {status: running}                               → (status, timestamp)
    recent finished  {timestamp >= 1 h / 1 d / 7 d ago} sort timestamp → (timestamp), the TTL index

The job table is filtered and paged from the SyncJob cache first, so a page of 50 costs the same with 1,000
SyncJobs as with 10, and only the page's jobs touch MongoDB.
"""

from __future__ import annotations

import datetime as dt
import statistics
from typing import Any

from croniter import croniter
from pymongo.database import Database

from syncjob import mongo
from syncjob.model import ExecutionStatus
from syncjob_api.core.timefmt import render, utcnow
from syncjob_api.services import executions
from syncjob_api.services.jobs import JobEntry, normalise, refreshed, stored_ids, with_metadata

STRIP_RUNS = 20
WINDOW_DAYS = 7
_JUDGED = {ExecutionStatus.SUCCESS.value, ExecutionStatus.FAILED.value, ExecutionStatus.MISSED.value}

# The fields of a running run that the live feed sends: small rows (a projection), as Argo's `fields=` trims events.
RUN_ROW_FIELDS = ("job_id", "namespace", "status", "reason", "trigger", "is_manual", "force", "progress",
                  "progress_message", "current_item", "processed_items", "total_items", "source_used",
                  "started_at", "heartbeat_at", "finished_at", "execution_time", "cancel_requested",
                  "error_message", "timestamp")
RUN_ROW_PROJECTION = {name: 1 for name in RUN_ROW_FIELDS}
FEED_LIMIT = 500  # the newest running runs the live feed carries; more than a page can show


def matches(entry: JobEntry, meta: dict[str, Any] | None, namespace: str | None, task: str | None,
            source: str | None, status: str | None, query: str | None) -> bool:
    spec = entry.job.spec
    if namespace and entry.namespace != namespace:
        return False
    if task and spec.task.value != task:
        return False
    if source and source not in [s.value for s in spec.sources]:
        return False
    if status:
        last = entry.job.status.last_execution
        if status == "paused":
            if not spec.paused:
                return False
        elif status == "running":
            if not entry.job.status.active:
                return False
        elif status == "never":
            if last is not None:
                return False
        elif last is None or last.status.value != status:
            return False
    if query:
        q = query.lower()
        display = (meta or {}).get("display_name") or spec.display_name or ""
        if q not in entry.name.lower() and q not in str(display).lower():
            return False
    return True


def facets(entries: list[JobEntry]) -> dict[str, list[str]]:
    """The values the filters offer, from every SyncJob served."""
    return {
        "namespaces": sorted({e.namespace for e in entries}),
        "tasks": sorted({e.job.spec.task.value for e in entries}),
        "sources": sorted({s.value for e in entries for s in e.job.spec.sources}),
    }


_MARK_PROJECTION = {"job_id": 1, "namespace": 1, "status": 1, "timestamp": 1, "execution_time": 1}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _sort_time(value: Any) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        return _EPOCH
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _key(job_id: Any, namespace: Any) -> tuple[str, str | None]:
    return normalise(str(job_id)), namespace if isinstance(namespace, str) else None


def summaries(db: Database[dict[str, Any]], page: list[JobEntry]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per job of the page: success rate and median duration over the last 7 days, and the last 20 runs."""
    out: dict[tuple[str, str], dict[str, Any]] = {
        (e.name, e.namespace): {"runs": [], "window": []} for e in page
    }
    if not page:
        return out
    coll = executions.collection(db)
    namespaces_by_name: dict[str, set[str]] = {}
    for e in page:
        namespaces_by_name.setdefault(e.name, set()).add(e.namespace)

    def owner(doc: dict[str, Any]) -> tuple[str, str] | None:
        name, ns = _key(doc.get("job_id"), doc.get("namespace"))
        spaces = namespaces_by_name.get(name)
        if not spaces:
            return None
        if ns in spaces:
            return name, ns
        if ns is None and len(spaces) == 1:  # an incumbent record without a namespace
            return name, next(iter(spaces))
        return None

    def find(job_id: str, query: dict[str, Any], limit: int = 0) -> list[dict[str, Any]]:
        # one equality per stored id: SecantusDB walks the (job_id, timestamp) index for it, not for a $in
        docs = coll.find({"job_id": job_id, **query}, _MARK_PROJECTION).sort("timestamp", -1).limit(limit)
        return list(docs)

    since = utcnow() - dt.timedelta(days=WINDOW_DAYS)
    for e in page:
        key = (e.name, e.namespace)
        recent = [d for i in stored_ids(e.name) for d in find(i, {"timestamp": {"$gte": since}}) if owner(d) == key]
        out[key]["window"] = [(d.get("status"), d.get("execution_time")) for d in recent]
        docs = recent
        if len(docs) < STRIP_RUNS:  # a job with fewer than 20 runs in 7 days: its strip reaches further back
            docs = [d for i in stored_ids(e.name) for d in find(i, {}, STRIP_RUNS * 2) if owner(d) == key]
        docs.sort(key=lambda d: _sort_time(d.get("timestamp")), reverse=True)
        out[key]["runs"] = [{"id": str(d["_id"]), "status": d.get("status"),
                             "timestamp": render(d.get("timestamp"), e.tz),
                             "execution_time": executions._num(d.get("execution_time"))}
                            for d in docs[:STRIP_RUNS]]
    for value in out.values():
        window = value.pop("window")
        judged = [s for s, _ in window if s in _JUDGED]
        durations = [float(t) for s, t in window
                     if s == ExecutionStatus.SUCCESS.value and executions._num(t) is not None]
        value["runs_7d"] = len(window)
        value["success_rate_7d"] = (round(sum(1 for s in judged if s == ExecutionStatus.SUCCESS.value)
                                          / len(judged), 4) if judged else None)
        value["median_duration_7d"] = round(statistics.median(durations), 3) if durations else None
    return out


def job_row(entry: JobEntry, meta: dict[str, Any] | None, summary: dict[str, Any]) -> dict[str, Any]:
    view = with_metadata(entry.view, meta).model_dump(mode="json")
    return {**view, **summary}


def upcoming(entry: JobEntry, count: int = 10) -> list[str]:
    """The next `count` scheduled times in the job's time zone (none while paused)."""
    if entry.job.spec.paused:
        return []
    try:
        it = croniter(entry.job.spec.schedule, utcnow().astimezone(entry.tz))
        return [render(it.get_next(dt.datetime), entry.tz) or "" for _ in range(count)]
    except (ValueError, KeyError):
        return []


def durations(db: Database[dict[str, Any]], entry: JobEntry, namespace_filter: dict[str, Any] | None,
              limit: int = 100) -> list[dict[str, Any]]:
    """The job's last `limit` finished runs, oldest first: the duration chart's bars."""
    query = executions.build_query(stored_ids(entry.name), namespace_filter, None, None)
    query["status"] = {"$ne": ExecutionStatus.RUNNING.value}
    docs = executions.collection(db).find(
        query, {"status": 1, "timestamp": 1, "execution_time": 1}).sort("timestamp", -1).limit(limit)
    rows = [{"id": str(d["_id"]), "status": d.get("status"), "timestamp": render(d.get("timestamp"), entry.tz),
             "execution_time": executions._num(d.get("execution_time"))} for d in docs]
    rows.reverse()
    return rows


def run_row(doc: dict[str, Any], tz_for: executions.TzFor) -> dict[str, Any]:
    """A run as the live feed and the runs view show it: the projected fields, typed, times in the job's zone."""
    tz = tz_for(executions._opt_str(doc.get("job_id")), executions._opt_str(doc.get("namespace")))

    def flag(value: Any) -> bool | None:
        return value if isinstance(value, bool) else None

    row: dict[str, Any] = {"id": str(doc["_id"])}
    for name in ("job_id", "namespace", "status", "reason", "trigger", "progress_message", "source_used",
                 "error_message"):
        row[name] = executions._opt_str(doc.get(name))
    for name in ("is_manual", "force", "cancel_requested"):
        row[name] = flag(doc.get(name))
    for name in ("progress", "execution_time"):
        row[name] = executions._num(doc.get(name))
    for name in ("processed_items", "total_items"):
        row[name] = executions._int(doc.get(name))
    for name in ("started_at", "heartbeat_at", "finished_at", "timestamp"):
        row[name] = render(doc.get(name), tz)
    row["current_item"] = executions._jsonable(doc.get("current_item"))
    return row


def running(db: Database[dict[str, Any]], limit: int, scope: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The running records (newest first), as the live feed and its polling fallback read them."""
    query = {**(scope or {}), "status": ExecutionStatus.RUNNING.value}
    return list(executions.collection(db).find(query, RUN_ROW_PROJECTION).sort("timestamp", -1).limit(limit))


def recent_finished(db: Database[dict[str, Any]], limit: int,
                    scope: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The newest finished records, from the last hour, else day, else week (the timestamp index's range): a sort
    of every record on timestamp, or of one status's, costs seconds at 200,000 records on SecantusDB."""
    coll = executions.collection(db)
    docs: list[dict[str, Any]] = []
    for hours in (1, 24, 24 * WINDOW_DAYS, None):
        query = dict(scope or {})  # the namespaces the caller may read
        if hours is not None:
            query["timestamp"] = {"$gte": utcnow() - dt.timedelta(hours=hours)}
        found = coll.find(query, RUN_ROW_PROJECTION).sort("timestamp", -1).limit(limit * 4)
        docs = [d for d in found if d.get("status") != ExecutionStatus.RUNNING.value]
        if len(docs) >= limit:
            break
    return docs[:limit]


def requester(db: Database[dict[str, Any]], doc: dict[str, Any]) -> str | None:
    """Who asked for a manual run: the user of the trigger audit entry that named it (index job_id, timestamp)."""
    if not doc.get("is_manual"):
        return None
    entry = db[mongo.HISTORY].find_one(
        {"job_id": {"$in": stored_ids(normalise(str(doc["job_id"])))}, "action": "trigger",
         "details.run_id": str(doc["_id"])}, {"user": 1}, sort=[("timestamp", -1)])
    user = (entry or {}).get("user")
    return user if isinstance(user, str) else None


def run_detail(doc: dict[str, Any], tz_for: executions.TzFor) -> dict[str, Any]:
    """Every field of one run's record, BSON types made JSON, times in the job's zone."""
    tz = tz_for(executions._opt_str(doc.get("job_id")), executions._opt_str(doc.get("namespace")))

    def convert(value: Any) -> Any:
        if isinstance(value, dt.datetime):
            return render(value, tz)
        if isinstance(value, dict):
            return {str(k): convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        return executions._jsonable(value)

    out = convert({k: v for k, v in doc.items() if k != "_id"})
    assert isinstance(out, dict)
    out["id"] = str(doc["_id"])
    return out


def refresh(entries: list[JobEntry]) -> list[JobEntry]:
    now = utcnow()
    return [refreshed(e, now) for e in entries]
