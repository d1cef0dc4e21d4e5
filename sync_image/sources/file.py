"""The `file` source: canonical-schema CSV or Parquet files in a folder, for air-gapped imports, backfills and demos.

A folder holds any of `basics`, `quotes`, `daily`, `financial` and `calendar` (one column `trade_date`), each as
`<name>.parquet` or `<name>.csv`. Columns follow `sync_image.schema`: canonical codes, volume in shares, amount in
CNY. The image ships a small sample dataset (`sync_image/sample_data/`), used when no `file_dir` is given.

`delay` (SYNC_OPTIONS `file_delay_seconds`) makes every fetch call sleep that long first, to simulate a slow source
in demos and tests; the sleep is an ordinary `time.sleep`, which a signal handler that raises (SIGTERM, the
heartbeat's cancel interrupt) ends at once.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from sync_image import codes as codelib
from sync_image import schema
from sync_image.errors import FeatureNotSupported, SourceDataError, SourceError, SourceUnavailable
from sync_image.sources.base import Probe, Source, SourceInfo, describe_codes

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"
DATASETS = ("basics", "quotes", "daily", "financial", "calendar")


class FileSource(Source):
    """Reads canonical files from one folder; each file is read once per run."""

    max_concurrency = 4
    financial_figures = schema.FINANCIAL_FIGURES  # files are in the canonical schema already
    info = SourceInfo(
        name="file", title="Files (CSV/Parquet)", markets=("SH", "SZ", "BJ"), needs_key=False, free=True,
        features=frozenset({"basics", "quotes", "daily", "financial", "calendar", "status"}),
        notes="canonical schema; default folder is the sample dataset shipped in the image",
    )

    def __init__(self, directory: Path | str | None = None, delay: float = 0.0) -> None:
        self.directory = Path(directory) if directory else SAMPLE_DATA
        self.delay = max(0.0, float(delay))
        self._frames: dict[str, pd.DataFrame] = {}
        self._daily_by_code: dict[str, pd.DataFrame] | None = None
        self._lock = threading.Lock()  # batches run concurrently: each file is read once all the same

    def open(self) -> None:
        if not self.directory.is_dir():
            raise SourceUnavailable(f"folder {self.directory} does not exist", source=self.name)

    def path_of(self, dataset: str) -> Path | None:
        for suffix in (".parquet", ".csv"):
            path = self.directory / f"{dataset}{suffix}"
            if path.is_file():
                return path
        return None

    def _slow_down(self) -> None:
        if self.delay:
            time.sleep(self.delay)

    def _load(self, dataset: str) -> pd.DataFrame:
        with self._lock:
            return self._load_once(dataset)

    def _load_once(self, dataset: str) -> pd.DataFrame:
        if dataset in self._frames:
            return self._frames[dataset]
        self.open()
        path = self.path_of(dataset)
        if path is None:
            raise FeatureNotSupported(f"no {dataset}.parquet or {dataset}.csv in {self.directory}", source=self.name)
        try:
            raw = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype={"code": str})
            frame = raw if dataset == "calendar" else schema.conform(raw, dataset)
        except SourceError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            raise SourceDataError(f"cannot read {path}: {exc!r}", source=self.name) from exc
        self._frames[dataset] = frame
        return frame

    def stock_list(self) -> pd.DataFrame:
        self._slow_down()
        if self.path_of("basics") is None and self.path_of("daily") is not None:
            # a back-fill folder of bars only: its codes are the list
            bars = self._load("daily")
            return schema.conform(pd.DataFrame({"code": sorted(bars["code"].dropna().unique())}), "basics")
        frame = self._load("basics")
        if frame.empty:
            raise self.empty("basics")
        return frame.copy()

    def quotes(self, codes: Sequence[str]) -> pd.DataFrame:
        self._slow_down()
        frame = self._load("quotes")
        out = frame[frame["code"].isin({codelib.normalise(c) for c in codes})].reset_index(drop=True)
        if out.empty:
            raise self.empty(f"quotes {describe_codes(codes)}")
        return out

    def daily(self, codes: Sequence[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        self._slow_down()
        frame = self._load("daily")
        with self._lock:
            if self._daily_by_code is None:
                self._daily_by_code = {str(code): part for code, part in frame.groupby("code", sort=False)}
        parts = []
        for code in codes:
            part = self._daily_by_code.get(codelib.normalise(code))
            if part is None:
                continue
            mask = part["trade_date"].map(lambda d: d is not None and start <= d <= end)
            if mask.any():
                parts.append(part[mask.astype(bool)])
        if not parts:
            raise self.empty(f"daily {describe_codes(codes)} {start}..{end}")
        return pd.concat(parts, ignore_index=True)

    def financial(self, codes: Sequence[str], periods: int) -> pd.DataFrame:
        self._slow_down()
        frame = self._load("financial")
        out = frame[frame["code"].isin({codelib.normalise(c) for c in codes})]
        if out.empty:
            raise self.empty(f"financial {describe_codes(codes)}")
        return schema.latest_periods(out, periods)

    def trading_days(self, start: dt.date, end: dt.date) -> list[dt.date]:
        self._slow_down()
        frame = self._load("calendar")
        try:
            days = [schema.to_date(v) for v in frame["trade_date"]]
        except KeyError as exc:
            raise SourceDataError(f"calendar file has no trade_date column: {exc!r}", source=self.name) from exc
        result = sorted(d for d in days if d is not None and start <= d <= end)
        if not result:
            raise self.empty(f"trading days {start}..{end}")
        return result

    def probe(self) -> Probe:
        started = time.monotonic()
        try:
            self.open()
            present = [d for d in DATASETS if self.path_of(d) is not None]
            if not present:
                raise SourceUnavailable(f"no data files in {self.directory}", source=self.name)
            self._load(present[0])
            return Probe(self.name, True, True, (time.monotonic() - started) * 1000,
                         details={"directory": str(self.directory), "datasets": present})
        except SourceError as exc:
            return Probe(self.name, False, False, (time.monotonic() - started) * 1000,
                         error_class=type(exc).__name__, message=exc.message,
                         details={"directory": str(self.directory)})
