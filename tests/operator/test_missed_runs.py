"""Runs the schedule should have started but did not are recorded `missed` or `skipped`, with the reason."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pymongo.database import Database
from syncjob_operator import records
from syncjob_operator.reconcile import Outcome, Reconciler
from syncjob_operator.settings import OperatorSettings

from syncjob.model import SyncJob
from syncjob.runs import scheduled_run_id
from testbed.mongo import MongoServer
from tests.conftest import make_syncjob
from tests.operator.conftest import OperatorProcess, SyncJobs, eventually, mongo_uri_for

NOW = dt.datetime(2026, 11, 27, 2, 0, 30, tzinfo=dt.UTC)


def prepared(uri: str) -> Reconciler:
    """A reconciler whose database went through the operator's start-up (indexes, migration)."""
    records.prepare(uri)
    return Reconciler(OperatorSettings(mongo_uri=uri))


def _syncjob(created: dt.datetime, **spec: Any) -> SyncJob:
    return SyncJob.from_k8s({
        "metadata": {"name": "quotes", "namespace": "md", "uid": "u1", "generation": 1,
                     "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ")},
        "spec": {"task": "quotes", "schedule": "*/10 * * * *", "timeZone": "Asia/Shanghai",
                 "startingDeadlineSeconds": 60, **spec},
    })


def test_operator_downtime_leaves_missed_records_with_scheduled_time_and_reason(
        mongo_server: MongoServer, mongo_db: Database[Any]) -> None:
    reconciler = prepared(mongo_uri_for(mongo_server, mongo_db))
    sj = _syncjob(NOW - dt.timedelta(minutes=35))
    ran = scheduled_run_id("md", "quotes", dt.datetime(2026, 11, 27, 1, 40, tzinfo=dt.UTC))
    mongo_db["scheduler_executions"].insert_one({"_id": ran, "job_id": "quotes", "namespace": "md",
                                                 "status": "success", "timestamp": NOW})
    outcome = Outcome(status={})
    reconciler.scan_schedule(sj, outcome, NOW, judge=True)

    missed = list(mongo_db["scheduler_executions"].find({"status": "missed"}).sort("scheduled_time", 1))
    assert [m["scheduled_time"].strftime("%H:%M") for m in missed] == ["01:30", "01:50"]  # 01:40 ran; 02:00 not due
    assert [m["_id"] for m in missed] == [scheduled_run_id("md", "quotes", m["scheduled_time"]) for m in missed]
    assert all(m["reason"] == "MissedStartingDeadline" and m["trigger"] == "schedule" for m in missed)
    assert all("no Job started within 60s" in m["error_message"] for m in missed)
    assert [e[1] for e in outcome.events] == ["RunMissed", "RunMissed"]
    assert outcome.status["scheduleScan"]["scannedUntil"] == "2026-11-27T01:50:00Z"

    reconciler.scan_schedule(sj, Outcome(status={}), NOW, judge=True)  # idempotent, also after a restart
    Reconciler(reconciler.settings).scan_schedule(sj, Outcome(status={}), NOW, judge=True)
    assert mongo_db["scheduler_executions"].count_documents({"status": "missed"}) == 2


def test_forbid_overlap_is_recorded_skipped_naming_the_run_still_going(
        mongo_server: MongoServer, mongo_db: Database[Any]) -> None:
    reconciler = prepared(mongo_uri_for(mongo_server, mongo_db))
    sj = _syncjob(NOW - dt.timedelta(minutes=25), concurrencyPolicy="Forbid")
    long_run = scheduled_run_id("md", "quotes", dt.datetime(2026, 11, 27, 1, 40, tzinfo=dt.UTC))
    mongo_db["scheduler_executions"].insert_one({
        "_id": long_run, "job_id": "quotes", "namespace": "md", "status": "running",
        "started_at": dt.datetime(2026, 11, 27, 1, 40, tzinfo=dt.UTC), "timestamp": NOW})
    reconciler.scan_schedule(sj, Outcome(status={}), NOW, judge=True)
    skipped = mongo_db["scheduler_executions"].find_one({"status": "skipped"})
    assert skipped is not None
    assert skipped["scheduled_time"].strftime("%H:%M") == "01:50"
    assert skipped["reason"] == "ConcurrencyForbid"
    assert f"run {long_run} was still running" in skipped["error_message"]


def test_paused_job_records_nothing(mongo_server: MongoServer, mongo_db: Database[Any]) -> None:
    reconciler = prepared(mongo_uri_for(mongo_server, mongo_db))
    reconciler.scan_schedule(_syncjob(NOW - dt.timedelta(hours=2), paused=True), Outcome(status={}), NOW,
                             judge=True)
    assert mongo_db["scheduler_executions"].count_documents({}) == 0


@pytest.fixture
def sync_command() -> list[str]:
    return ["sh", "-c", "sleep 150"]


@pytest.mark.slow
def test_every_minute_schedule_runs_on_its_own_and_a_forbid_overlap_is_skipped(
        operator: OperatorProcess, syncjobs: SyncJobs, mongo_db: Database[Any]) -> None:
    syncjobs.create(make_syncjob("tick", schedule="* * * * *", concurrencyPolicy="Forbid",
                                 startingDeadlineSeconds=10, timeZone="UTC"))

    def scheduled_record() -> dict[str, Any] | None:
        return mongo_db["scheduler_executions"].find_one({"job_id": "tick", "trigger": "schedule",
                                                         "status": "running"})
    first = eventually(scheduled_record, 100, "a Job created by the CronJob controller")
    assert first["scheduled_time"] is not None and first["is_manual"] is False
    assert any(j.metadata.name == first["k8s_job"] and first["_id"] == f"{syncjobs.ns}.{j.metadata.name}"
               for j in syncjobs.jobs())
    skipped = eventually(lambda: mongo_db["scheduler_executions"].find_one({"job_id": "tick", "status": "skipped"}),
                         130, "the overlapping tick to be recorded skipped")
    assert f"run {first['_id']} was still running" in skipped["error_message"]
    assert skipped["scheduled_time"] > first["scheduled_time"]
    # the Event is posted after the record is written, at the end of the pass
    syncjobs.event("tick", "RunSkipped")
