"""Rate limits that hold across threads, and across pods that use the same source account at the same time.

A source's quota belongs to its account (a tushare token allows N calls a minute per API, whoever spends them), so
two runs that share a token must share the quota: each assuming the whole of it gets both refused. Every quota is
a GCRA token bucket (the "generic cell rate algorithm" of ATM networks, the same maths as a token bucket kept as one
number): the theoretical arrival time `tat` of the next allowed call. A call at `now` is allowed when
`tat - now <= burst_tolerance`, and then moves `tat` on by one emission interval (60 s / calls per minute). With a
burst of 1 the calls are spaced evenly, so any window of 60 s holds at most the quota: what a per-minute quota on
the server counts.

The state is one number per bucket, so it can live anywhere that offers an atomic read-modify-write:

* `LocalStore`: in memory, for a process alone (tests, a source with no shared account);
* `MongoStore`: one document per bucket in `source_quotas` (`_id` = account and API), updated with one atomic
  `find_one_and_update` pipeline per call. MongoDB is the one store every sync pod already shares. Clocks are the
  pods' own wall clocks: skew between nodes shifts the spacing by the skew, no more.

pyrate-limiter (already installed, for schemathesis) has no MongoDB bucket and keeps a log of calls per window
rather than one number, which a document store cannot update atomically in one round trip; hence this module.
Within a process a bucket takes one lock, so only one thread at a time talks to the store and the others queue.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from pymongo import ReturnDocument
from pymongo.collection import Collection

QUOTAS_COLLECTION = "source_quotas"


class WallTime:
    """The time buckets read and wait on unless given a clock (tests swap in a virtual one)."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


TIME = WallTime()


class QuotaStore(Protocol):
    def take(self, key: str, now: float, interval: float, tolerance: float) -> float:
        """Try to take one call at `now`; return 0 if taken, else how long to wait before trying again."""


def _decide(tat: float | None, now: float, interval: float, tolerance: float) -> tuple[float, float]:
    """GCRA: (new tat, wait). wait 0 means the call is allowed."""
    start = max(tat if tat is not None else now, now)
    if start - now > tolerance:
        return start, start - tolerance - now
    return start + interval, 0.0


class LocalStore:
    """Buckets in this process's memory."""

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float, interval: float, tolerance: float) -> float:
        with self._lock:
            tat, wait = _decide(self._tat.get(key), now, interval, tolerance)
            self._tat[key] = tat
            return wait


class MongoStore:
    """Buckets shared by every process that writes to this collection: one atomic update per call."""

    def __init__(self, collection: Collection[Any]) -> None:
        self.collection = collection

    def take(self, key: str, now: float, interval: float, tolerance: float) -> float:
        start = {"$max": [{"$ifNull": ["$tat", now]}, now]}
        allowed = {"$lte": [{"$subtract": [start, now]}, tolerance]}
        before = self.collection.find_one_and_update(
            {"_id": key},
            [{"$set": {"tat": {"$cond": [allowed, {"$add": [start, interval]}, start]},
                       "interval": interval}}],
            upsert=True, return_document=ReturnDocument.BEFORE, projection={"tat": 1},
        )
        _, wait = _decide(None if before is None else before.get("tat"), now, interval, tolerance)
        return wait


class TokenBucket:
    """At most `per_minute` calls a minute (and `burst` at once) on one key of a store; `acquire` blocks."""

    def __init__(self, key: str, per_minute: float, *, burst: int = 1, store: QuotaStore | None = None,
                 clock: Callable[[], float] | None = None, sleep: Callable[[float], None] | None = None) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.key = key
        self.per_minute = per_minute
        self.interval = 60.0 / per_minute
        self.tolerance = self.interval * (max(1, burst) - 1)
        self.store: QuotaStore = store or LocalStore()
        self._clock = clock or (lambda: TIME.now())
        self._sleep = sleep or (lambda seconds: TIME.sleep(seconds))
        self._lock = threading.Lock()
        self.waited = 0.0

    def acquire(self) -> float:
        """Wait until a call is allowed; return how long this call waited."""
        waited = 0.0
        with self._lock:
            while True:
                wait = self.store.take(self.key, self._clock(), self.interval, self.tolerance)
                if wait <= 0:
                    self.waited += waited
                    return waited
                self._sleep(wait)
                waited += wait


class Limits:
    """A source's buckets by API (or site), created on first use from its per-minute limits."""

    def __init__(self, account: str, per_minute: dict[str, float], store: QuotaStore | None = None,
                 clock: Callable[[], float] | None = None, sleep: Callable[[float], None] | None = None) -> None:
        self.account = account
        self.per_minute = dict(per_minute)
        self.store: QuotaStore = store or LocalStore()
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def share(self, store: QuotaStore) -> None:
        """Move every bucket onto a shared store (before the first call)."""
        with self._lock:
            self.store = store
            for bucket in self._buckets.values():
                bucket.store = store

    def bucket(self, api: str) -> TokenBucket | None:
        """The bucket of `api`, or None when it has no limit."""
        if api not in self.per_minute:
            return None
        with self._lock:
            if api not in self._buckets:
                self._buckets[api] = TokenBucket(f"{self.account}:{api}", self.per_minute[api], store=self.store,
                                                 clock=self._clock, sleep=self._sleep)
            return self._buckets[api]

    def acquire(self, api: str) -> float:
        bucket = self.bucket(api)
        return bucket.acquire() if bucket is not None else 0.0
