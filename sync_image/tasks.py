"""The five tasks: what each fetches, in which batches, and into which collection it upserts.

Every task splits its work into batches; each batch goes through the fallback chain on its own (so a source that
fails half-way hands the rest of the run to the next one), and between batches the task reports progress and
honours cancellation. A batch that every source failed is counted in `failed_items` and the run goes on; the
runner then decides between `success` and `failed` from the error ratio.

| task      | collection            | unique key                                     |
|-----------|-----------------------|------------------------------------------------|
| basics    | stock_basic_info      | code, source                                   |
| quotes    | market_quotes         | code                                           |
| daily     | stock_daily_quotes    | symbol, trade_date, data_source, period        |
| financial | stock_financial_data  | symbol, report_period, data_source             |
| status    | data_source_status    | source, checked_at                             |
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pymongo.database import Database

from sync_image import codes as codelib
from sync_image import schema
from sync_image.errors import AllSourcesFailed, Attempt
from sync_image.record import ExecutionReporter
from sync_image.settings import SyncOptions
from sync_image.sources.base import Source
from sync_image.sources.fallback import FallbackSource
from sync_image.store import Counts, MongoRetry, Upserter
from sync_image.trading_calendar import TradingCalendar, shanghai_today
from syncjob import mongo
from syncjob.model import Task

log = logging.getLogger(__name__)
MAX_ITEM_ERRORS = 20


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
        spec = next(s for s in mongo.DATA_COLLECTIONS if s.name == collection)
        return Upserter(self.db[collection], spec.unique_key, self.retry, self.options.write_batch_size,
                        clock=lambda: dt.datetime.now(dt.UTC))


@dataclass
class TaskResult:
    counts: Counts = field(default_factory=Counts)
    total_items: int = 0
    processed_items: int = 0
    failed_items: int = 0
    item_errors: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def fail(self, items: int, error: Exception, what: str) -> None:
        self.failed_items += items
        self.counts.errors += items
        if len(self.item_errors) < MAX_ITEM_ERRORS:
            self.item_errors.append(f"{what}: {error}")
        log.warning("Failed %s: %s", what, error)


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
    ctx.chain.batch = None
    frame, source = ctx.chain.call("basics", lambda s: s.stock_list())
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
    ctx.chain.batch = 0
    try:
        frame, source = ctx.chain.call("basics", lambda s: s.stock_list())
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
    for number, batch in enumerate(_chunks(codes, batch_size)):
        ctx.reporter.checkpoint(result.processed_items, result.total_items,
                                f"Syncing {feature} batch {number + 1}", batch[0])
        ctx.chain.batch = number
        try:
            frame, source = ctx.chain.call(feature, fetch(batch))
        except AllSourcesFailed as exc:
            result.fail(len(batch), exc, f"{feature} batch {number + 1} ({batch[0]}…)")
        else:
            result.counts.add(upserter.write(to_documents(frame, source), source))
        result.processed_items += len(batch)
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
    return _run_batched(
        ctx, "financial", mongo.STOCK_FINANCIAL_DATA,
        lambda batch: lambda s: s.financial(batch, periods),
        lambda frame, source: financial_documents(frame, ctx.chain.named(source)),
        codes, ctx.options.batch_size,
    )


def _last_dates(ctx: TaskContext, codes: list[str]) -> dict[str, dt.date]:
    """The newest stored bar of each symbol, whichever source delivered it."""
    pipeline = [
        {"$match": {"symbol": {"$in": [c[:6] for c in codes]}, "period": "daily"}},
        {"$group": {"_id": "$code", "last": {"$max": "$trade_date"}}},
    ]
    rows = ctx.retry(lambda: list(ctx.db[mongo.STOCK_DAILY_QUOTES].aggregate(pipeline)), "read last bars")
    out = {}
    for row in rows:
        day = schema.to_date(row.get("last"))
        if row.get("_id") and day is not None:
            out[str(row["_id"])] = day
    return out


def _daily_fetch(codes: list[str], start: dt.date, end: dt.date) -> Callable[[Source], pd.DataFrame]:
    return lambda source: source.daily(codes, start, end)


def run_daily(ctx: TaskContext) -> TaskResult:
    options = ctx.options
    end = options.end_date or shanghai_today(ctx.now)
    last_session = ctx.calendar.last_trading_day(end)
    backfill_start = options.start_date or end - dt.timedelta(days=options.backfill_days)
    codes = _resolve_codes(ctx)
    result = ctx.track(TaskResult(total_items=len(codes)))
    upserter = ctx.upserter(mongo.STOCK_DAILY_QUOTES)
    up_to_date = 0
    for number, batch in enumerate(_chunks(codes, options.batch_size)):
        ctx.reporter.checkpoint(result.processed_items, result.total_items,
                                f"Syncing daily bars batch {number + 1}", batch[0])
        last = _last_dates(ctx, batch) if options.incremental else {}
        by_start: dict[dt.date, list[str]] = defaultdict(list)
        for code in batch:
            start = last[code] + dt.timedelta(days=1) if code in last else backfill_start
            if start > last_session:
                up_to_date += 1
                continue
            by_start[start].append(code)
        ctx.chain.batch = number
        for start, group in sorted(by_start.items()):
            try:
                frame, source = ctx.chain.call("daily", _daily_fetch(group, start, end))
            except AllSourcesFailed as exc:
                result.fail(len(group), exc, f"daily batch {number + 1} ({group[0]}…, from {start})")
                continue
            frame = frame[frame["trade_date"].map(lambda d, st=start: d is not None and st <= d <= end)]
            docs = schema.documents(frame, data_source=source, period="daily")
            result.counts.add(upserter.write(docs, source))
        result.processed_items += len(batch)
    result.extra = {"up_to_date_symbols": up_to_date, "end_date": end.isoformat(),
                    "last_trading_day": last_session.isoformat()}
    return result


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


TASKS: dict[Task, Callable[[TaskContext], TaskResult]] = {
    Task.BASICS: run_basics,
    Task.QUOTES: run_quotes,
    Task.DAILY: run_daily,
    Task.FINANCIAL: run_financial,
    Task.STATUS: run_status,
}
