"""MongoDB stopped and restarted mid-run: the run waits it out, and no row is lost or duplicated."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pymongo import MongoClient

from sync_image.runner import ExitCode, Runner
from sync_image.sources.file import FileSource
from syncjob import mongo
from testbed.mongo import MongoServer
from testbed.procs import free_port
from tests.sync_image.conftest import settings, write_daily_files


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[MongoServer]:
    """A server of this test's own (fixed port and storage), so stopping it cannot disturb other tests."""
    server = MongoServer(workdir=tmp_path / "mongo", port=free_port())
    server.start()
    yield server
    server.cleanup()


class OutageDuringThirdBatch(FileSource):
    """Stops the server while the third batch is being fetched and starts it again two seconds later."""

    def __init__(self, directory: Path, server: MongoServer) -> None:
        super().__init__(directory)
        self.server = server
        self.calls = 0
        self.restarted = threading.Event()
        self.done = threading.Event()

    def daily(self, codes: Any, start: dt.date, end: dt.date) -> pd.DataFrame:
        self.calls += 1
        if self.calls == 3:
            self.server.stop()

            def restart() -> None:
                time.sleep(2)
                self.server.start()
                self.restarted.set()
                # the server dies with the thread that started it (PR_SET_PDEATHSIG): keep this one alive
                self.done.wait(timeout=300)

            threading.Thread(target=restart, daemon=True).start()
        return super().daily(codes, start, end)


def test_a_mongo_outage_mid_run_is_retried_and_loses_or_duplicates_nothing(own_server: MongoServer,
                                                                            tmp_path: Path) -> None:
    rows = write_daily_files(tmp_path / "data", symbols=12, days=25)
    uri = f"mongodb://127.0.0.1:{own_server.port}/outage?directConnection=true"
    client: MongoClient[Any] = MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=2000)
    db = client.get_default_database()
    source = OutageDuringThirdBatch(tmp_path / "data", own_server)
    runner = Runner(settings(uri, SYNC_SOURCES="file", SYNC_OPTIONS={
        "batch_size": 2, "write_batch_size": 10, "start_date": "2026-01-01", "end_date": "2026-03-31",
        "mongo_retry_seconds": 90}), db, sources=[source])
    try:
        assert runner.run() == ExitCode.SUCCESS
        assert source.restarted.wait(30) and runner.retry.retries > 0
        bars = db[mongo.STOCK_DAILY_QUOTES]
        assert bars.count_documents({}) == rows
        keys = {(b["symbol"], b["trade_date"]) for b in bars.find({}, {"symbol": 1, "trade_date": 1})}
        assert len(keys) == rows
        record = db[mongo.EXECUTIONS].find_one({"_id": "market-data.daily-sync-m1"})
        assert record is not None and record["status"] == "success"
        assert record["return_value"]["inserted"] + record["return_value"]["unchanged"] == rows
        assert record["return_value"]["errors"] == 0
    finally:
        client.close()
        source.done.set()
