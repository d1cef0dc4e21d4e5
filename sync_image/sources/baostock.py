"""The baostock adapter: a login session over one module-global TCP socket, string-typed result sets, error codes.

baostock never raises on a network failure: every call returns a `ResultData` whose `error_code` is a string
('0' = success), a malformed date makes it return None, and all values come back as strings. Its socket is shared
and not thread-safe, and has no timeout unless we set one. It has no real-time quotes and no Beijing stocks.
Result sets are iterated with `next()`/`get_row_data()`: `get_data()` still calls `DataFrame.append`, removed in
pandas 2.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from sync_image import codes as codelib
from sync_image import schema
from sync_image.errors import (
    FeatureNotSupported,
    SourceDataError,
    SourceEmpty,
    SourceError,
    SourcePermissionDenied,
    SourceTimeout,
    SourceUnavailable,
    classify_exception,
)
from sync_image.sources.base import Probe, Source, SourceInfo, describe_codes

PROFIT_FIELDS = ("code", "pubDate", "statDate", "gpMargin", "npMargin", "epsTTM")  # read from query_profit_data
DAILY_FIELDS = "date,code,open,high,low,close,preclose,volume,amount,adjustflag,turn,tradestatus,pctChg,isST"
_PERMISSION_CODES = {"10001002", "10001005", "10001006", "10001011"}
_LOCK = threading.Lock()  # one socket for the whole process


def classify_code(code: str, message: str, source: str = "baostock") -> SourceError:
    """baostock's error codes (`baostock/common/contants.py`) as the exception tree."""
    text = f"baostock error {code}: {message}"
    if code in _PERMISSION_CODES:
        return SourcePermissionDenied(text, source=source)
    if code == "10002007" and "超时" in message:
        return SourceTimeout(text, source=source)
    if code.startswith("10004"):
        return SourceDataError(text, source=source)
    return SourceUnavailable(text, source=source)  # 10001001 not logged in, 10002xxx network, 10005001 system


class BaostockSource(Source):
    """baostock: basics, daily bars (sh/sz only), quarterly profitability, calendar."""

    # query_profit_data's epsTTM is trailing-twelve-month EPS, MBRevenue main-business revenue (not total operating
    # revenue), netProfit net profit including minorities (not the parent's share) and roeAvg ROE on simple average
    # equity (not weighted): only the margins and TTM EPS mean what the canonical fields mean.
    financial_figures = frozenset({"eps_ttm", "gross_margin", "net_margin"})
    max_concurrency = 1  # one login session over one module-global socket
    info = SourceInfo(
        name="baostock", title="BaoStock", markets=("SH", "SZ"), needs_key=False, free=True,
        features=frozenset({"basics", "daily", "daily_market", "financial", "calendar", "status"}),
        notes="no real-time quotes, no Beijing stocks; daily data lands about 17:30",
    )

    def __init__(self, *, api: Any = None, socket_timeout: float = 30.0,
                 today: Callable[[], dt.date] = dt.date.today) -> None:
        self._api = api
        self._today = today
        self.socket_timeout = socket_timeout
        self._logged_in = False
        self.suspended: list[tuple[str, object]] = []  # (code, date) of suspended sessions seen, for the gap report

    def open(self) -> None:
        if self._logged_in:
            return
        if self._api is None:
            import baostock  # the real library, only when no fake was injected

            self._api = baostock
        with _LOCK:
            try:
                result = self._api.login()
            except Exception as exc:
                raise classify_exception(exc, self.name) from exc
            if result is None or str(result.error_code) != "0":
                code = "?" if result is None else str(result.error_code)
                raise classify_code(code, "login failed: " + ("" if result is None else str(result.error_msg)))
            sock = getattr(getattr(getattr(self._api, "common", None), "context", None), "default_socket", None)
            if sock is not None and hasattr(sock, "settimeout"):
                sock.settimeout(self.socket_timeout)  # otherwise a dropped peer makes recv() spin forever
            self._logged_in = True

    def close(self) -> None:
        if self._logged_in and self._api is not None:
            with _LOCK, contextlib.suppress(Exception):  # closing must not fail the run
                self._api.logout()
            self._logged_in = False

    def _query(self, function: str, *args: Any, **params: Any) -> pd.DataFrame:
        self.open()
        with _LOCK:
            try:
                result = getattr(self._api, function)(*args, **params)
            except Exception as exc:
                raise classify_exception(exc, self.name) from exc
            if result is None:  # what a malformed date gets
                raise SourceDataError(f"{function} returned None (bad parameters {params})", source=self.name)
            if str(result.error_code) != "0":
                if str(result.error_code) == "10001001":
                    self._logged_in = False
                raise classify_code(str(result.error_code), str(result.error_msg))
            rows = []
            while (str(result.error_code) == "0") & result.next():
                rows.append(result.get_row_data())
            if str(result.error_code) != "0":  # a later page can fail too
                raise classify_code(str(result.error_code), str(result.error_msg))
        if not rows:
            raise self.empty(f"{function}({', '.join(str(v) for v in [*args, *params.values()])})")
        return pd.DataFrame(rows, columns=list(result.fields))

    def stock_list(self) -> pd.DataFrame:
        raw = self._query("query_stock_basic")
        try:
            raw = raw[(raw["type"] == "1") & (raw["status"] == "1")]
            out = pd.DataFrame({"code": raw["code"].map(codelib.normalise), "name": raw["code_name"],
                                "list_date": raw["ipoDate"]})
            out["exchange"] = out["code"].str[-2:]
            out["market"] = out["code"].map(codelib.board_of)
            out["list_status"] = "L"
        except (KeyError, ValueError) as exc:
            raise SourceDataError(f"query_stock_basic: {exc!r}", source=self.name) from exc
        try:
            industry = self._query("query_stock_industry")
            mapping = {codelib.normalise(c): re.sub(r"^[A-Z]\d+", "", str(i))
                       for c, i in zip(industry["code"], industry["industry"], strict=True)}
            out["industry"] = out["code"].map(mapping)
        except (SourceError, KeyError):
            pass  # industry is a nice-to-have; the list itself was delivered
        return schema.conform(out, "basics")

    def quotes(self, codes: Sequence[str]) -> pd.DataFrame:
        raise self.unsupported("quotes", " (no real-time data)")

    def daily(self, codes: Sequence[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        supported = [c for c in codes if codelib.normalise(c)[7:] != "BJ"]
        if not supported:
            raise self.unsupported("daily", f" for Beijing codes {describe_codes(codes)}")
        parts = []
        for code in supported:
            try:
                parts.append(self._query("query_history_k_data_plus", codelib.to_baostock(code), DAILY_FIELDS,
                                         start_date=start.isoformat(), end_date=end.isoformat(),
                                         frequency="d", adjustflag="3"))
            except SourceEmpty:
                continue
        if not parts:
            raise self.empty(f"daily {describe_codes(supported)} {start}..{end}")
        return self._daily_frame(pd.concat(parts, ignore_index=True))

    def market_daily(self, day: dt.date) -> pd.DataFrame:
        """`query_daily_history_k_AStock(date)`: every A-share's bar of one session, in one unpaged answer."""
        return self._daily_frame(self._query("query_daily_history_k_AStock", date=day.isoformat()))

    def _daily_frame(self, raw: pd.DataFrame) -> pd.DataFrame:
        try:
            suspended = raw["tradestatus"] == "0"
            self.suspended.extend((codelib.normalise(c), d) for c, d in zip(raw.loc[suspended, "code"],
                                                                            raw.loc[suspended, "date"], strict=True))
            raw = raw[~suspended]  # suspended days: other sources send no row, neither do we (but we say so)
            out = raw.rename(columns={"date": "trade_date", "preclose": "pre_close", "pctChg": "pct_chg",
                                      "turn": "turnover_rate"})
            close, pre = pd.to_numeric(out["close"], errors="coerce"), pd.to_numeric(out["pre_close"], errors="coerce")
            out["change"] = close - pre  # volume already in shares, amount in CNY
            high, low = pd.to_numeric(out["high"], errors="coerce"), pd.to_numeric(out["low"], errors="coerce")
            out["amplitude"] = (high - low) / pre.where(pre != 0) * 100.0
            return schema.conform(out, "daily")
        except (KeyError, ValueError) as exc:
            raise SourceDataError(f"query_history_k_data_plus: {exc!r}", source=self.name) from exc

    def take_suspensions(self) -> list[tuple[str, object]]:
        taken, self.suspended = self.suspended, []
        return taken

    def financial(self, codes: Sequence[str], periods: int) -> pd.DataFrame:
        quarters = _recent_quarters(self._today(), periods + 1)  # the newest quarter may not be published yet
        rows = []
        supported = [c for c in codes if codelib.normalise(c)[7:] != "BJ"]
        if not supported:
            raise self.unsupported("financial", f" for Beijing codes {describe_codes(codes)}")
        for code in supported:
            for year, quarter in quarters:
                try:
                    rows.append(self._query("query_profit_data", code=codelib.to_baostock(code), year=year,
                                            quarter=quarter))
                except SourceEmpty:
                    continue
        if not rows:
            raise self.empty(f"financial {describe_codes(supported)}")
        raw = pd.concat(rows, ignore_index=True)
        try:
            out = pd.DataFrame({"code": raw["code"], "report_period": raw["statDate"], "ann_date": raw["pubDate"],
                                "eps_ttm": raw["epsTTM"]})
            for target, column in (("gross_margin", "gpMargin"), ("net_margin", "npMargin")):
                out[target] = pd.to_numeric(raw[column], errors="coerce") * 100.0  # fractions → %
            return schema.latest_periods(schema.conform(out, "financial"), periods)
        except (KeyError, ValueError) as exc:
            raise SourceDataError(f"query_profit_data: {exc!r}", source=self.name) from exc

    def trading_days(self, start: dt.date, end: dt.date) -> list[dt.date]:
        raw = self._query("query_trade_dates", start_date=start.isoformat(), end_date=end.isoformat())
        try:
            days = [schema.to_date(d) for d, o in zip(raw["calendar_date"], raw["is_trading_day"], strict=True)
                    if str(o) == "1"]
        except (KeyError, ValueError) as exc:
            raise SourceDataError(f"query_trade_dates: {exc!r}", source=self.name) from exc
        return sorted(d for d in days if d is not None)

    def probe(self) -> Probe:
        started = time.monotonic()
        today = dt.date.today()
        try:
            self._query("query_trade_dates", start_date=(today - dt.timedelta(days=10)).isoformat(),
                        end_date=today.isoformat())
            return Probe(self.name, True, True, (time.monotonic() - started) * 1000)
        except SourceError as exc:
            answered = isinstance(exc, SourceEmpty | SourcePermissionDenied | FeatureNotSupported)
            return Probe(self.name, available=answered, permission=isinstance(exc, SourceEmpty),
                         latency_ms=(time.monotonic() - started) * 1000, error_class=type(exc).__name__,
                         message=exc.message)


def _recent_quarters(today: dt.date, count: int) -> list[tuple[int, int]]:
    year, quarter = today.year, (today.month - 1) // 3 + 1
    out = []
    for _ in range(count):
        quarter -= 1
        if quarter == 0:
            year, quarter = year - 1, 4
        out.append((year, quarter))
    return out
