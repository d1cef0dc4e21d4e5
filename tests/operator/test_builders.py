"""Unit tests of the pure builders: what the operator asks Kubernetes for, given a SyncJob."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from syncjob_operator import builders
from syncjob_operator.settings import OperatorSettings

from syncjob import names
from syncjob.model import SyncJob
from syncjob.runs import manual_job_name, scheduled_job_name

SETTINGS = OperatorSettings(mongo_uri="mongodb://127.0.0.1:1/x", sync_image="registry.example/sync:1.2.3")


def syncjob(**spec: Any) -> SyncJob:
    body = {"task": "quotes", "schedule": "*/5 9-15 * * 1-5", **spec}
    return SyncJob.from_k8s({"metadata": {"name": "tushare-quotes-sync", "namespace": "market-data",
                                          "uid": "uid-1", "generation": 3}, "spec": body})


def env_of(pod_spec: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in pod_spec["containers"][0]["env"]}


@pytest.mark.parametrize(("schedule", "time_zone", "field", "words"), [
    ("61 * * * *", "Asia/Shanghai", "schedule", "not a valid cron expression"),
    ("* * * *", "Asia/Shanghai", "schedule", "has 4 fields"),
    ("@hourly", "Asia/Shanghai", "schedule", "has 1 fields"),
    ("0 16 * * 1-7", "Asia/Shanghai", "schedule", "day of week runs 0-6 (0 is Sunday); 7 is refused"),
    ("0 16 * * 7", "Asia/Shanghai", "schedule", "day of week runs 0-6"),
    ("*/5 9-15 * * 1-5", "Asia/Beijing", "timeZone", "not an IANA time zone"),
])
def test_invalid_schedule_or_time_zone_names_the_field(schedule: str, time_zone: str, field: str,
                                                       words: str) -> None:
    problems = builders.validate(syncjob(schedule=schedule, timeZone=time_zone).spec)
    assert [p.field for p in problems] == [field]
    assert words in str(problems[0])
    assert str(problems[0]).startswith(f"spec.{field}: ")


@pytest.mark.parametrize("schedule", ["0 16 * * 1-5", "0 16 * * 0,6", "0 16 * * */7", "0 16 * * MON-FRI",
                                      "0 16 1-31/7 * *"])
def test_valid_spec_has_no_problems(schedule: str) -> None:
    assert builders.validate(syncjob(schedule=schedule, timeZone="Europe/London").spec) == []


def test_admission_judges_a_new_spec_whole_and_an_update_by_what_it_changes() -> None:
    bad = {"task": "quotes", "schedule": "61 * * * *", "timeZone": "Mars/Olympus"}
    assert builders.admission_problems(bad, None) == [
        "spec.schedule: '61 * * * *' is not a valid cron expression",
        "spec.timeZone: 'Mars/Olympus' is not an IANA time zone (e.g. Asia/Shanghai)"]
    assert builders.admission_problems({**bad, "paused": True}, bad) == []  # both bad fields left as they were
    fixed_zone = {**bad, "timeZone": "Asia/Shanghai", "schedule": "62 * * * *"}
    assert builders.admission_problems(fixed_zone, bad) == ["spec.schedule: '62 * * * *' is not a valid cron "
                                                            "expression"]
    assert builders.admission_problems({"schedule": "0 16 * * 1-5"}, None)[0].startswith("spec.task: ")


def test_cronjob_carries_every_spec_field() -> None:
    sj = syncjob(paused=True, concurrencyPolicy="Replace", startingDeadlineSeconds=120, activeDeadlineSeconds=900,
                 backoffLimit=2, successfulJobsHistoryLimit=5, failedJobsHistoryLimit=7, timeZone="Asia/Shanghai")
    cj = builders.build_cronjob(sj, SETTINGS)
    spec = cj["spec"]
    assert (spec["schedule"], spec["timeZone"], spec["suspend"]) == ("*/5 9-15 * * 1-5", "Asia/Shanghai", True)
    assert (spec["concurrencyPolicy"], spec["startingDeadlineSeconds"]) == ("Replace", 120)
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (5, 7)
    job = spec["jobTemplate"]["spec"]
    assert (job["activeDeadlineSeconds"], job["backoffLimit"]) == (900, 2)
    assert cj["metadata"]["ownerReferences"] == [{
        "apiVersion": names.API_VERSION, "kind": "SyncJob", "name": "tushare-quotes-sync", "uid": "uid-1",
        "controller": True, "blockOwnerDeletion": True}]


def test_sync_pods_run_as_the_configured_service_account_with_no_token() -> None:
    default = builders.build_cronjob(syncjob(), SETTINGS)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert "serviceAccountName" not in default and default["automountServiceAccountToken"] is False
    settings = SETTINGS.model_copy(update={"sync_service_account": "syncjob-sync"})
    manual = builders.build_manual_job(syncjob(), settings, "t1", False, None, dt.datetime.now(dt.UTC))
    for job_spec in (builders.build_cronjob(syncjob(), settings)["spec"]["jobTemplate"]["spec"], manual["spec"]):
        pod = job_spec["template"]["spec"]
        assert (pod["serviceAccountName"], pod["automountServiceAccountToken"]) == ("syncjob-sync", False)


def test_pod_template_follows_the_pod_contract_with_restricted_security() -> None:
    sj = syncjob(sources=["akshare", "baostock"], options={"codes": ["600000.SH"]}, tradingHoursOnly=True)
    pod = builders.build_cronjob(sj, SETTINGS)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    env = env_of(pod)
    assert env["SYNCJOB_NAME"] == "tushare-quotes-sync"
    assert env["SYNCJOB_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["SYNC_TASK"] == "quotes"
    assert env["SYNC_SOURCES"] == "akshare,baostock"
    assert env["SYNC_OPTIONS"] == '{"codes": ["600000.SH"]}'
    assert (env["SYNC_TRADING_HOURS_ONLY"], env["SYNC_FORCE"], env["SYNC_TRIGGER"]) == ("true", "false", "schedule")
    assert env["SYNC_RUN_ID"] == {"fieldRef": {"fieldPath": "metadata.labels['job-name']"}}
    assert env["MONGO_URI"] == {"secretKeyRef": {"name": "syncjob-mongo", "key": "MONGO_URI"}}
    assert env["TUSHARE_TOKEN"]["secretKeyRef"]["optional"] is True
    container = pod["containers"][0]
    assert container["image"] == "registry.example/sync:1.2.3"
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert container["resources"]["limits"]["memory"] == "1Gi"


def test_manual_job_name_derives_from_the_token_and_force_is_per_run() -> None:
    sj = syncjob()
    now = dt.datetime(2026, 11, 27, 1, 30, tzinfo=dt.UTC)
    cronjob = {"metadata": {"name": sj.name, "uid": "cj-uid"}}
    forced = builders.build_manual_job(sj, SETTINGS, "1732780000", True, cronjob, now)
    again = builders.build_manual_job(sj, SETTINGS, "1732780000", True, cronjob, now)
    later = builders.build_manual_job(sj, SETTINGS, "1732780999", False, cronjob, now)
    assert forced["metadata"]["name"] == again["metadata"]["name"] == manual_job_name(sj.name, "1732780000")
    assert later["metadata"]["name"] != forced["metadata"]["name"]
    assert len(forced["metadata"]["name"]) <= 52
    assert env_of(forced["spec"]["template"]["spec"])["SYNC_FORCE"] == "true"
    assert env_of(later["spec"]["template"]["spec"])["SYNC_FORCE"] == "false"
    assert env_of(later["spec"]["template"]["spec"])["SYNC_TRIGGER"] == "manual"
    assert forced["metadata"]["labels"][names.LABEL_TRIGGER] == "manual"
    assert forced["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    assert builders.build_manual_job(sj, SETTINGS, "t", False, None, now)["metadata"]["ownerReferences"][0][
        "kind"] == "SyncJob"


def test_next_schedule_time_is_computed_in_the_job_time_zone() -> None:
    spec = syncjob(schedule="30 9 * * 1-5", timeZone="Asia/Shanghai").spec
    friday_evening = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)  # 20:00 in Shanghai, a Friday
    assert builders.next_schedule_time(spec, friday_evening) == dt.datetime(2026, 11, 30, 1, 30, tzinfo=dt.UTC)


def test_day_of_week_1_to_5_means_monday_to_friday() -> None:
    spec = syncjob(schedule="0 16 * * 1-5", timeZone="Asia/Shanghai").spec
    start = dt.datetime(2026, 11, 22, 0, 0, tzinfo=dt.UTC)  # a Sunday
    days = [t.astimezone(dt.timezone(dt.timedelta(hours=8))).strftime("%a")
            for t in builders.schedule_times(spec, start, start + dt.timedelta(days=7))]
    assert days == ["Mon", "Tue", "Wed", "Thu", "Fri"]


def test_scheduled_run_id_matches_the_cronjob_controller_naming() -> None:
    t = dt.datetime(2026, 11, 27, 1, 5, tzinfo=dt.UTC)
    assert scheduled_job_name("quotes", t) == f"quotes-{int(t.timestamp()) // 60}"


def test_digest_changes_with_what_would_be_applied_only() -> None:
    one = builders.build_cronjob(syncjob(), SETTINGS)
    assert builders.digest(one) == builders.digest(builders.build_cronjob(syncjob(), SETTINGS))
    assert builders.digest(one) != builders.digest(builders.build_cronjob(syncjob(paused=True), SETTINGS))


def test_a_spec_edit_is_described_field_by_field_and_credited_to_its_field_manager() -> None:
    old = builders.spec_json(syncjob().spec)
    new = builders.spec_json(syncjob(paused=True, schedule="*/10 9-15 * * 1-5").spec)
    changes = builders.spec_changes(old, new)
    assert changes["paused"] == {"from": False, "to": True}
    assert set(changes) == {"paused", "schedule"}
    assert builders.spec_changes(old, old) == {} and builders.spec_changes(None, new) == {}
    managed = {"managedFields": [
        {"manager": "kubectl-client-side-apply", "fieldsV1": {"f:spec": {".": {}, "f:schedule": {}, "f:task": {}}}},
        {"manager": "syncjob-api", "fieldsV1": {"f:spec": {"f:paused": {}}}},
        {"manager": "syncjob-operator", "fieldsV1": {"f:status": {}}},
    ]}
    owners = builders.spec_owners(managed)
    assert owners == {"schedule": "kubectl-client-side-apply", "task": "kubectl-client-side-apply",
                      "paused": "syncjob-api"}
    assert builders.spec_editor(changes, owners) == "field-manager:kubectl-client-side-apply, field-manager:syncjob-api"
    assert builders.spec_editor({"paused": changes["paused"]}, owners) is None  # the API's pause: it audits it
    # A field removed after the API's pause has no owner: not the API's edit, and not credited to it.
    removed = {"tradingHoursOnly": {"from": True, "to": None}}
    assert builders.spec_editor(removed, owners).startswith("unknown")
    both = builders.spec_editor({**removed, "paused": changes["paused"]}, owners)  # never the API's name alone
    assert both.startswith("field-manager:syncjob-api, unknown")


def test_requested_by_is_believed_only_when_the_api_wrote_it_with_the_token() -> None:
    ann = {names.REQUESTED_AT: "t1", names.REQUESTED_BY: "alice"}
    by_api = {"managedFields": [{"manager": "syncjob-api", "fieldsV1": {"f:metadata": {"f:annotations": {
        f"f:{names.REQUESTED_AT}": {}, f"f:{names.REQUESTED_BY}": {}}}}}]}
    assert builders.requester(ann, builders.annotation_owners(by_api), names.REQUESTED_AT) == ("alice", True)
    forged = {"managedFields": [{"manager": "kubectl-annotate", "fieldsV1": {"f:metadata": {"f:annotations": {
        f"f:{names.REQUESTED_AT}": {}, f"f:{names.REQUESTED_BY}": {}}}}}]}
    assert builders.requester(ann, builders.annotation_owners(forged), names.REQUESTED_AT) == (
        "field-manager:kubectl-annotate", False)
    carol = {"managedFields": [{"manager": "carol", "fieldsV1": {"f:metadata": {"f:annotations": {
        f"f:{names.REQUESTED_AT}": {}}}}}]}  # `kubectl --field-manager=carol`: a name its client chose
    assert builders.requester(ann, builders.annotation_owners(carol), names.REQUESTED_AT) == (
        "field-manager:carol", False)
    # The API's token with a requested-by someone else rewrote: still the API's request (it audited it), no name.
    rewritten = {"managedFields": [
        {"manager": "syncjob-api", "fieldsV1": {"f:metadata": {"f:annotations": {f"f:{names.REQUESTED_AT}": {}}}}},
        {"manager": "kubectl-annotate", "fieldsV1": {"f:metadata": {"f:annotations": {
            f"f:{names.REQUESTED_BY}": {}}}}}]}
    assert builders.requester(ann, builders.annotation_owners(rewritten), names.REQUESTED_AT) == (
        "syncjob-api", True)
    later = {"managedFields": [
        {"manager": "syncjob-api", "fieldsV1": {"f:metadata": {"f:annotations": {f"f:{names.REQUESTED_BY}": {}}}}},
        {"manager": "kubectl-annotate", "fieldsV1": {"f:metadata": {"f:annotations": {
            f"f:{names.CANCEL_AT}": {}}}}}]}  # bob's cancel after alice's API trigger
    assert builders.requester(ann, builders.annotation_owners(later), names.CANCEL_AT) == (
        "field-manager:kubectl-annotate", False)


@pytest.mark.parametrize(("task", "deadline"), [("quotes", 900), ("status", 600), ("basics", 3600), ("daily", None),
                                                ("financial", None)])
def test_a_run_deadline_left_out_is_the_tasks_deliberate_default(task: str, deadline: int | None) -> None:
    spec = builders.build_cronjob(syncjob(task=task), SETTINGS)["spec"]["jobTemplate"]["spec"]
    assert spec.get("activeDeadlineSeconds") == deadline
    chosen = builders.build_cronjob(syncjob(task=task, activeDeadlineSeconds=42), SETTINGS)
    assert chosen["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 42


def test_an_api_cancel_does_not_rename_who_asked_for_a_pending_run() -> None:
    ann = {names.REQUESTED_AT: "t1", names.REQUESTED_BY: "alice", names.CANCEL_AT: "c1",
           names.CANCEL_REQUESTED_BY: "bob"}
    api_wrote = {"managedFields": [{"manager": "syncjob-api", "fieldsV1": {"f:metadata": {"f:annotations": {
        f"f:{k}": {} for k in ann}}}}]}
    owners = builders.annotation_owners(api_wrote)
    assert builders.requester(ann, owners, names.REQUESTED_AT) == ("alice", True)
    assert builders.requester(ann, owners, names.CANCEL_AT) == ("bob", True)
