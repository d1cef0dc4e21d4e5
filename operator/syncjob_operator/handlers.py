"""kopf handlers: thin adapters from Kubernetes events to `reconcile` and `records`.

- SyncJob created, changed (spec or request annotations) or resumed after a restart → one reconcile pass in a
  worker thread, unless `settled` shows in the event loop that it would change nothing (our own status writes);
  a resync loop repeats the pass for every SyncJob each RESYNC_SECONDS (drift, missed runs, overdue cancels).
- CronJob owned by a SyncJob changed or deleted by hand → its SyncJob's CronJob is applied again.
- Job of a SyncJob seen, finished or deleted → its execution record is created or closed, status refreshed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import logging
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any

import kopf
import pymongo.errors
import pymongo.uri_parser

from syncjob import names
from syncjob.model import ConcurrencyPolicy
from syncjob.runs import run_id
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
OWNERS = "annotationOwners"  # kept in an indexed SyncJob's metadata instead of managedFields
SPEC_OWNERS = "specOwners"  # ...and who owns each spec field
_reconciler: Reconciler | None = None
_INSTANCE = f"{socket.gethostname()}-{os.getpid()}"  # names this operator process in its Lease and Events
_background: set[asyncio.Task[None]] = set()  # the operator's own loops, held so they are not collected
# The Lease is renewed on a thread of its own, so that handler threads stuck on a slow MongoDB cannot let it lapse.
_LEASE_THREAD = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="lease")


def reconciler() -> Reconciler:
    global _reconciler
    if _reconciler is None:
        _reconciler = Reconciler(get_settings())
    return _reconciler


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
    cfg = get_settings()
    # kopf's bookkeeping goes under a subdomain of our group, not the group itself: kopf leaves every annotation
    # that shares a prefix with its storage out of its diffs, and our request tokens must trigger handlers.
    settings.persistence.finalizer = f"{names.KOPF_PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=names.KOPF_PREFIX)
    settings.persistence.diffbase_storage = NoDiffBaseStorage()
    settings.watching.server_timeout = cfg.server_timeout_seconds
    settings.watching.client_timeout = cfg.server_timeout_seconds + 30
    settings.watching.connect_timeout = 30
    # Handler work blocks on API and MongoDB round trips; the same threads serve kopf's sync handlers and ours.
    settings.execution.max_workers = cfg.handler_threads
    loop = asyncio.get_running_loop()
    loop.set_default_executor(settings.execution.executor)
    # One worker per object with queued events, unbounded: a bounded pool stalls the whole watch stream once full
    # (a thousand SyncJobs applied at once), and an idle worker holds its slot for idle_timeout.
    settings.queueing.worker_limit = None
    settings.queueing.idle_timeout = 1.0
    settings.posting.level = logging.INFO
    settings.posting.reporting_component = names.FIELD_MANAGER_OPERATOR
    settings.posting.reporting_instance = _INSTANCE
    settings.networking.request_timeout = 60
    if cfg.webhook_port is not None:  # the ValidatingWebhookConfiguration is shipped, not managed by kopf
        settings.admission.server = kopf.WebhookServer(addr=cfg.webhook_addr, port=cfg.webhook_port,
                                                       certfile=cfg.webhook_cert_file, pkeyfile=cfg.webhook_key_file)
        kopf.on.validate(*SYNCJOB, id="validate-syncjob", operations=["CREATE", "UPDATE"])(validate_syncjob)
    pymongo.uri_parser.parse_uri(cfg.mongo_uri)  # fail fast on a malformed MONGO_URI
    _background.add(loop.create_task(_prepare_database_forever(cfg.mongo_uri)))
    _background.add(loop.create_task(_renew_lease_forever(cfg.operator_namespace, cfg.lease_renew_seconds)))
    _background.add(loop.create_task(_resync_forever(kwargs["syncjob_index"], kwargs["cronjob_index"],
                                                     kwargs["job_index"], cfg.resync_seconds)))


class NoDiffBaseStorage(kopf.DiffBaseStorage):
    """The operator is level-based and has no on.create/on.update handlers, so it keeps no diff base: kopf would
    otherwise deep-copy every object on every event to compute a diff nobody reads."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


async def _prepare_database_forever(uri: str, period: float = 5.0) -> None:
    """Indexes and the migration of older records, retried until MongoDB answers: an operator started (or
    restarted) while MongoDB is down still reconciles CronJobs and acts on tokens, and writes records once it is
    back (the passes that need MongoDB fail and are repeated by the resync loop)."""
    while True:
        try:
            await asyncio.to_thread(records.prepare, uri)
            return
        except pymongo.errors.PyMongoError as exc:
            log.warning("MongoDB is not reachable yet (%s); retrying in %.0f s", type(exc).__name__, period)
            await asyncio.sleep(period)


async def _renew_lease_forever(namespace: str, period: float) -> None:
    while True:
        try:
            await asyncio.get_running_loop().run_in_executor(_LEASE_THREAD, kube.renew_lease, namespace, _INSTANCE,
                                                             int(period * 4))
        except Exception as exc:  # the lease is a health signal; never let it stop the operator
            log.warning("Failed to renew Lease %s/%s: %s", namespace, names.OPERATOR_LEASE, exc)
        await asyncio.sleep(period)


def _post_events(body: dict[str, Any], events: list[tuple[str, str, str]], in_handler: bool = True) -> None:
    """Events go through kopf's poster inside its handlers, and straight to the API from the resync loop."""
    target: Any = body  # kopf posts Events for any object with apiVersion, kind and metadata
    for type_, reason, message in events:
        if in_handler:
            kopf.event(target, type=type_, reason=reason, message=message)
        else:
            try:
                kube.post_event(body, type_, reason, message, _INSTANCE)
            except Exception as exc:  # an Event is a notice; losing one must not fail the pass
                log.warning("Could not post Event %s for %s/%s: %s", reason, body["metadata"].get("namespace"),
                            body["metadata"].get("name"), exc)


Snapshot = Callable[[], tuple[dict[str, Any] | None, dict[str, Any] | None, list[dict[str, Any]]]]


def _pass(snapshot: Snapshot, periodic: bool = False, resumed: bool = False, first_sight: bool = False) -> None:
    """One reconcile pass, in a worker thread: it writes the status itself when what a user sees changed.

    Passes over one SyncJob run one at a time (the resync loop and the event handler may both want one), and
    `snapshot` gives the SyncJob, its CronJob and Jobs as last seen only once the pass holds its turn.
    """
    body, cronjob, jobs = snapshot()
    if body is None:
        return
    meta = body["metadata"]
    with reconciler().lock_for((str(meta["namespace"]), str(meta["name"]))):
        body, cronjob, jobs = snapshot()
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        outcome = reconciler().reconcile(body, cronjob, jobs, periodic=periodic, resumed=resumed, runs=first_sight)
        if status_changed(dict(body.get("status") or {}), outcome.status):
            kube.patch_syncjob_status(meta["namespace"], meta["name"], outcome.status)
    _post_events(body, outcome.events, in_handler=not periodic)


@kopf.on.event(*SYNCJOB)
async def reconcile_syncjob(event: kopf.RawEvent, body: kopf.Body, **kwargs: Any) -> None:
    """Every SyncJob event runs one level-based pass. The pass compares what is with what should be (the CronJob
    digest, tokens against status.lastHandled*), so it needs no diff base and writes no bookkeeping annotation.
    The status write it causes comes back as an event that `settled` stops in the event loop."""
    raw = dict(body)
    raw["metadata"] = meta = {**raw["metadata"], OWNERS: builders.annotation_owners(raw["metadata"]),
                              SPEC_OWNERS: builders.spec_owners(raw["metadata"])}
    if event["type"] == "DELETED" or meta.get("deletionTimestamp"):
        # in a thread: a spec edit still unaudited gets one last write, which may wait on MongoDB
        await asyncio.to_thread(reconciler().forget, meta["namespace"], meta["name"], meta.get("uid"))
        return  # the garbage collector removes the CronJob and its Jobs
    key = (str(meta["namespace"]), str(meta["name"]))
    cronjob = _one(kwargs["cronjob_index"], key)
    if event["type"] == "MODIFIED" and reconciler().settled(raw, cronjob, dt.datetime.now(dt.UTC)):
        return
    resumed = event["type"] is None  # the initial listing after an operator (re)start
    # Run history is read from MongoDB on first sight, except for a SyncJob just created: it has none of its own.
    first_sight = resumed or (event["type"] == "ADDED" and bool(raw.get("status")))
    jobs = _all(kwargs["job_index"], key)
    await asyncio.to_thread(_pass, lambda: (raw, cronjob, jobs), resumed=resumed, first_sight=first_sight)


async def _resync_forever(syncjobs: kopf.Index[Any, Any], cronjobs: kopf.Index[Any, Any],
                          jobs: kopf.Index[Any, Any], period: float) -> None:
    """Every period, one pass over each SyncJob (drift, missed runs, overdue cancels), spread evenly over the
    period, a few at a time, so a thousand SyncJobs cost a steady trickle rather than a burst and one slow pass
    does not hold up the others."""
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(4)

    async def one(key: tuple[str, str]) -> None:
        try:
            def snapshot() -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[dict[str, Any]]]:
                return _one(syncjobs, key), _one(cronjobs, key), _all(jobs, key)
            await asyncio.to_thread(_pass, snapshot, periodic=True)
        except Exception:  # one SyncJob's trouble must neither stop the loop nor the others' resync
            log.exception("Resync of SyncJob %s/%s failed; the next period retries", *key)
        finally:
            slots.release()

    await asyncio.sleep(period)
    while True:
        started = loop.time()
        keys = list(syncjobs)
        passes = set()
        for i, key in enumerate(keys):
            await asyncio.sleep(max(0.0, started + period * i / len(keys) - loop.time()))
            await slots.acquire()
            passes.add(loop.create_task(one(key)))
        if passes:
            await asyncio.wait(passes)
        # as the index is now (a SyncJob created during the cycle stays); in a thread, as forget above
        await asyncio.to_thread(reconciler().prune, set(syncjobs))
        try:
            await asyncio.to_thread(reconciler().close_runs_of_deleted_syncjobs, set(syncjobs))
        except Exception:  # MongoDB down, say: the next cycle tries again
            log.exception("Could not close the records of deleted SyncJobs; the next period retries")
        if loop.time() - started > period * 1.5:
            log.warning("A resync of %d SyncJobs took %.0f s, more than RESYNC_SECONDS=%.0f", len(keys),
                        loop.time() - started, period)
        await asyncio.sleep(max(0.0, started + period - loop.time()))


def validate_syncjob(body: kopf.Body, **kwargs: Any) -> None:
    """Refuse a bad cron expression or time zone at `kubectl apply` time; the Ready condition still reports them
    for SyncJobs that got in while the webhook was away. Registered at start-up only when WEBHOOK_PORT is set
    (kopf refuses to run admission handlers without a server)."""
    old = kwargs.get("old")  # the object before an UPDATE
    problems = builders.admission_problems(dict(body.get("spec") or {}),
                                           dict(old.get("spec") or {}) if old is not None else None)
    if problems:
        raise kopf.AdmissionError("; ".join(problems), code=422)


@kopf.index(*SYNCJOB)
async def syncjob_index(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> IndexEntry:
    raw = dict(body)  # the plain dicts under kopf's views: reading through the views costs more than the copy
    metadata = {k: v for k, v in raw["metadata"].items() if k != "managedFields"}  # the bulk of an object
    metadata[OWNERS] = builders.annotation_owners(raw["metadata"])  # all a pass needs of managedFields
    metadata[SPEC_OWNERS] = builders.spec_owners(raw["metadata"])
    return {(namespace, name): {"metadata": metadata, "spec": raw.get("spec") or {}, "status": raw.get("status") or {},
                                "apiVersion": raw.get("apiVersion"), "kind": raw.get("kind")}}


# The CronJob and Job indexes keep only what a pass reads, to keep memory flat with thousands of SyncJobs.
@kopf.index("batch", "v1", "cronjobs", labels=OWNED)
async def cronjob_index(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> IndexEntry:
    raw = dict(body)
    return {(namespace, name): builders.cronjob_summary(raw["metadata"], raw.get("status") or {})}


@kopf.index("batch", "v1", "jobs", labels=OWNED)
async def job_index(namespace: str | None, name: str, labels: Mapping[str, str], body: kopf.Body,
                    **_: Any) -> IndexEntry:
    return {(namespace, labels[names.LABEL_SYNCJOB]): job_summary(dict(body))}


def job_summary(job: dict[str, Any]) -> dict[str, Any]:
    """What passes read of a Job: identity, trigger, active pods and the conditions a verdict comes from."""
    meta, status = job.get("metadata") or {}, job.get("status") or {}
    return {
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace"),
                     "deletionTimestamp": meta.get("deletionTimestamp"),
                     "creationTimestamp": meta.get("creationTimestamp"),
                     "labels": {names.LABEL_SYNCJOB: (meta.get("labels") or {}).get(names.LABEL_SYNCJOB),
                                names.LABEL_TRIGGER: (meta.get("labels") or {}).get(names.LABEL_TRIGGER)},
                     "annotations": {k: v for k, v in (meta.get("annotations") or {}).items()
                                     if k in (names.ANNOTATION_FORCE, names.ANNOTATION_SCHEDULED_TIME)}},
        "spec": {"suspend": bool((job.get("spec") or {}).get("suspend"))},
        "status": {"active": status.get("active") or 0, "failed": status.get("failed") or 0,
                   "conditions": [{"type": c.get("type"), "status": c.get("status"), "reason": c.get("reason"),
                                   "message": c.get("message")} for c in status.get("conditions") or []]},
    }


def _one(index: kopf.Index[Any, Any], key: tuple[str, str]) -> dict[str, Any] | None:
    with contextlib.suppress(KeyError, StopIteration):
        return dict(next(iter(index[key])))
    return None


def _all(index: kopf.Index[Any, Any], key: tuple[str, str]) -> list[dict[str, Any]]:
    return [dict(v) for v in index.get(key, [])]


@kopf.on.event("batch", "v1", "cronjobs", labels=OWNED)
async def cronjob_changed(event: kopf.RawEvent, body: kopf.Body, namespace: str | None,
                          labels: Mapping[str, str], **kwargs: Any) -> None:
    """A hand edit or deletion of an owned CronJob is undone by reconciling its SyncJob."""
    parent = _one(kwargs["syncjob_index"], (str(namespace), labels[names.LABEL_SYNCJOB]))
    if parent is None or parent["metadata"].get("deletionTimestamp"):
        return
    if parent["metadata"].get("uid") not in {o.get("uid") for o in body.metadata.get("ownerReferences") or []}:
        return  # a CronJob left over from an earlier SyncJob of the same name: the garbage collector takes it
    deleted = event["type"] == "DELETED"
    if deleted:  # before any pass can take the gone CronJob for one not yet in the watch cache
        reconciler().forget_cronjob(str(namespace), parent["metadata"]["name"])
    raw = dict(body)
    live = None if deleted else builders.cronjob_summary(raw["metadata"], raw.get("status") or {})
    memo = reconciler().applied.get((str(namespace), parent["metadata"]["name"]))
    if (live is not None and memo is not None and memo.cronjob_generation == body.metadata.get("generation")
            and (memo.syncjob_generation, memo.syncjob_uid) == (parent["metadata"].get("generation"),
                                                                parent["metadata"].get("uid"))):
        return  # the CronJob is as we applied it: our own write coming back, or a status change
    await asyncio.to_thread(_repair_cronjob, parent, live, deleted)


def _repair_cronjob(parent: dict[str, Any], live: dict[str, Any] | None, deleted: bool) -> None:
    sj = parse_syncjob(parent)[0]
    if sj is None or builders.validate(sj.spec):
        return  # an invalid spec leaves the existing CronJob as it was
    if deleted:
        log.info("Recreating CronJob %s/%s, deleted by hand", sj.namespace, sj.name)
    outcome = Outcome(status={})
    try:
        reconciler().ensure_cronjob(sj, outcome, live, trust_memo=not deleted)
    except InvalidSpecError:
        return
    _post_events(parent, outcome.events)


@kopf.on.event("batch", "v1", "jobs", labels=OWNED)
def job_changed(event: kopf.RawEvent, body: kopf.Body, name: str, namespace: str | None,
                labels: Mapping[str, str], **kwargs: Any) -> None:
    """Execution truth: every Job has a record; Kubernetes' verdict closes a record the pod could not.

    Handled once per event; if MongoDB is down now, the periodic passes close the record once it is back.
    """
    cfg = get_settings()
    db = records.database(cfg.mongo_uri)
    job = dict(body)
    namespace = str(namespace)
    syncjob_index, cronjob_index, job_index = kwargs["syncjob_index"], kwargs["cronjob_index"], kwargs["job_index"]
    syncjob_name = labels[names.LABEL_SYNCJOB]
    key = (namespace, syncjob_name)
    parent = _one(syncjob_index, key)
    rid = run_id(namespace, name)
    others = [j for j in _all(job_index, key) if j["metadata"]["name"] != name]
    policy = (parent or {}).get("spec", {}).get("concurrencyPolicy")
    closed = False
    if event["type"] == "DELETED":
        replaced = _replaced(job, others, policy)
        scheduled = ((job.get("metadata") or {}).get("labels") or {}).get(names.LABEL_TRIGGER) == "schedule"
        if replaced or policy != ConcurrencyPolicy.REPLACE.value or not scheduled:
            closed = records.close_deleted_job(db, rid, replaced=replaced)
        # else: the CronJob controller may be about to create the Job that replaced it; the next periodic pass
        # tells a replacement from a deletion by hand once it can see the newer Job
    else:
        if event["type"] in ("ADDED", None):  # a new Job, or every Job after a restart; not each status change
            seen = records.record_job_seen(db, job)
            if (event["type"] == "ADDED" and seen is not None and seen.get("status") == "running"
                    and policy == ConcurrencyPolicy.REPLACE.value and parent is not None):
                _replace_older(parent, job, others)
        if _finished(job):
            verdict_needs_pods = any(c.get("type") == "Failed" and c.get("status") == "True"
                                     for c in (job.get("status") or {}).get("conditions") or [])
            pods = kube.list_job_pods(namespace, name) if verdict_needs_pods else []
            closed = records.close_from_job(db, job, pods)
    if parent is None:
        return
    if not (closed or _finished(job) or event["type"] in ("ADDED", "DELETED", None)
            or (job.get("metadata") or {}).get("deletionTimestamp")):
        return  # nothing a user sees in the SyncJob's status can have changed
    if closed:
        record = db["scheduler_executions"].find_one({"_id": rid}) or {}
        status = record.get("status", "failed")
        message = record.get("error_message") or record.get("reason") or ""
        target: Any = parent
        kopf.event(target, type="Warning" if status == "failed" else "Normal",
                   reason="RunFailed" if status == "failed" else "RunCancelled",
                   message=f"Run {rid} {status}: {message}")
    sj = parse_syncjob(parent)[0]
    if sj is None:
        return
    jobs = list(others)
    if event["type"] != "DELETED":
        jobs.append(job_summary(job))  # this event is newer than what the index may hold
    update = execution_status(db, sj, jobs, _one(cronjob_index, key))
    current = (dict(next(iter(syncjob_index[key]), {})).get("status") or {}) if key in syncjob_index else {}
    if status_changed(current, update):
        kube.patch_syncjob_status(namespace, syncjob_name, update)


def _replaced(job: dict[str, Any], others: list[dict[str, Any]], policy: str | None) -> bool:
    """Under Replace the CronJob controller deletes a running scheduled Job to start the next: a deleted scheduled
    Job with a newer Job beside it was replaced (one deleted by hand has none)."""
    meta = job.get("metadata") or {}
    if policy != ConcurrencyPolicy.REPLACE.value or (meta.get("labels") or {}).get(names.LABEL_TRIGGER) != "schedule":
        return False
    created = str(meta.get("creationTimestamp") or "")
    return any(str(o["metadata"].get("creationTimestamp") or "") > created for o in others)


def _replace_older(parent: dict[str, Any], job: dict[str, Any], others: list[dict[str, Any]]) -> None:
    """A new run under Replace cancels the runs it replaces; the CronJob controller does this only among its own
    scheduled Jobs, so the manual ones (and a tick that lands on a manual run) are cancelled here."""
    created = str(job["metadata"].get("creationTimestamp") or "")
    older = [o["metadata"]["name"] for o in others
             if not o["metadata"].get("deletionTimestamp") and not _finished(o)
             and str(o["metadata"].get("creationTimestamp") or "") < created]
    if older:
        outcome = Outcome(status={})
        sj = parse_syncjob(parent)[0]
        if sj is not None:
            reconciler().replace(sj, older, None, outcome)
            _post_events(parent, outcome.events)


def _finished(job: dict[str, Any]) -> bool:
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])
