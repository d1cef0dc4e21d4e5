"""Contract tests: the adapters against the installed tushare, akshare and baostock, not a fake that takes anything.

Two checks per library function an adapter calls:

* it exists with the parameters the adapter passes: every call goes through a `FakeLibrary(spec=<the real
  module>)`, which binds the arguments to `inspect.signature` of the installed function;
* the columns the adapter reads are the ones the library names for that function's result: in the library's own
  source where the library builds the frame (akshare renames eastmoney's keys in code, baostock's demos list the
  fields), else in its documentation (tushare's pro endpoints are generic HTTP queries, eastmoney's financial keys
  come through raw), quoted below with where each list comes from.

Run against fakes that answer with exactly those documented columns, every canonical field an adapter claims to
fill must come out filled: a column read that the library does not have shows up as a null.
"""

from __future__ import annotations

import datetime as dt
import inspect
from pathlib import Path
from typing import Any

import akshare
import baostock
import pandas as pd
import pytest
import tushare
import tushare.stock.rtq

from sync_image import schema
from sync_image.sources import akshare as ak_adapter
from sync_image.sources import baostock as bs_adapter
from sync_image.sources import tushare as ts_adapter
from sync_image.sources.akshare import AkshareSource
from sync_image.sources.baostock import BaostockSource
from sync_image.sources.fake import FakeCall, FakeLibrary, FakeResultSet
from sync_image.sources.tushare import TushareSource
from tests.sync_image.conftest import AK_SPOT_COLUMNS, TS_RTQ_COLUMNS, ak_hist, ak_spot, bs_k_row

# tushare's documentation (tushare.pro/document/2): the input parameters and output fields of each pro endpoint.
TUSHARE_DOCUMENTED: dict[str, dict[str, set[str]]] = {
    "daily": {  # doc_id=27
        "params": {"ts_code", "trade_date", "start_date", "end_date"},
        "fields": {"ts_code", "trade_date", "open", "high", "low", "close", "pre_close", "change", "pct_chg", "vol",
                   "amount"},
    },
    "stock_basic": {  # doc_id=25
        "params": {"ts_code", "name", "market", "list_status", "exchange", "is_hs"},
        "fields": {"ts_code", "symbol", "name", "area", "industry", "fullname", "enname", "cnspell", "market",
                   "exchange", "curr_type", "list_status", "list_date", "delist_date", "is_hs", "act_name",
                   "act_ent_type"},
    },
    "trade_cal": {  # doc_id=26
        "params": {"exchange", "start_date", "end_date", "is_open"},
        "fields": {"exchange", "cal_date", "is_open", "pretrade_date"},
    },
    "fina_indicator": {  # doc_id=79 (output list abridged to the fields relevant here; no revenue, no netprofit)
        "params": {"ts_code", "ann_date", "start_date", "end_date", "period"},
        "fields": {"ts_code", "ann_date", "end_date", "eps", "dt_eps", "total_revenue_ps", "revenue_ps", "bps",
                   "current_ratio", "quick_ratio", "cash_ratio", "grossprofit_margin", "netprofit_margin",
                   "gross_margin", "profit_dedt", "roe", "roe_waa", "roe_dt", "roa", "debt_to_assets", "roic",
                   "basic_eps_yoy", "netprofit_yoy", "dt_netprofit_yoy", "tr_yoy", "or_yoy", "update_flag"},
    },
    "income": {  # doc_id=33 (abridged)
        "params": {"ts_code", "ann_date", "f_ann_date", "start_date", "end_date", "period", "report_type",
                   "comp_type"},
        "fields": {"ts_code", "ann_date", "f_ann_date", "end_date", "report_type", "comp_type", "end_type",
                   "basic_eps", "diluted_eps", "total_revenue", "revenue", "n_income", "n_income_attr_p",
                   "update_flag"},
    },
}
# akshare's docs (docs/data/stock/stock.md, 主要指标-东方财富): stock_financial_analysis_indicator_em returns
# eastmoney's RPT_F10_FINANCE_MAINFINADATA keys unrenamed (abridged).
AK_FINANCIAL_EM_DOCUMENTED = {
    "SECUCODE", "SECURITY_CODE", "SECURITY_NAME_ABBR", "REPORT_DATE", "REPORT_TYPE", "REPORT_DATE_NAME",
    "NOTICE_DATE", "UPDATE_DATE", "EPSJB", "EPSKCJB", "EPSXS", "BPS", "MGJYXJJE", "TOTALOPERATEREVE", "MLR",
    "PARENTNETPROFIT", "KCFJCXSYJLR", "TOTALOPERATEREVETZ", "PARENTNETPROFITTZ", "ROEJQ", "ROEKCJQ", "ZZCJLL",
    "XSJLL", "XSMLL", "ZCFZL", "LD", "SD",
}
# baostock.com, 季频盈利能力 (query_profit_data): the fields the server sends.
BS_PROFIT_DOCUMENTED = ["code", "pubDate", "statDate", "roeAvg", "npMargin", "gpMargin", "netProfit", "epsTTM",
                        "MBRevenue", "totalShare", "liqaShare"]


def innermost(function: Any) -> Any:
    """The function under a decorator that did not use functools.wraps (tushare's require_permission)."""
    function = inspect.unwrap(function)
    for cell in getattr(function, "__closure__", None) or ():
        inner = cell.cell_contents
        if inspect.isfunction(inner) and inner.__name__ == function.__name__:
            return innermost(inner)
    return function


class DocumentedPro:
    """tushare's pro client as its documentation describes it: documented parameters and fields only."""

    def __init__(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        self.rows = rows
        self.calls: list[FakeCall] = []

    def __getattr__(self, api: str) -> Any:
        if api.startswith("__"):
            raise AttributeError(api)

        def query(**params: Any) -> pd.DataFrame:
            documented = TUSHARE_DOCUMENTED[api]
            fields = [f for f in params.pop("fields", "").split(",") if f]
            assert set(params) <= documented["params"], (api, set(params) - documented["params"])
            assert set(fields) <= documented["fields"], (api, set(fields) - documented["fields"])
            self.calls.append(FakeCall(api, (), params))
            frame = pd.DataFrame(self.rows.get(api, []))
            served = fields or [c for c in frame.columns if c in documented["fields"]]
            return frame.reindex(columns=[c for c in served if c in documented["fields"]])

        return query


# -- signatures ------------------------------------------------------------------------------------------------


def test_the_spec_checked_fake_refuses_a_renamed_function_or_parameter() -> None:
    fake = FakeLibrary(lambda call: pd.DataFrame(), spec=akshare)
    with pytest.raises(AttributeError):
        fake.stock_zh_a_hsit(symbol="600000")
    with pytest.raises(TypeError):
        fake.stock_zh_a_hist(symbol="600000", bogus=1)


def test_every_akshare_call_binds_to_the_installed_functions() -> None:
    def answer(call: FakeCall) -> pd.DataFrame:
        return {
            "stock_zh_a_hist": lambda: ak_hist(call.kwargs["symbol"]),
            "stock_zh_a_spot_em": ak_spot,
            "stock_info_a_code_name": lambda: pd.DataFrame({"code": ["600000"], "name": ["浦发银行"]}),
            "tool_trade_date_hist_sina": lambda: pd.DataFrame({"trade_date": [dt.date(2024, 5, 28)]}),
            "stock_financial_analysis_indicator_em": lambda: pd.DataFrame(
                [dict.fromkeys(AK_FINANCIAL_EM_DOCUMENTED, 1.0) | {"SECUCODE": "600000.SH",
                                                                   "REPORT_DATE": "2024-09-30 00:00:00",
                                                                   "NOTICE_DATE": "2024-10-30 00:00:00"}]),
        }[call.name]()

    src = AkshareSource(api=FakeLibrary(answer, spec=akshare))
    src.stock_list()
    src.quotes(["600000.SH"])
    src.daily(["000001.SZ"], dt.date(2024, 5, 28), dt.date(2024, 5, 28))
    frame = src.financial(["600000.SH"], periods=1)
    src.trading_days(dt.date(2024, 5, 28), dt.date(2024, 5, 28))
    assert src.probe().available
    assert frame.iloc[0][sorted(AkshareSource.financial_figures)].notna().all()


def test_every_baostock_call_binds_to_the_installed_functions() -> None:
    ok = FakeResultSet(fields=[], rows=[])

    def answer(call: FakeCall) -> Any:
        if call.name in ("login", "logout"):
            return ok
        if call.name in ("query_history_k_data_plus", "query_daily_history_k_AStock"):
            return FakeResultSet(bs_adapter.DAILY_FIELDS.split(","), [bs_k_row()])
        if call.name == "query_profit_data":
            return FakeResultSet(BS_PROFIT_DOCUMENTED, [["sh.600000", "2024-10-31", "2024-09-30", "0.07", "0.3",
                                                         "0.4", "4.5e10", "1.4", "1e11", "2.9e10", "2.9e10"]])
        if call.name == "query_trade_dates":
            return FakeResultSet(["calendar_date", "is_trading_day"], [["2024-05-28", "1"]])
        if call.name == "query_stock_basic":
            return FakeResultSet(["code", "code_name", "ipoDate", "outDate", "type", "status"],
                                 [["sh.600000", "浦发银行", "1999-11-10", "", "1", "1"]])
        if call.name == "query_stock_industry":
            return FakeResultSet(["updateDate", "code", "code_name", "industry", "industryClassification"],
                                 [["2024-05-27", "sh.600000", "浦发银行", "J66货币金融服务", "证监会行业分类"]])
        raise AssertionError(call.name)

    src = BaostockSource(api=FakeLibrary(answer, spec=baostock), today=lambda: dt.date(2024, 11, 28))
    src.stock_list()
    src.daily(["600000.SH"], dt.date(2024, 5, 28), dt.date(2024, 5, 28))
    src.market_daily(dt.date(2024, 5, 28))
    frame = src.financial(["600000.SH"], periods=1)
    src.trading_days(dt.date(2024, 5, 28), dt.date(2024, 5, 28))
    assert src.probe().available
    assert frame.iloc[0][sorted(BaostockSource.financial_figures)].notna().all()


def test_tushare_calls_bind_to_the_installed_functions_and_the_documented_endpoints() -> None:
    assert inspect.signature(tushare.pro_api).bind("token", timeout=30)
    realtime = innermost(tushare.realtime_quote)
    assert realtime is innermost(tushare.stock.rtq.realtime_quote)
    module = FakeLibrary(lambda call: pd.DataFrame([dict.fromkeys(TS_RTQ_COLUMNS, 1.0) | {
        "TS_CODE": "600000.SH", "NAME": "浦发银行", "DATE": "20240528", "TIME": "14:59:58"}]))
    module_spec = type("Spec", (), {"realtime_quote": staticmethod(realtime)})
    module._spec = module_spec  # the decorated function hides its parameters; check the one it wraps
    pro = DocumentedPro({
        "daily": [{"ts_code": "600000.SH", "trade_date": "20240528", "open": 8.5, "high": 8.6, "low": 8.4,
                   "close": 8.5, "pre_close": 8.4, "change": 0.1, "pct_chg": 1.2, "vol": 10.0, "amount": 20.0}],
        "fina_indicator": [{**dict.fromkeys(TUSHARE_DOCUMENTED["fina_indicator"]["fields"], 1.0),
                            "ts_code": "600000.SH", "ann_date": "20241030", "end_date": "20240930",
                            "update_flag": "1"}],
        "income": [{**dict.fromkeys(TUSHARE_DOCUMENTED["income"]["fields"], 2.0), "ts_code": "600000.SH",
                    "ann_date": "20241030", "end_date": "20240930", "update_flag": "1"}],
        "trade_cal": [{"exchange": "SSE", "cal_date": "20240528", "is_open": 1, "pretrade_date": "20240527"}],
        "stock_basic": [{"ts_code": "600000.SH", "symbol": "600000", "name": "浦发银行", "area": "上海",
                         "industry": "银行", "market": "主板", "exchange": "SSE", "list_date": "19991110"}],
    })
    src = TushareSource("token", pro=pro, module=module)
    src.stock_list()
    src.quotes(["600000.SH"])
    src.daily(["600000.SH"], dt.date(2024, 5, 28), dt.date(2024, 5, 28))
    src.market_daily(dt.date(2024, 5, 28))
    src.trading_days(dt.date(2024, 5, 28), dt.date(2024, 5, 28))
    frame = src.financial(["600000.SH"], periods=1)
    row = frame.iloc[0]
    filled = {f for f in schema.FINANCIAL_FIGURES if pd.notna(row[f])}
    assert TushareSource.financial_figures <= filled, TushareSource.financial_figures - filled
    assert row["revenue"] == 2.0 and row["net_profit"] == 2.0  # from income: fina_indicator has neither


# -- columns ---------------------------------------------------------------------------------------------------


def test_akshare_columns_the_adapter_reads_are_named_by_akshare_itself() -> None:
    hist = inspect.getsource(innermost(akshare.stock_zh_a_hist))
    spot = inspect.getsource(innermost(akshare.stock_zh_a_spot_em))
    assert [c for c in ak_adapter.HIST_COLUMNS if f'"{c}"' not in hist] == []
    assert [c for c in ak_adapter.SPOT_COLUMNS if f'"{c}"' not in spot] == []
    assert [c for c in AK_SPOT_COLUMNS if f'"{c}"' not in spot] == []  # and the test fixture has akshare's shape
    assert '"trade_date"' in inspect.getsource(innermost(akshare.tool_trade_date_hist_sina))
    assert set(ak_adapter.FINANCIAL_EM_COLUMNS) <= AK_FINANCIAL_EM_DOCUMENTED


def test_baostock_fields_the_adapter_reads_are_named_by_baostock() -> None:
    demos = Path(baostock.__file__).parent / "demo"  # read, not imported: the demos log in when imported
    demo = (demos / "demo_A_stock_k_data.py").read_text(encoding="utf-8")
    market_demo = (demos / "demo_daily_k_4_AStock.py").read_text(encoding="utf-8")
    assert all(f in demo and f in market_demo for f in bs_adapter.DAILY_FIELDS.split(","))
    assert set(bs_adapter.PROFIT_FIELDS) <= set(BS_PROFIT_DOCUMENTED)


def test_tushare_fields_the_adapter_reads_are_documented() -> None:
    assert set(ts_adapter.FINA_INDICATOR_FIELDS) <= TUSHARE_DOCUMENTED["fina_indicator"]["fields"]
    assert set(ts_adapter.INCOME_FIELDS) <= TUSHARE_DOCUMENTED["income"]["fields"]
    assert set(ts_adapter.DAILY_FIELDS) <= TUSHARE_DOCUMENTED["daily"]["fields"]
    from tushare.stock import rtq_vars

    assert [c.upper() for c in ts_adapter.REALTIME_COLUMNS if c.upper() not in rtq_vars.LIVE_DATA_COLS_REINDEX] == []
