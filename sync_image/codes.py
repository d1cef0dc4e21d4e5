"""Stock codes: every source spells them differently; the sync image stores one canonical form, `600000.SH`.

tushare uses `600000.SH`, baostock `sh.600000` (no Beijing), akshare's eastmoney functions a bare `600000`, its sina
functions `sh600000`, xueqiu `SH600000`. A bare code is given its exchange by prefix, for stocks only (`000001` is
Ping An Bank on SZ but the SSE Composite index on SH: a code with a suffix keeps it).
"""

from __future__ import annotations

import re

EXCHANGES = ("SH", "SZ", "BJ")
_CANONICAL = re.compile(r"^(\d{6})\.(SH|SZ|BJ)$")
_DOTTED_PREFIX = re.compile(r"^(sh|sz|bj)\.(\d{6})$", re.IGNORECASE)
_PREFIX = re.compile(r"^(sh|sz|bj)(\d{6})$", re.IGNORECASE)
_SUFFIX = re.compile(r"^(\d{6})\.(sh|sz|bj|ss)$", re.IGNORECASE)
_BARE = re.compile(r"^\d{6}$")

# Stock prefixes per exchange (data_sources.md §5); 900 is an SH B-share, not Beijing.
_SH_PREFIXES = ("600", "601", "603", "605", "688", "689", "900")
_SZ_PREFIXES = ("000", "001", "002", "003", "300", "301", "302", "200")
_BJ_PREFIXES = ("920", "43", "83", "87", "88")


class CodeError(ValueError):
    """A string that is not a recognisable A-share stock code."""


def exchange_of(bare: str) -> str:
    """The exchange of a bare 6-digit *stock* code."""
    if bare.startswith(_SH_PREFIXES):
        return "SH"
    if bare.startswith(_SZ_PREFIXES):
        return "SZ"
    if bare.startswith(_BJ_PREFIXES):
        return "BJ"
    raise CodeError(f"cannot tell the exchange of stock code {bare!r}")


def normalise(code: object) -> str:
    """Any source's spelling of a stock code, as `600000.SH`."""
    text = str(code).strip()
    if m := _CANONICAL.match(text):
        return text
    if m := _SUFFIX.match(text):
        exchange = m.group(2).upper()
        return f"{m.group(1)}.{'SH' if exchange == 'SS' else exchange}"
    if m := _DOTTED_PREFIX.match(text) or _PREFIX.match(text):
        return f"{m.group(2)}.{m.group(1).upper()}"
    if _BARE.match(text):
        return f"{text}.{exchange_of(text)}"
    if text.isdigit() and len(text) < 6:  # a code read back from a CSV as an integer lost its leading zeros
        return normalise(text.zfill(6))
    raise CodeError(f"not a stock code: {text!r}")


def bare(code: str) -> str:
    """`600000.SH` → `600000` (akshare's eastmoney functions)."""
    return normalise(code)[:6]


def to_baostock(code: str) -> str:
    """`600000.SH` → `sh.600000`; baostock has no Beijing stocks."""
    canonical = normalise(code)
    exchange = canonical[7:]
    if exchange == "BJ":
        raise CodeError(f"baostock has no Beijing stocks: {canonical}")
    return f"{exchange.lower()}.{canonical[:6]}"


def board_of(code: str) -> str:
    """The board (主板, 创业板, 科创板, 北交所) of a canonical code, for sources that do not say."""
    canonical = normalise(code)
    digits, exchange = canonical[:6], canonical[7:]
    if exchange == "BJ":
        return "北交所"
    if digits.startswith(("688", "689")):
        return "科创板"
    if digits.startswith(("300", "301", "302")):
        return "创业板"
    return "主板"
