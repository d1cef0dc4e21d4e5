"""The akshare adapter: free scrapers of eastmoney and sina, Chinese column names, bare codes, volume in lots.

akshare raises `requests` errors when a site blocks or drops us, `KeyError`/`ValueError` when a site changed its
format, and returns `pd.DataFrame()` with no columns when there is no data. Snapshot quotes come from one
whole-market call (about a minute, ~55 pages), so it is fetched once per run and served to every batch.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import pandas as pd

from sync_image import codes as codelib
from sync_image import schema
from sync_image.errors import SourceDataError, SourceEmpty, SourceError, classify_exception
from sync_image.sources.base import Probe, Source, SourceInfo, describe_codes
from sync_image.trading_calendar import TradingCalendar

HIST_COLUMNS = {"日期": "trade_date", "开盘": "open", "收盘": "close", "最高": "high", "最低": "low",
                "成交量": "volume", "成交额": "amount", "振幅": "amplitude", "涨跌幅": "pct_chg", "涨跌额": "change",
                "换手率": "turnover_rate"}
SPOT_COLUMNS = {"代码": "code", "名称": "name", "最新价": "price", "涨跌幅": "pct_chg", "成交量": "volume",
                "成交额": "amount", "最高": "high", "最低": "low", "今开": "open", "昨收": "pre_close",
                "换手率": "turnover_rate"}
# stock_financial_analysis_indicator_em (eastmoney, English upper-case keys; amounts in CNY, ratios in %)
FINANCIAL_EM_COLUMNS = {"SECUCODE": "code", "REPORT_DATE": "report_period", "NOTICE_DATE": "ann_date", "EPSJB": "eps",
           "BPS": "bps", "ROEJQ": "roe", "XSMLL": "gross_margin", "XSJLL": "net_margin", "ZCFZL": "debt_to_assets",
           "TOTALOPERATEREVE": "revenue", "PARENTNETPROFIT": "net_profit", "TOTALOPERATEREVETZ": "revenue_yoy",
           "PARENTNETPROFITTZ": "net_profit_yoy", "LD": "current_ratio", "SD": "quick_ratio"}

_SITES = {"tool_trade_date_hist_sina": "sina", "stock_info_a_code_name": "exchanges"}  # the rest is eastmoney


def _empty(frame: Any) -> bool:
    return frame is None or len(getattr(frame, "columns", ())) == 0 or len(frame) == 0


class AkshareSource(Source):
    """akshare: eastmoney for basics, quotes, daily bars and financials; sina for the calendar."""

    financial_figures = frozenset({"eps", "bps", "roe", "gross_margin", "net_margin", "debt_to_assets", "revenue",
                                   "net_profit", "revenue_yoy", "net_profit_yoy", "current_ratio", "quick_ratio"})
    # eastmoney bans clients that hammer it (akshare issues: a ban after ~200 stocks fetched at full speed, lifted
    # hours later): two calls in flight and two a second by default; sina and the exchanges' lists rarely change.
    max_concurrency = 2
    default_rate_limits: ClassVar[Mapping[str, float]] = {"eastmoney": 120, "sina": 10, "exchanges": 10}
    info = SourceInfo(
        name="akshare", title="AKShare", markets=("SH", "SZ", "BJ"), needs_key=False, free=True,
        features=frozenset({"basics", "quotes", "daily", "financial", "calendar", "status"}),
        notes="scrapes public sites; eastmoney bans IPs under load; no official rate limits",
    )

    def __init__(self, *, api: Any = None, timeout: float = 30.0, calendar: TradingCalendar | None = None,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self._api = api
        self.timeout = timeout
        self.calendar = calendar or TradingCalendar()
        self._clock = clock
        self._spot: pd.DataFrame | None = None

    def open(self) -> None:
        if self._api is None:
            import akshare  # the real library, only when no fake was injected

            self._api = akshare

    def _call(self, function: str, **params: Any) -> pd.DataFrame:
        self.open()
        self.limits.acquire(_SITES.get(function, "eastmoney"))
        try:
            frame = getattr(self._api, function)(**params)
        except Exception as exc:
            raise classify_exception(exc, self.name) from exc
        if _empty(frame):
            raise self.empty(f"{function}({', '.join(f'{k}={v}' for k, v in params.items())})")
        return frame

    def stock_list(self) -> pd.DataFrame:
        raw = self._call("stock_info_a_code_name")
        try:
            out = pd.DataFrame({"code": raw["code"].map(codelib.normalise), "name": raw["name"]})
            out["exchange"] = out["code"].str[-2:]
            out["market"] = out["code"].map(codelib.board_of)
            out["list_status"] = "L"
            return schema.conform(out, "basics")
        except (KeyError, ValueError) as exc:
            raise SourceDataError(f"stock_info_a_code_name: {exc!r}", source=self.name) from exc

    def quotes(self, codes: Sequence[str]) -> pd.DataFrame:
        if self._spot is None:
            fetched_at = self._clock()
            raw = self._call("stock_zh_a_spot_em")
            # The snapshot carries no date or time: it shows the session under way, or the last one that closed
            # (a weekend fetch shows Friday's close). Dated by that session, timed no later than its close.
            session = self.calendar.session_of(fetched_at)
            quote_time = min(fetched_at, self.calendar.closing_time(session))
            try:
                spot = raw.rename(columns=SPOT_COLUMNS)
                spot = spot[[c for c in SPOT_COLUMNS.values()]].copy()
                spot["code"] = spot["code"].map(_lenient_code)
                spot = spot.dropna(subset=["code"])
                spot["volume"] = pd.to_numeric(spot["volume"], errors="coerce") * 100.0  # lots → shares
                spot["quote_time"] = pd.Timestamp(quote_time)
                spot["trade_date"] = session
            except (KeyError, ValueError) as exc:
                raise SourceDataError(f"stock_zh_a_spot_em: {exc!r}", source=self.name) from exc
            self._spot = schema.conform(spot, "quotes")
        wanted = {codelib.normalise(c) for c in codes}
        out = self._spot[self._spot["code"].isin(wanted)].reset_index(drop=True)
        if out.empty:
            raise self.empty(f"quotes {describe_codes(codes)}")
        return out

    def daily(self, codes: Sequence[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        parts = []
        for code in codes:
            canonical = codelib.normalise(code)
            try:
                raw = self._call("stock_zh_a_hist", symbol=canonical[:6], period="daily",
                                 start_date=start.strftime("%Y%m%d"), end_date=end.strftime("%Y%m%d"),
                                 adjust="", timeout=self.timeout)
            except SourceEmpty:
                continue
            try:
                frame = raw.rename(columns=HIST_COLUMNS)
                frame["code"] = canonical
                frame["volume"] = pd.to_numeric(frame["volume"]) * 100.0  # lots → shares; amount already CNY
                frame["pre_close"] = pd.to_numeric(frame["close"]) - pd.to_numeric(frame["change"])
                parts.append(frame)
            except (KeyError, ValueError) as exc:
                raise SourceDataError(f"stock_zh_a_hist({canonical}): {exc!r}", source=self.name) from exc
        if not parts:
            raise self.empty(f"daily {describe_codes(codes)} {start}..{end}")
        return schema.conform(pd.concat(parts, ignore_index=True), "daily")

    def financial(self, codes: Sequence[str], periods: int) -> pd.DataFrame:
        parts = []
        for code in codes:
            try:
                raw = self._call("stock_financial_analysis_indicator_em", symbol=codelib.normalise(code),
                                 indicator="按报告期")
            except SourceEmpty:
                continue
            try:
                frame = raw.rename(columns=FINANCIAL_EM_COLUMNS)
                frame["code"] = codelib.normalise(code)
                parts.append(frame)
            except (KeyError, ValueError) as exc:
                raise SourceDataError(f"financial({code}): {exc!r}", source=self.name) from exc
        if not parts:
            raise self.empty(f"financial {describe_codes(codes)}")
        return schema.latest_periods(schema.conform(pd.concat(parts, ignore_index=True), "financial"), periods)

    def trading_days(self, start: dt.date, end: dt.date) -> list[dt.date]:
        raw = self._call("tool_trade_date_hist_sina")
        try:
            days = [schema.to_date(v) for v in raw["trade_date"]]
        except (KeyError, ValueError) as exc:
            raise SourceDataError(f"tool_trade_date_hist_sina: {exc!r}", source=self.name) from exc
        result = sorted(d for d in days if d is not None and start <= d <= end)
        if not result:
            raise self.empty(f"trading days {start}..{end}")
        return result

    def probe(self) -> Probe:
        started = time.monotonic()
        today = dt.date.today()
        try:
            self._call("stock_zh_a_hist", symbol="600000", period="daily",
                       start_date=(today - dt.timedelta(days=10)).strftime("%Y%m%d"),
                       end_date=today.strftime("%Y%m%d"), adjust="", timeout=self.timeout)
            return Probe(self.name, True, True, (time.monotonic() - started) * 1000)
        except SourceError as exc:
            answered = isinstance(exc, SourceEmpty)
            return Probe(self.name, available=answered, permission=answered,
                         latency_ms=(time.monotonic() - started) * 1000, error_class=type(exc).__name__,
                         message=exc.message)


def _lenient_code(value: object) -> str | None:
    try:
        return codelib.normalise(value)
    except ValueError:
        return None  # funds and other non-stock rows in a whole-market listing
