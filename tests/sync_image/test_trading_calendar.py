"""Trading days and sessions: holidays, the lunch break, 15:00 exactly, and dates past the offline calendar."""

from __future__ import annotations

import datetime as dt

import exchange_calendars as xcals
import pandas as pd
import pytest

from sync_image.trading_calendar import SESSIONS, SHANGHAI, TradingCalendar


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


@pytest.mark.parametrize(("moment", "in_session", "why"), [
    ("2026-11-27 10:00:00", True, "09:30-11:30 session"),
    ("2026-11-27 09:29:59", False, "before the market opens"),
    ("2026-11-27 09:30:00", True, "09:30-11:30"),
    ("2026-11-27 11:30:00", True, "09:30-11:30"),
    ("2026-11-27 11:30:01", False, "lunch break"),
    ("2026-11-27 12:15:00", False, "lunch break"),
    ("2026-11-27 13:00:00", True, "13:00-15:00"),
    ("2026-11-27 15:00:00", True, "13:00-15:00"),
    ("2026-11-27 15:00:01", False, "after the market closes"),
    ("2026-11-28 10:00:00", False, "weekend"),
    ("2026-10-01 10:00:00", False, "exchange holiday"),   # National Day, a Thursday
    ("2026-02-17 10:00:00", False, "exchange holiday"),   # Spring Festival, a Tuesday
])
def test_session_check(moment: str, in_session: bool, why: str) -> None:
    check = TradingCalendar().session_check(at(moment))
    assert check.in_session is in_session
    assert why in check.reason
    assert check.warning is None


def test_a_utc_time_is_judged_in_shanghai() -> None:
    assert TradingCalendar().session_check(dt.datetime(2026, 11, 27, 2, 0, tzinfo=dt.UTC)).in_session  # 10:00 CST


def test_sessions_match_exchange_calendars_xshg() -> None:
    schedule = xcals.get_calendar("XSHG").schedule.loc["2026-11-27"]
    local = {k: pd.Timestamp(v).tz_convert("Asia/Shanghai").time() for k, v in schedule.items()}
    assert ((local["open"], local["break_start"]), (local["break_end"], local["close"])) == SESSIONS


def test_a_2027_date_falls_back_to_weekdays_with_a_warning() -> None:
    calendar = TradingCalendar()
    check = calendar.session_check(at("2027-01-04 10:00:00"))
    assert check.in_session
    assert check.warning is not None and "2027" in check.warning and "weekday" in check.warning
    assert calendar.warnings == [check.warning]
    assert not calendar.session_check(at("2027-01-09 10:00:00")).in_session  # a Saturday


def test_a_2027_date_uses_a_source_calendar_when_one_answers() -> None:
    asked: list[tuple[dt.date, dt.date]] = []

    def source_calendar(start: dt.date, end: dt.date) -> list[dt.date]:
        asked.append((start, end))
        return [dt.date(2027, 1, 5)]  # 2027-01-04 is a holiday in this source's calendar

    calendar = TradingCalendar(source_calendar)
    check = calendar.session_check(at("2027-01-04 10:00:00"))
    assert not check.in_session and "holiday" in check.reason and check.warning is None
    assert calendar.is_trading_day(dt.date(2027, 1, 5))
    assert asked == [(dt.date(2027, 1, 1), dt.date(2027, 12, 31))]  # asked once per year


def test_a_failing_source_calendar_falls_back_to_weekdays() -> None:
    def broken(start: dt.date, end: dt.date) -> list[dt.date]:
        raise RuntimeError("down")

    check = TradingCalendar(broken).session_check(at("2027-03-01 14:00:00"))
    assert check.in_session and check.warning


def test_last_trading_day_skips_weekends_and_holidays() -> None:
    calendar = TradingCalendar()
    assert calendar.last_trading_day(dt.date(2026, 11, 29)) == dt.date(2026, 11, 27)
    assert calendar.last_trading_day(dt.date(2026, 10, 7)) == dt.date(2026, 9, 30)  # National Day week
    assert calendar.trading_days(dt.date(2026, 9, 30), dt.date(2026, 10, 8)) == [dt.date(2026, 9, 30),
                                                                                dt.date(2026, 10, 8)]
