"""The execution record's state machine: every transition, who may make it, and that races keep the first verdict."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from pymongo.database import Database

from syncjob import executions, mongo
from syncjob.executions import TRANSITIONS, TransitionRefused, Writer
from syncjob.model import ExecutionStatus as S

ALLOWED = {
    (None, S.RUNNING): {Writer.POD, Writer.OPERATOR},
    (None, S.MISSED): {Writer.OPERATOR},
    (None, S.SKIPPED): {Writer.OPERATOR},
    (None, S.FAILED): {Writer.OPERATOR},
    (S.RUNNING, S.SUCCESS): {Writer.POD},
    (S.RUNNING, S.SKIPPED): {Writer.POD},
    (S.RUNNING, S.FAILED): {Writer.POD, Writer.OPERATOR, Writer.API},
    (S.RUNNING, S.CANCELLED): {Writer.POD, Writer.OPERATOR},
}


@pytest.mark.parametrize(("current", "new", "writer"),
                         list(itertools.product([None, *S], list(S), list(Writer))))
def test_every_transition_is_allowed_only_to_its_writers(current: S | None, new: S, writer: Writer) -> None:
    if writer in ALLOWED.get((current, new), set()):
        executions.check(current, new, writer)
    else:
        with pytest.raises(TransitionRefused):
            executions.check(current, new, writer)


def test_a_final_status_has_no_way_out() -> None:
    assert not [k for k in TRANSITIONS if k[0] is not None and k[0] is not S.RUNNING]
    assert {k: set(v) for k, v in TRANSITIONS.items()} == ALLOWED


def _ident(run_id: str = "ns.job-1") -> dict[str, Any]:
    return executions.identity(run_id=run_id, job_id="job", namespace="ns", job="job-1", trigger="manual",
                               force=False, scheduled_time=None)


def test_the_first_verdict_stands(mongo_db: Database[Any]) -> None:
    executions.open_run(mongo_db, _ident(), Writer.OPERATOR)
    assert executions.close(mongo_db, "ns.job-1", S.FAILED, Writer.OPERATOR, reason="DeadlineExceeded")
    assert not executions.close(mongo_db, "ns.job-1", S.SUCCESS, Writer.POD)
    record = mongo_db[mongo.EXECUTIONS].find_one({"_id": "ns.job-1"})
    assert (record["status"], record["reason"], record["closed_by"]) == ("failed", "DeadlineExceeded", "operator")
    assert isinstance(record["execution_time"], float) and record["execution_time"] >= 0


def test_a_requested_cancel_blocks_a_late_success(mongo_db: Database[Any]) -> None:
    executions.open_run(mongo_db, _ident(), Writer.POD)
    assert executions.request_cancel(mongo_db, ["ns.job-1"], "alice") == ["ns.job-1"]
    assert not executions.close(mongo_db, "ns.job-1", S.SUCCESS, Writer.POD, unless_cancel_requested=True)
    assert executions.close(mongo_db, "ns.job-1", S.CANCELLED, Writer.POD, reason="Cancelled")
    record = mongo_db[mongo.EXECUTIONS].find_one({"_id": "ns.job-1"})
    assert (record["status"], record["cancel_requested"], record["cancel_requested_by"]) == (
        "cancelled", True, "alice")


def test_a_deleted_record_is_not_recreated(mongo_db: Database[Any]) -> None:
    executions.open_run(mongo_db, _ident(), Writer.OPERATOR)
    assert not executions.delete_finished(mongo_db, "ns.job-1", "admin")  # running: not deleted
    assert executions.open_run(mongo_db, _ident(), Writer.OPERATOR) is not None
    executions.close(mongo_db, "ns.job-1", S.SUCCESS, Writer.POD)
    assert executions.delete_finished(mongo_db, "ns.job-1", "admin")
    assert executions.open_run(mongo_db, _ident(), Writer.OPERATOR) is None
    assert not executions.record_not_run(mongo_db, _ident(), S.MISSED, "MissedStartingDeadline", "missed")
    assert mongo_db[mongo.EXECUTIONS].find_one({"_id": "ns.job-1"}) is None


def test_attempts_are_numbered_and_kept(mongo_db: Database[Any]) -> None:
    executions.open_run(mongo_db, _ident(), Writer.OPERATOR)
    first = executions.begin_attempt(mongo_db, "ns.job-1", "pod-a")
    executions.end_attempt(mongo_db, "ns.job-1", first, "failed", reason="Error", error_message="boom")
    second = executions.begin_attempt(mongo_db, "ns.job-1", "pod-b")
    record = mongo_db[mongo.EXECUTIONS].find_one({"_id": "ns.job-1"})
    assert (first, second, record["attempt"]) == (1, 2, 2)
    assert [(a["number"], a["pod"], a.get("outcome")) for a in record["attempts"]] == [
        (1, "pod-a", "failed"), (2, "pod-b", None)]  # numbered from the start, not only when they end


def test_the_verdict_and_its_deciding_attempt_are_one_write(mongo_db: Database[Any]) -> None:
    """A record is complete the moment it is final: no reader sees the verdict without the last attempt's entry."""
    executions.open_run(mongo_db, _ident(), Writer.OPERATOR)
    number = executions.begin_attempt(mongo_db, "ns.job-1", "pod-a")
    closed = executions.close(mongo_db, "ns.job-1", S.FAILED, Writer.POD, reason="SyncFailed", error_message="boom",
                              attempt=executions.AttemptEnd(number, "failed", "SyncFailed", "boom",
                                                            {"processed_items": 2}))
    record = mongo_db[mongo.EXECUTIONS].find_one({"_id": "ns.job-1"})
    assert closed and record["status"] == "failed"
    (entry,) = record["attempts"]
    assert (entry["number"], entry["outcome"], entry["reason"], entry["error_message"], entry["processed_items"]) == (
        1, "failed", "SyncFailed", "boom", 2)
    assert entry["finished_at"] is not None
    # a second writer's verdict does not touch the attempt either
    assert not executions.close(mongo_db, "ns.job-1", S.SUCCESS, Writer.POD,
                                attempt=executions.AttemptEnd(number, "success"))
    assert mongo_db[mongo.EXECUTIONS].find_one({"_id": "ns.job-1"})["attempts"][0]["outcome"] == "failed"


def test_forbid_gives_one_run_the_slot_until_its_record_closes(mongo_db: Database[Any]) -> None:
    for rid in ("ns.job-1", "ns.job-2"):
        executions.open_run(mongo_db, _ident(rid), Writer.OPERATOR)
    assert executions.claim_slot(mongo_db, "ns", "job", "ns.job-1") is None
    assert executions.claim_slot(mongo_db, "ns", "job", "ns.job-1") is None  # a retry keeps it
    assert executions.claim_slot(mongo_db, "ns", "job", "ns.job-2") == "ns.job-1"
    assert executions.claim_slot(mongo_db, "other", "job", "other.job-2") is None  # another namespace's job
    executions.close(mongo_db, "ns.job-1", S.SUCCESS, Writer.POD)
    assert executions.claim_slot(mongo_db, "ns", "job", "ns.job-2") is None


def test_a_slot_held_by_a_record_closed_elsewhere_is_free(mongo_db: Database[Any]) -> None:
    executions.open_run(mongo_db, _ident("ns.job-1"), Writer.OPERATOR)
    assert executions.claim_slot(mongo_db, "ns", "job", "ns.job-1") is None
    mongo_db[mongo.EXECUTIONS].update_one({"_id": "ns.job-1"}, {"$set": {"status": "failed"}})  # a crash mid-close
    assert executions.claim_slot(mongo_db, "ns", "job", "ns.job-2") is None


def test_two_deletes_at_once_leave_the_tombstone(mongo_db: Database[Any]) -> None:
    executions.open_run(mongo_db, _ident(), Writer.OPERATOR)
    executions.close(mongo_db, "ns.job-1", S.SUCCESS, Writer.POD)
    assert executions.delete_finished(mongo_db, "ns.job-1", "a")
    assert not executions.delete_finished(mongo_db, "ns.job-1", "b")  # the second of a double click
    assert executions.open_run(mongo_db, _ident(), Writer.OPERATOR) is None


def test_the_first_cancel_request_stands(mongo_db: Database[Any]) -> None:
    executions.open_run(mongo_db, _ident(), Writer.OPERATOR)
    assert executions.request_cancel(mongo_db, ["ns.job-1"], "alice") == ["ns.job-1"]
    first = mongo_db[mongo.EXECUTIONS].find_one({"_id": "ns.job-1"})
    assert executions.request_cancel(mongo_db, ["ns.job-1"], None, reason="Replaced") == ["ns.job-1"]
    again = mongo_db[mongo.EXECUTIONS].find_one({"_id": "ns.job-1"})
    assert (again["cancel_requested_by"], again["cancel_reason"]) == ("alice", "Cancelled")
    assert again["cancel_requested_at"] == first["cancel_requested_at"]  # the grace period is not pushed back
