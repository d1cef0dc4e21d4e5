"""Pure functions from a SyncJob to what Kubernetes should hold: validation, the CronJob, manual Jobs, status.

Nothing here talks to an API server or a database, so every rule is unit-tested directly; the kopf handlers only
feed these functions and send their results.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import ValidationError

from syncjob import names
from syncjob.model import Condition, ConditionStatus, SyncJob, SyncJobSpec, Task
from syncjob.runs import manual_job_name
from syncjob_operator.settings import OperatorSettings
from syncjob_operator.sync_pod_template import apply_template, merge_templates

CONTAINER_NAME = "sync"
INSTANTIATE_ANNOTATION = "cronjob.kubernetes.io/instantiate"


@dataclass(frozen=True)
class SpecProblem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"spec.{self.field}: {self.message}"


def validate(spec: SyncJobSpec) -> list[SpecProblem]:
    """What CEL cannot check: the cron expression and the IANA time zone."""
    problems = []
    fields = spec.schedule.split()
    if len(fields) != 5:
        problems.append(SpecProblem("schedule", f"{spec.schedule!r} has {len(fields)} fields; a 5-field cron "
                                                "expression (minute hour day-of-month month day-of-week) is needed"))
    elif spec.schedule.startswith("@") or not croniter.is_valid(spec.schedule):
        problems.append(SpecProblem("schedule", f"{spec.schedule!r} is not a valid cron expression"))
    elif _sunday_as_7(fields[4]):
        problems.append(SpecProblem("schedule", f"{spec.schedule!r}: a CronJob's day of week runs 0-6 "
                                                "(0 is Sunday); 7 is refused by Kubernetes"))
    try:
        ZoneInfo(spec.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(SpecProblem("timeZone", f"{spec.time_zone!r} is not an IANA time zone (e.g. Asia/Shanghai)"))
    return problems


def _sunday_as_7(day_of_week: str) -> bool:
    """Some crons take 7 for Sunday, and croniter does; the CronJob controller's parser does not."""
    for part in day_of_week.split(","):
        values = part.split("/")[0]  # a step (*/7) is not a day
        if any(v.isdigit() and int(v) > 6 for v in values.split("-")):
            return True
    return False


def admission_problems(spec: dict[str, Any], old_spec: dict[str, Any] | None) -> list[str]:
    """Why a SyncJob create or update should be refused, for the validating admission webhook.

    Ratcheting, as Kubernetes does for CRD schemas: on an update only fields that change are judged, so a SyncJob
    that is already invalid (created while the webhook was away) can still be annotated, paused or deleted.
    """
    try:
        parsed = SyncJobSpec.model_validate(spec)
    except ValidationError as exc:
        first = exc.errors()[0]
        return [f"spec.{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"]
    return [str(p) for p in validate(parsed)
            if old_spec is None or old_spec.get(p.field) != spec.get(p.field)]


def schedule_times(spec: SyncJobSpec, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """Scheduled times in (start, end], computed in the job's time zone and returned in UTC."""
    tz = ZoneInfo(spec.time_zone)
    it = croniter(spec.schedule, start.astimezone(tz))
    times: list[dt.datetime] = []
    while True:
        t = it.get_next(dt.datetime)
        if t > end:
            return times
        times.append(t.astimezone(dt.UTC))


def next_schedule_time(spec: SyncJobSpec, now: dt.datetime) -> dt.datetime:
    tz = ZoneInfo(spec.time_zone)
    nxt: dt.datetime = croniter(spec.schedule, now.astimezone(tz)).get_next(dt.datetime)
    return nxt.astimezone(dt.UTC)


# activeDeadlineSeconds when a SyncJob sets none: a deliberate choice per task (docs/operator.md). The quick tasks
# get a bound; daily and financial get none, because a first full backfill takes hours and a healthy run must not be
# reaped by age: a run whose pod stops heartbeating is failed LostHeartbeat by the operator instead.
DEFAULT_ACTIVE_DEADLINE_SECONDS: dict[Task, int | None] = {
    Task.QUOTES: 900, Task.STATUS: 600, Task.BASICS: 3600, Task.DAILY: None, Task.FINANCIAL: None,
}


def active_deadline_seconds(spec: SyncJobSpec) -> int | None:
    if spec.active_deadline_seconds is not None:
        return spec.active_deadline_seconds
    return DEFAULT_ACTIVE_DEADLINE_SECONDS[spec.task]


def labels(sj: SyncJob) -> dict[str, str]:
    return {
        names.LABEL_SYNCJOB: sj.name,
        names.LABEL_TASK: sj.spec.task.value,
        names.LABEL_MANAGED_BY: names.MANAGED_BY,
    }


def _env(sj: SyncJob, settings: OperatorSettings, trigger: str, force: bool,
         scheduled: dt.datetime | None) -> list[dict[str, Any]]:
    spec = sj.spec
    return [
        {"name": "SYNCJOB_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "SYNCJOB_NAME", "value": sj.name},
        {"name": "SYNC_TASK", "value": spec.task.value},
        {"name": "SYNC_SOURCES", "value": ",".join(s.value for s in spec.sources)},
        {"name": "SYNC_OPTIONS", "value": json.dumps(spec.options, sort_keys=True, ensure_ascii=False)},
        {"name": "SYNC_TRADING_HOURS_ONLY", "value": str(spec.trading_hours_only).lower()},
        {"name": "SYNC_FORCE", "value": str(force).lower()},
        {"name": "SYNC_TRIGGER", "value": trigger},
        {"name": "SYNC_RUN_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['job-name']"}}},
        {"name": "SYNC_SCHEDULED_TIME", "value": scheduled.strftime("%Y-%m-%dT%H:%M:%SZ") if scheduled else ""},
        {"name": "SYNC_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "SYNC_CONCURRENCY_POLICY", "value": spec.concurrency_policy.value},
        {"name": "SYNC_BACKOFF_LIMIT", "value": str(spec.backoff_limit)},
        {"name": "MONGO_URI", "valueFrom": {"secretKeyRef": {"name": settings.mongo_secret_name, "key": "MONGO_URI"}}},
        {"name": "TUSHARE_TOKEN", "valueFrom": {"secretKeyRef": {
            "name": settings.tushare_secret_name, "key": "TUSHARE_TOKEN", "optional": True}}},
    ]


def job_spec(sj: SyncJob, settings: OperatorSettings, trigger: str = "schedule", force: bool = False,
             scheduled: dt.datetime | None = None) -> dict[str, Any]:
    """The Job spec of one run: the pod contract of DESIGN.md with restricted security defaults."""
    spec = sj.spec
    pod_labels = {**labels(sj), names.LABEL_TRIGGER: trigger}
    job: dict[str, Any] = {
        "backoffLimit": spec.backoff_limit,
        "template": {
            "metadata": {"labels": pod_labels},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": 30,
                "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": CONTAINER_NAME,
                    "image": settings.sync_image,
                    "imagePullPolicy": settings.sync_image_pull_policy,
                    "command": list(settings.sync_command),
                    "env": _env(sj, settings, trigger, force, scheduled),
                    "resources": {
                        "requests": {"cpu": settings.sync_cpu_request, "memory": settings.sync_memory_request},
                        "limits": {"memory": settings.sync_memory_limit},
                    },
                    "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]}},
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }],
                "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
            },
        },
    }
    deadline = active_deadline_seconds(spec)
    if deadline is not None:
        job["activeDeadlineSeconds"] = deadline
    if settings.sync_service_account:
        job["template"]["spec"]["serviceAccountName"] = settings.sync_service_account
    return apply_template(job, merge_templates(settings.sync_pod_template, spec.pod_template))


def _owner(sj: SyncJob) -> dict[str, Any]:
    return {"apiVersion": names.API_VERSION, "kind": names.KIND, "name": sj.name, "uid": sj.metadata.uid,
            "controller": True, "blockOwnerDeletion": True}


def build_cronjob(sj: SyncJob, settings: OperatorSettings) -> dict[str, Any]:
    """The one CronJob a SyncJob owns (garbage-collected with it)."""
    spec = sj.spec
    cron_spec: dict[str, Any] = {
        "schedule": spec.schedule,
        "timeZone": spec.time_zone,
        "suspend": spec.paused,
        "concurrencyPolicy": spec.concurrency_policy.value,
        "successfulJobsHistoryLimit": spec.successful_jobs_history_limit,
        "failedJobsHistoryLimit": spec.failed_jobs_history_limit,
        "jobTemplate": {
            "metadata": {"labels": {**labels(sj), names.LABEL_TRIGGER: "schedule"}},
            "spec": job_spec(sj, settings),
        },
    }
    if spec.starting_deadline_seconds is not None:
        cron_spec["startingDeadlineSeconds"] = spec.starting_deadline_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": sj.name, "namespace": sj.namespace, "labels": labels(sj),
                     "ownerReferences": [_owner(sj)]},
        "spec": cron_spec,
    }


def cronjob_summary(metadata: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """What a reconcile pass needs to know of a live CronJob: its identity and the digest of our last apply."""
    return {
        "metadata": {"name": metadata.get("name"), "uid": metadata.get("uid"),
                     "generation": metadata.get("generation")},
        "status": {"lastScheduleTime": status.get("lastScheduleTime")},
        "appliedDigest": (metadata.get("annotations") or {}).get(names.ANNOTATION_APPLIED_DIGEST),
        "appliedSpec": (metadata.get("annotations") or {}).get(names.ANNOTATION_APPLIED_SPEC),
    }


def build_manual_job(sj: SyncJob, settings: OperatorSettings, token: str, force: bool,
                     cronjob: dict[str, Any] | None, now: dt.datetime) -> dict[str, Any]:
    """A Job for one requested run. Its name derives from the token, so the same token can never run twice.

    Owned by the CronJob when there is one (as `kubectl create job --from=cronjob/...` does, so the concurrency
    policy and history limits apply to manual runs too), else by the SyncJob.
    """
    owner = _owner(sj)
    if cronjob is not None:
        owner = {"apiVersion": "batch/v1", "kind": "CronJob", "name": cronjob["metadata"]["name"],
                 "uid": cronjob["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": manual_job_name(sj.name, token),
            "namespace": sj.namespace,
            "labels": {**labels(sj), names.LABEL_TRIGGER: "manual"},
            "annotations": {INSTANTIATE_ANNOTATION: "manual", names.ANNOTATION_TOKEN: token,
                            names.ANNOTATION_FORCE: str(force).lower()},
            "ownerReferences": [owner],
        },
        "spec": job_spec(sj, settings, trigger="manual", force=force, scheduled=now),
    }


def spec_json(spec: SyncJobSpec) -> str:
    return json.dumps(spec.to_k8s(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def spec_changes(old: str | None, new: str) -> dict[str, Any]:
    """What a spec edit changed, field by field ({field: {"from": ..., "to": ...}}); {} when nothing did."""
    if old is None or old == new:
        return {}
    try:
        before = json.loads(old)
    except ValueError:
        before = {}
    after = json.loads(new)
    return {k: {"from": before.get(k), "to": after.get(k)} for k in sorted(set(before) | set(after))
            if before.get(k) != after.get(k)}


def spec_owners(metadata: dict[str, Any]) -> dict[str, str]:
    """Which field manager owns each top-level spec field, from managedFields ("a, b" when shared by appliers)."""
    owners: dict[str, set[str]] = {}
    for entry in metadata.get("managedFields") or []:
        for key in (entry.get("fieldsV1") or {}).get("f:spec") or {}:
            if key.startswith("f:"):
                owners.setdefault(key[2:], set()).add(str(entry.get("manager") or "unknown"))
    return {name: ", ".join(sorted(managers)) for name, managers in owners.items()}


def spec_editor(changes: dict[str, Any], owners: dict[str, str]) -> str | None:
    """Who made a spec edit, as far as managedFields tell: the managers that own the changed fields now, and
    `unknown (...)` beside them when a field was removed (a removed field has no owner left). None when the API's
    own manager owns every changed field: the API audits its pause and resume itself."""
    writers = sorted({owners[name] for name in changes if name in owners})
    removed = any(name not in owners for name in changes)
    if writers == [names.FIELD_MANAGER_API] and not removed:
        return None
    credited = [field_manager(w) for w in writers]
    if removed:
        credited.append("unknown (a removal leaves no field manager: see the Kubernetes audit log)")
    return ", ".join(credited)


def annotation_owners(metadata: dict[str, Any]) -> dict[str, str]:
    """Which field manager last wrote each of our annotations, from managedFields (the API server's record of who
    wrote which field): `requested-by` is believed only when the API's own manager wrote it with the token."""
    owners: dict[str, str] = {}
    for entry in metadata.get("managedFields") or []:
        fields = ((entry.get("fieldsV1") or {}).get("f:metadata") or {}).get("f:annotations") or {}
        for key in fields:
            name = key[2:] if key.startswith("f:") else key
            if name.startswith(f"{names.GROUP}/"):
                owners[name] = str(entry.get("manager") or "unknown")
    return owners


def field_manager(name: str) -> str:
    """How a field manager is named where a user is expected: as what it is, a name its client chose (the person
    behind it is in the Kubernetes audit log), so that `--field-manager=carol` does not read as carol."""
    return f"{FIELD_MANAGER_PREFIX}{name}"


FIELD_MANAGER_PREFIX = "field-manager:"


def requester(annotations: dict[str, str], owners: dict[str, str], token_key: str) -> tuple[str, bool]:
    """Who asked for a token's action, and whether it came through the API (which audits its own requests).

    A token the API's manager wrote came through the API (only the API's ServiceAccount may write as it:
    manifests/admission-policy); its `requested-by` names the user only if the API wrote that too. Any other token
    is credited to the field manager that wrote it."""
    owner = owners.get(token_key)
    by = names.REQUESTER_OF.get(token_key, names.REQUESTED_BY)
    if owner == names.FIELD_MANAGER_API:
        believed = annotations.get(by) if owners.get(by) == names.FIELD_MANAGER_API else None
        return believed or names.FIELD_MANAGER_API, True
    return field_manager(owner or "unknown"), False


def digest(obj: dict[str, Any]) -> str:
    """A stable fingerprint of an object we build, to tell whether what we would apply has changed."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def ready_condition(previous: Condition | None, status: ConditionStatus, reason: str, message: str,
                    generation: int | None, now: dt.datetime) -> Condition:
    """A Ready condition whose lastTransitionTime moves only when its status does."""
    moved = previous is None or previous.status != status
    return Condition(type=names.CONDITION_READY, status=status, reason=reason, message=message,
                     last_transition_time=now if moved or previous is None else previous.last_transition_time,
                     observed_generation=generation)
