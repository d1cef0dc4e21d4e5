"""Honest run records with the real sync image in every pod: deadlines, deleted pods, retries, cancels, concurrency
policies, long runs, invalid specs, deleted records, MongoDB outages and restarts, each as a user would meet it.

Every pod here runs `syncjob-sync run` (the sync image's entry point) against the `file` source, slowed down with
its `file_delay_seconds` option so that there is time to fault the system while the run works.
"""

from __future__ import annotations

import base64
import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from pymongo import MongoClient
from pymongo.database import Database

from syncjob import executions, names
from syncjob.runs import manual_job_name, manual_run_id, scheduled_job_name
from testbed.cluster import LocalCluster
from testbed.mongo import MongoServer
from tests.conftest import make_syncjob
from tests.operator.conftest import OperatorProcess, SyncJobs, eventually, mongo_uri_for

REQUESTED, FORCE, CANCEL = names.REQUESTED_AT, names.FORCE_AT, names.CANCEL_AT
CODES = ["600000.SH", "000001.SZ", "300750.SZ", "600519.SH", "688981.SH", "920001.BJ"]


def real_sync(name: str, delay: float = 0.0, codes: list[str] | None = None, **spec: Any) -> dict[str, Any]:
    """A daily SyncJob the real sync image runs from the file source, one code per fetch, one fetch at a time,
    `delay` s per fetch."""
    options = {"codes": codes or CODES, "batch_size": 1, "concurrency": 1, "file_delay_seconds": delay,
               "incremental": False,
               "start_date": "2026-10-01", "heartbeat_seconds": 1, **spec.pop("options", {})}
    spec.setdefault("schedule", "0 16 * * 1-5")
    return make_syncjob(name, task="daily", sources=["file"], options=options, **spec)


def record(db: Database[Any], rid: str, status: str | None = None, timeout: float = 60) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        doc = db["scheduler_executions"].find_one({"_id": rid})
        return doc if doc and (status is None or doc["status"] == status) else None
    found: dict[str, Any] = eventually(check, timeout, f"record {rid} {status or ''}")
    return found


def ready(syncjobs: SyncJobs, name: str) -> None:
    eventually(lambda: (syncjobs.ready(name) or {}).get("status") == "True", 30, f"{name} Ready")


def request(syncjobs: SyncJobs, name: str, token: str) -> str:
    syncjobs.annotate(name, {REQUESTED: token})
    return manual_run_id(syncjobs.ns, name, token)


def working(db: Database[Any], rid: str, timeout: float = 60) -> dict[str, Any]:
    """Wait until the run's pod has synced part of its work (a progress write after the first fetch)."""
    def check() -> dict[str, Any] | None:
        doc = db["scheduler_executions"].find_one({"_id": rid})
        return doc if doc and doc["status"] == "running" and (doc.get("processed_items") or 0) >= 1 else None
    found: dict[str, Any] = eventually(check, timeout, f"run {rid} to be working")
    return found


def pods_of(syncjobs: SyncJobs, job_name: str) -> list[client.V1Pod]:
    return list(syncjobs.core.list_namespaced_pod(syncjobs.ns, label_selector=f"job-name={job_name}").items)


def bars(db: Database[Any]) -> int:
    return db["stock_daily_quotes"].count_documents({})


# -- 1. only a cancel is cancelled ------------------------------------------------------------------------------

def test_a_run_past_its_deadline_is_failed_deadline_exceeded_not_cancelled(
        operator: OperatorProcess, syncjobs: SyncJobs, mongo_db: Database[Any]) -> None:
    syncjobs.create(real_sync("slow", delay=3, activeDeadlineSeconds=5))
    ready(syncjobs, "slow")
    rid = request(syncjobs, "slow", "go")
    done = record(mongo_db, rid, timeout=60)
    done = record(mongo_db, rid, "failed", timeout=60) if done["status"] == "running" else done
    assert (done["status"], done["reason"]) == ("failed", "DeadlineExceeded"), done
    assert not done.get("cancel_requested")
    assert done["attempts"][0]["outcome"] == "terminated"  # the pod's own account: stopped by SIGTERM


def test_a_deleted_pod_is_failed_with_kubernetes_reason_not_cancelled(
        operator: OperatorProcess, syncjobs: SyncJobs, mongo_db: Database[Any]) -> None:
    syncjobs.create(real_sync("evicted", delay=2))
    ready(syncjobs, "evicted")
    rid = request(syncjobs, "evicted", "go")
    working(mongo_db, rid)
    for pod in pods_of(syncjobs, manual_job_name("evicted", "go")):
        syncjobs.core.delete_namespaced_pod(pod.metadata.name, syncjobs.ns)  # as `kubectl delete pod` or a drain
    done = record(mongo_db, rid, "failed")
    assert done["reason"] == "BackoffLimitExceeded" and not done.get("cancel_requested"), done
    assert done["attempts"][0]["outcome"] == "terminated"
    stats = [r["status"] for r in mongo_db["scheduler_executions"].find({"job_id": "evicted"})]
    assert stats == ["failed"]


def test_cancel_stops_a_real_sync_and_records_it_cancelled(
        operator: OperatorProcess, syncjobs: SyncJobs, mongo_db: Database[Any]) -> None:
    syncjobs.create(real_sync("quotes", delay=2))
    ready(syncjobs, "quotes")
    rid = request(syncjobs, "quotes", "go")
    working(mongo_db, rid)
    syncjobs.annotate("quotes", {CANCEL: "stop"})
    done = record(mongo_db, rid, "cancelled")
    assert (done["reason"], done["cancel_requested"]) == ("Cancelled", True)
    assert done["processed_items"] < len(CODES)  # it stopped, it did not run to the end
    entries = list(mongo_db["scheduler_history"].find({"job_id": "quotes", "action": "cancel"}))
    assert len(entries) == 1 and entries[0]["details"]["runs"] == [rid]


# -- 2. a retry retries -----------------------------------------------------------------------------------------

def test_a_retry_syncs_again_and_the_record_shows_each_attempt(
        operator: OperatorProcess, syncjobs: SyncJobs, mongo_db: Database[Any]) -> None:
    syncjobs.create(real_sync("retry", delay=1.5, backoffLimit=1))
    ready(syncjobs, "retry")
    rid = request(syncjobs, "retry", "go")
    working(mongo_db, rid)
    first_pod = pods_of(syncjobs, manual_job_name("retry", "go"))[0].metadata.name
    syncjobs.core.delete_namespaced_pod(first_pod, syncjobs.ns)
    done = record(mongo_db, rid, "success", timeout=120)
    attempts = done["attempts"]
    assert [(a["number"], a["outcome"]) for a in attempts] == [(1, "terminated"), (2, "success")], attempts
    assert attempts[0]["pod"] == first_pod and attempts[1]["pod"] != first_pod
    assert done["processed_items"] == len(CODES) and bars(mongo_db) > 0  # the second pod really synced
    whole = (done["finished_at"] - done["started_at"]).total_seconds()
    assert done["execution_time"] == pytest.approx(whole, abs=1.0)  # the whole run, both attempts


def test_every_attempt_of_a_failing_run_is_recorded_and_the_last_one_decides(
        operator: OperatorProcess, syncjobs: SyncJobs, mongo_db: Database[Any]) -> None:
    syncjobs.create(real_sync("broken", backoffLimit=2, options={"file_dir": "/nonexistent/market-data"}))
    ready(syncjobs, "broken")
    rid = request(syncjobs, "broken", "go")
    done = record(mongo_db, rid, "failed", timeout=150)
    assert [(a["number"], a["outcome"]) for a in done["attempts"]] == [(1, "failed"), (2, "failed"), (3, "failed")]
    assert all(a.get("error_message") for a in done["attempts"])
    assert done["error_message"]


# -- 3. the concurrency policy covers manual runs ---------------------------------------------------------------

def test_under_forbid_a_request_while_a_run_is_active_is_recorded_skipped(
        operator: OperatorProcess, syncjobs: SyncJobs, mongo_db: Database[Any]) -> None:
    syncjobs.create(real_sync("forbid", delay=2, concurrencyPolicy="Forbid"))
    ready(syncjobs, "forbid")
    first = request(syncjobs, "forbid", "a")
    eventually(lambda: syncjobs.get("forbid")["status"].get("active"), 30, "the first run active")
    second = request(syncjobs, "forbid", "b")
    refused = record(mongo_db, second, "skipped")
    assert refused["reason"] == "ConcurrencyForbid" and first in refused["error_message"]
    assert manual_job_name("forbid", "b") not in [j.metadata.name for j in syncjobs.jobs()]
    eventually(lambda: syncjobs.get("forbid")["status"].get("lastHandledRequestedAt") == "b", 30, "ack")
    assert first in syncjobs.event("forbid", "RunSkipped").message
    assert record(mongo_db, first, "success", timeout=60)["processed_items"] == len(CODES)


def test_replace_cancels_the_active_run_and_starts_the_new_one(
        operator: OperatorProcess, syncjobs: SyncJobs, mongo_db: Database[Any]) -> None:
    syncjobs.create(real_sync("replace", delay=1.5, concurrencyPolicy="Replace"))
    ready(syncjobs, "replace")
    first = request(syncjobs, "replace", "a")
    working(mongo_db, first)
    second = request(syncjobs, "replace", "b")
    old = record(mongo_db, first, "cancelled")
    assert old["reason"] == "Replaced", old
    assert record(mongo_db, second, "success", timeout=60)["processed_items"] == len(CODES)


def test_allow_runs_both(operator: OperatorProcess, syncjobs: SyncJobs, mongo_db: Database[Any]) -> None:
    syncjobs.create(real_sync("allow", delay=1, concurrencyPolicy="Allow"))
    ready(syncjobs, "allow")
    first = request(syncjobs, "allow", "a")
    working(mongo_db, first)
    second = request(syncjobs, "allow", "b")
    assert record(mongo_db, first, "success")["status"] == record(mongo_db, second, "success")["status"]


# -- 6. no record stays running when its Job is over ------------------------------------------------------------

def test_a_run_whose_pod_vanished_without_a_heartbeat_is_failed_lost_heartbeat(
        operator: OperatorProcess, syncjobs: SyncJobs, mongo_db: Database[Any]) -> None:
    syncjobs.create(real_sync("lost", delay=2))
    ready(syncjobs, "lost")
    rid = request(syncjobs, "lost", "go")
    working(mongo_db, rid)
    # Someone suspends the Job: Kubernetes removes its pod, and the Job itself neither fails nor completes.
    syncjobs.batch.patch_namespaced_job(manual_job_name("lost", "go"), syncjobs.ns, {"spec": {"suspend": True}})
    done = record(mongo_db, rid, "failed", timeout=60)
    assert done["reason"] == "LostHeartbeat", done


@pytest.fixture
def operator_env() -> dict[str, str]:
    return {"LOST_HEARTBEAT_SECONDS": "6"}


# -- 7. long healthy runs are not reaped by age -----------------------------------------------------------------

def test_a_long_healthy_run_outlives_several_resync_periods(
        operator: OperatorProcess, syncjobs: SyncJobs, mongo_db: Database[Any]) -> None:
    syncjobs.create(real_sync("backfill", delay=3))  # ~18 s: nine resync periods, three heartbeat timeouts
    ready(syncjobs, "backfill")
    rid = request(syncjobs, "backfill", "go")
    job = eventually(lambda: next((j for j in syncjobs.jobs() if j.metadata.name == manual_job_name(
        "backfill", "go")), None), 30, "the Job")
    assert job.spec.active_deadline_seconds is None  # daily: no deadline unless the SyncJob sets one
    beats = set()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        doc = mongo_db["scheduler_executions"].find_one({"_id": rid}) or {}
        if doc.get("heartbeat_at"):
            beats.add(doc["heartbeat_at"])
        if doc.get("status") not in (None, "running"):
            break
        time.sleep(0.5)
    done = record(mongo_db, rid)
    assert done["status"] == "success", done
    assert done["execution_time"] > 15 and len(beats) >= 5


# -- 9, 10, 12 --------------------------------------------------------------------------------------------------

def test_a_request_on_an_invalid_syncjob_is_answered_failed_invalid_spec(
        operator: OperatorProcess, syncjobs: SyncJobs, mongo_db: Database[Any]) -> None:
    syncjobs.create(real_sync("bad", schedule="0 25 * * *"))
    eventually(lambda: (syncjobs.ready("bad") or {}).get("reason") == "InvalidSpec", 30, "InvalidSpec")
    rid = request(syncjobs, "bad", "go")
    refused = record(mongo_db, rid, "failed")
    assert refused["reason"] == "InvalidSpec" and "spec.schedule" in refused["error_message"]
    eventually(lambda: syncjobs.get("bad")["status"].get("lastHandledRequestedAt") == "go", 30, "ack")
    assert not syncjobs.jobs()
    syncjobs.patch_spec("bad", {"schedule": "0 16 * * 1-5"})  # fixed days later: the old request does not fire
    ready(syncjobs, "bad")
    time.sleep(3)
    assert not syncjobs.jobs()


def test_a_deleted_record_stays_deleted_while_its_job_exists(
        operator: OperatorProcess, syncjobs: SyncJobs, mongo_db: Database[Any]) -> None:
    syncjobs.create(real_sync("gone"))
    ready(syncjobs, "gone")
    rid = request(syncjobs, "gone", "go")
    record(mongo_db, rid, "success")
    assert executions.delete_finished(mongo_db, rid, "admin")
    operator.restart()  # the relist shows the Job again
    syncjobs.batch.patch_namespaced_job(manual_job_name("gone", "go"), syncjobs.ns,
                                        {"metadata": {"labels": {"touched": "yes"}}})
    time.sleep(5)  # a few resync periods
    assert mongo_db["scheduler_executions"].find_one({"_id": rid}) is None


def test_kubectl_get_shows_the_last_run_and_a_readable_next_run(
        cluster: LocalCluster, operator: OperatorProcess, syncjobs: SyncJobs, mongo_db: Database[Any]) -> None:
    syncjobs.create(real_sync("shown"))
    ready(syncjobs, "shown")
    record(mongo_db, request(syncjobs, "shown", "go"), "success")
    eventually(lambda: (syncjobs.get("shown")["status"].get("lastExecution") or {}).get("status") == "success", 30,
               "lastExecution")
    header, row = cluster.kubectl("get", "sj", "shown", "-n", syncjobs.ns).splitlines()[:2]
    titles = ["LAST STATUS", "LAST RUN", "NEXT RUN", "AGE"]
    starts = [header.index(t) for t in titles]
    cells = {t: row[a:b].strip() for t, a, b in zip(titles, starts, [*starts[1:], len(row)], strict=True)}
    assert cells["LAST STATUS"] == "success"
    assert cells["LAST RUN"] not in ("", "<none>", "<invalid>")  # the manual run, shown as an age
    next_run = dt.datetime.fromisoformat(cells["NEXT RUN"].replace("Z", "+00:00"))  # a time a person can read
    assert next_run > dt.datetime.now(dt.UTC)


# -- 5. no false missed after a restart --------------------------------------------------------------------------

def test_a_pause_and_resume_while_the_operator_was_down_records_no_missed_runs(
        operator: OperatorProcess, syncjobs: SyncJobs, mongo_db: Database[Any]) -> None:
    syncjobs.create(real_sync("paused", schedule="* * * * *", startingDeadlineSeconds=10, timeZone="UTC"))
    ready(syncjobs, "paused")
    operator.stop()
    three_hours_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    # As a previous operator left it: paused three hours ago (and resumed since, while it was down).
    client.CustomObjectsApi(syncjobs.api.api_client).patch_namespaced_custom_object_status(
        names.GROUP, names.VERSION, syncjobs.ns, names.PLURAL, "paused",
        {"status": {"scheduleScan": {"schedule": "* * * * *", "timeZone": "UTC", "scannedUntil": three_hours_ago,
                                     "pausedSince": three_hours_ago}}})
    operator.start()
    eventually(lambda: "pausedSince" not in (syncjobs.get("paused")["status"].get("scheduleScan") or {}), 30,
               "the resume to be taken in")
    time.sleep(5)  # a few resync periods
    assert mongo_db["scheduler_executions"].count_documents({"job_id": "paused", "status": "missed"}) == 0


@pytest.mark.slow
def test_under_forbid_a_tick_inside_a_manual_run_is_skipped(
        operator: OperatorProcess, syncjobs: SyncJobs, mongo_db: Database[Any]) -> None:
    # The manual run takes ~120 s: the next tick (at most 60 s after its first fetch) and its pod's start fall
    # inside it even on a slow machine.
    syncjobs.create(real_sync("tick", delay=20, schedule="* * * * *", concurrencyPolicy="Forbid",
                              startingDeadlineSeconds=30, timeZone="UTC"))
    ready(syncjobs, "tick")
    manual = request(syncjobs, "tick", "go")
    working(mongo_db, manual)

    def skipped_tick() -> dict[str, Any] | None:
        return mongo_db["scheduler_executions"].find_one({"job_id": "tick", "trigger": "schedule",
                                                         "status": "skipped"})
    tick = eventually(skipped_tick, 90, "the tick to be skipped")
    assert tick["reason"] == "ConcurrencyForbid" and manual in tick["error_message"], tick
    assert tick["_id"] == f"{syncjobs.ns}.{scheduled_job_name('tick', tick['scheduled_time'])}"
    assert mongo_db["scheduler_executions"].count_documents({"job_id": "tick", "status": "running"}) <= 1


# -- 6. MongoDB down when the Job ends ---------------------------------------------------------------------------


def test_a_run_that_ended_while_mongodb_was_down_is_closed_with_the_jobs_reason_once_it_is_back(
        cluster: LocalCluster, k8s: client.ApiClient, namespace: str, syncjob_crd: str, own_mongo: MongoServer,
        tmp_path: Path) -> None:
    db = MongoClient(own_mongo.uri, tz_aware=True)["outage"]
    uri = mongo_uri_for(own_mongo, db)
    secret = {"MONGO_URI": base64.b64encode(uri.encode()).decode()}
    client.CoreV1Api(k8s).create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="syncjob-mongo"), data=secret))
    op = OperatorProcess(cluster, namespace, uri, tmp_path / "operator-logs", ["syncjob-sync", "run"],
                         {"RESYNC_SECONDS": "2"}).start()
    try:
        syncjobs = SyncJobs(k8s, namespace)
        syncjobs.create(real_sync("outage", delay=2, activeDeadlineSeconds=8))
        ready(syncjobs, "outage")
        rid = request(syncjobs, "outage", "go")
        working(db, rid)
        own_mongo.stop()  # down before the deadline: neither the pod nor the Job's final event can write
        eventually(lambda: any(c.type == "Failed" and c.status == "True" for c in (
            syncjobs.batch.read_namespaced_job(manual_job_name("outage", "go"), namespace).status.conditions or [])),
            60, "the Job to fail")
        time.sleep(3)
        own_mongo.start()
        done = record(db, rid, "failed", timeout=30)  # within a few resync periods of MongoDB coming back
        assert done["reason"] == "DeadlineExceeded", done
    finally:
        op.stop()
