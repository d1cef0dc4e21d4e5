"""The operator against a real control plane: SyncJob → CronJob, drift repair, invalid specs, status, Events."""

from __future__ import annotations

import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from testbed.cluster import LocalCluster
from tests.conftest import make_syncjob
from tests.operator.conftest import OperatorProcess, SyncJobs, eventually


def _ready(syncjobs: SyncJobs, name: str, status: str = "True", reason: str | None = None) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        cond = syncjobs.ready(name)
        if cond and cond["status"] == status and (reason is None or cond["reason"] == reason):
            return cond
        return None
    result: dict[str, Any] = eventually(check, 30, f"Ready={status} {reason or ''} on {name}")
    return result


def test_applied_syncjob_gets_its_cronjob_and_an_honest_status(operator: OperatorProcess,
                                                                syncjobs: SyncJobs) -> None:
    syncjobs.create(make_syncjob("tushare-quotes-sync", schedule="*/5 9-15 * * 1-5", timeZone="Asia/Shanghai",
                                 concurrencyPolicy="Forbid", startingDeadlineSeconds=120,
                                 activeDeadlineSeconds=600, sources=["tushare", "akshare"]))
    cond = _ready(syncjobs, "tushare-quotes-sync", reason="Reconciled")
    cj = syncjobs.cronjob("tushare-quotes-sync")
    assert cj is not None
    assert (cj.spec.schedule, cj.spec.time_zone, cj.spec.suspend) == ("*/5 9-15 * * 1-5", "Asia/Shanghai", False)
    assert (cj.spec.concurrency_policy, cj.spec.starting_deadline_seconds) == ("Forbid", 120)
    assert cj.spec.job_template.spec.active_deadline_seconds == 600
    env = {e.name: e.value for e in cj.spec.job_template.spec.template.spec.containers[0].env}
    assert env["SYNC_SOURCES"] == "tushare,akshare"
    assert cj.metadata.owner_references[0].kind == "SyncJob"

    status = syncjobs.get("tushare-quotes-sync")["status"]
    assert status["observedGeneration"] == 1 and cond["observedGeneration"] == 1
    assert status["cronJobName"] == "tushare-quotes-sync"
    assert status["nextScheduleTime"].endswith("Z")
    assert syncjobs.event("tushare-quotes-sync", "CronJobCreated").type == "Normal"


def test_schedule_pause_and_time_zone_changes_reach_the_cronjob(operator: OperatorProcess,
                                                                syncjobs: SyncJobs) -> None:
    syncjobs.create(make_syncjob("daily", task="daily", schedule="0 16 * * 1-5"))
    _ready(syncjobs, "daily")
    syncjobs.patch_spec("daily", {"schedule": "30 17 * * 1-5", "timeZone": "Europe/London", "paused": True})

    def followed() -> bool:
        cj = syncjobs.cronjob("daily")
        return bool(cj and cj.spec.schedule == "30 17 * * 1-5" and cj.spec.time_zone == "Europe/London"
                    and cj.spec.suspend is True)
    eventually(followed, 30, "the CronJob to follow the spec")
    cond = _ready(syncjobs, "daily", reason="Paused")
    assert cond["observedGeneration"] == 2
    assert "nextScheduleTime" not in syncjobs.get("daily")["status"]

    syncjobs.patch_spec("daily", {"paused": False})
    eventually(lambda: syncjobs.cronjob("daily").spec.suspend is False, 30, "resume")
    eventually(lambda: "nextScheduleTime" in syncjobs.get("daily")["status"], 30, "next run time back")


def test_deleting_a_syncjob_garbage_collects_its_cronjob(operator: OperatorProcess, syncjobs: SyncJobs) -> None:
    syncjobs.create(make_syncjob("basics", task="basics", schedule="0 6 * * *"))
    eventually(lambda: syncjobs.cronjob("basics"), 30, "CronJob")
    syncjobs.delete("basics")
    eventually(lambda: syncjobs.cronjob("basics") is None, 60, "garbage collection of the CronJob")

    # The same name again: a new SyncJob (new uid, generation 1 again) gets a CronJob of its own.
    again = syncjobs.create(make_syncjob("basics", task="basics", schedule="30 6 * * *"))
    cronjob = eventually(lambda: syncjobs.cronjob("basics"), 30, "a CronJob for the re-created SyncJob")
    assert [o.uid for o in cronjob.metadata.owner_references] == [again["metadata"]["uid"]]
    assert cronjob.spec.schedule == "30 6 * * *"


def test_hand_edited_or_deleted_cronjob_is_put_back(operator: OperatorProcess, syncjobs: SyncJobs) -> None:
    syncjobs.create(make_syncjob("status-check", task="status", schedule="0 * * * *"))
    eventually(lambda: syncjobs.cronjob("status-check"), 30, "CronJob")
    syncjobs.batch.patch_namespaced_cron_job("status-check", syncjobs.ns,
                                             {"spec": {"schedule": "*/1 * * * *", "suspend": True}})
    eventually(lambda: syncjobs.cronjob("status-check").spec.schedule == "0 * * * *"
               and syncjobs.cronjob("status-check").spec.suspend is False, 30, "the edit to be undone")
    syncjobs.batch.delete_namespaced_cron_job("status-check", syncjobs.ns)
    eventually(lambda: (cj := syncjobs.cronjob("status-check")) is not None and cj.metadata.deletion_timestamp is None,
               30, "the CronJob to be recreated")


def _cronjob_applies(cluster: LocalCluster) -> float:
    """Server-side applies of CronJobs the API server has served so far (its own metrics)."""
    families = text_string_to_metric_families(cluster.kubectl("get", "--raw", "/metrics"))
    applies = {"resource": "cronjobs", "verb": "APPLY", "dry_run": ""}
    return sum(s.value for f in families for s in f.samples if s.name == "apiserver_request_total"
               and applies.items() <= s.labels.items())


def test_a_restarted_operator_applies_only_the_cronjobs_edited_while_it_was_away(
        cluster: LocalCluster, operator: OperatorProcess, syncjobs: SyncJobs) -> None:
    for name in ("quotes-a", "quotes-b", "quotes-c"):
        syncjobs.create(make_syncjob(name))
    for name in ("quotes-a", "quotes-b", "quotes-c"):
        _ready(syncjobs, name)
    operator.stop()
    syncjobs.batch.patch_namespaced_cron_job("quotes-b", syncjobs.ns, {"spec": {"schedule": "0 3 * * *"}})
    # An edit that only removes a field leaves no field manager of its own behind; its generation tells.
    cluster.kubectl("patch", "cronjob", "quotes-c", "-n", syncjobs.ns, "--type=json",
                    "-p", '[{"op": "remove", "path": "/spec/timeZone"}]')
    before = _cronjob_applies(cluster)
    operator.start()
    eventually(lambda: syncjobs.cronjob("quotes-b").spec.schedule == "*/5 9-15 * * 1-5"
               and syncjobs.cronjob("quotes-c").spec.time_zone == "Asia/Shanghai", 30,
               "the edits made while the operator was away to be undone")
    time.sleep(3)  # more than a resync period of the test operator: periodic passes apply nothing either
    assert _cronjob_applies(cluster) - before == 2


@pytest.mark.parametrize(("spec", "field", "words"), [
    ({"schedule": "61 25 * * *"}, "spec.schedule", "not a valid cron expression"),
    ({"schedule": "0 9 * *"}, "spec.schedule", "has 4 fields"),
    ({"timeZone": "Asia/Beijing"}, "spec.timeZone", "not an IANA time zone"),
])
def test_invalid_spec_is_reported_and_creates_no_cronjob(operator: OperatorProcess, syncjobs: SyncJobs,
                                                         spec: dict[str, str], field: str, words: str) -> None:
    syncjobs.create(make_syncjob("bad", **spec))
    cond = _ready(syncjobs, "bad", status="False", reason="InvalidSpec")
    assert field in cond["message"] and words in cond["message"]
    assert syncjobs.cronjob("bad") is None
    warning = syncjobs.event("bad", "InvalidSpec")
    assert warning.type == "Warning" and field in warning.message


def test_invalid_change_leaves_the_existing_cronjob_as_it_was(operator: OperatorProcess,
                                                              syncjobs: SyncJobs) -> None:
    syncjobs.create(make_syncjob("fin", task="financial", schedule="0 3 * * 0"))
    _ready(syncjobs, "fin")
    syncjobs.patch_spec("fin", {"schedule": "every sunday"})
    cond = _ready(syncjobs, "fin", status="False", reason="InvalidSpec")
    assert "spec.schedule" in cond["message"]
    assert syncjobs.cronjob("fin").spec.schedule == "0 3 * * 0"
    syncjobs.patch_spec("fin", {"schedule": "0 4 * * 0"})
    _ready(syncjobs, "fin", reason="Reconciled")
    assert syncjobs.cronjob("fin").spec.schedule == "0 4 * * 0"


def test_api_server_rejects_a_name_too_long_for_job_names(syncjob_crd: str, syncjobs: SyncJobs) -> None:
    from kubernetes.client import ApiException

    manifest = make_syncjob("x" * 41)
    with pytest.raises(ApiException) as refused:
        syncjobs.create(manifest)
    assert refused.value.status == 422
    assert "at most 40 characters" in refused.value.body


def test_api_server_rejects_duplicate_or_unknown_sources(syncjob_crd: str, syncjobs: SyncJobs) -> None:
    from kubernetes.client import ApiException

    for sources, words in ((["akshare", "akshare"], "Duplicate value"), (["yahoo"], "Unsupported value")):
        manifest = make_syncjob("dup")
        manifest["spec"]["sources"] = sources
        with pytest.raises(ApiException) as refused:
            syncjobs.create(manifest)
        assert refused.value.status == 422 and words in refused.value.body
