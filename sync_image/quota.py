"""Rate limits that hold across threads, and across pods that use the same source account at the same time.

A source's quota belongs to its account (a tushare token allows N calls a minute per API, whoever spends them), so
two runs that share a token must share the quota: each assuming the whole of it gets both refused. Every quota is
a GCRA token bucket (the "generic cell rate algorithm" of ATM networks, the same maths as a token bucket kept as one
number): the theoretical arrival time `tat` of the next allowed call. A caller reserves the slot at
`max(tat, now)` and moves `tat` on by one emission interval (60 s / calls per minute), then waits for its slot.
Calls are spaced evenly (no bursts), so any window of 60 s holds at most the quota: what a per-minute quota on the
server counts.

The state is one number per bucket, so it can live anywhere that offers an atomic read-modify-write:

* `LocalStore`: in memory, for a process alone (tests, a source with no shared account);
* `MongoStore`: one document per bucket in `source_quotas` (`_id` = account and API), updated with one atomic
  `find_one_and_update` pipeline per reservation (a lease of the slots that fit in 0.1 s). MongoDB is the one
  store every sync pod already shares. Clocks are the pods' own wall clocks: skew between nodes shifts the
  spacing by the skew, no more.

pyrate-limiter (already installed, for schemathesis) has no MongoDB bucket and keeps a log of calls per window
rather than one number, which a document store cannot update atomically in one round trip; hence this module.
Within a process a bucket hands out its leased slots under one lock; threads then sleep to their own slots.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from pymongo import ReturnDocument
from pymongo.collection import Collection

from syncjob import mongo

QUOTAS_COLLECTION = mongo.SOURCE_QUOTAS
LEASE_SECONDS = 0.1  # a process reserves this much of a bucket's time per store round trip


class WallTime:
    """The time buckets read and wait on unless given a clock (tests swap in a virtual one)."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


TIME = WallTime()


class QuotaStore(Protocol):
    def reserve(self, key: str, now: float, interval: float, count: int) -> float:
        """Reserve `count` calls `interval` apart; return when the first may start (now, or later)."""


def _reserve(tat: float | None, now: float, interval: float, count: int) -> tuple[float, float]:
    """GCRA with reservation: (first slot, new tat)."""
    start = max(tat if tat is not None else now, now)
    return start, start + count * interval


class LocalStore:
    """Buckets in this process's memory."""

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._lock = threading.Lock()

    def reserve(self, key: str, now: float, interval: float, count: int) -> float:
        with self._lock:
            start, self._tat[key] = _reserve(self._tat.get(key), now, interval, count)
            return start


class MongoStore:
    """Buckets shared by every process that writes to this collection: one atomic update per reservation."""

    def __init__(self, collection: Collection[Any]) -> None:
        self.collection = collection

    def reserve(self, key: str, now: float, interval: float, count: int) -> float:
        start = {"$max": [{"$ifNull": ["$tat", now]}, now]}
        before = self.collection.find_one_and_update(
            {"_id": key}, [{"$set": {"tat": {"$add": [start, count * interval]}, "interval": interval}}],
            upsert=True, return_document=ReturnDocument.BEFORE, projection={"tat": 1},
        )
        first, _ = _reserve(None if before is None else before.get("tat"), now, interval, count)
        return first


class TokenBucket:
    """At most `per_minute` calls a minute, spaced evenly, on one key of a store; `acquire` blocks until a slot.

    A store round trip reserves a lease of slots (as many as fit in `lease_seconds`, at least one), which this
    process hands out to its threads: a shared bucket costs one MongoDB update per lease, not per call. A slot
    found in the past (the process was idle) is dropped with the rest of its lease, never used late: late slots
    would bunch up into a burst.
    """

    def __init__(self, key: str, per_minute: float, *, store: QuotaStore | None = None,
                 lease_seconds: float = LEASE_SECONDS, clock: Callable[[], float] | None = None,
                 sleep: Callable[[float], None] | None = None) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.key = key
        self.per_minute = per_minute
        self.interval = 60.0 / per_minute
        self.lease = max(1, int(lease_seconds / self.interval))
        self.store: QuotaStore = store or LocalStore()
        self._clock = clock or (lambda: TIME.now())
        self._sleep = sleep or (lambda seconds: TIME.sleep(seconds))
        self._lock = threading.Lock()
        self._slots: deque[float] = deque()
        self.waited = 0.0

    def acquire(self) -> float:
        """Wait for this call's slot; return how long it waited."""
        with self._lock:
            now = self._clock()
            while self._slots and self._slots[0] < now - self.interval / 2:
                self._slots.clear()  # a stale lease
            if not self._slots:
                first = self.store.reserve(self.key, now, self.interval, self.lease)
                self._slots.extend(first + i * self.interval for i in range(self.lease))
            slot = self._slots.popleft()
        wait = slot - self._clock()
        if wait > 0:
            self._sleep(wait)
            self.waited += wait
            return wait
        return 0.0


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
