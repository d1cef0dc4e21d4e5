"""The tushare adapter on frames in tushare's real shape, and on each of its failure modes (data_sources.md §9)."""

# ruff: noqa: RUF001  (library error messages are quoted verbatim, full-width punctuation included)
from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import pytest

from sync_image.errors import (
    SourceDataError,
    SourceEmpty,
    SourcePermissionDenied,
    SourceRateLimited,
    SourceTimeout,
    SourceUnavailable,
)
from sync_image.quota import TokenBucket
from sync_image.sources.fake import FakeCall, FakeLibrary
from sync_image.sources.tushare import TushareSource
from tests.sync_image.conftest import ts_daily, ts_realtime


def source(pro_handler: Any = None, module_handler: Any = None, **kwargs: Any) -> TushareSource:
    pro = FakeLibrary(pro_handler or (lambda call: pd.DataFrame()))
    module = FakeLibrary(module_handler or (lambda call: pd.DataFrame()))
    return TushareSource("token", pro=pro, module=module, **kwargs)


def test_daily_bars_are_converted_from_lots_and_thousands_to_shares_and_cny() -> None:
    src = source(lambda call: ts_daily())
    frame = src.daily(["000001.SZ"], dt.date(2018, 7, 17), dt.date(2018, 7, 18))
    newest = frame[frame["trade_date"] == dt.date(2018, 7, 18)].iloc[0]
    assert newest["code"] == "000001.SZ"
    assert newest["volume"] == pytest.approx(52515277.0)       # 525152.77 lots
    assert newest["amount"] == pytest.approx(460697377.0)      # 460697.377 thousand CNY
    assert newest["pre_close"] == pytest.approx(8.72)
    assert list(frame["trade_date"]) == [dt.date(2018, 7, 17), dt.date(2018, 7, 18)]  # oldest first


def test_daily_asks_pro_daily_with_tushare_dates_and_codes() -> None:
    src = source(lambda call: ts_daily())
    src.daily(["sz.000001", "600000"], dt.date(2018, 7, 17), dt.date(2018, 7, 18))
    (call,) = src._pro.called("daily")  # type: ignore[union-attr]
    assert call.kwargs["ts_code"] == "000001.SZ,600000.SH"
    assert call.kwargs["start_date"] == "20180717" and call.kwargs["end_date"] == "20180718"


@pytest.mark.parametrize(("error", "expected"), [
    (Exception("抱歉，您每分钟最多访问该接口500次，权限的具体详情访问：https://tushare.pro/document/1?doc_id=108。"),
     SourceRateLimited),
    (Exception("抱歉，您每天最多访问该接口10次"), SourceRateLimited),
    (Exception("抱歉，您没有接口访问权限，权限的具体详情访问：https://tushare.pro/document/1?doc_id=108。"),
     SourcePermissionDenied),
    (Exception("您的token不对，请确认。"), SourcePermissionDenied),
    (Exception("api init error."), SourcePermissionDenied),
    (OSError("ERROR."), SourceUnavailable),
    (TimeoutError("timed out"), SourceTimeout),
    (KeyError("items"), SourceDataError),
])
def test_bare_exception_messages_are_classified(error: BaseException, expected: type[Exception]) -> None:
    def fail(call: FakeCall) -> Any:
        raise error

    with pytest.raises(expected) as caught:
        source(fail).daily(["600000.SH"], dt.date(2024, 1, 2), dt.date(2024, 1, 3))
    assert caught.value.source == "tushare"


def test_http_error_answered_with_an_empty_frame_is_classified_empty() -> None:
    with pytest.raises(SourceEmpty):
        source(lambda call: pd.DataFrame()).daily(["600000.SH"], dt.date(2024, 1, 2), dt.date(2024, 1, 3))


def test_missing_token_is_a_permission_error_before_any_call() -> None:
    src = TushareSource("", module=FakeLibrary(lambda call: pd.DataFrame()))
    with pytest.raises(SourcePermissionDenied, match="TUSHARE_TOKEN"):
        src.stock_list()


def test_realtime_quote_uppercase_columns_are_normalised() -> None:
    src = source(module_handler=lambda call: ts_realtime())
    frame = src.quotes(["600000.SH"])
    row = frame.iloc[0]
    assert row["code"] == "600000.SH" and row["price"] == pytest.approx(8.46)
    assert row["volume"] == pytest.approx(33925900)  # sina VOLUME is already in shares
    assert row["pct_chg"] == pytest.approx((8.46 / 8.53 - 1) * 100)
    assert row["quote_time"] == pd.Timestamp("2024-05-28 06:59:58", tz="UTC")


def test_realtime_quote_is_asked_at_most_fifty_codes_at_a_time() -> None:
    src = source(module_handler=lambda call: ts_realtime())
    src.quotes([f"{600000 + i}.SH" for i in range(120)])
    assert [len(c.kwargs["ts_code"].split(",")) for c in src._module.called("realtime_quote")] == [50, 50, 20]  # type: ignore[union-attr]


class VerifyPermissionError(Exception):
    """Shaped like tushare.util.verify_token.PermissionError, which shadows the builtin."""


VerifyPermissionError.__name__ = "PermissionError"


@pytest.mark.parametrize("error", [VerifyPermissionError("请先设置token"),
                                   AttributeError("'dict' object has no attribute 'text'")])
def test_realtime_quote_token_verification_failures_are_permission_errors(error: BaseException) -> None:
    def fail(call: FakeCall) -> Any:
        raise error

    with pytest.raises(SourcePermissionDenied):
        source(module_handler=fail).quotes(["600000.SH"])


def test_stock_basic_is_normalised() -> None:
    raw = pd.DataFrame([["600000.SH", "600000", "浦发银行", "上海", "银行", "主板", "19991110"],
                        ["920001.BJ", "920001", "北证示例", None, None, "北交所", "20211115"]],
                       columns=["ts_code", "symbol", "name", "area", "industry", "market", "list_date"])
    frame = source(lambda call: raw).stock_list()
    assert list(frame["code"]) == ["600000.SH", "920001.BJ"]
    assert list(frame["exchange"]) == ["SH", "BJ"]
    assert frame.iloc[0]["list_date"] == dt.date(1999, 11, 10)
    assert frame.iloc[1]["area"] is None


def test_trade_cal_is_open_is_coerced_and_sorted() -> None:
    cal = pd.DataFrame([["SSE", "20181231", 0, "20181228"], ["SSE", "20181228", "1", "20181227"]],
                       columns=["exchange", "cal_date", "is_open", "pretrade_date"])
    assert source(lambda call: cal).trading_days(dt.date(2018, 12, 28), dt.date(2018, 12, 31)) == [
        dt.date(2018, 12, 28)]


def test_fina_indicator_keeps_the_latest_revision_and_the_newest_periods() -> None:
    raw = pd.DataFrame({
        "ts_code": ["600000.SH"] * 4, "ann_date": ["20240427", "20240830", "20241030", "20241031"],
        "end_date": ["20240331", "20240630", "20240930", "20240930"], "eps": [0.3, 0.6, 0.8, 0.9],
        "roe": [2.0, 4.0, 6.0, 6.5], "update_flag": ["0", "0", "0", "1"],
    })
    frame = source(lambda call: raw).financial(["600000.SH"], periods=2)
    assert list(frame["report_period"]) == [dt.date(2024, 9, 30), dt.date(2024, 6, 30)]
    assert frame.iloc[0]["eps"] == pytest.approx(0.9)


def test_rate_limiter_waits_for_the_window_once_the_quota_is_used() -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = TokenBucket("tushare:x:daily", 2, clock=lambda: now[0], sleep=sleep)
    assert limiter.acquire() == 0  # then spaced evenly: no 60 s window holds more than the quota
    assert limiter.acquire() == pytest.approx(30.0)
    assert limiter.acquire() == pytest.approx(30.0)
    assert waits == [pytest.approx(30.0)] * 2


def test_per_api_rate_limits_are_configurable() -> None:
    src = source(lambda call: ts_daily(), rate_limits={"daily": 7})
    assert src.limits.bucket("daily").per_minute == 7  # type: ignore[union-attr]
    assert src.limits.bucket("stock_basic").per_minute == 50  # type: ignore[union-attr]


def test_status_probe_reports_permission_refusal_as_reachable_but_not_permitted() -> None:
    def refuse(call: FakeCall) -> Any:
        raise Exception("抱歉，您没有接口访问权限")

    probe = source(refuse).probe()
    assert (probe.available, probe.permission, probe.error_class) == (True, False, "SourcePermissionDenied")
    assert source(lambda call: ts_daily()).probe().permission is True


def test_a_realtime_quote_of_zero_is_no_price_not_minus_100_percent() -> None:
    src = source(module_handler=lambda call: ts_realtime(price=0.0))
    row = src.quotes(["600000.SH"]).iloc[0]
    assert pd.isna(row["price"]) and pd.isna(row["pct_chg"])
