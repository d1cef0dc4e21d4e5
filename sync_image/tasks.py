"""The five tasks: what each fetches, in which units of work, and into which collection it upserts.

Every task splits its work into units (a batch of symbols, or one session of the whole market); each unit goes
through the fallback chain on its own (so a source that fails half-way hands the rest of the run to the next one).
Units run concurrently, as many at once as the run's sources allow (`Source.max_concurrency`, `concurrency`), each
call waiting on its source's rate limit, which runs sharing an account share through MongoDB (`sync_image.quota`):
a full-market run goes at the rate the sources allow, not at one call at a time. Between units the task reports
progress and honours cancellation. A unit that every source failed is counted in `failed_items` and the run goes
on; the runner then decides between `success` and `failed` from the error ratio, and says what is missing
(`sync_image.gaps`).

| task      | collection            | unique key                                     |
|-----------|-----------------------|------------------------------------------------|
| basics    | stock_basic_info      | code, source                                   |
| quotes    | market_quotes         | code                                           |
| daily     | stock_daily_quotes    | symbol, trade_date, data_source, period        |
| financial | stock_financial_data  | symbol, report_period, data_source             |
| status    | data_source_status    | source, checked_at                             |

`stock_daily_quotes` holds one series per source (the unique key includes `data_source`): an incremental run
starts each symbol at the last bar *that source* stored, so a tushare run never hides gaps in the akshare series.
A bar is stored only once its session closed and the source had time to publish it (`publication_delay_minutes`),
and carries `final: true`; an incremental run re-fetches a last stored bar that is not final. docs/data.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pymongo.database import Database

from sync_image import codes as codelib
from sync_image import gaps as gaplib
from sync_image import schema
from sync_image.errors import AllSourcesFailed, Attempt, SourceEmpty
from sync_image.quota import QUOTAS_COLLECTION, MongoStore
from sync_image.record import ExecutionReporter
from sync_image.settings import SyncOptions
from sync_image.sources.base import Source, describe_codes
from sync_image.sources.fallback import FallbackSource
from sync_image.store import Counts, MongoRetry, Upserter
from sync_image.trading_calendar import TradingCalendar, shanghai_today
from syncjob import mongo
from syncjob.model import Task

log = logging.getLogger(__name__)
MAX_ITEM_ERRORS = 20
DRAIN_SECONDS = 20.0  # how long a stopping run waits for the units in flight, to count what they wrote
UNITS_PER_WORKER = 32
CHECKPOINT_SECONDS = 1.0  # between two progress checkpoints of concurrent units (each reads or writes the record)


@dataclass
class TaskContext:
    db: Database[Any]
    options: SyncOptions
    chain: FallbackSource
    reporter: ExecutionReporter
    calendar: TradingCalendar
    retry: MongoRetry
    now: dt.datetime
    result: TaskResult | None = None  # the running task's tally, kept here so a cancelled run can report it

    def track(self, result: TaskResult) -> TaskResult:
        self.result = result
        return result

    def upserter(self, collection: str) -> Upserter:
        spec = next((s for s in mongo.DATA_COLLECTIONS if s.name == collection), None)
        key = spec.unique_key if spec is not None else gaplib.SUSPENSIONS.unique_key
        return Upserter(self.db[collection], key, self.retry, self.options.write_batch_size,
                        clock=lambda: dt.datetime.now(dt.UTC))

    @property
    def workers(self) -> int:
        """Units in flight at once: the option, else as many as the most concurrent source allows."""
        if self.options.concurrency:
            return self.options.concurrency
        return max(1, *(s.max_concurrency for s in self.chain.sources))

    def closed_session(self, source: str) -> dt.date:
        """The newest session whose bars `source` has published by now (capped by `end_date`)."""
        minutes = self.options.publication_delay_minutes.get(source, 0.0)
        closed = self.calendar.last_closed_session(self.now, dt.timedelta(minutes=minutes))
        return min(closed, self.options.end_date) if self.options.end_date else closed


@dataclass
class TaskResult:
    counts: Counts = field(default_factory=Counts)
    total_items: int = 0
    processed_items: int = 0
    failed_items: int = 0
    item_errors: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    gaps: dict[str, Any] | None = None  # what the run leaves missing (sync_image.gaps), for the record

    def fail(self, items: int, error: Exception, what: str) -> None:
        self.failed_items += items
        self.counts.errors += items
        if len(self.item_errors) < MAX_ITEM_ERRORS:
            self.item_errors.append(f"{what}: {error}")
        log.warning("Failed %s: %s", what, error)


@dataclass
class Unit:
    """One piece of work through the fallback chain: `run(number)` fetches and writes, returning its counts."""

    label: str
    items: int
    first: str
    run: Callable[[int], Counts]


def run_units(ctx: TaskContext, result: TaskResult, units: Sequence[Unit], feature: str) -> None:
    """Run the units, `ctx.workers` at once, tallying into `result`; stops cleanly on cancellation."""
    if not units:
        return
    workers = min(ctx.workers, len(units))
    if workers <= 1:
        for number, unit in enumerate(units):
            ctx.reporter.checkpoint(result.processed_items, result.total_items,
                                    f"Syncing {feature} {unit.label}", unit.first)
            _tally(result, unit, functools.partial(unit.run, number))
        return
    stop = threading.Event()

    def guarded(number: int, unit: Unit) -> Counts:
        if stop.is_set():
            raise _Skipped()
        return unit.run(number)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"sync-{feature}")
    pending: dict[Future[Counts], Unit] = {}
    last_checkpoint = 0.0
    try:
        for number, unit in enumerate(units):
            pending[pool.submit(guarded, number, unit)] = unit
        while pending:
            done, _ = wait(list(pending), timeout=1.0, return_when=FIRST_COMPLETED)
            for future in done:
                unit = pending.pop(future)
                _tally(result, unit, future.result)
            now = time.monotonic()
            if now - last_checkpoint >= CHECKPOINT_SECONDS or not pending:
                last_checkpoint = now
                current = next(iter(pending.values())) if pending else None
                ctx.reporter.checkpoint(result.processed_items, result.total_items,
                                        f"Syncing {feature}: {len(pending)} units left",
                                        current.first if current else None)
            else:
                ctx.reporter.check()
    except BaseException:
        # Stopping (cancelled, SIGTERM, a store outage): start nothing more, and count what the units already
        # in flight wrote, so the record's counts match the data.
        stop.set()
        for future in pending:
            future.cancel()
        done, _ = wait(list(pending), timeout=DRAIN_SECONDS)
        for future in done:
            if not future.cancelled():
                with contextlib.suppress(Exception):
                    _tally(result, pending[future], future.result)
        raise
    finally:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)


class _Skipped(Exception):
    """A unit not started because the run is stopping."""


def _tally(result: TaskResult, unit: Unit, outcome: Callable[[], Counts]) -> None:
    try:
        counts = outcome()
    except AllSourcesFailed as exc:
        result.fail(unit.items, exc, f"{unit.label} ({unit.first}…)")
    except _Skipped:
        return
    else:
        result.counts.add(counts)
    result.processed_items += unit.items


def share_quotas(ctx: TaskContext) -> None:
    """Put every source's rate limits on the shared `source_quotas` collection (the option `share_quotas`)."""
    if not ctx.options.share_quotas:
        return
    store = MongoStore(ctx.db[QUOTAS_COLLECTION])
    for source in ctx.chain.sources:
        source.limits.share(store)


def _chunks(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def _resolve_codes(ctx: TaskContext) -> list[str]:
    """The codes to work on: the options', else those in stock_basic_info, else the first source's stock list."""
    if ctx.options.codes:
        return list(ctx.options.codes)
    stored = ctx.retry(lambda: ctx.db[mongo.STOCK_BASIC_INFO].distinct("code"), "read stock_basic_info codes")
    known = sorted({codelib.normalise(c) for c in stored if _is_code(c)})
    if known:
        return known
    frame, source = ctx.chain.call("basics", lambda s: s.stock_list(), batch=None)
    log.info("Listed %d codes from source %s (stock_basic_info is empty)", len(frame), source)
    return sorted(frame["code"].dropna().unique().tolist())


def _is_code(value: object) -> bool:
    try:
        codelib.normalise(value)
    except ValueError:
        return False
    return True


def run_basics(ctx: TaskContext) -> TaskResult:
    result = ctx.track(TaskResult(total_items=1))
    ctx.reporter.checkpoint(0, 1, "Fetching the stock list")
    try:
        frame, source = ctx.chain.call("basics", lambda s: s.stock_list(), batch=0)
    except AllSourcesFailed as exc:
        result.fail(1, exc, "stock list")
        return result
    if ctx.options.codes:
        frame = frame[frame["code"].isin(set(ctx.options.codes))]
    upserter = ctx.upserter(mongo.STOCK_BASIC_INFO)
    docs = list(schema.documents(frame, source=source, data_source=source, category="stock_cn"))
    for i, chunk in enumerate(_chunks_docs(docs, ctx.options.write_batch_size)):
        ctx.reporter.checkpoint(0, 1, f"Writing stock list from {source}", f"rows {i * len(chunk)}")
        result.counts.add(upserter.write(chunk, source))
    result.processed_items = 1
    return result


def _chunks_docs(docs: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [docs[i:i + size] for i in range(0, len(docs), size)]


def _run_batched(
    ctx: TaskContext,
    feature: str,
    collection: str,
    fetch: Callable[[list[str]], Callable[[Source], pd.DataFrame]],
    to_documents: Callable[[pd.DataFrame, str], Iterable[dict[str, Any]]],
    codes: list[str],
    batch_size: int,
) -> TaskResult:
    result = ctx.track(TaskResult(total_items=len(codes)))
    upserter = ctx.upserter(collection)

    def unit(batch: list[str]) -> Callable[[int], Counts]:
        def run(number: int) -> Counts:
            frame, source = ctx.chain.call(feature, fetch(batch), batch=number)
            return upserter.write(to_documents(frame, source), source)
        return run

    units = [Unit(f"batch {n + 1}", len(b), b[0], unit(b)) for n, b in enumerate(_chunks(codes, batch_size))]
    run_units(ctx, result, units, feature)
    return result


def run_quotes(ctx: TaskContext) -> TaskResult:
    codes = _resolve_codes(ctx)
    return _run_batched(
        ctx, "quotes", mongo.MARKET_QUOTES,
        lambda batch: lambda s: s.quotes(batch),
        lambda frame, source: schema.documents(frame, source=source, data_source=source),
        codes, max(ctx.options.batch_size, 200),
    )


def financial_documents(frame: pd.DataFrame, source: Source) -> Iterator[dict[str, Any]]:
    """Financial rows as stored: what the figures cover (`report_type`) and which figures this source cannot give."""
    missing = sorted(schema.FINANCIAL_FIGURES - source.financial_figures)
    for doc in schema.documents(frame, data_source=source.name, fields_not_provided=missing):
        doc["report_type"] = schema.report_type(doc.get("report_period"))
        yield doc


def run_financial(ctx: TaskContext) -> TaskResult:
    codes = _resolve_codes(ctx)
    periods = ctx.options.periods
    result = _run_batched(
        ctx, "financial", mongo.STOCK_FINANCIAL_DATA,
        lambda batch: lambda s: s.financial(batch, periods),
        lambda frame, source: financial_documents(frame, ctx.chain.named(source)),
        codes, ctx.options.batch_size,
    )
    listed = gaplib.listing_dates(ctx.db, ctx.retry, codes)
    found, expected = gaplib.financial_gaps(ctx.db, ctx.retry, codes, [s.name for s in ctx.chain.sources],
                                            shanghai_today(ctx.now), periods, listed)
    result.gaps = gaplib.report("financial", found, len(codes), expected, ctx.options.gap_symbols_listed,
                                expected_periods=[p.isoformat() for p in expected])
    return result


# -- daily bars ------------------------------------------------------------------------------------------------


@dataclass
class DailyPlan:
    """What a daily run fetches: per code, the ranges each source still needs."""

    codes: list[str]
    window_start: dt.date
    last: dict[tuple[str, str], gaplib.LastBar]
    incremental: bool
    repairs: dict[str, list[tuple[dt.date, dt.date]]] = field(default_factory=dict)
    state: gaplib.DailyState = field(default_factory=gaplib.DailyState)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def write(self, upserter: Upserter, docs: list[dict[str, Any]], source: str) -> Counts:
        """Store bars, and note them as stored: the gap report counts them without reading them back."""
        counts = upserter.write(docs, source)
        with self._lock:
            for doc in docs:
                day = schema.to_date(doc.get("trade_date"))
                if day is not None:
                    self.state.add(str(doc["code"]), day)
        return counts

    def start(self, code: str, source: str) -> dt.date:
        """Where `source`'s series of `code` needs bars from: after its last final bar, or at a non-final one."""
        bar = self.last.get((code, source)) if self.incremental else None
        if bar is None:
            return self.window_start
        return bar.day + dt.timedelta(days=1) if bar.final else bar.day

    def ranges(self, code: str, source: str, closed: dt.date) -> list[tuple[dt.date, dt.date]]:
        start = self.start(code, source)
        out = [(start, closed)] if start <= closed else []
        out.extend((first, min(last, closed)) for first, last in self.repairs.get(code, [])
                   if first <= closed and not (out and first >= start))
        return out


def _bar_documents(frame: pd.DataFrame, source: str, wanted: dict[str, list[tuple[dt.date, dt.date]]],
                   ) -> list[dict[str, Any]]:
    """The rows of `frame` inside the ranges wanted for their code, as stored bars."""
    if frame.empty:
        return []

    def keep(code: str, day: dt.date | None) -> bool:
        return day is not None and any(a <= day <= b for a, b in wanted.get(code, ()))

    mask = [keep(c, d) for c, d in zip(frame["code"], frame["trade_date"], strict=True)]
    return list(schema.documents(frame[mask], data_source=source, period="daily", final=True))


def run_daily(ctx: TaskContext) -> TaskResult:
    options = ctx.options
    end = options.end_date or shanghai_today(ctx.now)
    window_start = options.start_date or end - dt.timedelta(days=options.backfill_days)
    codes = _resolve_codes(ctx)
    result = ctx.track(TaskResult(total_items=len(codes)))
    source_names = [s.name for s in ctx.chain.sources]
    closed = {name: ctx.closed_session(name) for name in source_names}
    last_closed = max(closed.values())  # the newest session any of the job's sources can have delivered
    listed = gaplib.listing_dates(ctx.db, ctx.retry, codes)
    state = gaplib.read_daily(ctx.db, ctx.retry, codes, source_names, window_start)
    plan = DailyPlan(codes, window_start, state.last, options.incremental, state=state)
    if options.repair_gaps:
        found, sessions = gaplib.daily_gaps(state, ctx.calendar, codes, window_start, last_closed, listed)
        plan.repairs = {code: gaplib.ranges(gap.missing, sessions) for code, gap in found.items() if gap.missing}
    upserter = ctx.upserter(mongo.STOCK_DAILY_QUOTES)
    primary = ctx.chain.usable("daily")
    needing = [c for c in codes if primary and plan.ranges(c, primary[0].name, closed[primary[0].name])]
    result.extra = {"up_to_date_symbols": len(codes) - len(needing), "end_date": end.isoformat(),
                    "last_trading_day": ctx.calendar.last_trading_day(end).isoformat(),
                    "last_closed_session": {name: day.isoformat() for name, day in closed.items()},
                    "repaired_symbols": len(plan.repairs)}
    result.processed_items = len(codes) - len(needing)  # up to date: nothing to fetch
    per_code = needing
    days = _market_days(ctx, plan, needing, closed)
    if days:
        # Whole-market sessions first; if a session failed on every source, its symbols go one batch at a time.
        failed: list[dt.date] = []
        run_units(ctx, result, [_market_unit(ctx, plan, day, needing, closed, upserter, failed) for day in days],
                  "whole-market sessions")
        result.extra["market_days"] = [d.isoformat() for d in days]
        per_code = needing if failed else []
        result.processed_items += 0 if failed else len(needing)
    units = [_codes_unit(ctx, plan, batch, closed, upserter)
             for batch in _chunks(per_code, unit_size(ctx, len(per_code)))]
    run_units(ctx, result, units, "daily bars")
    _store_suspensions(ctx, state)
    found, sessions = gaplib.daily_gaps(state, ctx.calendar, codes, window_start, last_closed, listed)
    result.gaps = gaplib.report("daily", found, len(codes), sessions, options.gap_symbols_listed,
                                window=(window_start, last_closed), repaired=options.repair_gaps)
    return result


def unit_size(ctx: TaskContext, symbols: int) -> int:
    """Symbols per unit: `batch_size`, but small enough that every worker gets many units. A concurrent run ends
    when its last unit does, so units are cut to about 1/32 of a worker's share: the tail stays short."""
    share = -(-symbols // (ctx.workers * UNITS_PER_WORKER)) if ctx.workers > 1 else ctx.options.batch_size
    return max(1, min(ctx.options.batch_size, share))


def _market_days(ctx: TaskContext, plan: DailyPlan, needing: list[str], closed: dict[str, dt.date],
                 ) -> list[dt.date] | None:
    """Sessions to fetch whole-market (one call each) when that takes fewer calls than batches of symbols."""
    market = ctx.chain.usable("daily_market")
    if not market or not needing:
        return None
    source = market[0].name
    spans = {span for code in needing for span in plan.ranges(code, source, closed[source])}
    days = {day for first, last in spans for day in ctx.calendar.trading_days(first, last)}
    batches = -(-len(needing) // ctx.options.batch_size)
    if not days or len(days) > batches:
        return None
    return sorted(days)


def _market_unit(ctx: TaskContext, plan: DailyPlan, day: dt.date, codes: list[str], closed: dict[str, dt.date],
                 upserter: Upserter, failed: list[dt.date]) -> Unit:
    def run(number: int) -> Counts:
        def fetch(source: Source) -> pd.DataFrame:
            if day > closed[source.name]:
                raise source.empty(f"market daily {day} (not yet published)")
            return source.market_daily(day)

        try:
            frame, source = ctx.chain.call("daily_market", fetch, batch=number)
        except AllSourcesFailed:
            failed.append(day)
            raise
        wanted = {c: [(day, day)] for c in codes}
        return plan.write(upserter, _bar_documents(frame, source, wanted), source)

    return Unit(f"market day {day}", 0, day.isoformat(), run)


def _codes_unit(ctx: TaskContext, plan: DailyPlan, batch: list[str], closed: dict[str, dt.date],
                upserter: Upserter) -> Unit:
    def run(number: int) -> Counts:
        wanted: dict[str, list[tuple[dt.date, dt.date]]] = {}

        def fetch(source: Source) -> pd.DataFrame:
            by_range: dict[tuple[dt.date, dt.date], list[str]] = defaultdict(list)
            for code in batch:
                for span in plan.ranges(code, source.name, closed[source.name]):
                    by_range[span].append(code)
            wanted.clear()
            if not by_range:  # this source's series is complete for the batch: delivered, with nothing new
                return pd.DataFrame(columns=schema.DAILY)
            parts = []
            for (first, last), group in sorted(by_range.items()):
                for code in group:
                    wanted.setdefault(code, []).append((first, last))
                try:
                    parts.append(source.daily(group, first, last))
                except SourceEmpty:
                    continue  # nothing in this range (a suspension, a new listing): the others may have bars
            if not parts:
                raise source.empty(f"daily {describe_codes(batch)}")
            return pd.concat(parts, ignore_index=True)

        frame, source = ctx.chain.call("daily", fetch, batch=number)
        return plan.write(upserter, _bar_documents(frame, source, wanted), source)

    return Unit(f"batch of {len(batch)}", len(batch), batch[0], run)


def _store_suspensions(ctx: TaskContext, state: gaplib.DailyState) -> None:
    upserter = ctx.upserter(gaplib.SUSPENSIONS.name)
    for source in ctx.chain.sources:
        docs = gaplib.suspension_documents(source.take_suspensions(), source.name)
        for doc in docs:
            state.suspended[doc["code"]].add(dt.date.fromisoformat(doc["trade_date"]))
        if docs:
            ctx.retry(lambda: mongo.ensure_indexes(ctx.db, (gaplib.SUSPENSIONS,)), "ensure suspension indexes")
            upserter.write(docs, source.name)


def run_status(ctx: TaskContext) -> TaskResult:
    sources = ctx.chain.sources
    result = ctx.track(TaskResult(total_items=len(sources)))
    upserter = ctx.upserter(mongo.DATA_SOURCE_STATUS)
    healthy = []
    for number, source in enumerate(sources):
        ctx.reporter.checkpoint(number, len(sources), f"Checking source {source.name}", source.name)
        probe = source.probe()
        stamp = dt.datetime.now(dt.UTC)
        checked_at = stamp.replace(microsecond=stamp.microsecond // 1000 * 1000)  # MongoDB keeps milliseconds
        ok = probe.available and probe.permission
        doc = {
            "source": source.name, "checked_at": checked_at, "status": "ok" if ok else "error",
            "available": probe.available, "permission": probe.permission,
            "latency_ms": None if probe.latency_ms is None else round(probe.latency_ms, 1),
            "error_class": probe.error_class, "message": probe.message, "details": probe.details,
            **source.info.to_doc(),
        }
        doc.pop("name")
        result.counts.add(upserter.write([doc], source.name))
        ctx.chain.record(Attempt(source.name, probe.error_class, probe.message or "reachable", number))
        if ok:
            healthy.append(source.name)
            ctx.chain.rows_by_source[source.name] += 1
        else:
            result.fail(1, RuntimeError(f"{probe.error_class}: {probe.message}"), f"source {source.name}")
        result.processed_items += 1
    result.extra = {"healthy_sources": healthy}
    return result


def _sharing_quotas(task: Callable[[TaskContext], TaskResult]) -> Callable[[TaskContext], TaskResult]:
    @functools.wraps(task)
    def run(ctx: TaskContext) -> TaskResult:
        share_quotas(ctx)
        return task(ctx)

    return run


TASKS: dict[Task, Callable[[TaskContext], TaskResult]] = {
    Task.BASICS: _sharing_quotas(run_basics),
    Task.QUOTES: _sharing_quotas(run_quotes),
    Task.DAILY: _sharing_quotas(run_daily),
    Task.FINANCIAL: _sharing_quotas(run_financial),
    Task.STATUS: run_status,
}
