"""The entrypoint as the pod runs it: `python -m sync_image run` in a subprocess, the `file` source, SecantusDB."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pymongo.database import Database

from syncjob import mongo
from tests.sync_image.conftest import contract_env, write_daily_files

REPO = Path(__file__).resolve().parents[2]
RUN_ID = "market-data.file-daily-sync-m1"
CODES = {"600000.SH", "600519.SH", "688981.SH", "000001.SZ", "300750.SZ", "920001.BJ"}


def start(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "sync_image", "run"], env=env, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sync_image", "run"], env=env, cwd=REPO, text=True,
                          capture_output=True, timeout=120)


def record(db: Database[Any], run_id: str = RUN_ID) -> dict[str, Any]:
    found = db[mongo.EXECUTIONS].find_one({"_id": run_id})
    assert found is not None, "no execution record"
    return found


def assert_succeeded(proc: subprocess.CompletedProcess[str], db: Database[Any], task: str) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    rec = record(db)
    assert rec["status"] == "success", rec.get("error_message")
    assert rec["task"] == task and rec["source_used"] == "file" and rec["progress"] == 100
    assert rec["job_id"] == "file-daily-sync" and rec["namespace"] == "market-data" and rec["trigger"] == "manual"
    assert rec["source_attempts"] and all(a["source"] == "file" and a["error_class"] is None
                                          for a in rec["source_attempts"])
    for field in ("started_at", "finished_at", "pod_started_at", "heartbeat_at", "updated_at"):
        assert rec[field].tzinfo is not None, field
    assert rec["execution_time"] >= 0
    assert "Recorded run market-data.file-daily-sync-m1 as success" in proc.stderr
    return rec


def test_basics_task_writes_the_stock_list(mongo_uri: str, db: Database[Any]) -> None:
    rec = assert_succeeded(run(contract_env(mongo_uri, SYNC_TASK="basics")), db, "basics")
    docs = {d["code"]: d for d in db[mongo.STOCK_BASIC_INFO].find()}
    assert set(docs) == CODES
    assert docs["600000.SH"]["name"] == "浦发银行" and docs["600000.SH"]["source"] == "file"
    assert docs["600000.SH"]["symbol"] == "600000" and docs["600000.SH"]["list_date"] == "1999-11-10"
    assert rec["return_value"]["inserted"] == 6


def test_quotes_task_writes_the_snapshot(mongo_uri: str, db: Database[Any]) -> None:
    rec = assert_succeeded(run(contract_env(mongo_uri, SYNC_TASK="quotes")), db, "quotes")
    quote = db[mongo.MARKET_QUOTES].find_one({"code": "000001.SZ"})
    assert quote is not None and quote["source"] == "file" and quote["trade_date"] == "2026-11-27"
    assert quote["quote_time"].isoformat().startswith("2026-11-27T07:00:00")
    assert db[mongo.MARKET_QUOTES].count_documents({}) == 6 and rec["return_value"]["inserted"] == 6


def test_daily_task_writes_bars_in_shares_and_cny(mongo_uri: str, db: Database[Any]) -> None:
    env = contract_env(mongo_uri, SYNC_OPTIONS=json.dumps({"codes": ["sh.600000", "000001"],
                                                           "start_date": "2026-11-01", "end_date": "2026-11-27"}))
    rec = assert_succeeded(run(env), db, "daily")
    bars = list(db[mongo.STOCK_DAILY_QUOTES].find({"code": "600000.SH"}).sort("trade_date", 1))
    assert next(b["trade_date"] for b in bars) == "2026-11-02" and bars[-1]["trade_date"] == "2026-11-27"
    assert len(bars) == 20 and all(b["data_source"] == "file" and b["period"] == "daily" for b in bars)
    assert bars[0]["volume"] > 1e6 and bars[0]["amount"] > bars[0]["volume"]  # shares and CNY
    assert rec["return_value"]["inserted"] == 40 and rec["processed_items"] == rec["total_items"] == 2


def test_financial_task_writes_report_periods(mongo_uri: str, db: Database[Any]) -> None:
    env = contract_env(mongo_uri, SYNC_TASK="financial", SYNC_OPTIONS='{"periods": 2}')
    rec = assert_succeeded(run(env), db, "financial")
    periods = sorted(db[mongo.STOCK_FINANCIAL_DATA].distinct("report_period", {"code": "920001.BJ"}))
    assert periods == ["2026-06-30", "2026-09-30"]
    assert db[mongo.STOCK_FINANCIAL_DATA].count_documents({}) == 12 and rec["return_value"]["inserted"] == 12


def test_status_task_records_connectivity_permission_and_latency(mongo_uri: str, db: Database[Any]) -> None:
    rec = assert_succeeded(run(contract_env(mongo_uri, SYNC_TASK="status")), db, "status")
    status = db[mongo.DATA_SOURCE_STATUS].find_one({"source": "file"})
    assert status is not None
    assert status["available"] is True and status["permission"] is True and status["latency_ms"] >= 0
    assert status["checked_at"].tzinfo is not None and "daily" in status["features"]
    assert rec["return_value"]["healthy_sources"] == ["file"]


def test_a_status_check_of_a_missing_folder_fails_the_run(mongo_uri: str, db: Database[Any],
                                                           tmp_path: Path) -> None:
    env = contract_env(mongo_uri, SYNC_TASK="status", SYNC_OPTIONS=json.dumps({"file_dir": str(tmp_path / "x")}))
    proc = run(env)
    assert proc.returncode == 1
    rec = record(db)
    assert rec["status"] == "failed" and "every source failed" in rec["error_message"]
    assert db[mongo.DATA_SOURCE_STATUS].find_one({"source": "file"})["available"] is False  # type: ignore[index]


def test_outside_trading_hours_a_scheduled_run_is_skipped(mongo_uri: str, db: Database[Any]) -> None:
    env = contract_env(mongo_uri, SYNC_TRADING_HOURS_ONLY="true", SYNC_TRIGGER="schedule",
                       SYNC_SCHEDULED_TIME="2026-10-01T02:00:00Z")  # National Day, 10:00 in Shanghai
    proc = run(env)
    assert proc.returncode == 0, proc.stderr
    rec = record(db)
    assert rec["status"] == "skipped" and "exchange holiday" in rec["reason"] and rec["is_manual"] is False
    assert db[mongo.STOCK_DAILY_QUOTES].count_documents({}) == 0


def test_bad_configuration_exits_2_and_is_recorded_failed(mongo_uri: str, db: Database[Any]) -> None:
    proc = run(contract_env(mongo_uri, SYNC_TASK="everything", SYNC_SOURCES="file,bloomberg"))
    assert proc.returncode == 2
    rec = record(db)
    assert rec["status"] == "failed" and "SYNC_TASK" in rec["error_message"] and "SYNC_SOURCES" in rec["error_message"]


def test_bad_options_json_exits_2(mongo_uri: str, db: Database[Any]) -> None:
    proc = run(contract_env(mongo_uri, SYNC_OPTIONS="{not json"))
    assert proc.returncode == 2
    assert record(db)["status"] == "failed"


@pytest.fixture
def big_folder(tmp_path: Path) -> Path:
    write_daily_files(tmp_path / "data", symbols=200, days=20)
    return tmp_path / "data"


def wait_for_progress(db: Database[Any], proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = db[mongo.EXECUTIONS].find_one({"_id": RUN_ID}) or {}
        if (found.get("processed_items") or 0) >= 2:
            return
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.05)
    raise AssertionError("the run never reported progress")


def long_run_env(uri: str, folder: Path) -> dict[str, str]:
    return contract_env(uri, SYNC_OPTIONS=json.dumps({"file_dir": str(folder), "start_date": "2026-01-01",
                                                      "end_date": "2026-02-27", "batch_size": 2}))


def test_sigterm_mid_run_leaves_the_verdict_to_the_operator_and_keeps_what_was_written(
        mongo_uri: str, db: Database[Any], big_folder: Path) -> None:
    proc = start(long_run_env(mongo_uri, big_folder))
    wait_for_progress(db, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    rec = record(db)
    written = db[mongo.STOCK_DAILY_QUOTES].count_documents({})
    assert rec["status"] == "running" and 0 < written < 4000
    [attempt] = rec["attempts"]
    assert (attempt["outcome"], attempt["reason"]) == ("terminated", "SIGTERM")
    # the bulk write the signal interrupted may have reached the server uncounted
    assert 0 < attempt["return_value"]["inserted"] == rec["return_value"]["inserted"] <= written
    assert attempt["source_attempts"] and attempt["processed_items"] == rec["processed_items"] > 0


def test_cancel_requested_mid_run_stops_with_cancelled_and_exit_3(mongo_uri: str, db: Database[Any],
                                                                  big_folder: Path) -> None:
    proc = start(long_run_env(mongo_uri, big_folder))
    wait_for_progress(db, proc)
    db[mongo.EXECUTIONS].update_one({"_id": RUN_ID}, {"$set": {"cancel_requested": True}})
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 3, stderr
    rec = record(db)
    assert rec["status"] == "cancelled" and rec["reason"] == "Cancelled"
    assert rec["return_value"]["inserted"] == db[mongo.STOCK_DAILY_QUOTES].count_documents({}) < 4000
