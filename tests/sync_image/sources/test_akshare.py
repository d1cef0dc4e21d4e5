"""The akshare adapter on frames in akshare's real shape, and on its failure modes (data_sources.md §9)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import akshare
import pandas as pd
import pytest

from sync_image.errors import SourceDataError, SourceEmpty, SourceTimeout, SourceUnavailable
from sync_image.sources.akshare import AkshareSource
from sync_image.sources.fake import FakeCall, FakeLibrary
from tests.sync_image.conftest import ak_hist, ak_spot


class RemoteDisconnected(Exception):
    pass


class ConnectionError(OSError):
    pass


class ReadTimeout(OSError):
    pass


def source(handler: Any) -> AkshareSource:
    return AkshareSource(api=FakeLibrary(handler, spec=akshare))  # calls bind to the installed akshare


def test_hist_bars_are_converted_from_lots_and_get_a_pre_close() -> None:
    src = source(lambda call: ak_hist())
    row = src.daily(["000001.SZ"], dt.date(2024, 5, 28), dt.date(2024, 5, 28)).iloc[0]
    assert row["code"] == "000001.SZ" and row["trade_date"] == dt.date(2024, 5, 28)
    assert row["volume"] == pytest.approx(119588000)   # 1195880 lots
    assert row["amount"] == pytest.approx(1366048528.0)  # already CNY
    assert row["pre_close"] == pytest.approx(11.51)    # 收盘 - 涨跌额
    (call,) = src._api.called("stock_zh_a_hist")  # type: ignore[union-attr]
    assert call.kwargs["symbol"] == "000001" and call.kwargs["start_date"] == "20240528"
    assert call.kwargs["timeout"] == 30.0


def test_no_data_frame_without_columns_is_empty() -> None:
    with pytest.raises(SourceEmpty):
        source(lambda call: pd.DataFrame()).daily(["000001.SZ"], dt.date(2024, 5, 28), dt.date(2024, 5, 28))


def test_a_symbol_without_data_is_skipped_when_others_have_some() -> None:
    def hist(call: FakeCall) -> pd.DataFrame:
        return ak_hist() if call.kwargs["symbol"] == "000001" else pd.DataFrame()

    frame = source(hist).daily(["600000.SH", "000001.SZ"], dt.date(2024, 5, 28), dt.date(2024, 5, 28))
    assert list(frame["code"]) == ["000001.SZ"]


@pytest.mark.parametrize(("error", "expected"), [
    (ConnectionError(("Connection aborted.", RemoteDisconnected("Remote end closed connection without response"))),
     SourceUnavailable),
    (ReadTimeout("read timed out"), SourceTimeout),
    (KeyError("600734"), SourceDataError),
    (ValueError("Length mismatch: Expected axis has 31 elements, new values have 23 elements"), SourceDataError),
])
def test_library_errors_are_classified(error: BaseException, expected: type[Exception]) -> None:
    def fail(call: FakeCall) -> Any:
        raise error

    with pytest.raises(expected):
        source(fail).daily(["000001.SZ"], dt.date(2024, 5, 28), dt.date(2024, 5, 28))


def test_spot_snapshot_is_fetched_once_and_served_per_batch() -> None:
    src = source(lambda call: ak_spot())
    first = src.quotes(["600000.SH"])
    second = src.quotes(["920001.BJ", "000002.SZ"])
    assert len(src._api.called("stock_zh_a_spot_em")) == 1  # type: ignore[union-attr]
    assert first.iloc[0]["volume"] == pytest.approx(33925900)  # 339259 lots
    assert set(second["code"]) == {"920001.BJ", "000002.SZ"}
    suspended = second[second["code"] == "000002.SZ"].iloc[0]
    assert pd.isna(suspended["price"])
    assert first.iloc[0]["quote_time"] is not pd.NaT


def test_codes_missing_from_the_snapshot_are_empty() -> None:
    with pytest.raises(SourceEmpty):
        source(lambda call: ak_spot()).quotes(["600519.SH"])


def test_stock_list_infers_exchange_and_board_from_bare_codes() -> None:
    codes = pd.DataFrame({"code": ["000001", "600000", "920001"], "name": ["平安银行", "浦发银行", "示例北证"]})
    frame = source(lambda call: codes).stock_list()
    assert list(frame["code"]) == ["000001.SZ", "600000.SH", "920001.BJ"]
    assert list(frame["market"]) == ["主板", "主板", "北交所"]


def test_financial_em_columns_are_mapped() -> None:
    raw = pd.DataFrame({"SECUCODE": ["600000.SH", "600000.SH"], "REPORT_DATE": ["2024-09-30 00:00:00",
                                                                               "2024-06-30 00:00:00"],
                        "NOTICE_DATE": ["2024-10-30 00:00:00", "2024-08-30 00:00:00"], "EPSJB": [1.2, 0.8],
                        "ROEJQ": [6.1, 4.0], "TOTALOPERATEREVE": [1.3e11, 8.8e10], "ZCFZL": [91.5, 91.7]})
    frame = source(lambda call: raw).financial(["600000.SH"], periods=1)
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["report_period"] == dt.date(2024, 9, 30) and row["roe"] == pytest.approx(6.1)
    assert row["revenue"] == pytest.approx(1.3e11) and row["debt_to_assets"] == pytest.approx(91.5)


def test_trade_calendar_is_read_from_sina() -> None:
    raw = pd.DataFrame({"trade_date": [dt.date(2027, 1, 4), dt.date(2027, 1, 5)]})
    assert source(lambda call: raw).trading_days(dt.date(2027, 1, 1), dt.date(2027, 1, 4)) == [dt.date(2027, 1, 4)]


@pytest.mark.parametrize(("fetched_at", "session", "quote_time"), [
    # Saturday 2024-06-01 10:00 Shanghai: Friday's closing snapshot, timed at Friday's close
    (dt.datetime(2024, 6, 1, 2, 0, tzinfo=dt.UTC), dt.date(2024, 5, 31), dt.datetime(2024, 5, 31, 7, 0, tzinfo=dt.UTC)),
    # Monday 08:30 Shanghai, before the opening auction: still Friday's close
    (dt.datetime(2024, 6, 3, 0, 30, tzinfo=dt.UTC), dt.date(2024, 5, 31),
     dt.datetime(2024, 5, 31, 7, 0, tzinfo=dt.UTC)),
    # Monday 10:30 Shanghai: the session under way, timed by the fetch
    (dt.datetime(2024, 6, 3, 2, 30, tzinfo=dt.UTC), dt.date(2024, 6, 3), dt.datetime(2024, 6, 3, 2, 30, tzinfo=dt.UTC)),
])
def test_spot_quotes_are_dated_by_the_session_they_show_not_the_fetch(fetched_at: dt.datetime, session: dt.date,
                                                                      quote_time: dt.datetime) -> None:
    src = AkshareSource(api=FakeLibrary(lambda call: ak_spot()), clock=lambda: fetched_at)
    row = src.quotes(["600000.SH"]).iloc[0]
    assert row["trade_date"] == session
    assert row["quote_time"] == pd.Timestamp(quote_time)
