"""Times leave the API as ISO 8601 strings with an offset, in the job's time zone (stored as UTC datetimes)."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = ZoneInfo("UTC")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def now_iso() -> str:
    """The envelope's timestamp: now, in UTC, with its offset."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


@lru_cache(maxsize=512)
def zone(name: str | None) -> ZoneInfo:
    """The named zone; an unknown name renders in UTC rather than failing a whole list."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def render(value: object, tz: ZoneInfo) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)  # the contract stores UTC
        return value.astimezone(tz).isoformat()
    return str(value)  # legacy records may hold strings
