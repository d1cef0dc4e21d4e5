"""The one interface every data source implements, and what a source says about itself.

Like an httpx transport: the tasks talk to a `Source`, never to a library. The real adapters wrap tushare, akshare
and baostock; `file` reads canonical files; `FallbackSource` is itself a source that tries several in priority
order; `fake` feeds an adapter DataFrames in each library's real shape, for tests.

Every method returns a canonical frame (`sync_image.schema`) or raises a `SourceError`; a frame with no rows is
never returned: the adapter raises `SourceEmpty` instead, so "returned nothing" moves the work on like any failure.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import pandas as pd

from sync_image.errors import FeatureNotSupported, SourceEmpty
from sync_image.quota import Limits

FEATURES = ("basics", "quotes", "daily", "daily_market", "financial", "calendar", "status")


@dataclass(frozen=True)
class SourceInfo:
    """What the registry says about a source."""

    name: str
    title: str
    markets: tuple[str, ...]
    needs_key: bool
    free: bool
    features: frozenset[str]
    notes: str = ""

    def to_doc(self) -> dict[str, object]:
        return {"name": self.name, "title": self.title, "markets": list(self.markets), "needs_key": self.needs_key,
                "free": self.free, "features": sorted(self.features), "notes": self.notes}


@dataclass
class Probe:
    """The result of a status check: can we connect, may we use it, how fast did it answer."""

    source: str
    available: bool
    permission: bool
    latency_ms: float | None
    error_class: str | None = None
    message: str = ""
    details: dict[str, object] = field(default_factory=dict)


class Source(ABC):
    """A market-data source. Methods raise `SourceError` subclasses; none returns an empty frame."""

    info: ClassVar[SourceInfo]
    # The canonical financial figures this source provides with exactly the meaning schema.FINANCIAL_MEANINGS gives.
    financial_figures: ClassVar[frozenset[str]] = frozenset()
    # How many calls may be in flight at once, and calls per minute by API (or site): what the source allows.
    # Both are defaults, overridden by SYNC_OPTIONS (`source_concurrency`, `source_rate_limits`).
    max_concurrency: ClassVar[int] = 1
    default_rate_limits: ClassVar[Mapping[str, float]] = {}
    _limits: Limits | None = None

    @property
    def account(self) -> str:
        """Whose quota this source's calls spend (runs with the same account share one quota)."""
        return self.name

    @property
    def limits(self) -> Limits:
        if self._limits is None:
            self._limits = Limits(self.account, dict(self.default_rate_limits))
        return self._limits

    def configure(self, *, rate_limits: Mapping[str, float] | None = None, concurrency: int | None = None,
                  margin: float = 1.0) -> None:
        """Override the default limits (calls per minute by API; calls in flight), and ask for `margin` of each
        quota: evenly spaced calls still reach the server a few milliseconds early or late."""
        if rate_limits or margin != 1.0:
            limits = {**self.limits.per_minute, **(rate_limits or {})}
            self._limits = Limits(self.account, {api: n * margin for api, n in limits.items()}, self.limits.store)
        if concurrency:
            self.max_concurrency = concurrency  # type: ignore[misc]  # an instance override of the default

    @property
    def name(self) -> str:
        return self.info.name

    def open(self) -> None:  # noqa: B027 - most sources need no session
        """Log in or connect; called once before the first request. Idempotent."""

    def close(self) -> None:  # noqa: B027 - most sources need no session
        """Log out or disconnect. Idempotent and never raises."""

    def stock_list(self) -> pd.DataFrame:
        """Listed A-shares, canonical `basics` columns."""
        raise self.unsupported("basics")

    def quotes(self, codes: Sequence[str]) -> pd.DataFrame:
        """The latest snapshot for these codes, canonical `quotes` columns."""
        raise self.unsupported("quotes")

    def daily(self, codes: Sequence[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        """Unadjusted daily bars for these codes from start to end inclusive, canonical `daily` columns."""
        raise self.unsupported("daily")

    def market_daily(self, day: dt.date) -> pd.DataFrame:
        """Unadjusted daily bars of every A-share for one session in one call (feature `daily_market`)."""
        raise self.unsupported("daily_market")

    def take_suspensions(self) -> list[tuple[str, object]]:
        """The (code, date) of suspended sessions this source reported since the last call (for the gap report)."""
        return []

    def financial(self, codes: Sequence[str], periods: int) -> pd.DataFrame:
        """Key indicators for the latest `periods` report periods, canonical `financial` columns."""
        raise self.unsupported("financial")

    def trading_days(self, start: dt.date, end: dt.date) -> list[dt.date]:
        """The exchange's trading days from start to end inclusive."""
        raise self.unsupported("calendar")

    @abstractmethod
    def probe(self) -> Probe:
        """Check connectivity, permission and latency without raising."""

    def unsupported(self, feature: str, detail: str = "") -> FeatureNotSupported:
        return FeatureNotSupported(f"{self.name} does not provide {feature}{detail}", source=self.name)

    def empty(self, what: str) -> SourceEmpty:
        return SourceEmpty(f"{self.name} returned no rows for {what}", source=self.name)


def describe_codes(codes: Sequence[str], limit: int = 3) -> str:
    shown = ",".join(codes[:limit])
    return shown + (f",…(+{len(codes) - limit})" if len(codes) > limit else "")
