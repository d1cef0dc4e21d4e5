"""A-share trading days and sessions, for the trading-hours gate and for knowing which bars should exist.

Trading days come from exchange-calendars' XSHG (exchange holidays hard-coded through 2026; BJ and SZ are assumed
to share them). Past the end of its data, a source's calendar is asked (tushare trade_cal, baostock
query_trade_dates, ...); if none answers, weekdays are assumed and a warning says so. Sessions are 09:30-11:30 and
13:00-15:00 Asia/Shanghai, both ends included, so the cron ticks at 11:30 and 15:00 still take the closing
snapshot.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import pandas as pd

log = logging.getLogger(__name__)

SHANGHAI = ZoneInfo("Asia/Shanghai")
SESSIONS: tuple[tuple[dt.time, dt.time], ...] = (
    (dt.time(9, 30), dt.time(11, 30)),
    (dt.time(13, 0), dt.time(15, 0)),
)
OPENING_AUCTION = dt.time(9, 15)
SourceCalendar = Callable[[dt.date, dt.date], list[dt.date]]


@functools.cache
def _xshg() -> xcals.ExchangeCalendar:
    return xcals.get_calendar("XSHG")


@functools.lru_cache(maxsize=65536)
def _is_xshg_session(day: dt.date) -> bool:
    return bool(_xshg().is_session(pd.Timestamp(day)))  # about 50 µs a call: gap reports ask for many days


@dataclass(frozen=True)
class SessionCheck:
    """Whether a moment falls in a trading session, and why (the reason goes into a `skipped` record)."""

    in_session: bool
    reason: str
    warning: str | None = None


class TradingCalendar:
    """Trading days from XSHG, then a source's calendar, then weekdays (with a warning)."""

    def __init__(self, source_calendar: SourceCalendar | None = None) -> None:
        self._source_calendar = source_calendar
        self._by_year: dict[int, tuple[frozenset[dt.date] | None, str | None]] = {}
        self.warnings: list[str] = []

    @property
    def last_offline_day(self) -> dt.date:
        return _xshg().last_session.date()  # type: ignore[no-any-return]

    def _year(self, year: int) -> tuple[frozenset[dt.date] | None, str | None]:
        """The trading days of a year past the offline calendar, from a source (None: weekdays), and a warning."""
        if year not in self._by_year:
            days: frozenset[dt.date] | None = None
            warning: str | None = None
            if self._source_calendar is not None:
                try:
                    answered = self._source_calendar(dt.date(year, 1, 1), dt.date(year, 12, 31))
                    days = frozenset(answered) if answered else None
                except Exception as exc:  # any failure means: fall back to weekdays
                    log.warning("Could not read the %d trading calendar from a source: %s", year, exc)
            if days is None:
                warning = (f"no exchange calendar for {year} (exchange-calendars ends {self.last_offline_day}, "
                           "no source answered): assumed every weekday is a trading day")
                log.warning("Assumed weekdays are trading days in %d: %s", year, warning)
                if warning not in self.warnings:
                    self.warnings.append(warning)
            self._by_year[year] = (days, warning)
        return self._by_year[year]

    def is_trading_day(self, day: dt.date) -> bool:
        if day <= self.last_offline_day:
            return _is_xshg_session(day)
        days, _ = self._year(day.year)
        return day in days if days is not None else day.weekday() < 5

    def trading_days(self, start: dt.date, end: dt.date) -> list[dt.date]:
        out = []
        day = start
        while day <= end:
            if self.is_trading_day(day):
                out.append(day)
            day += dt.timedelta(days=1)
        return out

    def last_trading_day(self, on_or_before: dt.date) -> dt.date:
        day = on_or_before
        for _ in range(60):
            if self.is_trading_day(day):
                return day
            day -= dt.timedelta(days=1)
        return on_or_before

    def session_of(self, when: dt.datetime) -> dt.date:
        """The trading session a market snapshot taken at `when` shows: today's once the opening auction began
        (09:15) on a trading day, else the last session before (a weekend or pre-open fetch shows the last close)."""
        local = when.astimezone(SHANGHAI)
        day = local.date()
        if self.is_trading_day(day) and local.time().replace(tzinfo=None) >= OPENING_AUCTION:
            return day
        return self.last_trading_day(day - dt.timedelta(days=1))

    def closing_time(self, day: dt.date) -> dt.datetime:
        """15:00 Asia/Shanghai on `day`, as UTC."""
        return dt.datetime.combine(day, SESSIONS[-1][1], SHANGHAI).astimezone(dt.UTC)

    def last_closed_session(self, now: dt.datetime, delay: dt.timedelta = dt.timedelta()) -> dt.date:
        """The newest session whose bars are final at `now`: closed at 15:00 and published `delay` later."""
        day = self.last_trading_day(now.astimezone(SHANGHAI).date())
        while self.closing_time(day) + delay > now:
            day = self.last_trading_day(day - dt.timedelta(days=1))
        return day

    def session_check(self, when: dt.datetime) -> SessionCheck:
        """Is `when` (timezone-aware) inside a trading session?"""
        local = when.astimezone(SHANGHAI)
        day, clock = local.date(), local.time().replace(tzinfo=None)
        stamp = local.strftime("%Y-%m-%d %H:%M:%S %Z")
        warning = self._year(day.year)[1] if day > self.last_offline_day else None
        if not self.is_trading_day(day):
            kind = "weekend" if day.weekday() >= 5 else "exchange holiday"
            return SessionCheck(False, f"{stamp} is not a trading day ({kind})", warning)
        for opens, closes in SESSIONS:
            if opens <= clock <= closes:
                return SessionCheck(True, f"{stamp} is in the {opens:%H:%M}-{closes:%H:%M} session", warning)
        if SESSIONS[0][1] < clock < SESSIONS[1][0]:
            reason = f"{stamp} is in the lunch break (11:30-13:00)"
        elif clock < SESSIONS[0][0]:
            reason = f"{stamp} is before the market opens (09:30)"
        else:
            reason = f"{stamp} is after the market closes (15:00)"
        return SessionCheck(False, reason, warning)


def shanghai_today(now: dt.datetime | None = None) -> dt.date:
    return (now or dt.datetime.now(dt.UTC)).astimezone(SHANGHAI).date()
