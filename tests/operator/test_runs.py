"""Runs: request tokens (trigger, force, cancel) and execution truth from Kubernetes, against the real cluster."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from pymongo import MongoClient
from pymongo.database import Database

from syncjob import mongo, names
from syncjob.runs import manual_job_name, manual_run_id
from testbed.mongo import MongoServer
from tests.conftest import make_syncjob
from tests.operator.conftest import OperatorProcess, SyncJobs, eventually, mongo_uri_for

REQUESTED, FORCE, CANCEL = names.REQUESTED_AT, names.FORCE_AT, names.CANCEL_AT


def _record(db: Database[Any], run_id: str, status: str | None = None, timeout: float = 60) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        doc = db["scheduler_executions"].find_one({"_id": run_id})
        return doc if doc and (status is None or doc["status"] == status) else None
    result: dict[str, Any] = eventually(check, timeout, f"record {run_id} {status or ''}")
    return result


def _env(job: Any) -> dict[str, str]:
    return {e.name: e.value for e in job.spec.template.spec.containers[0].env if e.value is not None}


def _ready(syncjobs: SyncJobs, name: str) -> None:
    eventually(lambda: (syncjobs.ready(name) or {}).get("status") == "True", 30, f"{name} Ready")


@pytest.fixture
def sync_command() -> list[str]:
    return ["sh", "-c", "sleep 1"]


def test_a_token_starts_exactly_one_run_even_across_an_operator_restart(
        operator: OperatorProcess, syncjobs: SyncJobs, mongo_db: Database[Any]) -> None:
    syncjobs.create(make_syncjob("quotes", paused=True))
    _ready(syncjobs, "quotes")
    syncjobs.annotate("quotes", {REQUESTED: "1732780000"})
    job_name, run_id = manual_job_name("quotes", "1732780000"), manual_run_id(syncjobs.ns, "quotes", "1732780000")
    eventually(lambda: syncjobs.get("quotes")["status"].get("lastHandledRequestedAt") == "1732780000", 30, "ack")
    jobs = syncjobs.jobs()
    assert [j.metadata.name for j in jobs] == [job_name]
    assert jobs[0].metadata.labels[names.LABEL_TRIGGER] == "manual"
    assert _env(jobs[0])["SYNC_TRIGGER"] == "manual"
    assert syncjobs.cronjob("quotes").spec.suspend is True  # a manual run does not unpause the job
    assert syncjobs.get("quotes")["spec"]["paused"] is True
    record = _record(mongo_db, run_id)
    assert (record["job_id"], record["namespace"], record["trigger"], record["is_manual"]) == (
        "quotes", syncjobs.ns, "manual", True)

    # The same token delivered again, with an unrelated change and an operator restart in between: still one run.
    operator.restart()
    syncjobs.annotate("quotes", {REQUESTED: "1732780000", "unrelated": "change"})
    syncjobs.patch_spec("quotes", {"description": "touched"})
    eventually(lambda: syncjobs.get("quotes")["status"].get("observedGeneration") == 2, 30, "reconcile")
    assert [j.metadata.name for j in syncjobs.jobs()] == [job_name]
    history = list(mongo_db["scheduler_history"].find({"job_id": "quotes", "action": "trigger"}))
    assert len(history) == 1 and history[0]["via"] == "kubectl"
    assert history[0]["user"] != "kubectl" and history[0]["details"]["run_id"] == run_id  # the field manager


def test_force_applies_to_its_own_run_only(operator: OperatorProcess, syncjobs: SyncJobs,
                                           mongo_db: Database[Any]) -> None:
    syncjobs.create(make_syncjob("quotes", tradingHoursOnly=True, concurrencyPolicy="Allow"))
    _ready(syncjobs, "quotes")
    syncjobs.annotate("quotes", {REQUESTED: "t1", FORCE: "t1"})
    eventually(lambda: syncjobs.get("quotes")["status"].get("lastHandledForceAt") == "t1", 30, "force ack")
    syncjobs.annotate("quotes", {REQUESTED: "t2"})
    eventually(lambda: syncjobs.get("quotes")["status"].get("lastHandledRequestedAt") == "t2", 30, "second ack")
    by_name = {j.metadata.name: j for j in syncjobs.jobs()}
    assert _env(by_name[manual_job_name("quotes", "t1")])["SYNC_FORCE"] == "true"
    assert _env(by_name[manual_job_name("quotes", "t2")])["SYNC_FORCE"] == "false"
    assert _record(mongo_db, manual_run_id(syncjobs.ns, "quotes", "t1"))["force"] is True
    assert _record(mongo_db, manual_run_id(syncjobs.ns, "quotes", "t2"))["force"] is False
    template = syncjobs.cronjob("quotes").spec.job_template.spec.template
    cj_env = {e.name: e.value for e in template.spec.containers[0].env}
    assert cj_env["SYNC_FORCE"] == "false"  # force never sticks to the job
    assert syncjobs.event("quotes", "RunForced") and syncjobs.event("quotes", "RunTriggered")


class TestFailures:
    @pytest.fixture
    def sync_command(self) -> list[str]:
        return ["sh", "-c", "exit 4"]

    def test_a_failing_job_closes_its_record_failed_with_the_reason(
            self, operator: OperatorProcess, syncjobs: SyncJobs, mongo_db: Database[Any]) -> None:
        # paused: the default schedule ticks every 5 min in Shanghai's trading hours, and a scheduled run of its
        # own would become the last execution
        syncjobs.create(make_syncjob("daily", task="daily", paused=True))
        _ready(syncjobs, "daily")
        syncjobs.annotate("daily", {REQUESTED: "go"})
        record = _record(mongo_db, manual_run_id(syncjobs.ns, "daily", "go"), "failed")
        assert record["reason"] == "BackoffLimitExceeded"
        assert "exit code 4" in record["error_message"]
        assert record["finished_at"] is not None
        status = eventually(lambda: (s := syncjobs.get("daily")["status"]).get("lastExecution") and s, 30,
                            "lastExecution")
        assert status["lastExecution"]["status"] == "failed"
        assert status["lastExecution"]["runId"] == manual_run_id(syncjobs.ns, "daily", "go")
        assert "lastFailureTime" in status
        assert syncjobs.event("daily", "RunFailed").type == "Warning"


class TestPodsThatIgnoreCancel:
    @pytest.fixture
    def sync_command(self) -> list[str]:
        return ["sh", "-c", "sleep 60"]

    def test_cancel_of_a_pod_that_ignores_it_deletes_its_job_after_the_grace_period(
            self, operator: OperatorProcess, syncjobs: SyncJobs, mongo_db: Database[Any]) -> None:
        syncjobs.create(make_syncjob("quotes", paused=True))  # no scheduled run beside the manual one (see above)
        _ready(syncjobs, "quotes")
        syncjobs.annotate("quotes", {REQUESTED: "go"})
        job_name, run_id = manual_job_name("quotes", "go"), manual_run_id(syncjobs.ns, "quotes", "go")
        eventually(lambda: [a["runId"] for a in syncjobs.get("quotes")["status"].get("active", [])] == [run_id],
                   30, "the run to be active")
        syncjobs.annotate("quotes", {CANCEL: "stop-1"})
        eventually(lambda: syncjobs.get("quotes")["status"].get("lastHandledCancelAt") == "stop-1", 30, "cancel ack")
        assert _record(mongo_db, run_id)["cancel_requested"] is True
        # This pod ignores the cooperative request: after the grace period (5 s here) its Job is deleted.
        record = _record(mongo_db, run_id, "cancelled", timeout=40)
        assert record["reason"] == "Cancelled"
        eventually(lambda: not [j for j in syncjobs.jobs() if j.metadata.name == job_name], 30, "Job deleted")
        eventually(lambda: syncjobs.get("quotes")["status"].get("active", []) == [], 30, "no active run")


def test_a_spec_edit_made_with_kubectl_is_audited_with_its_field_manager_and_what_changed(
        cluster: Any, operator: OperatorProcess, syncjobs: SyncJobs, mongo_db: Database[Any]) -> None:
    syncjobs.create(make_syncjob("edited"))
    _ready(syncjobs, "edited")
    cluster.kubectl("patch", "sj", "edited", "-n", syncjobs.ns, "--type=merge",
                    "-p", '{"spec": {"paused": true, "schedule": "*/10 9-15 * * 1-5"}}')
    entry = eventually(lambda: mongo_db["scheduler_history"].find_one({"job_id": "edited", "action": "spec-change"}),
                       30, "the spec change to be audited")
    assert (entry["user"], entry["via"], entry["namespace"]) == ("field-manager:kubectl-patch", "kubectl", syncjobs.ns)
    assert entry["details"]["changes"]["paused"] == {"from": False, "to": True}
    assert entry["details"]["changes"]["schedule"]["to"] == "*/10 9-15 * * 1-5"
    operator.restart()  # the same generation is not audited twice
    syncjobs.patch_spec("edited", {"description": "second edit"})
    eventually(lambda: mongo_db["scheduler_history"].count_documents({"job_id": "edited", "action": "spec-change"})
               == 2, 30, "the second edit to be audited")
    # The API's resume (its field manager) is the API's to audit; a removal made after it is not the API's.
    syncjobs.api.patch_namespaced_custom_object(names.GROUP, names.VERSION, syncjobs.ns, names.PLURAL, "edited",
                                                {"spec": {"paused": False}}, field_manager=names.FIELD_MANAGER_API)
    eventually(lambda: syncjobs.cronjob("edited").spec.suspend is False, 30, "the resume applied")
    cluster.kubectl("patch", "sj", "edited", "-n", syncjobs.ns, "--type=json",
                    "-p", '[{"op": "remove", "path": "/spec/description"}]')
    removal = eventually(lambda: mongo_db["scheduler_history"].find_one(
        {"job_id": "edited", "action": "spec-change", "details.changes.description": {"$exists": True},
         "details.changes.description.to": None}), 30,
        "the removal to be audited")
    assert removal["user"].startswith("unknown") and list(removal["details"]["changes"]) == ["description"]
    assert mongo_db["scheduler_history"].count_documents({"job_id": "edited", "action": "spec-change"}) == 3


def test_spec_edits_applied_while_mongodb_is_down_are_audited_once_it_is_back_with_their_times(
        cluster: Any, k8s: client.ApiClient, namespace: str, syncjob_crd: str, own_mongo: MongoServer,
        tmp_path: Path) -> None:
    db = MongoClient(own_mongo.uri, tz_aware=True)["edits"]
    op = OperatorProcess(cluster, namespace, mongo_uri_for(own_mongo, db), tmp_path / "operator-logs",
                         ["sh", "-c", "exit 0"], {"RESYNC_SECONDS": "2"}).start()
    try:
        syncjobs = SyncJobs(k8s, namespace)
        syncjobs.create(make_syncjob("edited", paused=True))
        _ready(syncjobs, "edited")
        own_mongo.stop()
        edited_at = dt.datetime.now(dt.UTC)
        for schedule in ("*/10 9-15 * * 1-5", "*/15 9-15 * * 1-5"):  # two edits, each applied while it is down
            cluster.kubectl("patch", "sj", "edited", "-n", namespace, "--type=merge",
                            "-p", json.dumps({"spec": {"schedule": schedule}}))
            eventually(lambda s=schedule: syncjobs.cronjob("edited").spec.schedule == s, 60,
                       f"the CronJob to get {schedule} while MongoDB is down")
        back_at = dt.datetime.now(dt.UTC)
        own_mongo.start()
        entries = eventually(lambda: (found := list(db[mongo.HISTORY].find(
            {"job_id": "edited", "action": "spec-change"}).sort("details.generation", 1))) and len(found) == 2
            and found, 60, "both spec changes to be audited once MongoDB is back")
        assert [e["details"]["changes"]["schedule"] for e in entries] == [
            {"from": "*/5 9-15 * * 1-5", "to": "*/10 9-15 * * 1-5"},
            {"from": "*/10 9-15 * * 1-5", "to": "*/15 9-15 * * 1-5"}]
        assert [e["details"]["generation"] for e in entries] == [2, 3]
        assert all(e["user"] == "field-manager:kubectl-patch" for e in entries)
        # dated when they were applied, not when MongoDB came back
        assert all(edited_at - dt.timedelta(seconds=1) <= e["timestamp"] <= back_at for e in entries), entries
    finally:
        op.stop()
