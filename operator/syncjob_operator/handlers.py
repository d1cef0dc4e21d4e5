"""kopf handlers: thin adapters from Kubernetes events to `reconcile` and `records`.

- SyncJob created, changed (spec or request annotations) or resumed after a restart → one reconcile pass;
  a timer repeats it (drift, missed runs, overdue cancels, orphaned records).
- CronJob owned by a SyncJob changed or deleted by hand → reconcile its SyncJob, which puts it back.
- Job of a SyncJob seen, finished or deleted → its execution record is created or closed, status refreshed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

import kopf

from syncjob import names
from syncjob_operator import builders, kube, records
from syncjob_operator.reconcile import (
    InvalidSpecError,
    Outcome,
    Reconciler,
    execution_status,
    parse_syncjob,
    status_changed,
)
from syncjob_operator.settings import get_settings

log = logging.getLogger("syncjob_operator")
SYNCJOB = (names.GROUP, names.VERSION, names.PLURAL)
OWNED = {names.LABEL_SYNCJOB: kopf.PRESENT}

IndexEntry = dict[tuple[str | None, str], dict[str, Any]]
_reconciler: Reconciler | None = None


def reconciler() -> Reconciler:
    global _reconciler
    if _reconciler is None:
        _reconciler = Reconciler(get_settings())
    return _reconciler


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    cfg = get_settings()
    # kopf's bookkeeping goes under a subdomain of our group, not the group itself: kopf leaves every annotation
    # that shares a prefix with its storage out of its diffs, and our request tokens must trigger handlers.
    settings.persistence.finalizer = f"{names.KOPF_PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=names.KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=names.KOPF_PREFIX, key="last-handled-configuration")
    settings.watching.server_timeout = cfg.server_timeout_seconds
    settings.watching.client_timeout = cfg.server_timeout_seconds + 30
    settings.watching.connect_timeout = 30
    settings.execution.max_workers = 64  # handlers block on API and MongoDB round trips, not on CPU
    settings.batching.worker_limit = 200
    settings.posting.level = logging.INFO
    settings.networking.request_timeout = 60
    records.database(cfg.mongo_uri)  # fail fast on a bad MONGO_URI, and ensure the indexes
    asyncio.get_running_loop().create_task(_renew_lease_forever(cfg.operator_namespace, cfg.lease_renew_seconds))


async def _renew_lease_forever(namespace: str, period: float) -> None:
    holder = f"{socket.gethostname()}-{os.getpid()}"
    while True:
        try:
            await asyncio.to_thread(kube.renew_lease, namespace, holder, int(period * 4))
        except Exception as exc:  # the lease is a health signal; never let it stop the operator
            log.warning("Failed to renew Lease %s/%s: %s", namespace, names.OPERATOR_LEASE, exc)
        await asyncio.sleep(period)


def _post_events(body: dict[str, Any], events: list[tuple[str, str, str]]) -> None:
    target: Any = body  # kopf posts Events for any object with apiVersion, kind and metadata
    for type_, reason, message in events:
        kopf.event(target, type=type_, reason=reason, message=message)


def _apply_status(body: dict[str, Any], patch: kopf.Patch, update: dict[str, Any]) -> None:
    if status_changed(dict(body.get("status") or {}), update):
        for key, value in update.items():
            patch.status[key] = value


def _pass(body: kopf.Body, patch: kopf.Patch, cronjob_index: kopf.Index[Any, Any],
          job_index: kopf.Index[Any, Any], periodic: bool = False, resumed: bool = False,
          first_sight: bool = False) -> None:
    key = (str(body.metadata.namespace), str(body.metadata.name))
    raw = dict(body)
    outcome = reconciler().reconcile(raw, _one(cronjob_index, key), _all(job_index, key), periodic=periodic,
                                     resumed=resumed, runs=first_sight)
    _apply_status(raw, patch, outcome.status)
    _post_events(raw, outcome.events)


@kopf.on.event(*SYNCJOB)
def reconcile_syncjob(event: kopf.RawEvent, body: kopf.Body, patch: kopf.Patch, **kwargs: Any) -> None:
    """Every SyncJob event runs one level-based pass. The pass compares what is with what should be (the CronJob
    digest, tokens against status.lastHandled*), so it needs no diff base: no bookkeeping annotation is written,
    and the status write it causes comes back as an event that changes nothing."""
    if event["type"] == "DELETED" or body.metadata.get("deletionTimestamp"):
        return  # the garbage collector removes the CronJob and its Jobs
    first_sight = event["type"] in (None, "ADDED")  # None: the initial listing after an operator (re)start
    _pass(body, patch, kwargs["cronjob_index"], kwargs["job_index"], resumed=event["type"] is None,
          first_sight=first_sight)


_RESYNC = float(os.environ.get("RESYNC_SECONDS", "60"))


@kopf.timer(*SYNCJOB, interval=_RESYNC, initial_delay=_RESYNC)
def resync_syncjob(body: kopf.Body, patch: kopf.Patch, **kwargs: Any) -> None:
    _pass(body, patch, kwargs["cronjob_index"], kwargs["job_index"], periodic=True)


@kopf.index(*SYNCJOB)
def syncjob_index(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> IndexEntry:
    return {(namespace, name): {"metadata": dict(body.metadata), "spec": dict(body.spec),
                                "status": dict(body.status), "apiVersion": body.get("apiVersion"),
                                "kind": body.get("kind")}}


# The CronJob and Job indexes keep only what a pass reads, to keep memory flat with thousands of SyncJobs.
@kopf.index("batch", "v1", "cronjobs", labels=OWNED)
def cronjob_index(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> IndexEntry:
    meta = body.metadata
    return {(namespace, name): {
        "metadata": {"name": name, "uid": meta.uid, "generation": meta.get("generation")},
        "status": {"lastScheduleTime": body.status.get("lastScheduleTime")},
    }}


@kopf.index("batch", "v1", "jobs", labels=OWNED)
def job_index(namespace: str | None, name: str, labels: Mapping[str, str], body: kopf.Body,
              **_: Any) -> IndexEntry:
    meta = body.metadata
    return {(namespace, labels[names.LABEL_SYNCJOB]): {
        "metadata": {"name": name, "deletionTimestamp": meta.get("deletionTimestamp"),
                     "creationTimestamp": meta.get("creationTimestamp")},
        "status": {"conditions": [{"type": c.get("type"), "status": c.get("status")}
                                  for c in body.status.get("conditions") or []]},
    }}


def _one(index: kopf.Index[Any, Any], key: tuple[str, str]) -> dict[str, Any] | None:
    with contextlib.suppress(KeyError, StopIteration):
        return dict(next(iter(index[key])))
    return None


def _all(index: kopf.Index[Any, Any], key: tuple[str, str]) -> list[dict[str, Any]]:
    return [dict(v) for v in index.get(key, [])]


@kopf.on.event("batch", "v1", "cronjobs", labels=OWNED)
def cronjob_changed(event: kopf.RawEvent, body: kopf.Body, namespace: str | None, labels: Mapping[str, str],
                    **kwargs: Any) -> None:
    """A hand edit or deletion of an owned CronJob is undone by reconciling its SyncJob."""
    parent = _one(kwargs["syncjob_index"], (str(namespace), labels[names.LABEL_SYNCJOB]))
    sj = parse_syncjob(parent)[0] if parent else None
    if parent is None or sj is None or parent["metadata"].get("deletionTimestamp"):
        return
    if sj.metadata.uid not in {o.get("uid") for o in body.get("metadata", {}).get("ownerReferences") or []}:
        return  # a CronJob left over from an earlier SyncJob of the same name: the garbage collector takes it
    if builders.validate(sj.spec):
        return  # an invalid spec leaves the existing CronJob as it was
    if event["type"] == "DELETED":
        log.info("Recreating CronJob %s/%s, deleted by hand", namespace, sj.name)
    outcome = Outcome(status={})
    try:
        live = None if event["type"] == "DELETED" else {"spec": dict(body.spec), "metadata": dict(body.metadata)}
        reconciler().ensure_cronjob(sj, outcome, live)
    except InvalidSpecError:
        return
    _post_events(parent, outcome.events)


@kopf.on.event("batch", "v1", "jobs", labels=OWNED)
def job_changed(event: kopf.RawEvent, body: kopf.Body, name: str, namespace: str | None,
                labels: Mapping[str, str], **kwargs: Any) -> None:
    """Execution truth: every Job has a record; Kubernetes' verdict closes a record the pod could not."""
    cfg = get_settings()
    db = records.database(cfg.mongo_uri)
    job = dict(body)
    namespace = str(namespace)
    syncjob_index, cronjob_index, job_index = kwargs["syncjob_index"], kwargs["cronjob_index"], kwargs["job_index"]
    syncjob_name = labels[names.LABEL_SYNCJOB]
    parent = _one(syncjob_index, (namespace, syncjob_name))
    closed = False
    if event["type"] == "DELETED":
        replaced = bool(parent and parent["spec"].get("concurrencyPolicy") == "Replace"
                        and (job.get("metadata", {}).get("labels") or {}).get(names.LABEL_TRIGGER) == "schedule")
        closed = records.close_deleted_job(db, name, replaced=replaced)
    else:
        records.record_job_seen(db, job)
        verdict_needs_pods = any(c.get("type") == "Failed" and c.get("status") == "True"
                                 for c in (job.get("status") or {}).get("conditions") or [])
        pods = kube.list_job_pods(namespace, name) if verdict_needs_pods else []
        closed = records.close_from_job(db, job, pods)
    if parent is None:
        return
    if closed:
        record = db["scheduler_executions"].find_one({"_id": name}) or {}
        status = record.get("status", "failed")
        message = record.get("error_message") or record.get("reason") or ""
        target: Any = parent
        kopf.event(target, type="Warning" if status == "failed" else "Normal",
                   reason="RunFailed" if status == "failed" else "RunCancelled",
                   message=f"Run {name} {status}: {message}")
    sj = parse_syncjob(parent)[0]
    if sj is None:
        return
    key = (namespace, syncjob_name)
    jobs = [j for j in _all(job_index, key) if j["metadata"]["name"] != name]
    if event["type"] != "DELETED":
        jobs.append(job)  # this event is newer than what the index may hold
    update = execution_status(db, sj, jobs, _one(cronjob_index, key))
    current = (dict(next(iter(syncjob_index[key]), {})).get("status") or {}) if key in syncjob_index else {}
    if status_changed(current, update):
        kube.patch_syncjob_status(namespace, syncjob_name, update)
