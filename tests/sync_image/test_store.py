"""Idempotent upserts: exact inserted/updated/unchanged counts, no duplicates, retries on transient errors."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pymongo.database import Database
from pymongo.errors import AutoReconnect, OperationFailure

from sync_image.errors import StoreUnavailable
from sync_image.store import MongoRetry, Upserter
from syncjob import mongo


def bar(day: int, close: float = 10.0, symbol: str = "600000") -> dict[str, Any]:
    return {"symbol": symbol, "code": f"{symbol}.SH", "trade_date": f"2026-11-{day:02d}", "data_source": "file",
            "period": "daily", "close": close, "quote_time": dt.datetime(2026, 11, day, 7, 0, 0, 123456, tzinfo=dt.UTC)}


@pytest.fixture
def upserter(db: Database[Any]) -> Upserter:
    mongo.ensure_indexes(db, mongo.DATA_COLLECTIONS)
    spec = next(s for s in mongo.DATA_COLLECTIONS if s.name == mongo.STOCK_DAILY_QUOTES)
    return Upserter(db[spec.name], spec.unique_key, MongoRetry(budget=5), batch_size=2)


def test_counts_are_exact_and_a_rerun_writes_nothing(upserter: Upserter, db: Database[Any]) -> None:
    first = upserter.write([bar(24), bar(25), bar(26)])
    assert (first.inserted, first.updated, first.unchanged) == (3, 0, 0)
    stored = db[mongo.STOCK_DAILY_QUOTES].find_one({"trade_date": "2026-11-24"})
    assert stored is not None
    again = upserter.write([bar(24), bar(25, close=10.5), bar(26), bar(27)])
    assert (again.inserted, again.updated, again.unchanged) == (1, 1, 2)
    coll = db[mongo.STOCK_DAILY_QUOTES]
    assert coll.count_documents({}) == 4
    changed = coll.find_one({"trade_date": "2026-11-25"})
    unchanged = coll.find_one({"trade_date": "2026-11-24"})
    assert changed is not None and unchanged is not None
    assert changed["close"] == 10.5 and changed["updated_at"] > changed["created_at"]
    assert unchanged["updated_at"] == stored["updated_at"]


def test_a_row_repeated_by_a_source_is_stored_once(upserter: Upserter, db: Database[Any]) -> None:
    counts = upserter.write([bar(24, 10.0), bar(24, 11.0)])
    assert counts.inserted == 1
    assert [d["close"] for d in db[mongo.STOCK_DAILY_QUOTES].find()] == [11.0]


def test_retry_backs_off_on_transient_errors_then_succeeds() -> None:
    sleeps: list[float] = []
    retry = MongoRetry(budget=60, first_delay=0.5, sleep=sleeps.append, clock=lambda: 0.0)
    outcomes: list[Any] = [AutoReconnect("down"), AutoReconnect("down"), AutoReconnect("down"), "ok"]

    def operation() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return str(outcome)

    assert retry(operation, "test") == "ok"
    assert sleeps == [0.5, 1.0, 2.0]


def test_retry_gives_up_after_its_budget() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    def down() -> None:
        raise AutoReconnect("connection refused")

    with pytest.raises(StoreUnavailable, match="unreachable"):
        MongoRetry(budget=3, sleep=sleep, clock=lambda: now[0])(down, "upsert")
    assert now[0] <= 3


def test_permanent_errors_are_not_retried() -> None:
    calls = []

    def bad() -> None:
        calls.append(1)
        raise OperationFailure("bad query", code=2)

    with pytest.raises(OperationFailure):
        MongoRetry(budget=60, sleep=lambda s: None)(bad, "query")
    assert calls == [1]
