"""Writing market data to MongoDB: idempotent upserts on each collection's unique key, and riding out outages.

A batch is one unordered bulk of upserts on the unique key; each carries a digest of the row's data (`data_hash`)
and keeps `updated_at` when the digest is unchanged, so the counts (inserted, updated, unchanged) come from the
server in one round trip, `updated_at` moves only when the data did, and a re-run of the same data changes nothing.
Because every write is an upsert on the unique key, retrying a batch after a connection failure can neither lose
nor duplicate a row: `MongoRetry` retries with exponential backoff until its budget runs out, then raises
`StoreUnavailable`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.errors import ConnectionFailure, PyMongoError

from sync_image.errors import StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")
HASH_FIELD = "data_hash"
_BOOKKEEPING = ("_id", "created_at", "updated_at", HASH_FIELD)


def is_transient(exc: BaseException) -> bool:
    """An error worth retrying: the server is unreachable or asks for a retry."""
    if isinstance(exc, ConnectionFailure):
        return True
    if isinstance(exc, PyMongoError):
        return exc.has_error_label("RetryableWriteError") or exc.has_error_label("TransientTransactionError")
    return False


class MongoRetry:
    """Run an operation, retrying transient MongoDB errors with exponential backoff for up to `budget` seconds."""

    def __init__(self, budget: float = 300.0, first_delay: float = 0.25, max_delay: float = 5.0,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self._clock = clock
        self.retries = 0

    def __call__(self, operation: Callable[[], T], what: str) -> T:
        deadline = self._clock() + self.budget
        delay = self.first_delay
        failures = 0
        while True:
            try:
                result = operation()
            except PyMongoError as exc:
                if not is_transient(exc):
                    raise
                failures += 1
                self.retries += 1
                if self._clock() + delay > deadline:
                    raise StoreUnavailable(f"MongoDB unreachable for {what} after {failures} tries: {exc}") from exc
                log.warning("Retrying %s in %.2fs after MongoDB error: %s", what, delay, type(exc).__name__)
                self._sleep(delay)
                delay = min(delay * 2, self.max_delay)
            else:
                if failures:
                    log.info("Recovered %s after %d MongoDB errors", what, failures)
                return result


@dataclass
class Counts:
    """What a run did to the data: the `return_value` of the execution record."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: int = 0
    rows: int = 0
    by_source: dict[str, int] = field(default_factory=dict)

    def add(self, other: Counts) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.errors += other.errors
        self.rows += other.rows
        for name, n in other.by_source.items():
            self.by_source[name] = self.by_source.get(name, 0) + n

    def to_doc(self) -> dict[str, Any]:
        return {"inserted": self.inserted, "updated": self.updated, "unchanged": self.unchanged,
                "errors": self.errors, "rows": self.rows, "by_source": dict(self.by_source)}


def _key_of(doc: Mapping[str, Any], key: Sequence[str]) -> tuple[Any, ...]:
    return tuple(doc.get(k) for k in key)


def content_hash(doc: Mapping[str, Any]) -> str:
    """A digest of a document's data fields, so an unchanged row can be recognised by the server."""
    payload = repr(sorted((k, v) for k, v in doc.items() if k not in _BOOKKEEPING))
    return hashlib.blake2b(payload.encode(), digest_size=12).hexdigest()


class Upserter:
    """Idempotent bulk upserts of documents into one collection, keyed on its unique key."""

    def __init__(self, collection: Collection[Any], key: Sequence[str], retry: MongoRetry,
                 batch_size: int = 1000, clock: Callable[[], dt.datetime] | None = None) -> None:
        if not key:
            raise ValueError(f"{collection.name} has no unique key to upsert on")
        self.collection = collection
        self.key = tuple(key)
        self.retry = retry
        self.batch_size = batch_size
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))

    def write(self, documents: Iterable[dict[str, Any]], source: str | None = None) -> Counts:
        total = Counts()
        chunk: list[dict[str, Any]] = []
        for doc in documents:
            chunk.append(doc)
            if len(chunk) >= self.batch_size:
                total.add(self._write_chunk(chunk, source))
                chunk = []
        if chunk:
            total.add(self._write_chunk(chunk, source))
        return total

    def _write_chunk(self, chunk: list[dict[str, Any]], source: str | None) -> Counts:
        unique: dict[tuple[Any, ...], dict[str, Any]] = {}
        for doc in chunk:
            unique[_key_of(doc, self.key)] = doc  # a source repeating a row: the last one wins
        counts = self.retry(lambda: self._write_once(unique), f"upsert into {self.collection.name}")
        counts.rows = len(chunk)
        if source:
            counts.by_source[source] = len(chunk)
        return counts

    def operations(self, docs: Iterable[dict[str, Any]], now: dt.datetime) -> list[UpdateOne]:
        """The upserts for these documents: one per row, on the unique key, as one pipeline update each.

        The pipeline keeps `updated_at` (and `created_at`) when the row's data digest is unchanged, so the server
        reports an identical row as matched but not modified: inserted, updated and unchanged come back exact.
        """
        operations = []
        for doc in docs:
            digest = content_hash(doc)
            stamps = {
                "created_at": {"$ifNull": ["$created_at", now]},
                "updated_at": {"$cond": [{"$eq": ["$" + HASH_FIELD, digest]}, "$updated_at", now]},
            }
            data = {k: {"$literal": v} for k, v in doc.items() if k not in _BOOKKEEPING}
            operations.append(UpdateOne(
                {k: doc.get(k) for k in self.key}, [{"$set": stamps}, {"$set": {**data, HASH_FIELD: digest}}],
                upsert=True,
            ))
        return operations

    def _write_once(self, docs: Mapping[tuple[Any, ...], dict[str, Any]]) -> Counts:
        result = self.collection.bulk_write(self.operations(docs.values(), self._clock()), ordered=False)
        details = result.bulk_api_result
        inserted, matched, modified = (int(details.get(k, 0)) for k in ("nUpserted", "nMatched", "nModified"))
        return Counts(inserted=inserted, updated=modified, unchanged=matched - modified)
