"""One reconcile pass of a SyncJob: CronJob, request tokens, missed runs and status, level-based.

Called by the kopf handlers on every change and periodically; each step compares what is with what should be and
acts only on the difference, so running it twice, or after a restart, does nothing new.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from syncjob import names
from syncjob.model import ActiveRun, ConditionStatus, ExecutionStatus, ExecutionSummary, SyncJob, SyncJobStatus
from syncjob_operator import builders, kube, records
from syncjob_operator.settings import OperatorSettings

log = logging.getLogger("syncjob_operator")


@dataclass
class Outcome:
    """What a pass did, for the handler to turn into Events."""

    status: dict[str, Any]
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def parse_syncjob(body: dict[str, Any]) -> tuple[SyncJob | None, str | None]:
    try:
        return SyncJob.from_k8s(body), None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return None, f"{where}: {first['msg']}"


def _status_of(body: dict[str, Any]) -> SyncJobStatus:
    try:
        return SyncJobStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return SyncJobStatus()


def invalid(body: dict[str, Any], message: str, now: dt.datetime) -> Outcome:
    status = _status_of(body)
    gen = body["metadata"].get("generation")
    cond = builders.ready_condition(status.condition(names.CONDITION_READY), ConditionStatus.FALSE,
                                   names.REASON_INVALID_SPEC, message, gen, now)
    events = []
    previous = status.condition(names.CONDITION_READY)
    if previous is None or previous.message != message or previous.observed_generation != gen:
        events.append(("Warning", names.REASON_INVALID_SPEC, message))
    return Outcome(
        status={"observedGeneration": gen, "conditions": [cond.to_k8s()], "nextScheduleTime": None},
        events=events,
    )


def _job_finished(job: dict[str, Any]) -> bool:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return True
    return False


def active_runs(jobs: list[dict[str, Any]]) -> list[ActiveRun]:
    runs = [ActiveRun(run_id=j["metadata"]["name"], job_name=j["metadata"]["name"])
            for j in jobs if not _job_finished(j) and not j["metadata"].get("deletionTimestamp")]
    return sorted(runs, key=lambda r: r.run_id)


def execution_status(db: Any, sj: SyncJob, jobs: list[dict[str, Any]],
                     cronjob: dict[str, Any] | None) -> dict[str, Any]:
    """The status fields that come from runs: active, last schedule, last execution and its times."""
    last = records.last_finished(db, sj.name, sj.namespace)
    summary = success = failure = None
    if last is not None:
        summary = ExecutionSummary(
            run_id=str(last["_id"]), status=ExecutionStatus(last["status"]), trigger=last.get("trigger"),
            started_at=last.get("started_at"), finished_at=last.get("finished_at"),
            duration_ms=last.get("execution_time"), source=last.get("source_used"),
            message=(last.get("error_message") or last.get("reason") or None),
        ).to_k8s()
        success = records.last_time_with_status(db, sj.name, sj.namespace, ExecutionStatus.SUCCESS)
        failure = records.last_time_with_status(db, sj.name, sj.namespace, ExecutionStatus.FAILED)
    last_schedule = ((cronjob or {}).get("status") or {}).get("lastScheduleTime")
    out: dict[str, Any] = {
        "active": [a.to_k8s() for a in active_runs(jobs)],
        "lastExecution": summary,
        "lastScheduleTime": last_schedule,
        "lastSuccessfulTime": SyncJobStatus(last_successful_time=success).to_k8s().get("lastSuccessfulTime"),
        "lastFailureTime": SyncJobStatus(last_failure_time=failure).to_k8s().get("lastFailureTime"),
    }
    return out


@dataclass
class Applied:
    """What the operator last applied to one CronJob, and what that produced."""

    digest: str  # of the CronJob we built
    cronjob: dict[str, Any]  # name, uid and generation of the CronJob the API server returned
    syncjob_generation: int | None  # the SyncJob generation it was built from
    syncjob_uid: str | None  # and that SyncJob's uid: a SyncJob deleted and made again starts over

    @property
    def cronjob_generation(self) -> int | None:
        generation: int | None = self.cronjob["metadata"].get("generation")
        return generation


class Reconciler:
    def __init__(self, settings: OperatorSettings) -> None:
        self.settings = settings
        self.scan_from: dict[str, tuple[int | None, dt.datetime]] = {}  # uid -> (generation, missed-run scan start)
        self.applied: dict[tuple[str, str], Applied] = {}  # (namespace, name) -> what we applied to its CronJob
        # (namespace, name) -> tokens acted on, by annotation: status may lag behind in a watch cache
        self.handled: dict[tuple[str, str], dict[str, str]] = {}
        self._locks: dict[tuple[str, str], threading.RLock] = {}
        self._locks_lock = threading.Lock()

    @property
    def db(self) -> Any:
        return records.database(self.settings.mongo_uri)

    def forget(self, namespace: str, name: str, uid: str | None) -> None:
        """Drop what is remembered of a deleted SyncJob."""
        self.applied.pop((namespace, name), None)
        self.handled.pop((namespace, name), None)
        with self._locks_lock:
            self._locks.pop((namespace, name), None)
        self.scan_from.pop(uid or name, None)

    def forget_cronjob(self, namespace: str, name: str) -> None:
        """The CronJob is gone: what we applied to it no longer stands for anything."""
        self.applied.pop((namespace, name), None)

    def prune(self, live: set[tuple[str, str]]) -> None:
        """Drop what is remembered of SyncJobs no longer in the cluster (a pass may write after `forget`)."""
        for key in [k for k in self.applied if k not in live]:
            self.applied.pop(key, None)
        for key in [k for k in self.handled if k not in live]:
            self.handled.pop(key, None)
        with self._locks_lock:
            for key in [k for k in self._locks if k not in live]:
                del self._locks[key]

    # -- the CronJob ------------------------------------------------------------------------------------------

    def ensure_cronjob(self, sj: SyncJob, outcome: Outcome, actual: dict[str, Any] | None,
                       trust_memo: bool = True) -> dict[str, Any] | None:
        """Create or repair the CronJob; `actual` is the live one (from the operator's watch cache) or None.

        The API server defaults fields we leave out, so the live spec is not compared with ours field by field.
        Instead we remember the digest of what we applied and the generation it produced: any edit of the
        CronJob's spec by someone else bumps its generation, and any change of ours changes the digest; either
        way the next pass applies again (server-side apply, forced: our fields are taken back).

        A CronJob we have just applied may not be in the watch cache yet; with `trust_memo` its absence is taken
        for that lag. A deletion is acted on by the CronJob's own DELETED event, which passes `trust_memo=False`,
        and so do periodic passes, in case a deletion was never seen.
        """
        key = (sj.namespace, sj.name)
        with self.lock_for(key):  # one apply at a time per CronJob; a second caller then finds the memo
            return self._ensure_cronjob(key, sj, outcome, actual, trust_memo)

    def lock_for(self, key: tuple[str, str]) -> threading.RLock:
        """Passes over one SyncJob, and applies of its CronJob, run one at a time."""
        with self._locks_lock:
            return self._locks.setdefault(key, threading.RLock())

    def _ensure_cronjob(self, key: tuple[str, str], sj: SyncJob, outcome: Outcome, actual: dict[str, Any] | None,
                        trust_memo: bool) -> dict[str, Any] | None:
        live_generation = (actual or {}).get("metadata", {}).get("generation")
        memo = self.applied.get(key)
        if memo and memo.syncjob_uid != sj.metadata.uid:
            memo = None
        if memo and (memo.syncjob_generation or 0) > (sj.metadata.generation or 0):
            return actual if actual is not None else memo.cronjob  # a stale view: a newer spec is applied already
        if memo and memo.syncjob_generation == sj.metadata.generation:
            if actual is not None and memo.cronjob_generation == live_generation:
                return actual  # neither the SyncJob's spec nor the CronJob changed since we applied it
            if actual is None and trust_memo:
                return memo.cronjob
            if (actual is not None and actual["metadata"].get("uid") == memo.cronjob["metadata"].get("uid")
                    and (live_generation or 0) < (memo.cronjob_generation or 0)):
                return actual  # the watch has not shown our last apply yet (generations only grow)
        desired = builders.build_cronjob(sj, self.settings)
        digest = builders.digest(desired)
        if actual is not None and memo and (memo.digest, memo.cronjob_generation) == (digest, live_generation):
            self.applied[key] = Applied(digest, memo.cronjob, sj.metadata.generation, sj.metadata.uid)
            return actual
        if (actual is not None and memo is None and actual.get("appliedDigest") == digest
                and live_generation is not None and live_generation == sj.status.cron_job_generation):
            # Applied by us before a restart (same digest), and its generation is still the one that apply
            # produced, so nobody has changed its spec since (an edit that only removes fields included).
            self.applied[key] = Applied(digest, {"metadata": dict(actual["metadata"])}, sj.metadata.generation,
                                        sj.metadata.uid)
            return actual
        desired["metadata"]["annotations"] = {names.ANNOTATION_APPLIED_DIGEST: digest}
        try:
            applied, created = kube.apply_cronjob(desired)
        except ApiException as exc:
            if exc.status in (400, 422):  # e.g. a schedule the CronJob controller's parser refuses
                raise InvalidSpecError(f"the API server refused the CronJob: {_api_message(exc)}") from exc
            raise
        meta = applied["metadata"]
        self.applied[key] = Applied(digest, {"metadata": {"name": meta["name"], "uid": meta.get("uid"),
                                                          "generation": meta.get("generation")}},
                                    sj.metadata.generation, sj.metadata.uid)
        before = live_generation if actual is not None else memo.cronjob_generation if memo else None
        verb = "Created" if created else "Updated" if before is not None and meta.get("generation") != before else ""
        if verb:
            log.info("%s CronJob %s/%s", verb, sj.namespace, sj.name)
            outcome.events.append(("Normal", f"CronJob{verb}", f"{verb} CronJob {sj.name}"))
        return applied

    def settled(self, body: dict[str, Any], cronjob: dict[str, Any] | None, now: dt.datetime) -> bool:
        """Whether a pass over this SyncJob would change nothing, judged from the raw body without parsing it.

        Cheap enough for the event loop: the events our own status writes cause come back here and stop.
        """
        meta, status = body.get("metadata") or {}, body.get("status") or {}
        generation = meta.get("generation")
        if meta.get("deletionTimestamp") or status.get("observedGeneration") != generation:
            return False
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == names.CONDITION_READY), None)
        if not ready or ready.get("status") != "True" or ready.get("observedGeneration") != generation:
            return False
        annotations = meta.get("annotations") or {}
        for token, handled in ((names.REQUESTED_AT, "lastHandledRequestedAt"),
                               (names.CANCEL_AT, "lastHandledCancelAt")):
            if annotations.get(token) and annotations[token] != status.get(handled):
                return False
        memo = self.applied.get((str(meta.get("namespace")), str(meta.get("name"))))
        if memo is None or (memo.syncjob_generation, memo.syncjob_uid) != (generation, meta.get("uid")):
            return False
        if cronjob is not None and cronjob["metadata"].get("generation") != memo.cronjob_generation:
            return False
        if (body.get("spec") or {}).get("paused"):
            return True
        next_time = status.get("nextScheduleTime")
        return bool(next_time) and str(next_time) > now.strftime("%Y-%m-%dT%H:%M:%SZ")

    # -- tokens -----------------------------------------------------------------------------------------------

    def handle_requested(self, sj: SyncJob, cronjob: dict[str, Any] | None, outcome: Outcome) -> None:
        ann = sj.metadata.annotations
        token = ann.get(names.REQUESTED_AT)
        handled = self.handled.setdefault((sj.namespace, sj.name), {})
        if not token or token == sj.status.last_handled_requested_at:
            return
        force = ann.get(names.FORCE_AT) == token
        if token == handled.get(names.REQUESTED_AT):  # acted on; the status saying so is not written or seen yet
            outcome.status["lastHandledRequestedAt"] = token
            if force:
                outcome.status["lastHandledForceAt"] = token
            return
        job = builders.build_manual_job(sj, self.settings, token, force, cronjob, _now())
        created = kube.create_job(job)
        run_id = job["metadata"]["name"]
        records.record_job_seen(self.db, job)
        user = ann.get(names.REQUESTED_BY)
        if created:
            log.info("Created Job %s/%s for request %s%s", sj.namespace, run_id, token, " (forced)" if force else "")
            if user is None:  # the API audits the requests it makes; kubectl users are audited here
                records.audit(self.db, job_id=sj.name, namespace=sj.namespace, action="trigger", status="success",
                              details={"token": token, "force": force, "run_id": run_id})
            outcome.events.append(("Normal", "RunForced" if force else "RunTriggered",
                                   f"Started {'forced ' if force else ''}run {run_id} for request {token}"))
        outcome.status["lastHandledRequestedAt"] = token
        handled[names.REQUESTED_AT] = token
        if force:
            outcome.status["lastHandledForceAt"] = token

    def handle_cancel(self, sj: SyncJob, jobs: list[dict[str, Any]], outcome: Outcome) -> None:
        ann = sj.metadata.annotations
        token = ann.get(names.CANCEL_AT)
        handled = self.handled.setdefault((sj.namespace, sj.name), {})
        if not token or token == sj.status.last_handled_cancel_at:
            return
        if token == handled.get(names.CANCEL_AT):  # acted on; the status saying so is not written or seen yet
            outcome.status["lastHandledCancelAt"] = token
            return
        targets = [r.run_id for r in active_runs(jobs)]
        scoped = ann.get(names.CANCEL_RUNS, "")
        scope_token, _, scope_runs = scoped.partition("=")
        if scoped and scope_token == token:
            wanted = {r for r in scope_runs.split(",") if r}
            targets = [t for t in targets if t in wanted]
        asked = records.request_cancel(self.db, targets, ann.get(names.REQUESTED_BY))
        if self.settings.cancel_grace_seconds == 0:
            for run_id in asked:
                kube.delete_job(sj.namespace, run_id)
        if ann.get(names.REQUESTED_BY) is None:
            records.audit(self.db, job_id=sj.name, namespace=sj.namespace, action="cancel", status="success",
                          details={"token": token, "runs": asked})
        message = f"Requested cancellation of {', '.join(asked)}" if asked else "No active run to cancel"
        log.info("%s for SyncJob %s/%s (token %s)", message, sj.namespace, sj.name, token)
        outcome.events.append(("Normal", "RunCancelled" if asked else "NothingToCancel", message))
        outcome.status["lastHandledCancelAt"] = token
        handled[names.CANCEL_AT] = token

    def delete_overdue_cancels(self, sj: SyncJob, jobs: list[dict[str, Any]]) -> None:
        running = [r.run_id for r in active_runs(jobs)]
        for run_id in records.cancel_overdue(self.db, running, self.settings.cancel_grace_seconds) if running else []:
            log.info("Deleted Job %s/%s: its pod did not stop within the cancel grace period", sj.namespace, run_id)
            kube.delete_job(sj.namespace, run_id)

    # -- runs that never happened -----------------------------------------------------------------------------

    def record_missed(self, sj: SyncJob, outcome: Outcome, now: dt.datetime) -> None:
        uid = sj.metadata.uid or sj.name
        gen = sj.metadata.generation
        remembered = self.scan_from.get(uid)
        if sj.spec.paused:
            self.scan_from[uid] = (gen, now)
            return
        if remembered is None:
            start = max(now - dt.timedelta(seconds=self.settings.missed_lookback_seconds),
                        sj.metadata.creation_timestamp or now)
        elif remembered[0] != gen:  # a new schedule: older times were never due under it
            start = now
        else:
            start = remembered[1]
        deadline = dt.timedelta(seconds=(sj.spec.starting_deadline_seconds or 300) + 15)
        end = now - deadline
        if end <= start:
            self.scan_from[uid] = (gen, start)
            return
        due = builders.schedule_times(sj.spec, start, end)[-100:]
        ids = {builders.scheduled_run_id(sj.name, t): t for t in due}
        seen = records.existing_ids(self.db, list(ids))
        for run_id, t in ids.items():
            if run_id in seen:
                continue
            overlapping = [r for r in records.runs_overlapping(self.db, sj.name, sj.namespace, t) if r != run_id]
            if overlapping and sj.spec.concurrency_policy.value == "Forbid":
                status, reason = ExecutionStatus.SKIPPED, (
                    f"ConcurrencyPolicyForbid: run {overlapping[0]} was still running at the scheduled time")
            else:
                status, reason = ExecutionStatus.MISSED, (
                    f"MissedStartingDeadline: no Job started within {sj.spec.starting_deadline_seconds or 300}s "
                    "of the scheduled time (the CronJob controller or the cluster was down or overloaded)")
            if records.record_not_run(self.db, run_id=run_id, job_id=sj.name, namespace=sj.namespace,
                                      scheduled=t, status=status, reason=reason):
                log.info("Recorded %s run %s/%s scheduled at %s", status.value, sj.namespace, run_id, t.isoformat())
                outcome.events.append(("Warning", "RunSkipped" if status is ExecutionStatus.SKIPPED else "RunMissed",
                                       f"Run scheduled at {t.isoformat()} {status.value}: {reason}"))
        self.scan_from[uid] = (gen, end)

    def close_orphans(self, sj: SyncJob, jobs: list[dict[str, Any]], now: dt.datetime) -> None:
        """Records still running whose Job is gone (deleted while the operator was away) are closed.

        Only records older than a few seconds are considered, so a run whose Job the watch has not shown yet is
        never taken for an orphan.
        """
        live = {j["metadata"]["name"] for j in jobs}
        running = self.db["scheduler_executions"].find(
            {"job_id": sj.name, "namespace": sj.namespace, "status": ExecutionStatus.RUNNING.value,
             "timestamp": {"$lt": now - dt.timedelta(seconds=10)}}, {"_id": 1})
        for doc in running:
            if doc["_id"] not in live and records.close_deleted_job(self.db, str(doc["_id"])):
                log.info("Closed record %s/%s: its Job is gone", sj.namespace, doc["_id"])

    # -- the whole pass ---------------------------------------------------------------------------------------

    def reconcile(self, body: dict[str, Any], cronjob: dict[str, Any] | None, jobs: list[dict[str, Any]],
                  periodic: bool = False, resumed: bool = False, runs: bool = False) -> Outcome:
        """One pass. `cronjob` and `jobs` are the live objects as the operator's watches last saw them.

        Passes are kept cheap (they run on every event and for every SyncJob every resync period): the status
        that comes from runs (last execution, last success and failure) is refreshed by Job events, and read from
        MongoDB here only when asked (`runs`: the first sight of a SyncJob). Orphaned records can only appear while
        the operator is away, so they are looked for when it resumes.
        """
        now = _now()
        sj, parse_error = parse_syncjob(body)
        if sj is None:
            return invalid(body, parse_error or "invalid spec", now)
        problems = builders.validate(sj.spec)
        if problems:
            return invalid(body, "; ".join(str(p) for p in problems), now)
        outcome = Outcome(status={})
        try:
            cronjob = self.ensure_cronjob(sj, outcome, cronjob, trust_memo=not periodic)
        except InvalidSpecError as exc:
            return invalid(body, str(exc), now)
        self.handle_requested(sj, cronjob, outcome)
        self.handle_cancel(sj, jobs, outcome)
        if periodic:
            self.delete_overdue_cancels(sj, jobs)
            self.record_missed(sj, outcome, now)
        if resumed:
            self.close_orphans(sj, jobs, now)
        paused = sj.spec.paused
        cond = builders.ready_condition(
            sj.status.condition(names.CONDITION_READY), ConditionStatus.TRUE,
            names.REASON_PAUSED if paused else names.REASON_RECONCILED,
            f"CronJob {sj.name} is suspended: scheduled runs are paused" if paused
            else f"CronJob {sj.name} schedules {sj.spec.schedule!r} in {sj.spec.time_zone}",
            sj.metadata.generation, now)
        outcome.status.update({
            "observedGeneration": sj.metadata.generation,
            "conditions": [cond.to_k8s()],
            "cronJobName": sj.name,
            "cronJobGeneration": applied.cronjob_generation if (applied := self.applied.get(
                (sj.namespace, sj.name))) else None,
            "nextScheduleTime": None if paused else builders.next_schedule_time(sj.spec, now).strftime(
                "%Y-%m-%dT%H:%M:%SZ"),
            "active": [a.to_k8s() for a in active_runs(jobs)],
        })
        if runs:
            outcome.status.update(execution_status(self.db, sj, jobs, cronjob))
        return outcome


class InvalidSpecError(Exception):
    """The spec passed our checks but the API server refused what we built from it."""


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)


def status_changed(current: dict[str, Any], update: dict[str, Any]) -> bool:
    """Compare ignoring lastTransitionTime churn-free fields: patch only when something a user sees differs."""
    for key, value in update.items():
        if current.get(key) != value and not (value is None and key not in current):
            return True
    return False
