"""Benchmark: a `daily` sync run from the `file` source against the same bulk upserts issued directly with pymongo.

Must hold: the run reaches >= 0.95x the rows/s of the same unordered bulk upserts (the operations the sync image
builds, `Upserter.operations`) issued directly with pymongo on the same SecantusDB server, one after another, and
progress + heartbeat reporting add at most 5% to the run's wall time. The run fetches and writes its units
concurrently (the file source allows 4), so the same upserts issued directly from 4 threads are measured too and
reported next to it; insert_many of the same rows is reported as a ceiling. Starts its own
`testbed.mongo.MongoServer`; every measurement writes into a fresh database.

    .venv/bin/python -m bench.bench_sync [--rows 100000] [--symbols 400] [--repeat 1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
from pymongo import MongoClient, UpdateOne

from sync_image import schema
from sync_image.runner import ExitCode, Runner
from sync_image.settings import PodSettings
from sync_image.sources.file import FileSource
from sync_image.store import MongoRetry, Upserter
from syncjob import mongo
from testbed.mongo import MongoServer

WRITE_BATCH = 1000


def make_dataset(folder: Path, rows: int, symbols: int) -> tuple[dt.date, dt.date]:
    days = max(1, rows // symbols)
    dates = pd.bdate_range("2025-01-02", periods=days).date
    codes = [f"{600000 + i:06d}.SH" for i in range(symbols)]
    frame = pd.DataFrame({"code": [c for c in codes for _ in dates], "trade_date": list(dates) * symbols})
    n = len(frame)
    frame["open"], frame["high"], frame["low"] = 10.0, 10.5, 9.5
    frame["close"] = [10.0 + (i % 13) * 0.01 for i in range(n)]
    frame["pre_close"], frame["volume"], frame["amount"] = 10.0, 1_000_000.0, 10_000_000.0
    frame.to_parquet(folder / "daily.parquet")
    return dates[0], dates[-1]


def direct(client: MongoClient[Any], name: str, docs: list[dict[str, Any]], how: str, threads: int = 1) -> float:
    db = client[name]
    mongo.ensure_indexes(db, mongo.DATA_COLLECTIONS)
    coll = db[mongo.STOCK_DAILY_QUOTES]
    key = ("symbol", "trade_date", "data_source", "period")
    upserter = Upserter(coll, key, MongoRetry())
    started = time.perf_counter()
    if threads > 1:  # the same upserts, from as many threads as the run's units
        chunks = [docs[i:i + WRITE_BATCH] for i in range(0, len(docs), WRITE_BATCH)]
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda c: coll.bulk_write(upserter.operations(c, dt.datetime.now(dt.UTC)), ordered=False),
                          chunks))
        elapsed = time.perf_counter() - started
        assert coll.count_documents({}) == len(docs)
        return elapsed
    for i in range(0, len(docs), WRITE_BATCH):
        chunk = docs[i:i + WRITE_BATCH]
        now = dt.datetime.now(dt.UTC)
        if how == "upsert":  # exactly the operations the sync image issues
            coll.bulk_write(upserter.operations(chunk, now), ordered=False)
        elif how == "plain":  # the textbook upsert, for reference
            coll.bulk_write([UpdateOne({k: d[k] for k in key}, {"$set": {**d, "updated_at": now},
                                                                 "$setOnInsert": {"created_at": now}}, upsert=True)
                             for d in chunk], ordered=False)
        else:
            coll.insert_many([{**d, "updated_at": now, "created_at": now} for d in chunk], ordered=False)
    elapsed = time.perf_counter() - started
    assert coll.count_documents({}) == len(docs)
    return elapsed


def sync_run(server: MongoServer, name: str, folder: Path, first: dt.date, last: dt.date, rows: int,
             reporting: bool) -> float:
    uri = f"mongodb://127.0.0.1:{server.port}/{name}?directConnection=true"
    settings = PodSettings(  # type: ignore[call-arg]
        SYNCJOB_NAMESPACE="bench", SYNCJOB_NAME="bench-daily", SYNC_TASK="daily", SYNC_SOURCES="file",
        SYNC_OPTIONS={"file_dir": str(folder), "start_date": first.isoformat(), "end_date": last.isoformat(),
                      "write_batch_size": WRITE_BATCH},
        SYNC_TRIGGER="manual", SYNC_RUN_ID=f"bench-{name}", MONGO_URI=uri)
    client: MongoClient[Any] = MongoClient(uri, tz_aware=True)
    db = client.get_default_database()
    runner = Runner(settings, db, reporting=reporting, now=dt.datetime(2025, 12, 31, 8, 0, tzinfo=dt.UTC))
    started = time.perf_counter()
    code = runner.run()
    elapsed = time.perf_counter() - started
    record = db[mongo.EXECUTIONS].find_one({"_id": f"bench.bench-{name}"}) or {}
    assert code == ExitCode.SUCCESS, record.get("error_message")
    assert db[mongo.STOCK_DAILY_QUOTES].count_documents({}) == rows
    if reporting:
        print(f"    progress writes {runner.reporter.progress_writes}, heartbeats {runner.reporter.heartbeats}")
    client.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--symbols", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=1, help="measurements per variant; the best is kept")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        folder = Path(tmp) / "data"
        folder.mkdir()
        first, last = make_dataset(folder, args.rows, args.symbols)
        server = MongoServer(workdir=Path(tmp) / "mongo").start()
        try:
            frame = FileSource(folder).daily([f"{600000 + i:06d}.SH" for i in range(args.symbols)], first, last)
            docs = list(schema.documents(frame, data_source="file", period="daily"))
            rows = len(docs)
            print(f"SecantusDB on port {server.port}; {rows} daily rows ({args.symbols} symbols)")
            client: MongoClient[Any] = MongoClient(server.uri, tz_aware=True)
            results: dict[str, float] = {}
            for rep in range(args.repeat):
                for label, fn in (
                    ("direct pymongo upserts", lambda r=rep: direct(client, f"direct_upsert_{r}", docs, "upsert")),
                    ("direct upserts, 4 threads", lambda r=rep: direct(client, f"direct_upsert4_{r}", docs, "upsert",
                                                                       4)),
                    ("direct insert_many", lambda r=rep: direct(client, f"direct_insert_{r}", docs, "insert")),
                    ("direct plain $set upserts", lambda r=rep: direct(client, f"direct_plain_{r}", docs, "plain")),
                    ("sync run, reporting on", lambda r=rep: sync_run(server, f"sync_on_{r}", folder, first, last,
                                                                      rows, True)),
                    ("sync run, reporting off", lambda r=rep: sync_run(server, f"sync_off_{r}", folder, first, last,
                                                                       rows, False)),
                ):
                    elapsed = fn()
                    results[label] = min(results.get(label, float("inf")), elapsed)
                    print(f"  {label:26} {elapsed:8.2f} s  {rows / elapsed:10.0f} rows/s")
            client.close()
        finally:
            server.cleanup()
    upsert, run_on, run_off = (results["direct pymongo upserts"], results["sync run, reporting on"],
                               results["sync run, reporting off"])
    ratio = upsert / run_on
    overhead = run_on / run_off - 1
    print(f"\nsync run / direct upserts (rows/s): {ratio:.2f}x  (must be >= 0.95)  {'OK' if ratio >= 0.95 else 'FAIL'}")
    print(f"sync run / the same upserts from 4 threads: {results['direct upserts, 4 threads'] / run_on:.2f}x")
    print(f"insert_many rows/s vs direct upserts: {upsert / results['direct insert_many']:.2f}x; "
          f"plain $set upserts: {upsert / results['direct plain $set upserts']:.2f}x")
    print(f"reporting overhead: {overhead:+.1%}  (must be <= 5%)  {'OK' if overhead <= 0.05 else 'FAIL'}")


if __name__ == "__main__":
    main()
