"""The tushare Pro adapter: token-gated HTTP API with per-API quotas, errors as bare messages or empty frames.

tushare raises a plain `Exception(msg)` for server-side errors (only the message tells permission from quota),
returns an empty frame with no error on HTTP >= 400, and reports volume in lots (手) and amount in thousand CNY.
Everything here turns those into canonical frames and `SourceError`s. Each API call waits on its own rate limiter
(per-minute limits configurable, defaults from the tushare docs for the lowest paid tier).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from sync_image import codes as codelib
from sync_image import schema
from sync_image.errors import (
    SourceDataError,
    SourceEmpty,
    SourceError,
    SourcePermissionDenied,
    SourceRateLimited,
    SourceUnavailable,
    classify_exception,
)
from sync_image.quota import Limits
from sync_image.sources.base import Probe, Source, SourceInfo, describe_codes

DEFAULT_RATE_LIMITS: dict[str, float] = {
    "stock_basic": 50,
    "daily": 500,
    "fina_indicator": 200,
    "income": 200,
    "trade_cal": 200,
    "realtime_quote": 100,
}
REALTIME_COLUMNS = ("ts_code", "name", "date", "time", "price", "open", "high", "low", "pre_close", "volume",
                    "amount")  # read from ts.realtime_quote, lower-cased
REALTIME_CHUNK = 50  # ts.realtime_quote (sina) takes at most 50 codes
DAILY_ROWS_PER_CALL = 6000

# What the adapter reads from each pro endpoint, as tushare's documentation names the fields (the pro client is
# generic, so only the docs can say: doc_id=79 fina_indicator, doc_id=33 income). Asked for explicitly with
# `fields=`, so `update_flag` (which revision a row is) arrives and revised reports can be deduplicated.
FINA_INDICATOR_FIELDS = {
    "ts_code": "code", "end_date": "report_period", "ann_date": "ann_date", "eps": "eps", "bps": "bps",
    "roe_waa": "roe", "grossprofit_margin": "gross_margin", "netprofit_margin": "net_margin",
    "debt_to_assets": "debt_to_assets", "tr_yoy": "revenue_yoy", "netprofit_yoy": "net_profit_yoy",
    "current_ratio": "current_ratio", "quick_ratio": "quick_ratio", "update_flag": None,
}
INCOME_FIELDS = {"ts_code": "code", "end_date": "report_period", "total_revenue": "revenue",
                 "n_income_attr_p": "net_profit", "update_flag": None}
DAILY_FIELDS = {"ts_code": "code", "trade_date": "trade_date", "open": "open", "high": "high", "low": "low",
                "close": "close", "pre_close": "pre_close", "change": "change", "pct_chg": "pct_chg",
                "vol": "volume", "amount": "amount"}

_PERMISSION = ("没有接口访问权限", "token不对", "api init error", "请设置tushare pro的token", "验证token")
_QUOTA = ("最多访问", "每分钟", "每天", "每小时")


def classify(exc: BaseException, source: str = "tushare") -> SourceError:
    """tushare's bare exceptions by message: permission and bad token, quota, then the generic transport rules."""
    text = str(exc)
    if type(exc).__name__ == "PermissionError" and not isinstance(exc, OSError):
        return SourcePermissionDenied(f"PermissionError: {text}", source=source)  # tushare.util.verify_token's own
    if any(marker in text for marker in _PERMISSION):
        return SourcePermissionDenied(text, source=source)
    if isinstance(exc, AttributeError) and "'dict' object has no attribute 'text'" in text:
        return SourcePermissionDenied(f"token verification failed ({text})", source=source)
    if any(marker in text for marker in _QUOTA) and "访问" in text:
        return SourceRateLimited(text, source=source)
    if isinstance(exc, OSError) and text == "ERROR.":
        return SourceUnavailable("pro_bar gave up after its retries (IOError('ERROR.'))", source=source)
    return classify_exception(exc, source)


class TushareSource(Source):
    """tushare Pro (`pro_api`) for basics, daily, financial and calendar; `ts.realtime_quote` for quotes."""

    financial_figures = frozenset({"eps", "bps", "roe", "gross_margin", "net_margin", "debt_to_assets", "revenue",
                                   "net_profit", "revenue_yoy", "net_profit_yoy", "current_ratio", "quick_ratio"})
    max_concurrency = 8
    default_rate_limits = DEFAULT_RATE_LIMITS
    info = SourceInfo(
        name="tushare", title="Tushare Pro", markets=("SH", "SZ", "BJ"), needs_key=True, free=False,
        features=frozenset({"basics", "quotes", "daily", "daily_market", "financial", "calendar", "status"}),
        notes="points-gated; quotas per API; realtime_quote crawls sina and verifies the token on every call",
    )

    def __init__(
        self,
        token: str = "",
        *,
        pro: Any = None,
        module: Any = None,
        rate_limits: Mapping[str, float] | None = None,
        timeout: float = 30.0,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.token = token
        self._pro = pro
        self._module = module
        self.timeout = timeout
        self._limits = Limits(self.account, {**DEFAULT_RATE_LIMITS, **(rate_limits or {})}, clock=clock, sleep=sleep)

    @property
    def account(self) -> str:
        """The token's quota: a digest of the token, so the quota document never holds the token itself."""
        return "tushare:" + hashlib.sha256(self.token.encode()).hexdigest()[:16]

    def open(self) -> None:
        if self._module is None:
            import tushare  # the real library, only when no fake was injected

            self._module = tushare
        if self._pro is None:
            if not self.token:
                raise SourcePermissionDenied("TUSHARE_TOKEN is empty", source=self.name)
            try:
                self._pro = self._module.pro_api(self.token, timeout=self.timeout)
            except Exception as exc:
                raise classify(exc) from exc

    def _call(self, api: str, target: Any, **params: Any) -> pd.DataFrame:
        self.open()
        self.limits.acquire(api)
        try:
            frame = getattr(target, api)(**params)
        except Exception as exc:
            raise classify(exc) from exc
        if frame is None or len(frame.columns) == 0 or len(frame) == 0:
            # HTTP >= 400 comes back as a silently empty frame with no columns
            raise self.empty(f"{api}({_short(params)})")
        return frame

    def stock_list(self) -> pd.DataFrame:
        frame = self._call("stock_basic", self._pro_client(), exchange="", list_status="L",
                           fields="ts_code,symbol,name,area,industry,market,exchange,list_date")
        try:
            out = frame.rename(columns={"ts_code": "code"})
            out["exchange"] = out["code"].map(codelib.normalise).str[-2:]
            out["list_status"] = "L"
            return schema.conform(out, "basics")
        except (KeyError, ValueError) as exc:
            raise SourceDataError(f"stock_basic: {exc!r}", source=self.name) from exc

    def quotes(self, codes: Sequence[str]) -> pd.DataFrame:
        self.open()
        parts = []
        for i in range(0, len(codes), REALTIME_CHUNK):
            chunk = [codelib.normalise(c) for c in codes[i:i + REALTIME_CHUNK]]
            frame = self._call("realtime_quote", self._module, ts_code=",".join(chunk), src="sina")
            parts.append(frame)
        raw = pd.concat(parts, ignore_index=True)
        raw.columns = [str(c).lower() for c in raw.columns]  # 1.4.29 answers in UPPERCASE, the doc says lowercase
        try:
            out = pd.DataFrame({
                "code": raw["ts_code"], "name": raw["name"], "trade_date": raw["date"],
                "quote_time": pd.to_datetime(raw["date"].astype(str) + " " + raw["time"].astype(str),
                                             format="%Y%m%d %H:%M:%S", errors="coerce")
                .dt.tz_localize("Asia/Shanghai"),
                "price": raw["price"], "open": raw["open"], "high": raw["high"], "low": raw["low"],
                "pre_close": raw["pre_close"],
                "volume": raw["volume"],  # sina: already shares
                "amount": raw["amount"],
            })
            # realtime_quote fills what it cannot parse with 0: a suspended stock "trades" at 0.000. No price is 0.
            for column in ("price", "open", "high", "low", "pre_close"):
                number = pd.to_numeric(out[column], errors="coerce")
                out[column] = number.where(number > 0)
            price, pre = out["price"], out["pre_close"]
            out["pct_chg"] = ((price / pre) - 1.0) * 100.0
            return schema.conform(out, "quotes")
        except (KeyError, ValueError) as exc:
            raise SourceDataError(f"realtime_quote: {exc!r}", source=self.name) from exc

    def daily(self, codes: Sequence[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        days = max(1, (end - start).days * 5 // 7 + 1)
        per_call = max(1, DAILY_ROWS_PER_CALL // days)
        parts = []
        for i in range(0, len(codes), per_call):
            chunk = [codelib.normalise(c) for c in codes[i:i + per_call]]
            try:
                parts.append(self._call("daily", self._pro_client(), ts_code=",".join(chunk),
                                        start_date=start.strftime("%Y%m%d"), end_date=end.strftime("%Y%m%d")))
            except SourceError as exc:
                if not isinstance(exc, SourceEmpty):
                    raise
        if not parts:
            raise self.empty(f"daily {describe_codes(codes)} {start}..{end}")
        return self._daily_frame(pd.concat(parts, ignore_index=True))

    def market_daily(self, day: dt.date) -> pd.DataFrame:
        """`pro.daily(trade_date=...)`: the whole market's bars of one session in one call (at most 6000 rows)."""
        return self._daily_frame(self._call("daily", self._pro_client(), trade_date=day.strftime("%Y%m%d")))

    def _daily_frame(self, raw: pd.DataFrame) -> pd.DataFrame:
        try:
            out = raw.rename(columns=DAILY_FIELDS)
            out["volume"] = pd.to_numeric(out["volume"]) * 100.0  # lots → shares
            out["amount"] = pd.to_numeric(out["amount"]) * 1000.0  # thousand CNY → CNY
            out = out.sort_values(["trade_date", "code"])
            return schema.conform(out, "daily")
        except (KeyError, ValueError) as exc:
            raise SourceDataError(f"daily: {exc!r}", source=self.name) from exc

    def financial(self, codes: Sequence[str], periods: int) -> pd.DataFrame:
        """fina_indicator for the ratios, income for revenue and net profit (fina_indicator has neither)."""
        parts = []
        for code in codes:
            ts_code = codelib.normalise(code)
            try:
                indicators = _latest_revision(self._call("fina_indicator", self._pro_client(), ts_code=ts_code,
                                                         fields=",".join(FINA_INDICATOR_FIELDS)))
            except SourceEmpty:
                continue
            try:
                income = _latest_revision(self._call("income", self._pro_client(), ts_code=ts_code,
                                                     fields=",".join(INCOME_FIELDS)))
                income = income[[c for c in INCOME_FIELDS if c in income.columns and c != "update_flag"]]
                indicators = indicators.merge(income, on=["ts_code", "end_date"], how="left")
            except SourceEmpty:
                pass  # no statement published yet: revenue and net profit stay null
            except KeyError as exc:
                raise SourceDataError(f"income: {exc!r}", source=self.name) from exc
            parts.append(indicators)
        if not parts:
            raise self.empty(f"fina_indicator {describe_codes(codes)}")
        raw = pd.concat(parts, ignore_index=True)
        try:
            mapping = {k: v for k, v in {**FINA_INDICATOR_FIELDS, **INCOME_FIELDS}.items() if v is not None}
            out = pd.DataFrame({target: raw[column] if column in raw.columns else None
                                for column, target in mapping.items()})
            return schema.latest_periods(schema.conform(out, "financial"), periods)
        except (KeyError, ValueError) as exc:
            raise SourceDataError(f"fina_indicator: {exc!r}", source=self.name) from exc

    def trading_days(self, start: dt.date, end: dt.date) -> list[dt.date]:
        raw = self._call("trade_cal", self._pro_client(), exchange="SSE",
                         start_date=start.strftime("%Y%m%d"), end_date=end.strftime("%Y%m%d"))
        try:
            is_open = pd.to_numeric(raw["is_open"]).astype(int)  # documented str, served as int: coerce
            days = [schema.to_date(v) for v in raw.loc[is_open == 1, "cal_date"]]
            return sorted(d for d in days if d is not None)
        except (KeyError, ValueError) as exc:
            raise SourceDataError(f"trade_cal: {exc!r}", source=self.name) from exc

    def probe(self) -> Probe:
        started = time.monotonic()
        try:
            today = dt.date.today()
            self._call("trade_cal", self._pro_client(), exchange="SSE",
                       start_date=(today - dt.timedelta(days=7)).strftime("%Y%m%d"),
                       end_date=today.strftime("%Y%m%d"))
            latency = (time.monotonic() - started) * 1000
            self._call("daily", self._pro_client(), ts_code="600000.SH",
                       start_date=(today - dt.timedelta(days=10)).strftime("%Y%m%d"),
                       end_date=today.strftime("%Y%m%d"))
            return Probe(self.name, available=True, permission=True, latency_ms=latency)
        except SourceError as exc:
            latency = (time.monotonic() - started) * 1000
            # a refusal proves the server answered; an empty answer proves we may call the API
            answered = isinstance(exc, SourcePermissionDenied | SourceEmpty | SourceRateLimited)
            return Probe(self.name, available=answered, permission=isinstance(exc, SourceEmpty),
                         latency_ms=latency, error_class=type(exc).__name__, message=exc.message)

    def _pro_client(self) -> Any:
        self.open()
        return self._pro


def _latest_revision(frame: pd.DataFrame) -> pd.DataFrame:
    """A revised report has several rows for one period: keep the one tushare flags as the latest revision."""
    if "update_flag" not in frame.columns or "end_date" not in frame.columns:
        return frame
    flag = pd.to_numeric(frame["update_flag"], errors="coerce").fillna(0)
    ordered = frame.assign(_flag=flag).sort_values("_flag", kind="stable")
    return ordered.drop_duplicates(["ts_code", "end_date"], keep="last").drop(columns="_flag")


def _short(params: Mapping[str, Any]) -> str:
    text = ", ".join(f"{k}={v}" for k, v in params.items() if k != "fields")
    return text if len(text) < 120 else text[:117] + "…"

