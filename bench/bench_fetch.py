"""Benchmark: a full-market incremental daily run against a source's own limits, concurrent and one call at a time.

The source is `SimulatedSource`: one call per symbol (akshare's shape), `--latency` seconds a call, and a quota the
simulated server enforces (`--rate` calls a second, counted over any `--window` seconds, 10 by default: tushare
counts a minute; a call beyond it is refused). Every symbol has
final bars up to the day before, so the run needs exactly one call per symbol. The floor is what the quota allows:
calls needed / allowed rate. Must hold: the concurrent run's wall time / floor <= 1.1, with no call refused. The
sequential run (`concurrency: 1`, what every run did before) is measured in the same run on `--sequential-symbols`
symbols (a sequential full market takes `symbols x latency`: 1,000 s at the defaults) and its ratio reported.
The client asks for `--margin` of the quota (default 0.98), as a deployment should, to absorb scheduling jitter.
Starts its own `testbed.mongo.MongoServer`; each run writes into a fresh database, quotas shared through it.

    .venv/bin/python -m bench.bench_fetch [--symbols 5000] [--latency 0.2] [--rate 100] [--sequential-symbols 250]
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from sync_image.runner import ExitCode, Runner
from sync_image.settings import PodSettings
from sync_image.sources.fake import SimulatedSource
from sync_image.trading_calendar import TradingCalendar
from syncjob import mongo
from testbed.mongo import MongoServer

FRIDAY = dt.date(2026, 11, 27)
NOW = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)  # 18:00 in Shanghai: the session closed and published
HISTORY_START = dt.date(2026, 11, 20)


def codes(n: int) -> list[str]:
    return [f"{600000 + i:06d}.SH" if i < 5000 else f"{300000 + i - 5000:06d}.SZ" for i in range(n)]


def populate(db: Any, symbols: list[str]) -> None:
    """Final bars up to Thursday for every symbol: the incremental run needs Friday only."""
    mongo.ensure_indexes(db, mongo.DATA_COLLECTIONS)
    days = TradingCalendar().trading_days(HISTORY_START, FRIDAY - dt.timedelta(days=1))
    docs = [{"code": c, "symbol": c[:6], "full_symbol": c, "trade_date": d.isoformat(), "data_source": "simulated",
             "period": "daily", "close": 10.0, "final": True} for c in symbols for d in days]
    for i in range(0, len(docs), 5000):
        db[mongo.STOCK_DAILY_QUOTES].insert_many(docs[i:i + 5000], ordered=False)


def run(server: MongoServer, name: str, symbols: list[str], args: argparse.Namespace, concurrency: int | None,
        ) -> tuple[float, SimulatedSource, dict[str, Any]]:
    uri = f"mongodb://127.0.0.1:{server.port}/{name}?directConnection=true"
    client: MongoClient[Any] = MongoClient(uri, tz_aware=True)
    db = client.get_default_database()
    populate(db, symbols)
    options: dict[str, Any] = {"codes": symbols, "start_date": HISTORY_START.isoformat()}
    if concurrency:
        options["concurrency"] = concurrency
    settings = PodSettings(  # type: ignore[call-arg]
        SYNCJOB_NAMESPACE="bench", SYNCJOB_NAME="bench-fetch", SYNC_TASK="daily", SYNC_SOURCES="file",
        SYNC_OPTIONS=options, SYNC_TRIGGER="manual", SYNC_RUN_ID=f"bench-{name}", MONGO_URI=uri)
    source = SimulatedSource(latency=args.latency, server_per_second=args.rate,
                             client_per_second=args.rate * args.margin, concurrency=args.concurrency,
                             window=args.window)
    runner = Runner(settings, db, sources=[source], now=NOW)
    started = time.perf_counter()
    code = runner.run()
    elapsed = time.perf_counter() - started
    record = db[mongo.EXECUTIONS].find_one({"_id": runner.settings.run_id}) or {}
    assert code == ExitCode.SUCCESS, record.get("error_message")
    stored = db[mongo.STOCK_DAILY_QUOTES].count_documents({"trade_date": FRIDAY.isoformat()})
    assert stored == len(symbols), f"{stored} of {len(symbols)} stored; refused {source.refused}"
    client.close()
    return elapsed, source, record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=5000)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per call")
    parser.add_argument("--rate", type=float, default=100.0, help="calls per second the source allows")
    parser.add_argument("--margin", type=float, default=0.98, help="share of the quota the client asks for")
    parser.add_argument("--concurrency", type=int, default=32, help="calls the source allows in flight")
    parser.add_argument("--window", type=float, default=10.0, help="seconds over which the server counts its quota")
    parser.add_argument("--sequential-symbols", type=int, default=250)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-fetch-") as tmp:
        server = MongoServer(workdir=Path(tmp) / "mongo").start()
        try:
            print(f"SecantusDB on port {server.port}; {args.symbols} symbols, {args.latency * 1000:.0f} ms a call, "
                  f"{args.rate:.0f} calls/s allowed, {args.concurrency} in flight")
            every = codes(args.symbols)
            wall, source, record = run(server, "concurrent", every, args, None)
            calls = len(source.starts)
            floor = calls / args.rate
            ratio = wall / floor
            spread = source.starts[-1] - source.starts[0] if calls > 1 else 0.0
            print(f"  concurrent: {wall:7.1f} s for {calls} calls; floor {floor:.1f} s; ratio {ratio:.3f}; "
                  f"{calls / spread if spread else 0:.1f} calls/s while fetching; refused {source.refused}; "
                  f"at most {source.max_in_flight} in flight; gaps {record['gaps']['symbols_with_gaps']}")
            some = every[:args.sequential_symbols]
            seq_wall, seq_source, _ = run(server, "sequential", some, args, 1)
            seq_floor = len(seq_source.starts) / args.rate
            seq_ratio = seq_wall / seq_floor
            print(f"  sequential: {seq_wall:7.1f} s for {len(seq_source.starts)} calls; floor {seq_floor:.1f} s; "
                  f"ratio {seq_ratio:.2f}; a full market would take about "
                  f"{seq_wall / len(some) * args.symbols / 60:.0f} min")
        finally:
            server.cleanup()
    ok = ratio <= 1.1 and source.refused == 0
    print(f"\nfull-market incremental run / (calls needed / allowed rate): {ratio:.3f}  (must be <= 1.10)  "
          f"{'OK' if ok else 'FAIL'}")
    print(f"sequential, same source: {seq_ratio:.2f}  (concurrent is {seq_ratio / ratio:.1f}x faster)")


if __name__ == "__main__":
    main()
