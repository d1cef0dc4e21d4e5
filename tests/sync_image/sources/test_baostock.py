"""The baostock adapter: login and logout, result-set iteration, string columns, error codes (data_sources.md §9)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import baostock
import pandas as pd
import pytest

from sync_image.errors import (
    FeatureNotSupported,
    SourceDataError,
    SourceEmpty,
    SourcePermissionDenied,
    SourceUnavailable,
)
from sync_image.sources.baostock import BaostockSource
from sync_image.sources.fake import FakeCall, FakeLibrary, FakeResultSet, baostock_failure
from tests.sync_image.conftest import BS_K_FIELDS, bs_k_row

OK = FakeResultSet(fields=[], rows=[])


class Library:
    """A fake baostock module with per-function answers."""

    def __init__(self, **answers: Any) -> None:
        self.answers = {"login": OK, "logout": OK, **answers}
        self.fake = FakeLibrary(self.handle, spec=baostock)  # calls bind to the installed baostock

    def handle(self, call: FakeCall) -> Any:
        answer = self.answers[call.name]
        return answer(call) if callable(answer) else answer


def test_daily_iterates_the_result_set_and_converts_strings() -> None:
    lib = Library(query_history_k_data_plus=lambda call: FakeResultSet(
        BS_K_FIELDS, [bs_k_row("2024-05-27"), bs_k_row("2024-05-28")]))
    src = BaostockSource(api=lib.fake)
    frame = src.daily(["600000.SH"], dt.date(2024, 5, 27), dt.date(2024, 5, 28))
    assert list(frame["trade_date"]) == [dt.date(2024, 5, 27), dt.date(2024, 5, 28)]
    row = frame.iloc[1]
    assert row["code"] == "600000.SH" and row["close"] == pytest.approx(8.46)
    assert row["volume"] == pytest.approx(33925900)  # already shares
    assert row["pct_chg"] == pytest.approx(-0.8206) and row["turnover_rate"] == pytest.approx(0.1156)
    call = lib.fake.called("query_history_k_data_plus")[0]
    assert call.args[0] == "sh.600000" and call.kwargs["start_date"] == "2024-05-27"
    assert next(c.name for c in lib.fake.calls) == "login"
    src.close()
    assert lib.fake.calls[-1].name == "logout"


def test_suspended_rows_are_dropped_like_other_sources_do() -> None:
    lib = Library(query_history_k_data_plus=FakeResultSet(
        BS_K_FIELDS, [bs_k_row("2024-05-27", tradestatus="0"), bs_k_row("2024-05-28")]))
    frame = BaostockSource(api=lib.fake).daily(["600000.SH"], dt.date(2024, 5, 27), dt.date(2024, 5, 28))
    assert list(frame["trade_date"]) == [dt.date(2024, 5, 28)]


def test_failed_login_is_unavailable_and_queries_are_not_sent() -> None:
    lib = Library(login=baostock_failure())
    with pytest.raises(SourceUnavailable, match="10002007"):
        BaostockSource(api=lib.fake).daily(["600000.SH"], dt.date(2024, 5, 27), dt.date(2024, 5, 28))
    assert [c.name for c in lib.fake.calls] == ["login"]


@pytest.mark.parametrize(("code", "expected"), [
    ("10002007", SourceUnavailable), ("10001006", SourcePermissionDenied), ("10001011", SourcePermissionDenied),
    ("10004011", SourceDataError), ("10005001", SourceUnavailable),
])
def test_error_codes_are_classified(code: str, expected: type[Exception]) -> None:
    lib = Library(query_history_k_data_plus=baostock_failure(code, "错误"))
    with pytest.raises(expected):
        BaostockSource(api=lib.fake).daily(["600000.SH"], dt.date(2024, 5, 27), dt.date(2024, 5, 28))


def test_none_for_a_malformed_date_is_a_data_error() -> None:
    lib = Library(query_history_k_data_plus=None)
    with pytest.raises(SourceDataError, match="returned None"):
        BaostockSource(api=lib.fake).daily(["600000.SH"], dt.date(2024, 5, 27), dt.date(2024, 5, 28))


def test_empty_result_set_is_empty() -> None:
    lib = Library(query_history_k_data_plus=FakeResultSet(BS_K_FIELDS, []))
    with pytest.raises(SourceEmpty):
        BaostockSource(api=lib.fake).daily(["600000.SH"], dt.date(2024, 5, 27), dt.date(2024, 5, 28))


def test_beijing_codes_and_quotes_are_not_supported() -> None:
    lib = Library(query_history_k_data_plus=FakeResultSet(BS_K_FIELDS, [bs_k_row()]))
    src = BaostockSource(api=lib.fake)
    with pytest.raises(FeatureNotSupported):
        src.daily(["920001.BJ"], dt.date(2024, 5, 27), dt.date(2024, 5, 28))
    with pytest.raises(FeatureNotSupported):
        src.quotes(["600000.SH"])
    mixed = src.daily(["920001.BJ", "600000.SH"], dt.date(2024, 5, 28), dt.date(2024, 5, 28))
    assert list(mixed["code"]) == ["600000.SH"]


def test_stock_basic_keeps_listed_stocks_and_strips_the_industry_code() -> None:
    basic = FakeResultSet(["code", "code_name", "ipoDate", "outDate", "type", "status"], [
        ["sh.600000", "浦发银行", "1999-11-10", "", "1", "1"],
        ["sh.000001", "上证综合指数", "1991-07-15", "", "2", "1"],
        ["sz.000003", "PT金田A", "1991-07-03", "2002-06-14", "1", "0"],
    ])
    industry = FakeResultSet(["updateDate", "code", "code_name", "industry", "industryClassification"],
                             [["2024-05-27", "sh.600000", "浦发银行", "J66货币金融服务", "证监会行业分类"]])
    lib = Library(query_stock_basic=basic, query_stock_industry=industry)
    frame = BaostockSource(api=lib.fake).stock_list()
    assert list(frame["code"]) == ["600000.SH"]
    assert frame.iloc[0]["industry"] == "货币金融服务" and frame.iloc[0]["list_date"] == dt.date(1999, 11, 10)


def test_profit_data_fills_only_the_figures_that_mean_the_same_as_elsewhere() -> None:
    fields = ["code", "pubDate", "statDate", "roeAvg", "npMargin", "gpMargin", "netProfit", "epsTTM", "MBRevenue",
              "totalShare", "liqaShare"]
    answers = {(2024, 3): [["sh.600000", "2024-10-31", "2024-09-30", "0.074617", "0.3", "", "4.5e10", "1.4", "",
                            "2.9e10", "2.9e10"]]}
    lib = Library(query_profit_data=lambda call: FakeResultSet(
        fields, answers.get((call.kwargs["year"], call.kwargs["quarter"]), [])))
    frame = BaostockSource(api=lib.fake, today=lambda: dt.date(2024, 11, 28)).financial(["600000.SH"], periods=4)
    assert list(frame["report_period"]) == [dt.date(2024, 9, 30)]
    row = frame.iloc[0]
    assert row["net_margin"] == pytest.approx(30.0)  # fractions become %
    assert row["eps_ttm"] == pytest.approx(1.4)
    # epsTTM is not basic EPS, MBRevenue not total revenue, netProfit not the parent's share, roeAvg not weighted ROE
    assert all(pd.isna(row[f]) for f in ("eps", "revenue", "net_profit", "roe"))
    asked = [(c.kwargs["year"], c.kwargs["quarter"]) for c in lib.fake.called("query_profit_data")]
    assert asked[0] == (2024, 3)  # the current quarter has not ended: it is not asked for
