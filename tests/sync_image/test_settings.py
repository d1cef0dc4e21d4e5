"""The pod contract as the sync image reads it."""

from __future__ import annotations

import datetime as dt

import pytest

from sync_image.settings import PodSettings

BASE = {"SYNCJOB_NAMESPACE": "md", "SYNCJOB_NAME": "quotes", "SYNC_TASK": "quotes", "SYNC_SOURCES": "file",
        "MONGO_URI": "mongodb://127.0.0.1:1/x"}


def test_scheduled_run_takes_its_due_time_from_the_cronjob_job_name(monkeypatch: pytest.MonkeyPatch) -> None:
    due = dt.datetime(2026, 11, 27, 7, 0, tzinfo=dt.UTC)  # 15:00 in Shanghai
    for key, value in {**BASE, "SYNC_TRIGGER": "schedule", "SYNC_SCHEDULED_TIME": "",
                       "SYNC_RUN_ID": f"quotes-{int(due.timestamp()) // 60}"}.items():
        monkeypatch.setenv(key, value)
    assert PodSettings().scheduled_time == due  # type: ignore[call-arg]


def test_manual_run_keeps_no_scheduled_time_from_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {**BASE, "SYNC_TRIGGER": "manual", "SYNC_RUN_ID": "quotes-m1234567890"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SYNC_SCHEDULED_TIME", raising=False)
    assert PodSettings().scheduled_time is None  # type: ignore[call-arg]
