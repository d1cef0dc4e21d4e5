"""The data a run leaves behind: closed sessions only, one series per source, honest financial fields, gaps shown.

Each test here failed on the code before issue #13: a partial intraday bar was frozen, a second source's job
fetched nothing after the first source's job, tushare's revenue was always null, and nothing said what was missing.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pandas as pd
import pytest
from pymongo.database import Database

from sync_image import gaps as gaplib
from sync_image.quota import MongoStore, TokenBucket
from sync_image.runner import ExitCode, Runner
from sync_image.sources.akshare import AkshareSource
from sync_image.sources.baostock import BaostockSource
from sync_image.sources.base import Source
from sync_image.sources.fake import FakeCall, FakeLibrary, FakeResultSet, SimulatedSource
from sync_image.sources.file import FileSource
from sync_image.sources.tushare import TushareSource
from sync_image.trading_calendar import TradingCalendar
from syncjob import mongo
from tests.sync_image.conftest import BS_K_FIELDS, bs_k_row, settings

CAL = TradingCalendar()
FRIDAY = dt.date(2026, 11, 27)


def shanghai(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour - 8, minute, tzinfo=dt.UTC)


def ak_bars(days: list[dt.date], close: float = 11.4) -> Any:
    """akshare stock_zh_a_hist, honouring start_date/end_date, with a bar for each of `days` (as eastmoney has)."""
    def hist(call: FakeCall) -> pd.DataFrame:
        first = dt.datetime.strptime(call.kwargs["start_date"], "%Y%m%d").date()
        last = dt.datetime.strptime(call.kwargs["end_date"], "%Y%m%d").date()
        chosen = [d for d in days if first <= d <= last]
        if not chosen:
            return pd.DataFrame()
        return pd.DataFrame({"日期": chosen, "股票代码": call.kwargs["symbol"], "开盘": 11.5, "收盘": close,
                             "最高": 11.55, "最低": 11.33, "成交量": 1195880, "成交额": 1366048528.0, "振幅": 1.91,
                             "涨跌幅": -0.96, "涨跌额": -0.11, "换手率": 0.62})
    return hist


def ts_bars_between(days: list[dt.date]) -> Any:
    def daily(call: FakeCall) -> pd.DataFrame:
        if "trade_date" in call.kwargs:
            chosen = [dt.datetime.strptime(call.kwargs["trade_date"], "%Y%m%d").date()]
            codes = ["600000.SH", "000001.SZ"]
        else:
            first = dt.datetime.strptime(call.kwargs["start_date"], "%Y%m%d").date()
            last = dt.datetime.strptime(call.kwargs["end_date"], "%Y%m%d").date()
            chosen = [d for d in days if first <= d <= last]
            codes = call.kwargs["ts_code"].split(",")
        rows = [[c, d.strftime("%Y%m%d"), 8.75, 8.85, 8.69, 8.70, 8.72, -0.02, -0.23, 5000.0, 4000.0]
                for c in codes for d in chosen if d in days]
        return pd.DataFrame(rows, columns=["ts_code", "trade_date", "open", "high", "low", "close", "pre_close",
                                           "change", "pct_chg", "vol", "amount"])
    return daily


def run(db: Database[Any], sources: list[Source], now: dt.datetime, run_id: str = "daily-sync-m1",
        task: str = "daily", **options: Any) -> dict[str, Any]:
    names = ",".join(s.name for s in sources if s.name in ("tushare", "akshare", "baostock", "file")) or "file"
    runner = Runner(settings(SYNC_TASK=task, SYNC_SOURCES=names, SYNC_RUN_ID=run_id, SYNC_OPTIONS=options), db,
                    sources=sources, now=now)
    code = runner.run()
    rec = db[mongo.EXECUTIONS].find_one({"_id": runner.settings.run_id})
    assert rec is not None
    assert code == ExitCode.SUCCESS, rec.get("error_message")
    return rec


def bars(db: Database[Any], source: str | None = None) -> dict[str, dict[str, Any]]:
    query = {} if source is None else {"data_source": source}
    return {f"{d['code']} {d['trade_date']} {d['data_source']}": d for d in db[mongo.STOCK_DAILY_QUOTES].find(query)}


# -- 1. partial bars -------------------------------------------------------------------------------------------


def test_a_run_during_the_session_does_not_store_todays_partial_bar(db: Database[Any]) -> None:
    days = CAL.trading_days(dt.date(2026, 11, 23), FRIDAY)  # eastmoney includes today's live bar at 10:30
    run(db, [AkshareSource(api=FakeLibrary(ak_bars(days)))], shanghai(FRIDAY, 10, 30),
        codes=["000001.SZ"], start_date="2026-11-23")
    stored = sorted(d["trade_date"] for d in db[mongo.STOCK_DAILY_QUOTES].find())
    assert stored == ["2026-11-23", "2026-11-24", "2026-11-25", "2026-11-26"]
    assert all(d["final"] is True for d in db[mongo.STOCK_DAILY_QUOTES].find())


def test_before_the_source_publishes_the_session_is_not_stored_either(db: Database[Any]) -> None:
    days = CAL.trading_days(dt.date(2026, 11, 23), FRIDAY)
    src = AkshareSource(api=FakeLibrary(ak_bars(days)))
    rec = run(db, [src], shanghai(FRIDAY, 15, 5), codes=["000001.SZ"], start_date="2026-11-23",
              publication_delay_minutes={"akshare": 15})
    assert "2026-11-27" not in {d["trade_date"] for d in db[mongo.STOCK_DAILY_QUOTES].find()}
    assert rec["return_value"]["last_closed_session"] == {"akshare": "2026-11-26"}


def test_an_incremental_run_rechecks_a_last_bar_that_was_not_final(db: Database[Any]) -> None:
    # a bar stored by a run that did not check the close (the code before #13): close and volume of 10:30
    db[mongo.STOCK_DAILY_QUOTES].insert_one({"code": "000001.SZ", "symbol": "000001", "trade_date": "2026-11-26",
                                             "data_source": "akshare", "period": "daily", "close": 11.0,
                                             "volume": 100.0})
    days = CAL.trading_days(dt.date(2026, 11, 23), FRIDAY)
    run(db, [AkshareSource(api=FakeLibrary(ak_bars(days, close=11.4)))], shanghai(FRIDAY, 18),
        codes=["000001.SZ"], start_date="2026-11-23")
    stored = bars(db)
    assert stored["000001.SZ 2026-11-26 akshare"]["close"] == 11.4 and stored["000001.SZ 2026-11-26 akshare"]["final"]
    assert "000001.SZ 2026-11-27 akshare" in stored


# -- 2. incremental runs follow their source ------------------------------------------------------------------


def test_each_sources_series_starts_at_its_own_last_bar(db: Database[Any]) -> None:
    days = CAL.trading_days(dt.date(2026, 11, 16), FRIDAY)
    ts = TushareSource("token", pro=FakeLibrary(ts_bars_between(days)), module=FakeLibrary(lambda c: None))
    run(db, [ts], shanghai(FRIDAY, 16, 30), codes=["000001.SZ"], start_date="2026-11-16")
    ak_lib = FakeLibrary(ak_bars(days))
    rec = run(db, [AkshareSource(api=ak_lib)], shanghai(FRIDAY, 17), run_id="daily-sync-m2",
              codes=["000001.SZ"], start_date="2026-11-16")
    assert rec["return_value"]["inserted"] == len(days)  # the akshare series gets every session, not nothing
    assert ak_lib.calls[0].kwargs["start_date"] == "20261116"
    assert len(bars(db, "tushare")) == len(bars(db, "akshare")) == len(days)
    assert rec["gaps"]["symbols_with_gaps"] == 0


# -- 3. financial figures ------------------------------------------------------------------------------------


def test_stored_financial_rows_say_what_their_figures_are(db: Database[Any]) -> None:
    def pro(call: FakeCall) -> pd.DataFrame:
        if call.name == "fina_indicator":
            return pd.DataFrame({"ts_code": ["600000.SH"] * 2, "ann_date": ["20250425", "20241030"],
                                 "end_date": ["20241231", "20240930"], "eps": [1.2, 0.9], "roe_waa": [8.0, 6.0],
                                 "update_flag": ["1", "1"]})
        return pd.DataFrame({"ts_code": ["600000.SH"] * 2, "end_date": ["20241231", "20240930"],
                             "total_revenue": [1.7e11, 1.3e11], "n_income_attr_p": [4.5e10, 3.6e10],
                             "update_flag": ["1", "1"]})

    ts = TushareSource("token", pro=FakeLibrary(pro), module=FakeLibrary(lambda c: None))
    rec = run(db, [ts], shanghai(dt.date(2025, 6, 2), 10), task="financial", codes=["600000.SH"], periods=2)
    docs = {d["report_period"]: d for d in db[mongo.STOCK_FINANCIAL_DATA].find()}
    assert docs["2024-12-31"]["report_type"] == "annual" and docs["2024-09-30"]["report_type"] == "year_to_date"
    assert docs["2024-12-31"]["revenue"] == 1.7e11 and docs["2024-12-31"]["net_profit"] == 4.5e10
    assert docs["2024-12-31"]["roe"] == 8.0 and docs["2024-12-31"]["fields_not_provided"] == ["eps_ttm"]
    # 2025-03-31 was due by 30 April and is missing: the record says so
    assert rec["gaps"]["expected_periods"] == ["2024-12-31", "2025-03-31"]
    assert rec["gaps"]["by_symbol"]["600000.SH"]["periods"] == ["2025-03-31"]
    assert "Success with gaps" in rec["progress_message"]


def test_baostock_financial_rows_leave_what_means_something_else_null(db: Database[Any]) -> None:
    fields = ["code", "pubDate", "statDate", "roeAvg", "npMargin", "gpMargin", "netProfit", "epsTTM", "MBRevenue",
              "totalShare", "liqaShare"]
    rows = {(2024, 3): [["sh.600000", "2024-10-31", "2024-09-30", "0.07", "0.3", "0.4", "4.5e10", "1.4", "1e11",
                         "2.9e10", "2.9e10"]]}
    ok = FakeResultSet([], [])
    lib = FakeLibrary(lambda call: ok if call.name in ("login", "logout") else FakeResultSet(
        fields, rows.get((call.kwargs.get("year"), call.kwargs.get("quarter")), [])))
    run(db, [BaostockSource(api=lib, today=lambda: dt.date(2024, 11, 28))], shanghai(dt.date(2024, 11, 28), 10),
        task="financial", codes=["600000.SH"], periods=1)
    doc = db[mongo.STOCK_FINANCIAL_DATA].find_one()
    assert doc is not None and doc["eps"] is None and doc["revenue"] is None and doc["eps_ttm"] == 1.4
    assert {"eps", "revenue", "net_profit", "roe"} <= set(doc["fields_not_provided"])


# -- completeness --------------------------------------------------------------------------------------------


def test_the_record_lists_missing_sessions_and_a_repair_fetches_only_those(db: Database[Any]) -> None:
    days = CAL.trading_days(dt.date(2026, 11, 2), FRIDAY)
    holes = {dt.date(2026, 11, 10), dt.date(2026, 11, 11), dt.date(2026, 11, 19)}
    flaky = FakeLibrary(ak_bars([d for d in days if d not in holes]))
    rec = run(db, [AkshareSource(api=flaky)], shanghai(FRIDAY, 18), codes=["000001.SZ", "600000.SH"],
              start_date="2026-11-02")
    gaps = rec["gaps"]
    assert gaps["symbols_with_gaps"] == 2 and gaps["missing_sessions"] == 6
    assert gaps["by_symbol"]["000001.SZ"] == {"missing": 3, "sessions": ["2026-11-10..2026-11-11", "2026-11-19"]}
    assert gaps["window"] == {"start": "2026-11-02", "end": "2026-11-27"}
    assert rec["status"] == "success" and rec["progress_message"].startswith("Success with gaps")
    assert "repair_gaps" in rec["progress_message"]

    whole = FakeLibrary(ak_bars(days))
    rec = run(db, [AkshareSource(api=whole)], shanghai(FRIDAY, 18, 30), run_id="daily-sync-m2",
              codes=["000001.SZ", "600000.SH"], start_date="2026-11-02", repair_gaps=True)
    asked = sorted({(c.kwargs["start_date"], c.kwargs["end_date"]) for c in whole.calls})
    assert asked == [("20261110", "20261111"), ("20261119", "20261119")]
    assert rec["return_value"]["inserted"] == 6 and rec["gaps"]["symbols_with_gaps"] == 0
    assert not rec["progress_message"].startswith("Success with gaps")


def test_suspended_sessions_are_told_apart_from_missing_ones(db: Database[Any]) -> None:
    def answer(call: FakeCall) -> Any:
        if call.name in ("login", "logout"):
            return FakeResultSet([], [])
        return FakeResultSet(BS_K_FIELDS, [bs_k_row("2026-11-25"), bs_k_row("2026-11-26", tradestatus="0"),
                                           bs_k_row("2026-11-27")])

    rec = run(db, [BaostockSource(api=FakeLibrary(answer))], shanghai(dt.date(2026, 11, 30), 9),
              codes=["600000.SH"], start_date="2026-11-24")
    gaps = rec["gaps"]
    assert gaps["missing_sessions"] == 1 and gaps["suspended_sessions"] == 1
    assert gaps["by_symbol"]["600000.SH"] == {"missing": 1, "sessions": ["2026-11-24"], "suspended": ["2026-11-26"]}


def test_sessions_before_the_listing_are_not_gaps(db: Database[Any]) -> None:
    db[mongo.STOCK_BASIC_INFO].insert_one({"code": "000001.SZ", "source": "akshare", "list_date": "2026-11-20"})
    days = CAL.trading_days(dt.date(2026, 11, 20), FRIDAY)
    rec = run(db, [AkshareSource(api=FakeLibrary(ak_bars(days)))], shanghai(FRIDAY, 18), codes=["000001.SZ"],
              start_date="2026-11-02")
    assert rec["gaps"]["symbols_with_gaps"] == 0


def test_compact_ranges_run_over_weekends() -> None:
    sessions = CAL.trading_days(dt.date(2026, 11, 2), FRIDAY)
    missing = [dt.date(2026, 11, 6), dt.date(2026, 11, 9), dt.date(2026, 11, 12)]
    assert gaplib.compact(missing, sessions) == ["2026-11-06..2026-11-09", "2026-11-12"]


# -- speed ---------------------------------------------------------------------------------------------------


def test_a_whole_market_session_is_one_tushare_call(db: Database[Any]) -> None:
    days = CAL.trading_days(dt.date(2026, 11, 16), FRIDAY)
    pro = FakeLibrary(ts_bars_between(days))
    ts = TushareSource("token", pro=pro, module=FakeLibrary(lambda c: None))
    run(db, [ts], shanghai(dt.date(2026, 11, 26), 18), codes=["000001.SZ", "600000.SH"], start_date="2026-11-16",
        batch_size=1)
    pro.calls.clear()
    rec = run(db, [ts], shanghai(FRIDAY, 18), run_id="daily-sync-m2", codes=["000001.SZ", "600000.SH"],
              start_date="2026-11-16", batch_size=1)
    assert [c.kwargs for c in pro.called("daily")] == [{"trade_date": "20261127"}]
    assert rec["return_value"]["inserted"] == 2 and rec["gaps"]["symbols_with_gaps"] == 0


def test_batches_run_concurrently_within_the_sources_limits(db: Database[Any]) -> None:
    codes = [f"{600000 + i}.SH" for i in range(40)]
    fast = SimulatedSource(latency=0.05, server_per_second=1000, concurrency=8)
    rec = run(db, [fast], shanghai(FRIDAY, 18), codes=codes, start_date="2026-11-27", batch_size=1)
    # the source calls' own span, not the run's start-up and record writes, which a loaded machine stretches
    spread = fast.starts[-1] - fast.starts[0] + 0.05
    assert rec["return_value"]["inserted"] == 40
    assert fast.max_in_flight == 8 and spread < 40 * 0.05 / 2  # sequentially it would take 2 s

    single = SimulatedSource(latency=0.01, server_per_second=1000, concurrency=1)  # baostock's one session
    run(db, [single], shanghai(FRIDAY, 18), run_id="daily-sync-m2", codes=codes, start_date="2026-11-26",
        batch_size=1, concurrency=8, incremental=False)
    assert single.max_in_flight == 1


def test_a_source_rate_limit_is_never_exceeded(db: Database[Any], virtual_quota_time: Any) -> None:
    virtual_quota_time.now = time.time  # real time: the simulated server counts real seconds
    virtual_quota_time.sleep = time.sleep
    codes = [f"{600000 + i}.SH" for i in range(30)]
    # the client asks for 95% of the server's quota, as a deployment should: thread wake-ups jitter by milliseconds
    limited = SimulatedSource(latency=0.0, server_per_second=20, client_per_second=19, concurrency=8)
    started = time.monotonic()
    rec = run(db, [limited], shanghai(FRIDAY, 18), codes=codes, start_date="2026-11-27", batch_size=1)
    assert rec["return_value"]["inserted"] == 30 and limited.refused == 0
    assert time.monotonic() - started >= 29 / 19 * 0.95  # evenly spaced at the allowed rate


def test_two_runs_on_one_account_share_its_quota(db: Database[Any]) -> None:
    store = MongoStore(db["source_quotas"])
    pods = [TokenBucket("tushare:abc:daily", 600, store=store, clock=time.time, sleep=time.sleep) for _ in range(2)]
    started = time.monotonic()
    for _ in range(5):
        for bucket in pods:
            bucket.acquire()
    # ten calls at 600/min between the two pods: 0.9 s at least; each alone would have allowed its five in 0.4 s
    assert time.monotonic() - started >= 0.85
    assert db["source_quotas"].count_documents({}) == 1


@pytest.mark.parametrize("source", [FileSource])
def test_gap_report_is_shown_for_a_complete_run_as_zero(db: Database[Any], source: type[FileSource]) -> None:
    rec = run(db, [source()], shanghai(FRIDAY, 18), codes=["600000.SH"], start_date="2026-11-02")
    assert rec["gaps"]["symbols_with_gaps"] == 0 and rec["gaps"]["symbols_checked"] == 1


def test_a_whole_market_session_that_fails_falls_back_to_batches_of_symbols(db: Database[Any]) -> None:
    days = CAL.trading_days(dt.date(2026, 11, 16), FRIDAY)
    bars_of = ts_bars_between(days)

    def no_trade_date(call: FakeCall) -> pd.DataFrame:
        if "trade_date" in call.kwargs:
            raise OSError("connection reset")
        return bars_of(call)

    pro = FakeLibrary(bars_of)
    ts = TushareSource("token", pro=pro, module=FakeLibrary(lambda c: None))
    run(db, [ts], shanghai(dt.date(2026, 11, 26), 18), codes=["000001.SZ", "600000.SH"], start_date="2026-11-16",
        batch_size=1)
    ts._pro = FakeLibrary(no_trade_date)
    rec = run(db, [ts], shanghai(FRIDAY, 18), run_id="daily-sync-m2", codes=["000001.SZ", "600000.SH"],
              start_date="2026-11-16", batch_size=1)
    assert rec["return_value"]["inserted"] == 2 and rec["gaps"]["symbols_with_gaps"] == 0
    assert rec["processed_items"] == 2 and "market day 2026-11-27" in rec["error_message"]
