"""A run in-process against SecantusDB with fake libraries behind the real adapters: the execution record and data."""

# ruff: noqa: RUF001  (library error messages are quoted verbatim, full-width punctuation included)
from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pandas as pd
import pytest
from pymongo.database import Database

from sync_image.runner import ExitCode, Runner
from sync_image.sources.akshare import AkshareSource
from sync_image.sources.baostock import BaostockSource
from sync_image.sources.base import Source
from sync_image.sources.fake import FakeCall, FakeLibrary, baostock_failure
from sync_image.sources.file import FileSource
from sync_image.sources.tushare import TushareSource
from syncjob import executions, mongo
from syncjob.executions import Writer
from tests.sync_image.conftest import ak_hist, settings

RUN_ID = "market-data.daily-sync-m1"
CODES = ["600000.SH", "600519.SH", "000001.SZ", "300750.SZ"]
OPTIONS = {"codes": CODES, "batch_size": 1, "start_date": "2018-07-01", "end_date": "2018-07-18",
           "concurrency": 1}  # one batch after another: these tests follow a run batch by batch


def ts_bars(call: FakeCall) -> pd.DataFrame:
    return pd.DataFrame([[code, "20180718", 8.75, 8.85, 8.69, 8.70, 8.72, -0.02, -0.23, 5000.0, 4000.0]
                         for code in call.kwargs["ts_code"].split(",")],
                        columns=["ts_code", "trade_date", "open", "high", "low", "close", "pre_close", "change",
                                 "pct_chg", "vol", "amount"])


def tushare(handler: Any = ts_bars) -> TushareSource:
    return TushareSource("token", pro=FakeLibrary(handler), module=FakeLibrary(handler))


def akshare() -> AkshareSource:
    def hist(call: FakeCall) -> pd.DataFrame:
        frame = ak_hist(call.kwargs["symbol"])
        frame["日期"] = [dt.date(2018, 7, 18)]
        return frame

    return AkshareSource(api=FakeLibrary(hist))


def down(call: FakeCall) -> Any:
    raise OSError("Network is unreachable")


def run(db: Database[Any], sources: list[Source], **overrides: Any) -> ExitCode:
    values = {"SYNC_OPTIONS": OPTIONS, **overrides}
    return Runner(settings(**values), db, sources=sources).run()


def operator_opens(db: Database[Any], run_id: str = RUN_ID) -> None:
    """The record as the operator creates it when it sees the Job, before the pod starts."""
    namespace, job = run_id.split(".", 1)
    executions.open_run(db, executions.identity(run_id=run_id, job_id="daily-sync", namespace=namespace, job=job,
                                                trigger="manual", force=False, scheduled_time=None), Writer.OPERATOR)


def record(db: Database[Any], run_id: str = RUN_ID) -> dict[str, Any]:
    found = db[mongo.EXECUTIONS].find_one({"_id": run_id})
    assert found is not None
    return found


def test_successful_run_records_counts_source_and_attempts(db: Database[Any]) -> None:
    assert run(db, [tushare(), akshare()]) == ExitCode.SUCCESS
    rec = record(db)
    assert rec["status"] == "success" and rec["progress"] == 100 and rec["source_used"] == "tushare"
    assert rec["return_value"]["inserted"] == 4 and rec["return_value"]["errors"] == 0
    assert [a["source"] for a in rec["source_attempts"]] == ["tushare"] * 4
    assert rec["job_id"] == "daily-sync" and rec["namespace"] == "market-data" and rec["is_manual"] is True
    assert rec["finished_at"] >= rec["started_at"] and rec["execution_time"] >= 0
    assert rec["pod_started_at"].tzinfo is not None and rec["heartbeat_at"] is not None
    assert (rec["_id"], rec["k8s_job"], rec["schema_version"], rec["closed_by"]) == (
        RUN_ID, "daily-sync-m1", 2, "pod")
    assert isinstance(rec["execution_time"], float) and rec["execution_time"] < 60  # seconds
    [attempt] = rec["attempts"]
    assert (attempt["number"], attempt["outcome"], attempt["source_used"]) == (1, "success", "tushare")
    assert attempt["source_attempts"] == rec["source_attempts"]
    bar = db[mongo.STOCK_DAILY_QUOTES].find_one({"code": "600519.SH"})
    assert bar is not None
    assert (bar["symbol"], bar["trade_date"], bar["data_source"], bar["period"]) == ("600519", "2018-07-18",
                                                                                    "tushare", "daily")
    assert bar["volume"] == 500000.0 and bar["amount"] == 4_000_000.0


def test_fallback_moves_batches_to_the_next_source_mid_run(db: Database[Any]) -> None:
    def fails_after_two(call: FakeCall) -> pd.DataFrame:
        if len([c for c in calls if c.name == "daily"]) > 2:
            raise Exception("抱歉，您每天最多访问该接口2次")
        return ts_bars(call)

    ts = tushare(fails_after_two)
    calls = ts._pro.calls  # type: ignore[union-attr]
    assert run(db, [ts, akshare()]) == ExitCode.SUCCESS
    sources = {d["code"]: d["data_source"] for d in db[mongo.STOCK_DAILY_QUOTES].find()}
    assert sources == {"600000.SH": "tushare", "600519.SH": "tushare", "000001.SZ": "akshare",
                       "300750.SZ": "akshare"}
    rec = record(db)
    assert {"source": "tushare", "error_class": "SourceRateLimited", "batch": 2} .items() <= {
        k: v for k, v in rec["source_attempts"][2].items() if k != "message"}.items()
    assert rec["return_value"]["by_source"] == {"tushare": 2, "akshare": 2}


def test_every_source_failing_is_a_failed_run_never_success(db: Database[Any]) -> None:
    bs = BaostockSource(api=FakeLibrary(lambda call: baostock_failure()))
    assert run(db, [tushare(down), AkshareSource(api=FakeLibrary(down)), bs]) == ExitCode.FAILED
    rec = record(db)
    assert rec["status"] == "failed" and rec["source_used"] is None
    assert "every source failed" in rec["error_message"]
    assert {(a["source"], a["error_class"]) for a in rec["source_attempts"]} == {
        ("tushare", "SourceUnavailable"), ("akshare", "SourceUnavailable"), ("baostock", "SourceUnavailable")}
    assert rec["return_value"]["errors"] == 4
    assert db[mongo.STOCK_DAILY_QUOTES].count_documents({}) == 0


@pytest.mark.parametrize(("max_ratio", "status", "code"), [(0.3, "success", ExitCode.SUCCESS),
                                                           (0.1, "failed", ExitCode.FAILED)])
def test_partial_failure_is_judged_by_the_error_ratio(db: Database[Any], max_ratio: float, status: str,
                                                      code: ExitCode) -> None:
    def one_code_fails(call: FakeCall) -> pd.DataFrame:
        if call.kwargs["ts_code"] == "000001.SZ":
            raise OSError("connection reset")
        return ts_bars(call)

    assert run(db, [tushare(one_code_fails)],
               SYNC_OPTIONS={**OPTIONS, "max_error_ratio": max_ratio}) == code
    rec = record(db)
    assert rec["status"] == status and rec["return_value"]["errors"] == 1 and rec["return_value"]["inserted"] == 3
    assert "000001.SZ" in rec["error_message"]


def test_cancel_requested_mid_run_stops_cleanly_between_batches(db: Database[Any]) -> None:
    def cancel_during_second(call: FakeCall) -> pd.DataFrame:
        if call.kwargs["ts_code"] == "600519.SH":
            db[mongo.EXECUTIONS].update_one({"_id": RUN_ID}, {"$set": {"cancel_requested": True}})
        return ts_bars(call)

    assert run(db, [tushare(cancel_during_second)]) == ExitCode.CANCELLED
    rec = record(db)
    assert rec["status"] == "cancelled" and rec["reason"] == "Cancelled"
    assert sorted(db[mongo.STOCK_DAILY_QUOTES].distinct("code")) == ["600000.SH", "600519.SH"]
    assert rec["return_value"]["inserted"] == 2 and rec["processed_items"] == 2


def test_a_record_closed_by_the_operator_mid_run_keeps_its_verdict(db: Database[Any]) -> None:
    def operator_closes(call: FakeCall) -> pd.DataFrame:
        db[mongo.EXECUTIONS].update_one({"_id": RUN_ID},
                                              {"$set": {"status": "failed", "error_message": "deadline exceeded"}})
        return ts_bars(call)

    assert run(db, [tushare(operator_closes)]) == ExitCode.FAILED
    rec = record(db)
    assert rec["status"] == "failed" and rec["error_message"] == "deadline exceeded"
    assert db[mongo.STOCK_DAILY_QUOTES].count_documents({}) == 1
    assert "outcome" not in rec["attempts"][0]  # the pod wrote nothing after the other verdict


@pytest.mark.parametrize(("status", "code"), [("cancelled", ExitCode.CANCELLED), ("failed", ExitCode.FAILED)])
def test_a_record_already_final_at_start_means_no_work(db: Database[Any], status: str, code: ExitCode) -> None:
    operator_opens(db)
    db[mongo.EXECUTIONS].update_one({"_id": RUN_ID}, {"$set": {"status": status}})
    ts = tushare()
    assert run(db, [ts]) == code
    assert ts._pro.calls == []  # type: ignore[union-attr]
    assert record(db)["status"] == status


def test_cancel_requested_before_the_pod_started(db: Database[Any]) -> None:
    operator_opens(db)
    executions.request_cancel(db, [RUN_ID], "alice")
    assert run(db, [tushare()]) == ExitCode.CANCELLED
    rec = record(db)
    assert (rec["status"], rec["reason"]) == ("cancelled", "Cancelled")
    assert rec["error_message"] == "cancelled by alice before the attempt started"
    assert db[mongo.STOCK_DAILY_QUOTES].count_documents({}) == 0


def test_outside_trading_hours_a_run_is_skipped_with_the_reason(db: Database[Any]) -> None:
    ts = tushare()
    code = run(db, [ts], SYNC_TRADING_HOURS_ONLY="true", SYNC_TRIGGER="schedule",
               SYNC_SCHEDULED_TIME="2026-11-27T04:15:00Z")  # 12:15 in Shanghai
    assert code == ExitCode.SUCCESS
    rec = record(db)
    assert rec["status"] == "skipped" and "lunch break" in rec["reason"]
    assert rec["scheduled_time"] == dt.datetime(2026, 11, 27, 4, 15, tzinfo=dt.UTC)
    assert ts._pro.calls == []  # type: ignore[union-attr]


def test_a_forced_run_ignores_trading_hours(db: Database[Any]) -> None:
    code = run(db, [tushare()], SYNC_TRADING_HOURS_ONLY="true", SYNC_FORCE="true",
               SYNC_SCHEDULED_TIME="2026-11-28T02:00:00Z")  # a Saturday
    assert code == ExitCode.SUCCESS
    rec = record(db)
    assert rec["status"] == "success" and rec["force"] is True


def test_a_2027_run_records_the_weekday_calendar_warning(db: Database[Any]) -> None:
    code = run(db, [tushare()], SYNC_TRADING_HOURS_ONLY="true",
               SYNC_SCHEDULED_TIME="2027-01-04T02:00:00Z")  # Monday 10:00; no source answers the calendar
    assert code == ExitCode.SUCCESS
    rec = record(db)
    assert rec["status"] == "success"
    assert any("2027" in w and "weekday" in w for w in rec["warnings"])


class SlowFile(FileSource):
    def daily(self, codes: Any, start: dt.date, end: dt.date) -> pd.DataFrame:
        time.sleep(0.4)
        return super().daily(codes, start, end)


def test_heartbeat_and_throttled_progress_while_running(db: Database[Any]) -> None:
    runner = Runner(settings(SYNC_SOURCES="file", SYNC_OPTIONS={
        "codes": ["600000.SH", "600519.SH", "000001.SZ", "300750.SZ", "688981.SH", "920001.BJ"], "batch_size": 1,
        "start_date": "2026-10-01", "end_date": "2026-11-27", "heartbeat_seconds": 0.3, "concurrency": 1}), db,
        sources=[SlowFile()])
    started = time.monotonic()
    assert runner.run() == ExitCode.SUCCESS
    took = time.monotonic() - started
    assert runner.reporter.heartbeats >= 4
    # 6 batches in ~2.4 s (longer on a loaded machine): at most one write per second, the first one at once
    assert runner.reporter.progress_writes <= int(took) + 2
    rec = record(db)
    assert rec["heartbeat_at"] > rec["pod_started_at"]
    assert db[mongo.STOCK_DAILY_QUOTES].count_documents({}) == 216


def test_rerun_of_the_same_data_is_all_unchanged(db: Database[Any]) -> None:
    options = {"codes": CODES, "incremental": False, "start_date": "2018-07-01", "end_date": "2018-07-18"}
    assert run(db, [tushare()], SYNC_OPTIONS=options) == ExitCode.SUCCESS
    assert run(db, [tushare()], SYNC_OPTIONS=options, SYNC_RUN_ID="daily-sync-m2") == ExitCode.SUCCESS
    again = record(db, "market-data.daily-sync-m2")["return_value"]
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 0, 4)
    assert db[mongo.STOCK_DAILY_QUOTES].count_documents({}) == 4


def test_incremental_daily_starts_after_the_last_stored_bar(db: Database[Any]) -> None:
    options = {"codes": ["600000.SH"], "start_date": "2026-10-01", "end_date": "2026-11-13"}
    assert run(db, [FileSource()], SYNC_SOURCES="file", SYNC_OPTIONS=options) == ExitCode.SUCCESS
    first = db[mongo.STOCK_DAILY_QUOTES].count_documents({})
    later = {**options, "end_date": "2026-11-27"}
    assert run(db, [FileSource()], SYNC_SOURCES="file", SYNC_OPTIONS=later,
               SYNC_RUN_ID="daily-sync-m2") == ExitCode.SUCCESS
    rv = record(db, "market-data.daily-sync-m2")["return_value"]
    assert rv["inserted"] == 10 and rv["unchanged"] == 0  # only the ten new sessions were fetched
    assert db[mongo.STOCK_DAILY_QUOTES].count_documents({}) == first + 10
    assert run(db, [FileSource()], SYNC_SOURCES="file", SYNC_OPTIONS=later,
               SYNC_RUN_ID="daily-sync-m3") == ExitCode.SUCCESS
    assert record(db, "market-data.daily-sync-m3")["return_value"]["up_to_date_symbols"] == 1
