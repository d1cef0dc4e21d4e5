"""Fakes of the three libraries and a simulated source, for tests, demos and benchmarks: no network is touched.

In the style of httpx's `MockTransport(handler)`: `FakeLibrary(handler)` stands in for the `tushare` module, a
tushare `pro_api()` client, the `akshare` module or the `baostock` module. Any attribute is a function; calling it
calls `handler(call)` with the function's name and arguments, and returns what the handler returns (a DataFrame
in the library's real shape, a `FakeResultSet` for baostock, None) or raises what it raises. Every call is recorded.

A fake that accepts anything cannot catch a renamed function or parameter, so a fake can be given the real library
as `spec`: then a call of a function the library lacks raises `AttributeError`, and arguments that do not bind to
the installed function's signature (`inspect.signature(...).bind`) raise `TypeError`, exactly as the real call
would. tushare's pro client answers any attribute (`DataApi.__getattr__`), so its endpoints are checked against
tushare's documentation instead (`tests/sync_image/sources/test_contracts.py`).
"""

from __future__ import annotations

import datetime as dt
import inspect
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from sync_image import schema
from sync_image.errors import SourceRateLimited
from sync_image.quota import Limits
from sync_image.sources.base import Probe, Source, SourceInfo


@dataclass
class FakeCall:
    """One call of a library function."""

    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def arg(self, name: str, position: int = 0, default: Any = None) -> Any:
        if name in self.kwargs:
            return self.kwargs[name]
        return self.args[position] if len(self.args) > position else default


Handler = Callable[[FakeCall], Any]


class FakeLibrary:
    """A stand-in for a library module or client object; every function call goes to `handler`."""

    def __init__(self, handler: Handler, *, spec: Any = None, **attributes: Any) -> None:
        self._handler = handler
        self._spec = spec
        self.calls: list[FakeCall] = []
        for key, value in attributes.items():
            object.__setattr__(self, key, value)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("__"):
            raise AttributeError(name)
        real = None
        if self._spec is not None:
            real = getattr(self._spec, name)  # AttributeError, as the library would raise
            real = inspect.unwrap(real)

        def function(*args: Any, **kwargs: Any) -> Any:
            if real is not None:
                inspect.signature(real).bind(*args, **kwargs)  # TypeError on a parameter the library lacks
            call = FakeCall(name, args, kwargs)
            self.calls.append(call)
            return self._handler(call)

        return function

    def called(self, name: str) -> list[FakeCall]:
        return [c for c in self.calls if c.name == name]


@dataclass
class FakeResultSet:
    """baostock's `ResultData`: string fields, string rows, a string `error_code`; iterated with next()."""

    fields: list[str]
    rows: Sequence[Sequence[str]] = ()
    error_code: str = "0"
    error_msg: str = "success"
    _i: int = field(default=0, repr=False)

    def next(self) -> bool:
        return self._i < len(self.rows)

    def get_row_data(self) -> list[str]:
        row = list(self.rows[self._i])
        self._i += 1
        return row

    def get_data(self) -> Any:
        raise AttributeError("'DataFrame' object has no attribute 'append'")  # what baostock does on pandas >= 2


def baostock_failure(code: str = "10002007", message: str = "网络接收错误。") -> FakeResultSet:
    """What every baostock call returns when the network is down."""
    return FakeResultSet(fields=[], rows=[], error_code=code, error_msg=message)


class SimulatedSource(Source):
    """A per-symbol daily-bar source with network latency and a server-side quota, for benchmarks and tests.

    Like akshare's `stock_zh_a_hist`: one call per symbol. Each call takes `latency` seconds; a call that would
    make more than `server_per_second * window` calls in any `window` seconds is refused with `SourceRateLimited`,
    as a quota-enforcing server would (tushare counts a minute). The client side waits on `self.limits` ("daily",
    calls per minute) like the real adapters, so a run within the limits is never refused. It records the calls
    in flight at once and every call's start time.
    """

    info = SourceInfo(name="simulated", title="Simulated source", markets=("SH", "SZ", "BJ"), needs_key=False,
                      free=True, features=frozenset({"daily"}))

    def __init__(self, *, latency: float = 0.2, server_per_second: float = 100.0,
                 client_per_second: float | None = None, concurrency: int = 32, window: float = 1.0,
                 calendar: Any = None) -> None:
        from sync_image.trading_calendar import TradingCalendar

        self.latency = latency
        self.server_per_second = server_per_second
        self.window = window
        self.max_concurrency = concurrency  # type: ignore[misc]
        self._limits = Limits(self.account, {"daily": 60.0 * (client_per_second or server_per_second)})
        self.calendar = calendar or TradingCalendar()
        self._lock = threading.Lock()
        self._recent: deque[float] = deque()
        self.starts: list[float] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.refused = 0

    def _enter(self) -> None:
        with self._lock:
            now = time.monotonic()
            while self._recent and now - self._recent[0] >= self.window:
                self._recent.popleft()
            if len(self._recent) >= self.server_per_second * self.window:
                self.refused += 1
                raise SourceRateLimited("simulated quota exceeded", source=self.name)
            self._recent.append(now)
            self.starts.append(now)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def daily(self, codes: Sequence[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        rows = []
        for code in codes:
            self.limits.acquire("daily")
            self._enter()
            try:
                time.sleep(self.latency)
            finally:
                self._leave()
            for day in self.calendar.trading_days(start, end):
                rows.append({"code": code, "trade_date": day, "open": 10.0, "high": 10.5, "low": 9.5, "close": 10.2,
                             "pre_close": 10.0, "volume": 1e6, "amount": 1e7})
        if not rows:
            raise self.empty(f"daily {start}..{end}")
        return schema.conform(pd.DataFrame(rows), "daily")

    def probe(self) -> Probe:
        return Probe(self.name, True, True, self.latency * 1000)
