"""The pod contract as the sync image reads it."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

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


def test_run_id_is_namespace_and_job_and_the_new_contract_variables_have_defaults(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {**BASE, "SYNC_RUN_ID": "quotes-m1", "HOSTNAME": "quotes-m1-abcde"}.items():
        monkeypatch.setenv(key, value)
    for key in ("SYNC_POD_NAME", "SYNC_CONCURRENCY_POLICY", "SYNC_BACKOFF_LIMIT"):
        monkeypatch.delenv(key, raising=False)
    s = PodSettings()  # type: ignore[call-arg]
    assert (s.run_id, s.k8s_job) == ("md.quotes-m1", "quotes-m1")
    assert (s.pod_name, s.concurrency_policy, s.backoff_limit) == ("quotes-m1-abcde", "Allow", 0)


def test_the_operator_renders_pod_name_concurrency_policy_and_backoff_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {**BASE, "SYNC_RUN_ID": "quotes-m1", "SYNC_POD_NAME": "quotes-m1-x7k2p",
                       "SYNC_CONCURRENCY_POLICY": "Forbid", "SYNC_BACKOFF_LIMIT": "2"}.items():
        monkeypatch.setenv(key, value)
    s = PodSettings()  # type: ignore[call-arg]
    assert (s.pod_name, s.concurrency_policy, s.backoff_limit) == ("quotes-m1-x7k2p", "Forbid", 2)


@pytest.mark.parametrize(("key", "value"), [("SYNC_CONCURRENCY_POLICY", "Sometimes"), ("SYNC_BACKOFF_LIMIT", "-1"),
                                            ("SYNC_OPTIONS", '{"file_delay_seconds": -1}')])
def test_bad_new_contract_values_are_refused(monkeypatch: pytest.MonkeyPatch, key: str, value: str) -> None:
    for k, v in {**BASE, "SYNC_RUN_ID": "quotes-m1", key: value}.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValidationError):
        PodSettings()  # type: ignore[call-arg]
