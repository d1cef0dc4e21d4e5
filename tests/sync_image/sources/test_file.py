"""The `file` source: the shipped sample dataset and user folders of CSV or Parquet files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from sync_image.errors import FeatureNotSupported, SourceDataError, SourceEmpty, SourceUnavailable
from sync_image.sources import REGISTRY
from sync_image.sources.file import SAMPLE_DATA, FileSource


def test_sample_dataset_covers_every_task_and_the_three_exchanges() -> None:
    src = FileSource()
    basics = src.stock_list()
    assert {"600000.SH", "000001.SZ"} <= set(basics["code"])
    assert any(c.startswith("920") and c.endswith(".BJ") for c in basics["code"])
    daily = src.daily(list(basics["code"]), dt.date(2026, 10, 1), dt.date(2026, 11, 27))
    assert daily["trade_date"].nunique() >= 15 and set(daily["code"]) == set(basics["code"])
    assert (daily["volume"] > 1000).all()  # shares, not lots
    assert len(src.quotes(list(basics["code"]))) == len(basics)
    assert src.financial(["600000.SH"], periods=2)["report_period"].tolist() == [dt.date(2026, 9, 30),
                                                                                 dt.date(2026, 6, 30)]


def test_sample_daily_bars_fall_on_exchange_trading_days_only() -> None:
    daily = FileSource().daily(["600000.SH"], dt.date(2026, 9, 1), dt.date(2026, 12, 31))
    assert dt.date(2026, 10, 7) not in set(daily["trade_date"])  # National Day holiday (a Wednesday)
    assert all(d.weekday() < 5 for d in daily["trade_date"])


def test_parquet_is_read_and_codes_in_any_spelling_are_canonical(tmp_path: Path) -> None:
    pd.DataFrame({"code": ["sh.600000", "000001"], "trade_date": ["20240528", "2024-05-28"], "close": [8.46, 11.4],
                  "volume": [1e6, 2e6]}).to_parquet(tmp_path / "daily.parquet")
    frame = FileSource(tmp_path).daily(["600000.SH", "000001.SZ"], dt.date(2024, 5, 1), dt.date(2024, 5, 31))
    assert sorted(frame["code"]) == ["000001.SZ", "600000.SH"]
    assert set(frame["trade_date"]) == {dt.date(2024, 5, 28)}


def test_missing_folder_is_unavailable_and_missing_file_is_unsupported(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable):
        FileSource(tmp_path / "nope").stock_list()
    with pytest.raises(FeatureNotSupported):
        FileSource(tmp_path).quotes(["600000.SH"])


def test_unreadable_file_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "daily.csv").write_text("code,trade_date\nnot-a-code,2024-05-28\n")
    with pytest.raises(SourceDataError):
        FileSource(tmp_path).daily(["600000.SH"], dt.date(2024, 5, 1), dt.date(2024, 5, 31))


def test_dates_outside_the_range_are_empty() -> None:
    with pytest.raises(SourceEmpty):
        FileSource().daily(["600000.SH"], dt.date(2020, 1, 1), dt.date(2020, 1, 31))


def test_calendar_file_answers_trading_days(tmp_path: Path) -> None:
    (tmp_path / "calendar.csv").write_text("trade_date\n2027-01-04\n2027-01-05\n")
    assert FileSource(tmp_path).trading_days(dt.date(2027, 1, 1), dt.date(2027, 1, 4)) == [dt.date(2027, 1, 4)]


def test_probe_reports_the_folder_and_its_datasets(tmp_path: Path) -> None:
    probe = FileSource().probe()
    assert probe.available and probe.permission and probe.latency_ms is not None
    assert set(probe.details["datasets"]) >= {"basics", "daily", "quotes", "financial"}  # type: ignore[arg-type]
    assert FileSource(tmp_path).probe().available is False
    assert SAMPLE_DATA.is_dir()


def test_registry_describes_every_source() -> None:
    assert set(REGISTRY) == {"tushare", "akshare", "baostock", "file"}
    assert REGISTRY["tushare"].needs_key and not REGISTRY["tushare"].free
    assert "quotes" not in REGISTRY["baostock"].features and "BJ" not in REGISTRY["baostock"].markets
    assert all("daily" in info.features for info in REGISTRY.values())
