"""How a SyncJob looks through the API: the seed's job fields, built once per watch event, not per request.

A job's view is precomputed when the cache sees the SyncJob; a request only adds the scheduler_metadata overrides
(display name and description, per namespace and job) and, when a job's next run time has passed, recomputes it
with croniter in the job's time zone. That keeps GET /jobs cheap with a thousand SyncJobs.

`name` is what the incumbent's page shows, sorts and filters by data source: a human name (the display name, else
the SyncJob name) that contains the primary source's spelling as the incumbent wrote it (`Tushare`, `AKShare`,
`BaoStock`), appended in the incumbent's full-width brackets when the display name lacks it.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from cachetools import LRUCache
from croniter import croniter
from pydantic import TypeAdapter
from pymongo.database import Database

from syncjob import mongo
from syncjob.model import SyncJob
from syncjob_api import models
from syncjob_api.core.timefmt import render, zone


@dataclass(frozen=True)
class JobEntry:
    """A cached SyncJob with its precomputed public view."""

    job: SyncJob
    tz: ZoneInfo
    view: models.JobPublic
    next_run: dt.datetime | None

    @property
    def name(self) -> str:
        return self.job.name

    @property
    def namespace(self) -> str:
        return self.job.namespace


def next_run_time(job: SyncJob, now: dt.datetime, tz: ZoneInfo) -> dt.datetime | None:
    if job.spec.paused:
        return None
    try:
        nxt = croniter(job.spec.schedule, now.astimezone(tz)).get_next(dt.datetime)
    except (ValueError, KeyError):
        return None
    assert isinstance(nxt, dt.datetime)
    return nxt


def _last_execution(job: SyncJob, tz: ZoneInfo) -> models.LastExecution | None:
    last = job.status.last_execution
    if last is None:
        return None
    return models.LastExecution(
        run_id=last.run_id, status=last.status.value, trigger=last.trigger, started_at=render(last.started_at, tz),
        finished_at=render(last.finished_at, tz), duration_seconds=last.duration_seconds, source=last.source,
        message=last.message,
    )


# The incumbent's spelling of each source, which its page's data-source filter looks for in a job's name.
SOURCE_SPELLING = {"tushare": "Tushare", "akshare": "AKShare", "baostock": "BaoStock"}


def page_name(display_name: str | None, job_name: str, sources: list[str]) -> str:
    """The job's `name` for the incumbent's page: its display name (else its SyncJob name), with the primary
    source's spelling appended when the name lacks it."""
    name = display_name or job_name
    spelling = SOURCE_SPELLING.get(sources[0]) if sources else None
    if spelling and spelling not in name:
        name = f"{name}（{spelling}）"  # noqa: RUF001 (the incumbent's full-width brackets)
    return name


def build_entry(job: SyncJob, now: dt.datetime) -> JobEntry:
    tz = zone(job.spec.time_zone)
    nxt = next_run_time(job, now, tz)
    spec = job.spec
    sources = [s.value for s in spec.sources]
    view = models.JobPublic(
        id=job.name, name=page_name(spec.display_name, job.name, sources), namespace=job.namespace,
        display_name=spec.display_name,
        description=spec.description, task=spec.task.value, sources=sources,
        trigger=f"{spec.schedule} ({spec.time_zone})", schedule=spec.schedule, time_zone=spec.time_zone,
        paused=spec.paused, next_run_time=render(nxt, tz), last_execution=_last_execution(job, tz),
        active_runs=[a.run_id for a in job.status.active],
    )
    return JobEntry(job=job, tz=tz, view=view, next_run=nxt)


def refreshed(entry: JobEntry, now: dt.datetime) -> JobEntry:
    """The same entry with a next run time that has not passed yet."""
    if entry.next_run is None or entry.next_run > now:
        return entry
    nxt = next_run_time(entry.job, now, entry.tz)
    view = entry.view.model_copy(update={"next_run_time": render(nxt, entry.tz)})
    return JobEntry(job=entry.job, tz=entry.tz, view=view, next_run=nxt)


def normalise(job_id: str) -> str:
    return job_id.replace("_", "-")


def stored_ids(name: str) -> list[str]:
    """The job_id values that name this job in MongoDB: the SyncJob name and the incumbent's underscore id."""
    legacy = name.replace("-", "_")
    return [name] if legacy == name else [name, legacy]


MetaKey = tuple[str | None, str]  # (namespace, normalised job id); namespace None: the incumbent's documents


def metadata_for(metadata: dict[MetaKey, dict[str, Any]], namespace: str, name: str) -> dict[str, Any] | None:
    """A job's scheduler_metadata: its namespace's document, else the incumbent's (no namespace), else none."""
    return metadata.get((namespace, name)) or metadata.get((None, name))


class MetadataCache:
    """scheduler_metadata by (namespace, normalised job id), reread at most every `ttl` seconds (and after local
    writes).

    Another API replica's metadata update shows here within `ttl` seconds.
    """

    def __init__(self, db: Database[dict[str, Any]], ttl: float = 2.0) -> None:
        self.db = db
        self.ttl = ttl
        self._current: tuple[int, dict[MetaKey, dict[str, Any]]] = (0, {})  # version bumped when documents change
        self._expires = 0.0
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        self._expires = 0.0

    def all(self) -> dict[MetaKey, dict[str, Any]]:
        return self.snapshot()[1]

    def for_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return metadata_for(self.all(), namespace, name)

    def snapshot(self) -> tuple[int, dict[MetaKey, dict[str, Any]]]:
        """(version, documents by namespace and normalised job id), consistent with each other."""
        current = self._current
        if time.monotonic() < self._expires:
            return current
        with self._lock:
            if time.monotonic() < self._expires:
                return self._current
            docs: dict[MetaKey, dict[str, Any]] = {}
            projection = {"_id": 0, "job_id": 1, "namespace": 1, "display_name": 1, "description": 1,
                          "updated_by": 1, "updated_at": 1}
            for doc in self.db[mongo.METADATA].find({}, projection):
                job_id, namespace = doc.get("job_id"), doc.get("namespace")
                if not isinstance(job_id, str):
                    continue
                key = (namespace if isinstance(namespace, str) and namespace else None, normalise(job_id))
                if key not in docs or job_id == key[1]:  # the SyncJob name wins over a legacy underscore id
                    docs[key] = doc
            if docs != self._current[1]:
                self._current = (self._current[0] + 1, docs)
            self._expires = time.monotonic() + self.ttl
            return self._current


class JobListPayload:
    """The JSON of the job list, rebuilt only when the cache or the metadata changed.

    Callers who see the same namespaces see the same list, so GET /jobs serves these bytes (one payload per set of
    namespaces, the most recent few kept) instead of serialising a thousand models per request (the benchmark's
    p99 budget is 25 ms with 1,000 SyncJobs).
    """

    _adapter = TypeAdapter(list[models.JobPublic])

    def __init__(self, max_scopes: int = 64) -> None:
        self._payloads: LRUCache[Any, tuple[bytes, int]] = LRUCache(max_scopes)
        self._lock = threading.Lock()

    def get(self, entries: list[JobEntry], entries_version: int, metadata: dict[MetaKey, dict[str, Any]],
            metadata_version: int, namespaces: tuple[str, ...] | None = None) -> tuple[bytes, int]:
        """The list of the entries in `namespaces` (None: all)."""
        key = (entries_version, metadata_version, namespaces)
        with self._lock:
            hit = self._payloads.get(key)
            if hit is not None:
                return hit
            wanted = None if namespaces is None else set(namespaces)
            jobs = [with_metadata(e.view, metadata_for(metadata, e.namespace, e.name)) for e in entries
                    if wanted is None or e.namespace in wanted]
            built = (self._adapter.dump_json(jobs), len(jobs))
            self._payloads[key] = built
            return built


def with_metadata(view: models.JobPublic, meta: dict[str, Any] | None) -> models.JobPublic:
    if not meta:
        return view
    update: dict[str, Any] = {k: meta[k] for k in ("display_name", "description") if isinstance(meta.get(k), str)}
    if "display_name" in update:
        update["name"] = page_name(update["display_name"], view.id, view.sources)
    return view.model_copy(update=update) if update else view


def detail(entry: JobEntry, meta: dict[str, Any] | None) -> models.JobDetail:
    job, tz = entry.job, entry.tz
    spec, status = job.spec, job.status
    ready = status.condition("Ready")
    base = with_metadata(entry.view, meta).model_dump()
    return models.JobDetail(
        **base,
        spec_display_name=spec.display_name,
        spec_description=spec.description,
        trading_hours_only=spec.trading_hours_only,
        concurrency_policy=spec.concurrency_policy.value,
        starting_deadline_seconds=spec.starting_deadline_seconds,
        active_deadline_seconds=spec.active_deadline_seconds,
        backoff_limit=spec.backoff_limit,
        successful_jobs_history_limit=spec.successful_jobs_history_limit,
        failed_jobs_history_limit=spec.failed_jobs_history_limit,
        options=spec.options,
        created_at=render(job.metadata.creation_timestamp, tz),
        metadata_updated_by=(meta or {}).get("updated_by"),
        metadata_updated_at=render((meta or {}).get("updated_at"), tz),
        kwargs=spec.options, args=[], misfire_grace_time=spec.starting_deadline_seconds,
        max_instances=None if spec.concurrency_policy.value == "Allow" else 1,
        status=models.JobStatusPublic(
            ready=None if ready is None else ready.status.value == "True",
            conditions=[
                models.Condition(type=c.type, status=c.status.value, reason=c.reason, message=c.message,
                                 last_transition_time=render(c.last_transition_time, tz))
                for c in status.conditions
            ],
            generation=job.metadata.generation,
            observed_generation=status.observed_generation,
            cron_job_name=status.cron_job_name,
            next_schedule_time=render(status.next_schedule_time, tz),
            last_schedule_time=render(status.last_schedule_time, tz),
            last_successful_time=render(status.last_successful_time, tz),
            last_failure_time=render(status.last_failure_time, tz),
            active=[models.ActiveRun(run_id=a.run_id, job_name=a.job_name) for a in status.active],
            last_handled_requested_at=status.last_handled_requested_at,
            last_handled_force_at=status.last_handled_force_at,
            last_handled_cancel_at=status.last_handled_cancel_at,
        ),
    )


