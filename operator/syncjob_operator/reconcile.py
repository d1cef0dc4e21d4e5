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
from syncjob.model import (
    ActiveRun,
    ConcurrencyPolicy,
    ConditionStatus,
    ExecutionStatus,
    ExecutionSummary,
    ObjectMeta,
    SyncJob,
    SyncJobSpec,
    SyncJobStatus,
)
from syncjob.runs import manual_job_name, run_id, scheduled_job_name
from syncjob_operator import builders, kube, records, schedule_scan
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


def _shell(body: dict[str, Any]) -> SyncJob:
    """A SyncJob whose spec does not parse, as far as its request tokens need: name, annotations, status."""
    meta = body.get("metadata") or {}
    return SyncJob.model_construct(
        metadata=ObjectMeta.model_construct(**{**meta, "annotations": dict(meta.get("annotations") or {})}),
        spec=SyncJobSpec.model_construct(concurrency_policy=ConcurrencyPolicy.ALLOW),
        status=_status_of(body))


def _job_finished(job: dict[str, Any]) -> bool:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return True
    return False


def _job_failed(job: dict[str, Any]) -> bool:
    return any(c.get("type") == "Failed" and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


def active_runs(jobs: list[dict[str, Any]]) -> list[ActiveRun]:
    runs = [ActiveRun(run_id=run_id(str(j["metadata"].get("namespace")), j["metadata"]["name"]),
                      job_name=j["metadata"]["name"])
            for j in jobs if not _job_finished(j) and not j["metadata"].get("deletionTimestamp")]
    return sorted(runs, key=lambda r: r.run_id)


def execution_status(db: Any, sj: SyncJob, jobs: list[dict[str, Any]],
                     cronjob: dict[str, Any] | None) -> dict[str, Any]:
    """The status fields that come from runs: active, last schedule, last execution and its times."""
    last = records.last_finished(db, sj.name, sj.namespace)
    summary = success = failure = None
    if last is not None:
        duration = last.get("execution_time")
        summary = ExecutionSummary(
            run_id=str(last["_id"]), status=ExecutionStatus(last["status"]), trigger=last.get("trigger"),
            started_at=last.get("started_at") or last.get("scheduled_time"), finished_at=last.get("finished_at"),
            duration_seconds=float(duration) if isinstance(duration, int | float) else None,
            source=last.get("source_used"),
            message=(last.get("error_message") or last.get("reason") or None),
        ).model_dump(mode="json", by_alias=True)  # nulls spelled out: a merge patch keeps what it is not told to drop
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


MAX_UNAUDITED_EDITS = 100  # per SyncJob, kept while MongoDB is down; beyond, the oldest is dropped (and logged)


@dataclass(frozen=True)
class SpecEdit:
    """A spec edit whose audit entry is still to be written."""

    namespace: str
    name: str
    uid: str | None
    generation: int | None
    user: str
    changes: dict[str, Any]
    at: dt.datetime  # when the operator applied it: the entry's time


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
        self.applied: dict[tuple[str, str], Applied] = {}  # (namespace, name) -> what we applied to its CronJob
        # Spec edits applied while their audit entries could not be written (MongoDB down), retried by later passes
        # (in memory only: an operator restart before MongoDB is back loses them; docs/mongodb.md).
        self.unaudited: dict[tuple[str, str], list[SpecEdit]] = {}
        # (namespace, name) -> tokens acted on, by annotation: status may lag behind in a watch cache
        self.handled: dict[tuple[str, str], dict[str, str]] = {}
        self._locks: dict[tuple[str, str], threading.RLock] = {}
        self._locks_lock = threading.Lock()

    @property
    def db(self) -> Any:
        return records.database(self.settings.mongo_uri)

    def forget(self, namespace: str, name: str, uid: str | None) -> None:
        """Drop what is remembered of a deleted SyncJob (its unaudited edits get one last try)."""
        edits = self.unaudited.pop((namespace, name), [])
        if edits and not self.write_spec_audits(edits):
            log.error("Lost the audit entries of %d spec edits of deleted SyncJob %s/%s (MongoDB down): %s",
                      len(edits), namespace, name, edits)
        self.applied.pop((namespace, name), None)
        self.handled.pop((namespace, name), None)
        with self._locks_lock:
            self._locks.pop((namespace, name), None)

    def forget_cronjob(self, namespace: str, name: str) -> None:
        """The CronJob is gone: what we applied to it no longer stands for anything."""
        self.applied.pop((namespace, name), None)

    def prune(self, live: set[tuple[str, str]]) -> None:
        """Drop what is remembered of SyncJobs no longer in the cluster (a pass may write after `forget`)."""
        for key in [k for k in self.unaudited if k not in live]:
            self.forget(*key, None)
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
        if self.unaudited.get(key) and self.write_spec_audits(self.unaudited[key]):
            del self.unaudited[key]  # MongoDB is back: the edits applied while it was down are audited
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
        spec = builders.spec_json(sj.spec)
        digest = builders.digest({"cronjob": desired, "spec": spec})
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
        desired["metadata"]["annotations"] = {names.ANNOTATION_APPLIED_DIGEST: digest,
                                              names.ANNOTATION_APPLIED_SPEC: spec}
        self.audit_spec_change(sj, (actual or {}).get("appliedSpec"), spec)
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

    def audit_spec_change(self, sj: SyncJob, old: str | None, new: str) -> None:
        """A spec edit made outside the API (kubectl apply or patch, Argo CD, Flux) is audited once per generation,
        with the field managers that own the changed fields and what changed; the API audits its own pause and
        resume (only its ServiceAccount may write as its manager: manifests/admission-policy). The CronJob is not
        held up for the audit trail: an entry MongoDB cannot take now is kept and written by a later pass, with the
        time of the edit."""
        changes = builders.spec_changes(old, new)
        manager = builders.spec_editor(changes, (sj.metadata.model_extra or {}).get("specOwners") or {})
        if not changes or manager is None:
            return
        edit = SpecEdit(sj.namespace, sj.name, sj.metadata.uid, sj.metadata.generation, manager, changes, _now())
        if not self.write_spec_audits([edit]):
            kept = self.unaudited.setdefault((sj.namespace, sj.name), [])
            kept.append(edit)
            if len(kept) > MAX_UNAUDITED_EDITS:
                log.error("Dropped the audit entry of spec edit %s (MongoDB down for %d edits of one SyncJob)",
                          kept.pop(0), MAX_UNAUDITED_EDITS)

    def write_spec_audits(self, edits: list[SpecEdit]) -> bool:
        """Write these spec edits' entries (keyed by SyncJob uid and generation: a second write is a no-op); False
        when MongoDB could not take them."""
        try:
            for edit in edits:
                records.audit(self.db, job_id=edit.name, namespace=edit.namespace, action="spec-change",
                              status="success", details={"generation": edit.generation, "changes": edit.changes},
                              user=edit.user, timestamp=edit.at,
                              key=f"spec/{edit.namespace}/{edit.name}/{edit.uid}/{edit.generation}")
        except Exception as exc:
            log.warning("Could not audit %d spec edits of SyncJob %s/%s (kept to retry): %s; %s", len(edits),
                        edits[0].namespace, edits[0].name, exc, edits)
            return False
        return True

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

    @staticmethod
    def _requester(sj: SyncJob, token_key: str) -> tuple[str, bool]:
        owners = (sj.metadata.model_extra or {}).get("annotationOwners") or {}
        return builders.requester(sj.metadata.annotations, owners, token_key)

    def handle_requested(self, sj: SyncJob, cronjob: dict[str, Any] | None, jobs: list[dict[str, Any]],
                         outcome: Outcome, invalid_message: str | None = None) -> None:
        """One new requested-at token is one run: a Job named after the token, or a record saying why not.

        Under Forbid a request while a run is active is refused with a `skipped` record (ConcurrencyForbid), under
        Replace the active runs are cancelled (reason Replaced) first; a request on an invalid spec is answered
        with a `failed` record (InvalidSpec) rather than held until someone fixes the spec.
        """
        ann = sj.metadata.annotations
        token = ann.get(names.REQUESTED_AT)
        handled = self.handled.setdefault((sj.namespace, sj.name), {})
        if not token or token == sj.status.last_handled_requested_at:
            return
        force = ann.get(names.FORCE_AT) == token
        if token == handled.get(names.REQUESTED_AT):  # acted on; the status saying so is not written or seen yet
            self._ack_requested(outcome, token, force)
            return
        job_name = manual_job_name(sj.name, token)
        rid = run_id(sj.namespace, job_name)
        user, via_api = self._requester(sj, names.REQUESTED_AT)
        details = {"token": token, "force": force, "run_id": rid}
        if any(j["metadata"]["name"] == job_name for j in jobs) or records.existing_ids(self.db, [rid]):
            # Acted on before a restart (the Job or the refusal exists) and not acknowledged: acknowledge only, so
            # no policy is applied a second time (a Replace would cancel the run that replaced it).
            if not via_api:
                records.audit(self.db, job_id=sj.name, namespace=sj.namespace, action="trigger", status="success",
                              details=details, user=user, key=f"trigger/{rid}")
            self._ack_requested(outcome, token, force)
            handled[names.REQUESTED_AT] = token
            return
        active = [r for r in active_runs(jobs) if r.job_name != job_name]
        refusal = None
        if invalid_message is not None:
            refusal = (ExecutionStatus.FAILED, names.REASON_INVALID_SPEC,
                       f"request {token} refused: the SyncJob's spec is invalid: {invalid_message}")
        elif active and sj.spec.concurrency_policy is ConcurrencyPolicy.FORBID:
            refusal = (ExecutionStatus.SKIPPED, "ConcurrencyForbid",
                       f"request {token} refused: run {run_id(sj.namespace, active[0].job_name)} was still "
                       "running (concurrencyPolicy Forbid)")
        if refusal is not None:
            status, reason, message = refusal
            if records.record_not_run(self.db, rid=rid, job=job_name, job_id=sj.name, namespace=sj.namespace,
                                      scheduled=_now(), status=status, reason=reason, message=message,
                                      trigger="manual", force=force, requested_by=user):
                log.info("Refused request %s of SyncJob %s/%s: %s", token, sj.namespace, sj.name, message)
            if not via_api:  # the API audits the requests it makes
                records.audit(self.db, job_id=sj.name, namespace=sj.namespace, action="trigger", status="failed",
                              details={**details, "reason": reason}, error_message=message, user=user,
                              key=f"trigger/{rid}")
            outcome.events.append(("Warning", "RunSkipped" if status is ExecutionStatus.SKIPPED else reason,
                                   message))
            self._ack_requested(outcome, token, force)
            handled[names.REQUESTED_AT] = token
            return
        if active and sj.spec.concurrency_policy is ConcurrencyPolicy.REPLACE:
            self.replace(sj, [r.job_name for r in active], user, outcome)
        job = builders.build_manual_job(sj, self.settings, token, force, cronjob, _now())
        created = kube.create_job(job)
        records.record_job_seen(self.db, job)
        # Keyed by the run: an operator that died after creating the Job writes the entry on its next pass.
        audited = not via_api and records.audit(self.db, job_id=sj.name, namespace=sj.namespace, action="trigger",
                                                status="success", details=details, user=user, key=f"trigger/{rid}")
        if created or audited:
            log.info("Created Job %s/%s for request %s%s", sj.namespace, job_name, token,
                     " (forced)" if force else "")
            outcome.events.append(("Normal", "RunForced" if force else "RunTriggered",
                                   f"Started {'forced ' if force else ''}run {rid} for request {token}"))
        self._ack_requested(outcome, token, force)
        handled[names.REQUESTED_AT] = token

    @staticmethod
    def _ack_requested(outcome: Outcome, token: str, force: bool) -> None:
        outcome.status["lastHandledRequestedAt"] = token
        if force:
            outcome.status["lastHandledForceAt"] = token

    def replace(self, sj: SyncJob, job_names: list[str], user: str | None, outcome: Outcome) -> list[str]:
        """concurrencyPolicy Replace: the active runs are cancelled (reason Replaced) and their Jobs deleted."""
        asked = records.request_cancel(self.db, [run_id(sj.namespace, j) for j in job_names], user,
                                       reason="Replaced")
        for job_name in job_names:
            kube.delete_job(sj.namespace, job_name)
        if asked:
            log.info("Replaced runs %s of SyncJob %s/%s", ", ".join(asked), sj.namespace, sj.name)
            outcome.events.append(("Normal", "RunReplaced", f"Cancelled {', '.join(asked)}: replaced by a new run"))
        return asked

    def handle_cancel(self, sj: SyncJob, jobs: list[dict[str, Any]], outcome: Outcome) -> None:
        ann = sj.metadata.annotations
        token = ann.get(names.CANCEL_AT)
        handled = self.handled.setdefault((sj.namespace, sj.name), {})
        if not token or token == sj.status.last_handled_cancel_at:
            return
        if token == handled.get(names.CANCEL_AT):  # acted on; the status saying so is not written or seen yet
            outcome.status["lastHandledCancelAt"] = token
            return
        targets = [run_id(sj.namespace, r.job_name) for r in active_runs(jobs)]
        scoped = ann.get(names.CANCEL_RUNS, "")
        scope_token, _, scope_runs = scoped.partition("=")
        if scoped and scope_token == token:
            wanted = {r for r in scope_runs.split(",") if r}
            targets = [t for t in targets if t in wanted or t.partition(".")[2] in wanted]
        user, via_api = self._requester(sj, names.CANCEL_AT)
        asked = records.request_cancel(self.db, targets, user)
        if self.settings.cancel_grace_seconds == 0:
            for rid in asked:
                kube.delete_job(sj.namespace, rid.partition(".")[2])
        if not via_api:
            records.audit(self.db, job_id=sj.name, namespace=sj.namespace, action="cancel", status="success",
                          details={"token": token, "runs": asked}, user=user,
                          key=f"cancel/{sj.namespace}/{sj.name}/{token}")
        message = f"Requested cancellation of {', '.join(asked)}" if asked else "No active run to cancel"
        log.info("%s for SyncJob %s/%s (token %s)", message, sj.namespace, sj.name, token)
        outcome.events.append(("Normal", "RunCancelled" if asked else "NothingToCancel", message))
        outcome.status["lastHandledCancelAt"] = token
        handled[names.CANCEL_AT] = token

    def delete_overdue_cancels(self, sj: SyncJob, jobs: list[dict[str, Any]]) -> None:
        running = {run_id(sj.namespace, r.job_name): r.job_name for r in active_runs(jobs)}
        overdue = records.cancel_overdue(self.db, list(running), self.settings.cancel_grace_seconds) if running else []
        for rid in overdue:
            log.info("Deleted Job %s/%s: its pod did not stop within the cancel grace period", sj.namespace,
                     running[rid])
            kube.delete_job(sj.namespace, running[rid])

    # -- runs that never happened -----------------------------------------------------------------------------

    def scan_schedule(self, sj: SyncJob, outcome: Outcome, now: dt.datetime, judge: bool,
                      jobs: list[dict[str, Any]] | None = None) -> None:
        """Advance the persisted missed-run scan; on periodic passes, record the due times that have no run.

        Nothing is judged before the start-up migration has run (`records.prepared`): a record still under its
        old id would look like no record at all."""
        judge = judge and records.prepared(self.settings.mongo_uri)
        step = schedule_scan.advance(
            sj.spec, sj.status.schedule_scan, now, created=sj.metadata.creation_timestamp,
            lookback=dt.timedelta(seconds=self.settings.missed_lookback_seconds), judge=judge)
        for t in step.due:
            self._judge_due(sj, t, outcome, jobs or [])
        # Every field spelled out: a merge patch removes a field only when it is sent as null (pausedSince).
        state = step.state.model_dump(mode="json", by_alias=True)
        if sj.status.schedule_scan is None or state != sj.status.schedule_scan.model_dump(mode="json", by_alias=True):
            outcome.status["scheduleScan"] = state

    def _judge_due(self, sj: SyncJob, t: dt.datetime, outcome: Outcome, jobs: list[dict[str, Any]]) -> None:
        job_name = scheduled_job_name(sj.name, t)
        rid = run_id(sj.namespace, job_name)
        if any(j["metadata"]["name"] == job_name for j in jobs) or records.existing_ids(self.db, [rid]):
            return  # it ran (a Job without a record yet gets one from record_jobs_without_records)
        overlapping = [r for r in records.runs_overlapping(self.db, sj.name, sj.namespace, t) if r != rid]
        deadline_s = sj.spec.starting_deadline_seconds or 300
        if overlapping and sj.spec.concurrency_policy is ConcurrencyPolicy.FORBID:
            status, reason, message = ExecutionStatus.SKIPPED, "ConcurrencyForbid", (
                f"run {overlapping[0]} was still running at the scheduled time (concurrencyPolicy Forbid)")
        else:
            status, reason, message = ExecutionStatus.MISSED, "MissedStartingDeadline", (
                f"MissedStartingDeadline: no Job started within {deadline_s}s of the scheduled time (the CronJob "
                "controller or the cluster was down or overloaded)")
        if records.record_not_run(self.db, rid=rid, job=job_name, job_id=sj.name, namespace=sj.namespace,
                                  scheduled=t, status=status, reason=reason, message=message):
            log.info("Recorded %s run %s scheduled at %s", status.value, rid, t.isoformat())
            outcome.events.append(("Warning", "RunSkipped" if status is ExecutionStatus.SKIPPED else "RunMissed",
                                   f"Run scheduled at {t.isoformat()} {status.value}: {message}"))

    # -- records whose run is over ----------------------------------------------------------------------------

    def close_finished_runs(self, sj: SyncJob, jobs: list[dict[str, Any]], now: dt.datetime) -> list[str]:
        """Close the records that still say running although Kubernetes says the run is over: its Job finished
        (the Job's final event found MongoDB down, say), vanished, or has had no pod and no heartbeat for
        LOST_HEARTBEAT_SECONDS. Records younger than a few seconds are left alone: their Job may not be in the
        watch cache yet."""
        by_name = {j["metadata"]["name"]: j for j in jobs}
        closed = []
        self.record_jobs_without_records(sj, jobs)
        for record in records.running_records(self.db, sj.name, sj.namespace):
            rid = str(record["_id"])
            job_name = str(record.get("k8s_job") or rid.partition(".")[2])
            job = by_name.get(job_name)
            created = records.parse_time(record.get("timestamp")) or now
            if job is None:
                replaced = (sj.spec.concurrency_policy is ConcurrencyPolicy.REPLACE
                            and record.get("trigger") == "schedule"
                            and any((records.parse_time(j["metadata"].get("creationTimestamp")) or created) > created
                                    for j in jobs))
                if (now - created > dt.timedelta(seconds=10) and not kube.job_exists(sj.namespace, job_name)
                        and records.close_deleted_job(self.db, rid, replaced)):  # the watch may only lag behind
                    closed.append(rid)
                continue
            if _job_finished(job):
                pods = kube.list_job_pods(sj.namespace, job_name) if _job_failed(job) else []
                if records.close_from_job(self.db, job, pods):
                    closed.append(rid)
                continue
            beat = records.parse_time(record.get("heartbeat_at")) or created
            silent = (now - beat).total_seconds()
            pod_gone = silent > self._allowed_silence(job) and not (job.get("status") or {}).get(
                "active") and not kube.list_job_pods(sj.namespace, job_name, live_only=True)
            if pod_gone and records.close_lost(self.db, rid, records.parse_time(record.get("heartbeat_at")), silent):
                closed.append(rid)
                kube.delete_job(sj.namespace, job_name)  # no late pod may take the run up again
        for rid in closed:
            log.info("Closed record %s: Kubernetes says its run is over", rid)
        return closed

    def record_jobs_without_records(self, sj: SyncJob, jobs: list[dict[str, Any]]) -> None:
        """A Job whose every event found MongoDB down has no record yet: give it one, with its verdict if it is
        over, so that it is neither lost nor later taken for a missed run."""
        ids = {run_id(sj.namespace, j["metadata"]["name"]): j for j in jobs}
        for rid in set(ids) - records.existing_ids(self.db, list(ids)):
            job = ids[rid]
            if records.record_job_seen(self.db, job) is None:
                continue
            log.info("Recorded run %s, whose Job appeared while MongoDB could not be written", rid)
            if _job_finished(job):
                pods = kube.list_job_pods(sj.namespace, job["metadata"]["name"]) if _job_failed(job) else []
                records.close_from_job(self.db, job, pods)

    def close_runs_of_deleted_syncjobs(self, live: set[tuple[str, str]]) -> list[str]:
        """Records still running whose SyncJob is gone (deleted while the operator or MongoDB was away, its Jobs
        collected with it): no pass of that SyncJob will ever close them, so the resync loop does."""
        namespaces = self.settings.watch_namespaces
        closed = []
        for record in records.running_records_outside(self.db, live, namespaces):
            rid = str(record["_id"])
            job_name = str(record.get("k8s_job") or rid.partition(".")[2])
            if not kube.job_exists(str(record.get("namespace")), job_name) and records.close_deleted_job(self.db, rid):
                log.info("Closed record %s: its SyncJob and Job are gone", rid)
                closed.append(rid)
        return closed

    def _allowed_silence(self, job: dict[str, Any]) -> float:
        """How long a run may go without a heartbeat and without a pod before it is taken for lost: a Job that
        is retrying has no pod during its back-off (10 s doubling per failed pod, at most 6 min), a suspended
        one will get none."""
        failed = int((job.get("status") or {}).get("failed") or 0)
        if failed and not (job.get("spec") or {}).get("suspend"):
            backoff: float = min(360.0, 10.0 * 2.0 ** (failed - 1))
            return float(self.settings.lost_heartbeat_seconds) + backoff
        return float(self.settings.lost_heartbeat_seconds)

    # -- the whole pass ---------------------------------------------------------------------------------------

    def reconcile(self, body: dict[str, Any], cronjob: dict[str, Any] | None, jobs: list[dict[str, Any]],
                  periodic: bool = False, resumed: bool = False, runs: bool = False) -> Outcome:
        """One pass. `cronjob` and `jobs` are the live objects as the operator's watches last saw them.

        Passes are kept cheap (they run on every event and for every SyncJob every resync period): the status
        that comes from runs (last execution, last success and failure) is refreshed by Job events, and read from
        MongoDB here only when asked (`runs`: the first sight of a SyncJob). Periodic passes (and the first after
        a restart) also judge due times and close the records of runs Kubernetes says are over.
        """
        now = _now()
        sj, parse_error = parse_syncjob(body)
        if sj is None:
            # Tokens are still answered: a request refused now, not started whenever someone fixes the spec.
            message = parse_error or "invalid spec"
            result = invalid(body, message, now)
            shell = _shell(body)
            self.handle_requested(shell, None, jobs, result, invalid_message=message)
            self.handle_cancel(shell, jobs, result)
            return result
        problems = builders.validate(sj.spec)
        outcome = Outcome(status={})
        try:
            if not problems:
                cronjob = self.ensure_cronjob(sj, outcome, cronjob, trust_memo=not periodic)
        except InvalidSpecError as exc:
            problems = [str(exc)]  # type: ignore[list-item]
        if problems:
            message = "; ".join(str(p) for p in problems)
            result = invalid(body, message, now)
            self.handle_requested(sj, cronjob, jobs, result, invalid_message=message)
            self.handle_cancel(sj, jobs, result)
            return result
        self.handle_requested(sj, cronjob, jobs, outcome)
        self.handle_cancel(sj, jobs, outcome)
        if periodic:
            self.delete_overdue_cancels(sj, jobs)
        if periodic or resumed:
            self.close_finished_runs(sj, jobs, now)
        self.scan_schedule(sj, outcome, now, judge=periodic, jobs=jobs)
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
    """Patch only when something a user sees differs; a null in the update (a merge patch's "remove") equals an
    absent field."""
    return any(_without_nulls(current.get(key)) != _without_nulls(value) for key, value in update.items())


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None} or None
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value
