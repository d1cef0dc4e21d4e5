"""The fallback chain: a source made of sources, tried in the SyncJob's priority order for every batch.

Each call (one batch of work) starts again at the most preferred source that is still usable, so a source that
comes back after a blip is used again. A `SourceError` moves the call to the next source; every try is recorded
as an `Attempt` (source, error class, message, batch) for the execution record. A source that refused permission
for a feature, or does not offer it at all, is not asked again for that feature in this run. Errors that are not
`SourceError`s (bugs, `RunInterrupted`) are not caught here: they stop the run.

Batches run concurrently (`sync_image.tasks`), so the chain is thread-safe: its bookkeeping is under one lock, each
source is opened once, and each source has as many slots as calls it allows in flight (`Source.max_concurrency`):
baostock's one session is never used by two threads, eastmoney never sees more than two requests at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence

import pandas as pd

from sync_image.errors import (
    AllSourcesFailed,
    Attempt,
    FeatureNotSupported,
    SourceError,
    SourcePermissionDenied,
    classify_exception,
)
from sync_image.sources.base import Probe, Source, SourceInfo

log = logging.getLogger(__name__)
MAX_RECORDED_ATTEMPTS = 500  # keeps the execution record far below MongoDB's 16 MB document limit


class FallbackSource(Source):
    """Tries `sources` in order; the first that delivers wins the batch."""

    info = SourceInfo(name="fallback", title="Fallback chain", markets=("SH", "SZ", "BJ"), needs_key=False,
                      free=True, features=frozenset())

    def __init__(self, sources: Sequence[Source]) -> None:
        if not sources:
            raise ValueError("a fallback chain needs at least one source")
        self.sources = list(sources)
        self.attempts: list[Attempt] = []
        self.attempts_dropped = 0
        self.rows_by_source: Counter[str] = Counter()
        self.batch: int | None = None
        self._disabled: dict[str, set[str]] = {}  # feature -> sources not to ask again
        self._opened: set[str] = set()
        self._lock = threading.RLock()
        self._open_lock = threading.Lock()
        self._slots = {s.name: threading.BoundedSemaphore(max(1, s.max_concurrency)) for s in self.sources}

    def record(self, attempt: Attempt) -> None:
        """Add an attempt to the list the execution record shows."""
        with self._lock:
            if len(self.attempts) < MAX_RECORDED_ATTEMPTS:
                self.attempts.append(attempt)
            else:
                self.attempts_dropped += 1

    def usable(self, feature: str) -> list[Source]:
        """The sources that offer `feature` and have not refused it in this run, in priority order."""
        with self._lock:
            disabled = self._disabled.get(feature, set())
            return [s for s in self.sources if feature in s.info.features and s.name not in disabled]

    def _open(self, source: Source) -> None:
        with self._open_lock:
            if source.name not in self._opened:
                source.open()
                self._opened.add(source.name)

    def call(self, feature: str, fetch: Callable[[Source], pd.DataFrame],
             batch: int | None = None) -> tuple[pd.DataFrame, str]:
        """Run `fetch` on each usable source in order; return the first frame and who delivered it."""
        batch = self.batch if batch is None else batch
        errors: list[SourceError] = []
        with self._lock:
            disabled = self._disabled.setdefault(feature, set())
        for source in self.sources:
            if source.name in disabled:
                continue
            if feature not in source.info.features:
                with self._lock:
                    disabled.add(source.name)
                error: SourceError = FeatureNotSupported(f"{source.name} does not provide {feature}",
                                                         source=source.name)
                self.record(Attempt(source.name, type(error).__name__, error.message, batch))
                errors.append(error)
                continue
            try:
                self._open(source)
                with self._slots[source.name]:
                    frame = fetch(source)
            except SourceError as exc:
                error = exc
            except Exception as exc:  # an adapter let a library error through: treat it as that source failing
                error = classify_exception(exc, source.name)
            else:
                self.record(Attempt(source.name, None, f"delivered {len(frame)} rows", batch, len(frame)))
                with self._lock:
                    self.rows_by_source[source.name] += len(frame)
                return frame, source.name
            error.source = error.source or source.name
            errors.append(error)
            self.record(Attempt(source.name, type(error).__name__, error.message, batch))
            log.warning("Source %s failed for %s (batch %s): %s: %s", source.name, feature, batch,
                        type(error).__name__, error.message)
            if isinstance(error, SourcePermissionDenied) or (
                isinstance(error, FeatureNotSupported) and " for " not in error.message
            ):
                with self._lock:
                    disabled.add(source.name)
        summary = "; ".join(f"{e.source}: {type(e).__name__}" for e in errors) or "no usable source"
        raise AllSourcesFailed(f"every source failed for {feature}: {summary}", errors)

    def named(self, name: str) -> Source:
        return next(s for s in self.sources if s.name == name)

    def close(self) -> None:
        for source in self.sources:
            source.close()

    @property
    def source_used(self) -> str | None:
        """The source that delivered the most rows."""
        return self.rows_by_source.most_common(1)[0][0] if self.rows_by_source else None

    # The Source interface, so a chain can stand wherever one source can.
    def stock_list(self) -> pd.DataFrame:
        return self.call("basics", lambda s: s.stock_list())[0]

    def quotes(self, codes: Sequence[str]) -> pd.DataFrame:
        return self.call("quotes", lambda s: s.quotes(codes))[0]

    def daily(self, codes: Sequence[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        return self.call("daily", lambda s: s.daily(codes, start, end))[0]

    def financial(self, codes: Sequence[str], periods: int) -> pd.DataFrame:
        return self.call("financial", lambda s: s.financial(codes, periods))[0]

    def trading_days(self, start: dt.date, end: dt.date) -> list[dt.date]:
        errors: list[SourceError] = []
        for source in self.sources:
            if "calendar" not in source.info.features:
                continue
            try:
                source.open()
                return source.trading_days(start, end)
            except SourceError as exc:
                errors.append(exc)
        raise AllSourcesFailed("no source answered the trading calendar", errors)

    def probe(self) -> Probe:
        probes = [s.probe() for s in self.sources]
        best = next((p for p in probes if p.available and p.permission), probes[0])
        return best
