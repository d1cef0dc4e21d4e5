"""Fixtures for the sync image: DataFrames in each library's real shape (data_sources.md §9), pod settings and env."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pymongo import MongoClient
from pymongo.database import Database

from sync_image import quota
from sync_image.settings import PodSettings
from testbed.mongo import MongoServer

TS_DAILY_COLUMNS = ["ts_code", "trade_date", "open", "high", "low", "close", "pre_close", "change", "pct_chg", "vol",
                    "amount"]
TS_RTQ_COLUMNS = ["NAME", "TS_CODE", "DATE", "TIME", "OPEN", "PRE_CLOSE", "PRICE", "HIGH", "LOW", "BID", "ASK",
                  "VOLUME", "AMOUNT", *[f"{s}{i}_{k}" for s in ("B", "A") for i in range(1, 6) for k in ("V", "P")]]
AK_SPOT_COLUMNS = ["序号", "代码", "名称", "最新价", "涨跌幅", "涨跌额", "成交量", "成交额", "振幅", "最高", "最低",
                   "今开", "昨收", "量比", "换手率", "市盈率-动态", "市净率", "总市值", "流通市值", "涨速", "5分钟涨跌",
                   "60日涨跌幅", "年初至今涨跌幅"]
BS_K_FIELDS = ["date", "code", "open", "high", "low", "close", "preclose", "volume", "amount", "adjustflag", "turn",
               "tradestatus", "pctChg", "isST"]


def ts_daily(rows: list[list[Any]] | None = None) -> pd.DataFrame:
    """tushare pro.daily: newest first, vol in lots, amount in thousand CNY."""
    rows = rows or [
        ["000001.SZ", "20180718", 8.75, 8.85, 8.69, 8.70, 8.72, -0.02, -0.23, 525152.77, 460697.377],
        ["000001.SZ", "20180717", 8.74, 8.75, 8.66, 8.72, 8.73, -0.01, -0.11, 375356.33, 326396.994],
    ]
    return pd.DataFrame(rows, columns=TS_DAILY_COLUMNS)


def ts_realtime(code: str = "600000.SH", price: float = 8.46) -> pd.DataFrame:
    """tushare ts.realtime_quote(src='sina') in 1.4.29: UPPERCASE columns, VOLUME in shares."""
    row: dict[str, Any] = dict.fromkeys(TS_RTQ_COLUMNS, 0)
    row.update(NAME="浦发银行", TS_CODE=code, DATE="20240528", TIME="14:59:58", OPEN=8.52, PRE_CLOSE=8.53,
               PRICE=price, HIGH=8.53, LOW=8.43, BID=8.45, ASK=8.46, VOLUME=33925900, AMOUNT=287648127.0)
    return pd.DataFrame([row], columns=TS_RTQ_COLUMNS)


def ak_hist(code: str = "000001") -> pd.DataFrame:
    """akshare stock_zh_a_hist: Chinese columns, 日期 as datetime.date, 成交量 in lots."""
    return pd.DataFrame({"日期": [dt.date(2024, 5, 28)], "股票代码": [code], "开盘": [11.50], "收盘": [11.40],
                         "最高": [11.55], "最低": [11.33], "成交量": [1195880], "成交额": [1366048528.0],
                         "振幅": [1.91], "涨跌幅": [-0.96], "涨跌额": [-0.11], "换手率": [0.62]})


def ak_spot() -> pd.DataFrame:
    """akshare stock_zh_a_spot_em: 23 columns, bare codes, a suspended row with NaN 最新价, a fund row."""
    rows = [
        [1, "600000", "浦发银行", 8.46, -0.82, -0.07, 339259, 287648127.0, 1.17, 8.53, 8.43, 8.52, 8.53, 0.9, 0.12,
         5.17, 0.40, 2.48e11, 2.48e11, 0.0, 0.0, 1.0, 2.0],
        [2, "920001", "北证示例", 15.3, 1.0, 0.15, 24000, 36720000.0, 2.0, 15.4, 15.1, 15.2, 15.15, 1.1, 1.5,
         30.0, 2.0, 1.5e9, 1.0e9, 0.0, 0.0, 1.0, 2.0],
        [3, "000002", "万科A", float("nan"), float("nan"), float("nan"), 0, 0.0, 0.0, float("nan"), float("nan"),
         float("nan"), 7.0, float("nan"), 0.0, float("nan"), 0.5, 8e10, 8e10, 0.0, 0.0, 0.0, 0.0],
    ]
    return pd.DataFrame(rows, columns=AK_SPOT_COLUMNS)


def bs_k_row(date: str = "2024-05-28", code: str = "sh.600000", tradestatus: str = "1") -> list[str]:
    return [date, code, "8.5200", "8.5300", "8.4300", "8.4600", "8.5300", "33925900", "287648127.0000", "3",
            "0.115600", tradestatus, "-0.820600", "0"]


class VirtualTime:
    """Rate-limit waits that take no real time: the clock moves on by what a bucket sleeps."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def sleep(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture(autouse=True)
def virtual_quota_time(monkeypatch: pytest.MonkeyPatch) -> VirtualTime:
    """The sources' default rate limits would make the adapter tests sleep; tests of the limits give their own."""
    virtual = VirtualTime()
    monkeypatch.setattr(quota, "TIME", virtual)
    return virtual


@pytest.fixture
def mongo_uri(mongo_server: MongoServer, mongo_db: Database[Any]) -> str:
    return f"mongodb://127.0.0.1:{mongo_server.port}/{mongo_db.name}?directConnection=true"


@pytest.fixture
def db(mongo_uri: str) -> Iterator[Database[Any]]:
    """The test's database through a timezone-aware client, as the sync image opens it."""
    client: MongoClient[Any] = MongoClient(mongo_uri, tz_aware=True)
    yield client.get_default_database()
    client.close()


def contract_env(uri: str, **overrides: str) -> dict[str, str]:
    """A clean pod environment: the contract's variables plus PATH and HOME."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
        "SYNCJOB_NAMESPACE": "market-data", "SYNCJOB_NAME": "file-daily-sync", "SYNC_TASK": "daily",
        "SYNC_SOURCES": "file", "SYNC_OPTIONS": '{"start_date": "2026-10-01", "end_date": "2026-11-27"}',
        "SYNC_TRADING_HOURS_ONLY": "false", "SYNC_FORCE": "false", "SYNC_TRIGGER": "manual",
        "SYNC_RUN_ID": "file-daily-sync-m1", "SYNC_SCHEDULED_TIME": "", "MONGO_URI": uri, "TUSHARE_TOKEN": "",
    }
    env.update(overrides)
    return env


def settings(uri: str = "mongodb://127.0.0.1:1/x", **overrides: Any) -> PodSettings:
    values: dict[str, Any] = {
        "SYNCJOB_NAMESPACE": "market-data", "SYNCJOB_NAME": "daily-sync", "SYNC_TASK": "daily",
        "SYNC_SOURCES": "tushare,akshare,baostock", "SYNC_OPTIONS": {}, "SYNC_TRIGGER": "manual",
        "SYNC_RUN_ID": "daily-sync-m1", "MONGO_URI": uri,
    }
    values.update(overrides)
    return PodSettings(**values)


def write_daily_files(folder: Path, symbols: int, days: int, start: dt.date = dt.date(2026, 1, 5)) -> int:
    """A canonical daily.parquet (and basics.csv) of `symbols` x `days` bars; returns the row count."""
    folder.mkdir(parents=True, exist_ok=True)
    codes = [f"{600000 + i:06d}.SH" for i in range(symbols)]
    dates = pd.bdate_range(start, periods=days).date
    frame = pd.DataFrame({"code": [c for c in codes for _ in dates], "trade_date": list(dates) * symbols})
    n = len(frame)
    frame["open"] = 10.0
    frame["high"] = 10.5
    frame["low"] = 9.5
    frame["close"] = [10.0 + (i % 7) * 0.01 for i in range(n)]
    frame["pre_close"] = 10.0
    frame["volume"] = 1_000_000.0
    frame["amount"] = 10_000_000.0
    frame.to_parquet(folder / "daily.parquet")
    pd.DataFrame({"code": codes, "name": [f"股票{i}" for i in range(symbols)]}).to_csv(folder / "basics.csv",
                                                                                     index=False)
    return n
