"""A run's pods as Kubernetes runs them: each is an attempt; only a cancel is `cancelled`; a retry retries; Forbid
holds across runs; a late cancel is never a silent success; a deleted record stays deleted.

The pods run as `python -m sync_image run` subprocesses (the exit code is what Kubernetes reads) against SecantusDB
with the `file` source; the tests read what a user sees: the execution record and the market data.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from pymongo.database import Database

from sync_image.runner import SIGTERM_REASON, ExitCode, Runner
from sync_image.sources.file import SAMPLE_DATA, FileSource
from sync_image.tasks import TaskResult
from syncjob import executions, mongo
from syncjob.executions import Writer
from syncjob.model import ExecutionStatus
from tests.sync_image.conftest import contract_env, settings
from tests.sync_image.test_main import RUN_ID, record, run, start

SIX = ["600000.SH", "600519.SH", "688981.SH", "000001.SZ", "300750.SZ", "920001.BJ"]


def operator_opens(db: Database[Any], run_id: str = RUN_ID, job_id: str = "file-daily-sync") -> None:
    """The record as the operator creates it when it sees the Job, before any pod starts."""
    namespace, job = run_id.split(".", 1)
    executions.open_run(db, executions.identity(run_id=run_id, job_id=job_id, namespace=namespace, job=job,
                                                trigger="manual", force=False, scheduled_time=None), Writer.OPERATOR)


def slow_env(uri: str, heartbeat: float = 15.0, **overrides: str) -> dict[str, str]:
    """A quotes run whose one fetch sleeps 30 s: a pod that is mid-source-call for as long as a test needs."""
    options = {"codes": SIX, "file_delay_seconds": 30, "heartbeat_seconds": heartbeat}
    return contract_env(uri, SYNC_TASK="quotes", SYNC_OPTIONS=json.dumps(options), SYNC_POD_NAME="pod-a",
                        **overrides)


def wait_until_fetching(db: Database[Any], proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = db[mongo.EXECUTIONS].find_one({"_id": RUN_ID}) or {}
        if str(found.get("progress_message") or "").startswith("Syncing"):
            time.sleep(0.3)  # into the source call
            return
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.05)
    raise AssertionError("the run never reached its source call")


def stop(proc: subprocess.Popen[str]) -> tuple[int, str, float]:
    """SIGTERM, as the kubelet sends it; the exit code, stderr and how long the pod took to go."""
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    return proc.returncode, stderr, time.monotonic() - sent


# -- only a cancel is `cancelled` ---------------------------------------------------------------------------------

def test_sigterm_without_a_cancel_request_leaves_the_record_running_for_the_operator(
        mongo_uri: str, db: Database[Any]) -> None:
    proc = start(slow_env(mongo_uri))
    wait_until_fetching(db, proc)
    code, stderr, took = stop(proc)
    assert code == ExitCode.TERMINATED == 143, stderr
    assert took < 10, "SIGTERM must interrupt the source's sleep"
    rec = record(db)
    assert rec["status"] == "running" and "finished_at" not in rec  # the operator gives the verdict
    [attempt] = rec["attempts"]
    assert (attempt["number"], attempt["pod"], attempt["outcome"], attempt["reason"]) == (
        1, "pod-a", "terminated", SIGTERM_REASON)
    assert "deadline" in attempt["error_message"] and "eviction" in attempt["error_message"]
    assert attempt["finished_at"] >= attempt["started_at"]
    assert db[mongo.MARKET_QUOTES].count_documents({}) == 0


@pytest.mark.parametrize(("asked", "reason", "says"), [("Cancelled", "Cancelled", "cancelled by alice"),
                                                        ("Replaced", "Replaced", "replaced by a newer run")])
def test_sigterm_after_a_cancel_request_is_that_cancel(mongo_uri: str, db: Database[Any], asked: str, reason: str,
                                                       says: str) -> None:
    proc = start(slow_env(mongo_uri))
    wait_until_fetching(db, proc)
    assert executions.request_cancel(db, [RUN_ID], "alice", reason=asked) == [RUN_ID]
    code, stderr, took = stop(proc)  # the operator deletes the Job after the cancel: the kubelet's SIGTERM
    assert code == ExitCode.CANCELLED, stderr
    assert took < 10
    rec = record(db)
    assert (rec["status"], rec["reason"], rec["closed_by"]) == ("cancelled", reason, "pod")
    assert says in rec["error_message"] and rec["cancel_requested"] is True
    assert isinstance(rec["execution_time"], float)
    assert [(a["outcome"], a["reason"]) for a in rec["attempts"]] == [("cancelled", reason)]


def test_a_cancel_interrupts_a_slow_source_call_promptly(mongo_uri: str, db: Database[Any]) -> None:
    proc = start(slow_env(mongo_uri, heartbeat=0.3))
    wait_until_fetching(db, proc)
    asked = time.monotonic()
    executions.request_cancel(db, [RUN_ID], "alice")
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.CANCELLED, stderr
    assert time.monotonic() - asked < 10, "the heartbeat must interrupt the 30 s sleep"
    rec = record(db)
    assert (rec["status"], rec["reason"]) == ("cancelled", "Cancelled")
    assert db[mongo.MARKET_QUOTES].count_documents({}) == 0


def test_a_verdict_written_by_the_operator_stops_a_slow_pod_which_then_writes_nothing(
        mongo_uri: str, db: Database[Any]) -> None:
    proc = start(slow_env(mongo_uri, heartbeat=0.3))
    wait_until_fetching(db, proc)
    assert executions.close(db, RUN_ID, ExecutionStatus.FAILED, Writer.OPERATOR, reason="DeadlineExceeded",
                            error_message="the Job ran past activeDeadlineSeconds")
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == ExitCode.FAILED, stderr
    rec = record(db)
    assert (rec["status"], rec["reason"], rec["closed_by"]) == ("failed", "DeadlineExceeded", "operator")
    assert "outcome" not in rec["attempts"][0]
    assert db[mongo.MARKET_QUOTES].count_documents({}) == 0


# -- a retry retries ----------------------------------------------------------------------------------------------

def test_failed_attempts_before_the_last_leave_the_run_to_the_next_pod(mongo_uri: str, db: Database[Any],
                                                                       tmp_path: Path) -> None:
    options = json.dumps({"file_dir": str(tmp_path / "missing"), "start_date": "2026-10-01"})
    codes = []
    for pod in ("pod-1", "pod-2", "pod-3"):
        proc = run(contract_env(mongo_uri, SYNC_OPTIONS=options, SYNC_BACKOFF_LIMIT="2", SYNC_POD_NAME=pod))
        codes.append(proc.returncode)
        rec = record(db)
        if pod != "pod-3":
            assert rec["status"] == "running", proc.stderr
            assert "error_message" not in rec and "finished_at" not in rec
    assert codes == [1, 1, 1]
    rec = record(db)
    assert (rec["status"], rec["closed_by"]) == ("failed", "pod")
    assert "every source failed" in rec["error_message"] and rec["traceback"]
    assert isinstance(rec["execution_time"], float)
    attempts = rec["attempts"]
    assert [(a["number"], a["pod"], a["outcome"]) for a in attempts] == [
        (1, "pod-1", "failed"), (2, "pod-2", "failed"), (3, "pod-3", "failed")]
    assert len({a["reason"] for a in attempts}) == 1 and attempts[0]["reason"]
    for a in attempts:
        assert a["error_message"] == rec["error_message"] and a["traceback"]
        assert a["source_attempts"] and {x["error_class"] for x in a["source_attempts"]} == {"SourceUnavailable"}
        assert all("missing does not exist" in x["message"] for x in a["source_attempts"])


def test_a_retry_after_a_failed_attempt_really_syncs(mongo_uri: str, db: Database[Any], tmp_path: Path) -> None:
    folder = tmp_path / "data"
    env = contract_env(mongo_uri, SYNC_BACKOFF_LIMIT="1", SYNC_OPTIONS=json.dumps({
        "file_dir": str(folder), "start_date": "2026-10-01", "end_date": "2026-11-27"}))
    first = run({**env, "SYNC_POD_NAME": "pod-1"})
    assert first.returncode == 1 and record(db)["status"] == "running", first.stderr
    shutil.copytree(SAMPLE_DATA, folder)  # the source is back
    second = run({**env, "SYNC_POD_NAME": "pod-2"})
    assert second.returncode == 0, second.stderr
    rec = record(db)
    assert (rec["status"], rec["source_used"]) == ("success", "file")
    assert [(a["pod"], a["outcome"]) for a in rec["attempts"]] == [("pod-1", "failed"), ("pod-2", "success")]
    assert rec["attempts"][1]["source_attempts"] and rec["attempts"][1]["return_value"]["inserted"] > 0
    assert db[mongo.STOCK_DAILY_QUOTES].count_documents({}) == rec["return_value"]["inserted"] > 0


def test_bad_configuration_is_not_retried(mongo_uri: str, db: Database[Any]) -> None:
    proc = run(contract_env(mongo_uri, SYNC_TASK="everything", SYNC_BACKOFF_LIMIT="3", SYNC_POD_NAME="pod-1"))
    assert proc.returncode == ExitCode.CONFIGURATION
    rec = record(db)
    assert (rec["status"], rec["reason"]) == ("failed", "ConfigurationError")
    assert [(a["pod"], a["outcome"], a["reason"]) for a in rec["attempts"]] == [
        ("pod-1", "failed", "ConfigurationError")]
    again = run(contract_env(mongo_uri, SYNC_TASK="everything", SYNC_BACKOFF_LIMIT="3", SYNC_POD_NAME="pod-2"))
    assert again.returncode == ExitCode.CONFIGURATION and len(record(db)["attempts"]) == 1


# -- concurrencyPolicy Forbid covers manual runs --------------------------------------------------------------

def forbid_run(db: Database[Any], job: str) -> ExitCode:
    return Runner(settings(SYNC_RUN_ID=job, SYNCJOB_NAME="daily-sync", SYNC_SOURCES="file",
                           SYNC_CONCURRENCY_POLICY="Forbid", SYNC_POD_NAME=f"{job}-pod",
                           SYNC_OPTIONS={"codes": ["600000.SH"], "start_date": "2026-11-01",
                                         "end_date": "2026-11-27"}), db, sources=[FileSource()]).run()


def test_forbid_skips_a_run_while_another_holds_the_slot(db: Database[Any]) -> None:
    first = "market-data.daily-sync-m1"
    operator_opens(db, first, "daily-sync")
    executions.begin_attempt(db, first, "daily-sync-m1-pod")
    assert executions.claim_slot(db, "market-data", "daily-sync", first) is None  # the first run's pod syncs
    assert forbid_run(db, "daily-sync-m2") == ExitCode.SUCCESS
    rec = record(db, "market-data.daily-sync-m2")
    assert (rec["status"], rec["reason"]) == ("skipped", "ConcurrencyForbid")
    assert f"run {first} was still running" in rec["error_message"]
    assert [(a["outcome"], a["reason"]) for a in rec["attempts"]] == [("skipped", "ConcurrencyForbid")]
    assert db[mongo.STOCK_DAILY_QUOTES].count_documents({}) == 0
    assert record(db, first)["status"] == "running"

    assert executions.close(db, first, ExecutionStatus.SUCCESS, Writer.POD)  # the slot goes with the verdict
    assert forbid_run(db, "daily-sync-m3") == ExitCode.SUCCESS
    assert record(db, "market-data.daily-sync-m3")["status"] == "success"
    assert db[mongo.STOCK_DAILY_QUOTES].count_documents({}) > 0
    assert db[mongo.RUN_SLOTS].find_one({"_id": "market-data/daily-sync"})["run_id"] is None  # type: ignore[index]


def test_allow_takes_no_slot(db: Database[Any]) -> None:
    first = "market-data.daily-sync-m1"
    operator_opens(db, first, "daily-sync")
    assert executions.claim_slot(db, "market-data", "daily-sync", first) is None
    runner = Runner(settings(SYNC_RUN_ID="daily-sync-m2", SYNC_SOURCES="file", SYNC_OPTIONS={
        "codes": ["600000.SH"], "start_date": "2026-11-01", "end_date": "2026-11-27"}), db, sources=[FileSource()])
    assert runner.run() == ExitCode.SUCCESS
    assert record(db, "market-data.daily-sync-m2")["status"] == "success"


# -- a late cancel does not end `success` silently ----------------------------------------------------------

class CancelAfterLastCheckpoint(Runner):
    def _verdict(self, result: TaskResult) -> ExitCode:
        executions.request_cancel(self.db, [self.settings.run_id], "alice")
        return super()._verdict(result)


def test_a_cancel_after_the_last_checkpoint_is_cancelled_not_success(db: Database[Any]) -> None:
    runner = CancelAfterLastCheckpoint(settings(SYNC_SOURCES="file", SYNC_OPTIONS={
        "codes": ["600000.SH", "000001.SZ"], "start_date": "2026-11-01", "end_date": "2026-11-27"}), db,
        sources=[FileSource()])
    assert runner.run() == ExitCode.CANCELLED
    rec = record(db, "market-data.daily-sync-m1")
    assert (rec["status"], rec["reason"], rec["cancel_requested"]) == ("cancelled", "Cancelled", True)
    written = db[mongo.STOCK_DAILY_QUOTES].count_documents({})
    assert written > 0 and rec["return_value"]["inserted"] == written
    assert "after the last checkpoint" in rec["error_message"] and f"{written} inserted" in rec["error_message"]
    assert [a["outcome"] for a in rec["attempts"]] == ["cancelled"]


# -- a deleted record stays deleted -------------------------------------------------------------------------

def test_a_pod_of_a_deleted_record_writes_nothing_and_exits_0(mongo_uri: str, db: Database[Any]) -> None:
    operator_opens(db)
    executions.close(db, RUN_ID, ExecutionStatus.FAILED, Writer.OPERATOR, reason="BackoffLimitExceeded")
    assert executions.delete_finished(db, RUN_ID, "admin")
    proc = run(contract_env(mongo_uri))
    assert proc.returncode == 0, proc.stderr
    assert "an admin deleted its execution record" in proc.stderr
    assert db[mongo.EXECUTIONS].find_one({"_id": RUN_ID}) is None
    assert db[mongo.STOCK_DAILY_QUOTES].count_documents({}) == 0
