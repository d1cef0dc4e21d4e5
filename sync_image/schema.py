"""The canonical schema every source normalises to, and the MongoDB documents built from it.

Canonical frames: codes as `600000.SH`, volume in shares (股), amount in CNY (元), percentages in %, dates as
`datetime.date`. The adapters convert units and names; `conform` then fixes column order and dtypes, so a frame
that leaves an adapter looks the same whichever library it came from.

In MongoDB, dates are stored as ISO `YYYY-MM-DD` strings (sortable, and what the incumbent's readers query with),
times as UTC datetimes. `code` is the canonical code, `symbol` the bare six digits the incumbent keyed on.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd

from sync_image import codes

BASICS = ["code", "name", "area", "industry", "market", "exchange", "list_date", "list_status"]
QUOTES = ["code", "name", "trade_date", "quote_time", "price", "open", "high", "low", "pre_close", "volume",
          "amount", "pct_chg", "turnover_rate"]
DAILY = ["code", "trade_date", "open", "high", "low", "close", "pre_close", "change", "pct_chg", "volume",
         "amount", "turnover_rate", "amplitude"]
FINANCIAL = ["code", "report_period", "ann_date", "eps", "eps_ttm", "bps", "roe", "gross_margin", "net_margin",
             "debt_to_assets", "revenue", "net_profit", "revenue_yoy", "net_profit_yoy", "current_ratio",
             "quick_ratio"]
# What each financial figure means, whichever source filled it (docs/data.md). Figures are year-to-date for the
# report period (a 12-31 period is the full year) unless the name says otherwise; a source that has no figure of
# exactly this meaning leaves it null and lists it in the document's `fields_not_provided`.
FINANCIAL_MEANINGS = {
    "eps": "basic earnings per share, CNY, year to date (基本每股收益)",
    "eps_ttm": "earnings per share over the trailing twelve months, CNY",
    "bps": "net assets per share, CNY (每股净资产)",
    "roe": "return on equity, weighted average, %, year to date (加权平均净资产收益率)",
    "gross_margin": "gross profit margin, % (销售毛利率)",
    "net_margin": "net profit margin, % (销售净利率)",
    "debt_to_assets": "liabilities / assets, % (资产负债率)",
    "revenue": "total operating revenue, CNY, year to date (营业总收入)",
    "net_profit": "net profit attributable to the parent's shareholders, CNY, year to date (归母净利润)",
    "revenue_yoy": "total operating revenue, change on a year earlier, % (营业总收入同比)",
    "net_profit_yoy": "net profit attributable to the parent, change on a year earlier, % (归母净利润同比)",
    "current_ratio": "current assets / current liabilities (流动比率)",
    "quick_ratio": "(current assets - inventory) / current liabilities (速动比率)",
}
FINANCIAL_FIGURES = frozenset(FINANCIAL_MEANINGS)

_DATE_COLUMNS = {"list_date", "trade_date", "report_period", "ann_date"}
_TEXT_COLUMNS = {"code", "name", "area", "industry", "market", "exchange", "list_status"}

COLUMNS = {"basics": BASICS, "quotes": QUOTES, "daily": DAILY, "financial": FINANCIAL}


def to_date(value: object) -> dt.date | None:
    """`'20240528'`, `'2024-05-28'`, 20240528, a date, a datetime or a Timestamp, as a date; blanks as None."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    if not text or text.lower() in {"nan", "none", "nat"}:
        return None
    if text.isdigit() and len(text) == 8:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    return pd.Timestamp(text[:10]).date()  # type: ignore[no-any-return]


def conform(frame: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The frame with exactly the canonical columns of `kind`, in order, with canonical dtypes and codes."""
    columns = COLUMNS[kind]
    out = pd.DataFrame(index=frame.index)
    for column in columns:
        if column in frame.columns:
            series = frame[column]
        else:
            series = pd.Series([None] * len(frame), index=frame.index, dtype=object)
        if column == "code":
            out[column] = series.map(codes.normalise)
        elif column in _DATE_COLUMNS:
            out[column] = pd.Series([to_date(v) for v in series], index=frame.index, dtype=object)
        elif column == "quote_time":
            out[column] = pd.to_datetime(series, utc=True, errors="coerce")
        elif column in _TEXT_COLUMNS:
            out[column] = pd.Series([None if _blank(v) else str(v).strip() for v in series], index=frame.index,
                                    dtype=object)
        else:
            out[column] = pd.to_numeric(series, errors="coerce").astype("float64")
    return out.reset_index(drop=True)


def _blank(value: object) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return str(value).strip() in {"", "nan", "<NA>", "None"}


def _mongo_value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, pd.Timestamp):
        return None if value is pd.NaT else value.to_pydatetime()
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return _mongo_value(value.item())
    return value


def documents(frame: pd.DataFrame, **constant: Any) -> Iterator[dict[str, Any]]:
    """Mongo documents from a canonical frame: NaN as None, dates as ISO strings, plus `symbol` and constants."""
    columns: Sequence[str] = list(frame.columns)
    for row in frame.itertuples(index=False, name=None):
        doc = {column: _mongo_value(value) for column, value in zip(columns, row, strict=True)}
        doc["symbol"] = doc["code"][:6]
        doc["full_symbol"] = doc["code"]
        doc.update(constant)
        yield doc


def report_type(period: dt.date | str | None) -> str:
    """What a report period's figures cover: `annual` for a year ending 12-31, else `year_to_date` (Q1, H1, Q1-Q3).

    Every source's figures are cumulative from the start of the fiscal year (按报告期), never a single quarter."""
    day = to_date(period)
    return "annual" if day is not None and (day.month, day.day) == (12, 31) else "year_to_date"


def latest_periods(frame: pd.DataFrame, periods: int) -> pd.DataFrame:
    """The newest `periods` report periods of each code in a canonical `financial` frame."""
    frame = frame.dropna(subset=["report_period"]).sort_values(["code", "report_period"], ascending=[True, False])
    return frame.groupby("code", sort=False).head(periods).reset_index(drop=True)
