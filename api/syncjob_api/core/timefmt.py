"""Times leave the API as ISO 8601 strings with an offset, in the job's time zone (stored as UTC datetimes).

The incumbent stored naive datetimes meaning UTC+8 (its `get_utc8_now()`, and a fixed UTC+8 for scheduled times);
the driver hands them back labelled UTC, so its records' times are relabelled with `from_incumbent` before they
are rendered, and show the instant the incumbent meant next to ours.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = ZoneInfo("UTC")
INCUMBENT_ZONE = dt.timezone(dt.timedelta(hours=8), "UTC+08:00")


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


def from_incumbent(value: object) -> object:
    """A time the incumbent stored (naive, meaning UTC+8) as the instant it meant."""
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=INCUMBENT_ZONE)
    return value
